//! Access governance end to end: per-account access policies and four-eyes access requests.
//!
//! An account's OWNER puts grants behind approval (`UpdateAccessPolicy`); a direct grant is
//! then refused with FAILED_PRECONDITION APPROVAL_REQUIRED (ErrorInfo metadata `access_policy`
//! and `gated_grant`), and the grant is asked for with `CreateAccessRequest`. The people who
//! may approve are e-mailed (a real SMTP server), list it as waiting for them, and the last
//! approval makes the grant; the requester is e-mailed the outcome. A decline ends a request;
//! nobody approves twice, the subject never; too few approvers refuse the request unless the
//! policy escalates to the managing partner's OWNERs. A partner's policy applies to its
//! customers, which can only tighten it. Invitations with a high role are gated too. Two final
//! approvals (or an approval and a decline) racing each other have exactly one outcome. And an
//! account without a policy behaves exactly as before.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tenantry_e2e::{add_member, create_customer, expect_code, invite, partner_with_owner};
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequest, AccessRequestState, AddMyselfRequest, ApproveAccessRequestRequest,
    ApproveAccessRequestResponse, CancelAccessRequestRequest, CreateAccessRequestRequest,
    DeclineAccessRequestRequest, GatedGrant, GetAccessPolicyRequest, GetAccessPolicyResponse,
    GetAccessRequestRequest, GetMemberRequest, ListAccessRequestsRequest,
    ListAccessRequestsWaitingForMeRequest, ListMembersRequest, ListMyAccountsRequest, Member,
    MemberSource, Role, ShortOfApprovers, UpdateAccessPolicyRequest, UpdateAccessPolicyResponse,
    UpdateMemberRequest,
};
use tenantry_proto::registry::v1::CreateAccountRequest;
use tenantry_testkit::smtp::{ReceivedMail, SmtpServer};
use tenantry_testkit::{Backend, Bearer, ClusterOptions, MembershipClient, TestCluster, TestUser};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// How long a test waits for an e-mail it expects.
const MAIL_TIMEOUT: StdDuration = StdDuration::from_secs(30);

// ---- Helpers -------------------------------------------------------------------------------

/// Asserts the call failed with `code` and ErrorInfo reason `reason`; returns the status.
#[track_caller]
fn expect_reason<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = expect_code(result, code);
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason: {status:?}");
    status
}

/// Asserts FAILED_PRECONDITION APPROVAL_REQUIRED naming `policy` and `grant` in its metadata.
#[track_caller]
fn expect_approval_required<T: std::fmt::Debug>(
    result: Result<T, Status>,
    policy: &str,
    grant: &str,
) {
    let status = expect_reason(result, Code::FailedPrecondition, "APPROVAL_REQUIRED");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("access_policy").map(String::as_str),
        Some(policy),
        "{status:?}"
    );
    assert_eq!(
        info.metadata.get("gated_grant").map(String::as_str),
        Some(grant),
        "{status:?}"
    );
}

/// `accounts/{id}/accessPolicy` of an account name `accounts/{id}`.
fn policy_name(account: &str) -> String {
    format!("{account}/accessPolicy")
}

/// `accounts/{id}/members/{sub}`.
fn member_name(account: &str, user: &TestUser) -> String {
    format!("{account}/members/{}", user.sub)
}

fn days(days: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: days * 86_400,
        nanos: 0,
    })
}

fn hours(hours: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: hours * 3_600,
        nanos: 0,
    })
}

fn time_of(timestamp: Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let timestamp = timestamp.expect("a timestamp");
    DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32).expect("a valid time")
}

/// A policy for `account` gating `gated` with `required_approvals`; the rest unset.
fn gating(account: &str, gated: &[GatedGrant], required_approvals: i32) -> AccessPolicy {
    AccessPolicy {
        name: policy_name(account),
        gated_grants: gated.iter().map(|grant| *grant as i32).collect(),
        required_approvals,
        ..Default::default()
    }
}

/// An operator creates a plain (not partner, not managed) account and adds `owner` as OWNER.
async fn account_with_owner(
    cluster: &TestCluster,
    operator: &TestUser,
    account_id: &str,
    owner: &TestUser,
) -> String {
    let account = cluster
        .registry_as(operator)
        .create_account(CreateAccountRequest {
            account_id: account_id.to_string(),
            display_name: format!("{account_id} account"),
            request_id: String::new(),
        })
        .await
        .expect("operator creates an account")
        .into_inner()
        .account
        .expect("account");
    add_member(cluster, operator, &account.name, owner, Role::Owner)
        .await
        .expect("operator adds the first owner");
    account.name
}

/// `user` makes a call, so the user directory knows their e-mail (approvers are e-mailed at
/// the directory's address; a person added by user id only is known once they called).
async fn sign_in(cluster: &TestCluster, user: &TestUser) {
    cluster
        .membership_as(user)
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts");
}

async fn set_policy(
    cluster: &TestCluster,
    actor: &TestUser,
    policy: AccessPolicy,
) -> Result<UpdateAccessPolicyResponse, Status> {
    cluster
        .membership_as(actor)
        .update_access_policy(UpdateAccessPolicyRequest {
            policy: Some(policy),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get_policy(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
) -> GetAccessPolicyResponse {
    cluster
        .membership_as(actor)
        .get_access_policy(GetAccessPolicyRequest {
            name: policy_name(account),
        })
        .await
        .expect("get access policy")
        .into_inner()
}

/// `actor` asks for `role` for `subject` in `account`.
async fn request_access(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    subject: &TestUser,
    role: Role,
    access_duration: Option<prost_types::Duration>,
) -> Result<AccessRequest, Status> {
    create_request(
        &mut cluster.membership_as(actor),
        account,
        subject,
        role,
        access_duration,
    )
    .await
}

async fn create_request(
    client: &mut MembershipClient,
    account: &str,
    subject: &TestUser,
    role: Role,
    access_duration: Option<prost_types::Duration>,
) -> Result<AccessRequest, Status> {
    client
        .create_access_request(CreateAccessRequestRequest {
            parent: account.to_string(),
            access_request: Some(AccessRequest {
                subject: subject.resource_name(),
                role: role as i32,
                reason: format!("{} needs to be {role:?} for the migration", subject.sub),
                access_duration,
                ..Default::default()
            }),
        })
        .await
        .map(|response| {
            response
                .into_inner()
                .access_request
                .expect("access request")
        })
}

async fn approve_with(
    client: &mut MembershipClient,
    name: &str,
) -> Result<ApproveAccessRequestResponse, Status> {
    client
        .approve_access_request(ApproveAccessRequestRequest {
            name: name.to_string(),
            etag: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn approve(
    cluster: &TestCluster,
    actor: &TestUser,
    name: &str,
) -> Result<ApproveAccessRequestResponse, Status> {
    approve_with(&mut cluster.membership_as(actor), name).await
}

async fn decline_with(
    client: &mut MembershipClient,
    name: &str,
    reason: &str,
) -> Result<AccessRequest, Status> {
    client
        .decline_access_request(DeclineAccessRequestRequest {
            name: name.to_string(),
            reason: reason.to_string(),
            etag: String::new(),
        })
        .await
        .map(|response| {
            response
                .into_inner()
                .access_request
                .expect("access request")
        })
}

async fn decline(
    cluster: &TestCluster,
    actor: &TestUser,
    name: &str,
    reason: &str,
) -> Result<AccessRequest, Status> {
    decline_with(&mut cluster.membership_as(actor), name, reason).await
}

async fn cancel(
    cluster: &TestCluster,
    actor: &TestUser,
    name: &str,
) -> Result<AccessRequest, Status> {
    cluster
        .membership_as(actor)
        .cancel_access_request(CancelAccessRequestRequest {
            name: name.to_string(),
            etag: String::new(),
        })
        .await
        .map(|response| {
            response
                .into_inner()
                .access_request
                .expect("access request")
        })
}

async fn get_request(cluster: &TestCluster, actor: &TestUser, name: &str) -> AccessRequest {
    cluster
        .membership_as(actor)
        .get_access_request(GetAccessRequestRequest {
            name: name.to_string(),
        })
        .await
        .expect("get access request")
        .into_inner()
        .access_request
        .expect("access request")
}

/// The names of the requests waiting for `user`'s approval.
async fn waiting_for(cluster: &TestCluster, user: &TestUser) -> Vec<String> {
    cluster
        .membership_as(user)
        .list_access_requests_waiting_for_me(ListAccessRequestsWaitingForMeRequest::default())
        .await
        .expect("list access requests waiting for me")
        .into_inner()
        .access_requests
        .into_iter()
        .map(|request| request.name)
        .collect()
}

async fn get_member(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    user: &TestUser,
) -> Result<Member, Status> {
    cluster
        .membership_as(actor)
        .get_member(GetMemberRequest {
            name: member_name(account, user),
        })
        .await
        .map(|response| response.into_inner().member.expect("member"))
}

/// How many memberships of `user` `account` lists (all pages).
async fn listed_memberships(
    cluster: &TestCluster,
    actor: &TestUser,
    account: &str,
    user: &TestUser,
) -> usize {
    let mut count = 0;
    let mut token = String::new();
    loop {
        let page = cluster
            .membership_as(actor)
            .list_members(ListMembersRequest {
                parent: account.to_string(),
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list members")
            .into_inner();
        count += page
            .members
            .iter()
            .filter(|member| member.user == user.resource_name())
            .count();
        if page.next_page_token.is_empty() {
            return count;
        }
        token = page.next_page_token;
    }
}

/// A membership client for `user` on a connection of its own, so racing calls really run side
/// by side on the server.
async fn own_connection(cluster: &TestCluster, user: &TestUser) -> MembershipClient {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cluster.addr()))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    MembershipServiceClient::with_interceptor(channel, Bearer::new(Some(&user.token())))
}

/// The id of an account name `accounts/{id}`.
fn account_id(account: &str) -> &str {
    account.strip_prefix("accounts/").expect("an account name")
}

/// Whether an e-mail subject is `prefix` followed by a mention of `account` (the account is
/// named as `accounts/{id}`, or by its display name with the id).
fn is_about(subject: &str, prefix: &str, account: &str) -> bool {
    subject
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.contains(account_id(account)))
}

/// "Approval needed: {ROLE} for {subject e-mail} on " — the approvers' e-mail.
fn approval_needed(role: &str, subject: &TestUser) -> String {
    format!("Approval needed: {role} for {} on ", subject.email)
}

/// "Your access request was {verdict}: {ROLE} for {subject e-mail} on " — the requester's.
fn request_decided(verdict: &str, role: &str, subject: &TestUser) -> String {
    format!(
        "Your access request was {verdict}: {role} for {} on ",
        subject.email
    )
}

/// Waits until `address` received an e-mail whose subject is `prefix` followed by a mention of
/// `account`; returns it.
async fn wait_for_mail(
    smtp: &SmtpServer,
    address: &str,
    prefix: &str,
    account: &str,
) -> ReceivedMail {
    let deadline = tokio::time::Instant::now() + MAIL_TIMEOUT;
    loop {
        let mails = smtp.received_by(address);
        if let Some(mail) = mails
            .iter()
            .find(|mail| is_about(&mail.subject, prefix, account))
        {
            return mail.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no e-mail {prefix:?}… about {account} to {address} within {MAIL_TIMEOUT:?}; got {:?}",
            mails.iter().map(|mail| &mail.subject).collect::<Vec<_>>()
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// The subjects of the e-mails `address` received.
fn subjects(smtp: &SmtpServer, address: &str) -> Vec<String> {
    smtp.received_by(address)
        .into_iter()
        .map(|mail| mail.subject)
        .collect()
}

fn smtp_cluster_options(backend: Backend, smtp: &SmtpServer) -> ClusterOptions {
    let mut options = ClusterOptions::new(backend);
    options.mail.smtp_url = Some(smtp.url());
    options
}

// ---- 1. The four-eyes grant, with e-mail ---------------------------------------------------

/// An OWNER gates ADMIN grants; a direct ADMIN grant is refused APPROVAL_REQUIRED; the OWNER
/// asks for it, the second OWNER is e-mailed once, lists it as waiting and approves: the
/// subject is ADMIN and the requester is e-mailed. EMPLOYEE grants and operators stay ungated.
async fn four_eyes_grant_with_email(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let cluster = TestCluster::start_with(smtp_cluster_options(backend, &smtp)).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let emma = TestUser::new("emma");
    let sam = TestUser::new("sam");
    let account = account_with_owner(&cluster, &operator, "gov", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    for user in [&owen, &olga, &emma, &sam] {
        sign_in(&cluster, user).await;
    }

    // Only an OWNER sets the policy.
    let set = set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::AdminRole], 2),
    )
    .await
    .expect("the OWNER gates ADMIN grants");
    let own = set.policy.expect("policy");
    assert_eq!(own.name, policy_name(&account));
    assert_eq!(own.gated_grants, [GatedGrant::AdminRole as i32]);
    assert_eq!(own.required_approvals, 2);
    assert!(!own.etag.is_empty());
    assert_eq!(own.update_by, owen.resource_name());
    let effective = set.effective.expect("effective");
    assert_eq!(effective.gated_grants, [GatedGrant::AdminRole as i32]);

    // A direct ADMIN grant is refused, naming the policy and the grant.
    expect_approval_required(
        add_member(&cluster, &owen, &account, &sam, Role::Admin).await,
        &policy_name(&account),
        "ADMIN_ROLE",
    );
    // EMPLOYEE grants stay ungated; raising an EMPLOYEE to ADMIN is gated like adding one.
    let employee = add_member(&cluster, &owen, &account, &emma, Role::Employee)
        .await
        .expect("an EMPLOYEE grant is not gated");
    assert_eq!(employee.role, Role::Employee as i32);
    expect_approval_required(
        cluster
            .membership_as(&olga)
            .update_member(UpdateMemberRequest {
                member: Some(Member {
                    name: employee.name.clone(),
                    role: Role::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".to_string()],
                }),
            })
            .await,
        &policy_name(&account),
        "ADMIN_ROLE",
    );

    // The OWNER asks for it.
    let asked_at = Utc::now();
    let created = request_access(&cluster, &owen, &account, &sam, Role::Admin, None)
        .await
        .expect("the OWNER asks for the ADMIN grant");
    assert!(
        created
            .name
            .starts_with(&format!("{account}/accessRequests/")),
        "{}",
        created.name
    );
    assert_eq!(created.state, AccessRequestState::Pending as i32);
    assert_eq!(created.subject, sam.resource_name());
    assert_eq!(created.subject_email, sam.email);
    assert_eq!(created.role, Role::Admin as i32);
    assert_eq!(created.requester, owen.resource_name());
    assert_eq!(created.required_approvals, 2);
    assert!(!created.escalated);
    assert_eq!(
        created
            .approvals
            .iter()
            .map(|a| a.approver.as_str())
            .collect::<Vec<_>>(),
        [owen.resource_name()]
    );
    // Lapses after the default 7 days.
    let lapses = time_of(created.expire_time);
    assert!(
        lapses >= asked_at + Duration::days(7) - Duration::seconds(5)
            && lapses <= Utc::now() + Duration::days(7) + Duration::seconds(5),
        "{lapses}"
    );

    // The second OWNER is e-mailed; nobody else is.
    let mail = wait_for_mail(
        &smtp,
        &olga.email,
        &approval_needed("ADMIN", &sam),
        &account,
    )
    .await;
    assert!(mail.text.contains(&created.name), "{}", mail.text);
    assert!(mail.text.contains(&created.reason), "{}", mail.text);
    // It waits for her, not for the requester.
    assert_eq!(waiting_for(&cluster, &olga).await, [created.name.as_str()]);
    assert!(waiting_for(&cluster, &owen).await.is_empty());
    assert!(waiting_for(&cluster, &emma).await.is_empty());

    // She approves: the grant is made.
    let approved = approve(&cluster, &olga, &created.name)
        .await
        .expect("the second OWNER approves");
    let request = approved.access_request.expect("access request");
    assert_eq!(request.state, AccessRequestState::Approved as i32);
    assert_eq!(request.decided_by, olga.resource_name());
    assert_eq!(request.approvals.len(), 2);
    assert!(request.decide_time.is_some());
    let member = approved.member.expect("the granted membership");
    assert_eq!(member.name, member_name(&account, &sam));
    assert_eq!(member.role, Role::Admin as i32);
    assert_eq!(member.source, MemberSource::Direct as i32);
    assert_eq!(member.added_by, owen.resource_name());
    assert_eq!(member.expire_time, None);
    let shown = get_member(&cluster, &owen, &account, &sam)
        .await
        .expect("the new ADMIN");
    assert_eq!(shown.role, Role::Admin as i32);
    assert_eq!(
        get_request(&cluster, &sam, &created.name).await.state,
        AccessRequestState::Approved as i32,
        "the subject sees their request"
    );
    assert!(waiting_for(&cluster, &olga).await.is_empty());
    let listed = cluster
        .membership_as(&emma)
        .list_access_requests(ListAccessRequestsRequest {
            parent: account.clone(),
            states: vec![AccessRequestState::Approved as i32],
            ..Default::default()
        })
        .await
        .expect("a member lists the account's requests")
        .into_inner();
    assert_eq!(
        listed
            .access_requests
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        [created.name.as_str()]
    );

    // The requester is told; each e-mail went once.
    let told = wait_for_mail(
        &smtp,
        &owen.email,
        &request_decided("approved", "ADMIN", &sam),
        &account,
    )
    .await;
    assert!(told.text.contains(&olga.resource_name()), "{}", told.text);
    assert_eq!(subjects(&smtp, &owen.email).len(), 1);
    let to_olga = subjects(&smtp, &olga.email);
    assert_eq!(to_olga.len(), 1, "{to_olga:?}");
    assert!(is_about(
        &to_olga[0],
        &approval_needed("ADMIN", &sam),
        &account
    ));
    assert!(subjects(&smtp, &emma.email).is_empty());
    assert!(subjects(&smtp, &sam.email).is_empty());

    // Operators are not gated.
    let opal = TestUser::new("opal");
    let direct = add_member(&cluster, &operator, &account, &opal, Role::Admin)
        .await
        .expect("an operator grants ADMIN directly");
    assert_eq!(direct.role, Role::Admin as i32);

    cluster.stop().await;
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_grant_with_email_on_sqlite() {
    if !tenantry_testkit::smtp_or_skip() {
        return;
    }
    four_eyes_grant_with_email(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_grant_with_email_on_postgres() {
    if tenantry_testkit::postgres_or_skip().is_none() || !tenantry_testkit::smtp_or_skip() {
        return;
    }
    four_eyes_grant_with_email(Backend::Postgres).await;
}

// ---- 2. Decline, self-approval, double approval, cancel ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_ends_it_and_nobody_approves_twice_or_for_themself() {
    if !tenantry_testkit::smtp_or_skip() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let cluster = TestCluster::start_with(smtp_cluster_options(Backend::Sqlite, &smtp)).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let adam = TestUser::new("adam");
    let sam = TestUser::new("sam");
    let tess = TestUser::new("tess");
    let account = account_with_owner(&cluster, &operator, "gov2", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    add_member(&cluster, &owen, &account, &adam, Role::Admin)
        .await
        .expect("an ADMIN (before the policy)");
    for user in [&owen, &olga, &adam, &sam, &tess] {
        sign_in(&cluster, user).await;
    }
    set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::AdminRole], 2),
    )
    .await
    .expect("the OWNER gates ADMIN grants");

    // A decline ends it.
    let for_tess = request_access(&cluster, &owen, &account, &tess, Role::Admin, None)
        .await
        .expect("ask for tess");
    wait_for_mail(
        &smtp,
        &adam.email,
        &approval_needed("ADMIN", &tess),
        &account,
    )
    .await;
    let why = "Tess moves to another team next week";
    let declined = decline(&cluster, &adam, &for_tess.name, why)
        .await
        .expect("the ADMIN declines");
    assert_eq!(declined.state, AccessRequestState::Declined as i32);
    assert_eq!(declined.decline_reason, why);
    assert_eq!(declined.decided_by, adam.resource_name());
    expect_reason(
        approve(&cluster, &olga, &for_tess.name).await,
        Code::FailedPrecondition,
        "NOT_PENDING",
    );
    expect_reason(
        decline(&cluster, &olga, &for_tess.name, "").await,
        Code::FailedPrecondition,
        "NOT_PENDING",
    );
    expect_code(
        get_member(&cluster, &owen, &account, &tess).await,
        Code::NotFound,
    );
    assert!(waiting_for(&cluster, &olga).await.is_empty());
    let told = wait_for_mail(
        &smtp,
        &owen.email,
        &request_decided("declined", "ADMIN", &tess),
        &account,
    )
    .await;
    assert!(told.text.contains(why), "{}", told.text);
    assert!(told.text.contains(&adam.resource_name()), "{}", told.text);

    // A new request for the same subject may follow; a second one while it is PENDING not.
    let again = request_access(&cluster, &owen, &account, &tess, Role::Admin, None)
        .await
        .expect("ask again after the decline");
    expect_reason(
        request_access(&cluster, &olga, &account, &tess, Role::Admin, None).await,
        Code::FailedPrecondition,
        "REQUEST_PENDING",
    );
    // The requester's approval is the first: a second one is refused.
    expect_reason(
        approve(&cluster, &owen, &again.name).await,
        Code::FailedPrecondition,
        "ALREADY_APPROVED",
    );
    // Only the requester (or an operator) withdraws it.
    expect_code(
        cancel(&cluster, &olga, &again.name).await,
        Code::PermissionDenied,
    );
    expect_code(
        cancel(&cluster, &tess, &again.name).await,
        Code::PermissionDenied,
    );
    let cancelled = cancel(&cluster, &owen, &again.name)
        .await
        .expect("the requester withdraws");
    assert_eq!(cancelled.state, AccessRequestState::Cancelled as i32);
    assert_eq!(cancelled.decided_by, owen.resource_name());
    expect_reason(
        approve(&cluster, &olga, &again.name).await,
        Code::FailedPrecondition,
        "NOT_PENDING",
    );
    expect_reason(
        cancel(&cluster, &owen, &again.name).await,
        Code::FailedPrecondition,
        "NOT_PENDING",
    );
    expect_code(
        get_member(&cluster, &owen, &account, &tess).await,
        Code::NotFound,
    );

    // The subject never approves their own request, even one they could otherwise approve:
    // Sam becomes a time-bound ADMIN, then a longer ADMIN grant is asked for him.
    let first = request_access(&cluster, &owen, &account, &sam, Role::Admin, hours(1))
        .await
        .expect("ask for sam for an hour");
    let granted = approve(&cluster, &olga, &first.name)
        .await
        .expect("approved")
        .member
        .expect("member");
    let first_end = time_of(granted.expire_time);
    assert!(first_end <= Utc::now() + Duration::hours(1), "{first_end}");
    let longer = request_access(&cluster, &owen, &account, &sam, Role::Admin, days(2))
        .await
        .expect("ask for two days for sam");
    expect_code(
        approve(&cluster, &sam, &longer.name).await,
        Code::PermissionDenied,
    );
    expect_code(
        decline(&cluster, &sam, &longer.name, "no").await,
        Code::PermissionDenied,
    );
    assert_eq!(
        get_request(&cluster, &sam, &longer.name).await.state,
        AccessRequestState::Pending as i32
    );
    let before = Utc::now();
    let extended = approve(&cluster, &adam, &longer.name)
        .await
        .expect("another ADMIN approves")
        .member
        .expect("member");
    let end = time_of(extended.expire_time);
    assert!(
        end >= before + Duration::days(2) - Duration::seconds(1)
            && end <= Utc::now() + Duration::days(2),
        "{end}"
    );
    assert_eq!(extended.role, Role::Admin as i32);

    cluster.stop().await;
    smtp.stop().await;
}

// ---- 3. Too few approvers; escalation to the partner's OWNERs ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_approvers_refuse_unless_the_policy_escalates_to_the_partner() {
    if !tenantry_testkit::smtp_or_skip() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let cluster = TestCluster::start_with(smtp_cluster_options(Backend::Sqlite, &smtp)).await;
    let operator = TestUser::operator("ops");
    let sam = TestUser::new("sam");

    // A plain account: an OWNER and an ADMIN. ADMINs approve ADMIN grants, never OWNER ones
    // while the account has an OWNER; escalation needs a managing partner.
    let owen = TestUser::new("owen");
    let adam = TestUser::new("adam");
    let solo = account_with_owner(&cluster, &operator, "solo", &owen).await;
    add_member(&cluster, &owen, &solo, &adam, Role::Admin)
        .await
        .expect("an ADMIN");
    set_policy(
        &cluster,
        &owen,
        AccessPolicy {
            short_of_approvers: ShortOfApprovers::EscalateToPartnerOwners as i32,
            ..gating(&solo, &[GatedGrant::OwnerRole, GatedGrant::AdminRole], 2)
        },
    )
    .await
    .expect("gate OWNER and ADMIN grants");
    expect_reason(
        request_access(&cluster, &owen, &solo, &sam, Role::Owner, None).await,
        Code::FailedPrecondition,
        "NOT_ENOUGH_APPROVERS",
    );
    let admin_grant = request_access(&cluster, &owen, &solo, &sam, Role::Admin, None)
        .await
        .expect("the ADMIN may approve an ADMIN grant");
    assert!(!admin_grant.escalated);

    // A managed customer with one OWNER and an EMPLOYEE (who never approves).
    let partner = partner_with_owner(&cluster, &operator, "esc-partner", "pam").await;
    let pam = &partner.owner;
    let customer = create_customer(&cluster, pam, &partner.account.name, "esc-cust")
        .await
        .expect("create customer");
    let cora = TestUser::new("cora");
    let emma = TestUser::new("emma");
    add_member(&cluster, &operator, &customer.name, &cora, Role::Owner)
        .await
        .expect("the customer's OWNER");
    add_member(&cluster, &cora, &customer.name, &emma, Role::Employee)
        .await
        .expect("an EMPLOYEE");
    for user in [pam, &cora, &emma, &sam] {
        sign_in(&cluster, user).await;
    }
    let refusing = set_policy(
        &cluster,
        &cora,
        gating(&customer.name, &[GatedGrant::AdminRole], 2),
    )
    .await
    .expect("the customer's OWNER gates ADMIN grants")
    .policy
    .expect("policy");
    expect_reason(
        request_access(&cluster, &cora, &customer.name, &sam, Role::Admin, None).await,
        Code::FailedPrecondition,
        "NOT_ENOUGH_APPROVERS",
    );
    expect_approval_required(
        add_member(&cluster, &cora, &customer.name, &sam, Role::Admin).await,
        &policy_name(&customer.name),
        "ADMIN_ROLE",
    );

    // The policy escalates: the partner's OWNER may approve.
    let escalating = set_policy(
        &cluster,
        &cora,
        AccessPolicy {
            short_of_approvers: ShortOfApprovers::EscalateToPartnerOwners as i32,
            etag: refusing.etag.clone(),
            ..gating(&customer.name, &[GatedGrant::AdminRole], 2)
        },
    )
    .await
    .expect("escalate to the partner's OWNERs")
    .policy
    .expect("policy");
    assert_ne!(escalating.etag, refusing.etag);
    // The old etag is stale now.
    expect_code(
        set_policy(
            &cluster,
            &cora,
            AccessPolicy {
                etag: refusing.etag.clone(),
                ..gating(&customer.name, &[], 2)
            },
        )
        .await,
        Code::Aborted,
    );
    let escalated = request_access(&cluster, &cora, &customer.name, &sam, Role::Admin, None)
        .await
        .expect("the request escalates");
    assert!(escalated.escalated);
    assert_eq!(escalated.required_approvals, 2);
    wait_for_mail(
        &smtp,
        &pam.email,
        &approval_needed("ADMIN", &sam),
        &customer.name,
    )
    .await;
    assert_eq!(waiting_for(&cluster, pam).await, [escalated.name.as_str()]);
    assert!(waiting_for(&cluster, &emma).await.is_empty());
    // The EMPLOYEE may see it but not approve it.
    expect_code(
        approve(&cluster, &emma, &escalated.name).await,
        Code::PermissionDenied,
    );
    let approved = approve(&cluster, pam, &escalated.name)
        .await
        .expect("the partner's OWNER approves");
    assert_eq!(
        approved.access_request.expect("request").state,
        AccessRequestState::Approved as i32
    );
    assert_eq!(approved.member.expect("member").role, Role::Admin as i32);
    assert_eq!(
        get_member(&cluster, &cora, &customer.name, &sam)
            .await
            .expect("the new ADMIN")
            .role,
        Role::Admin as i32
    );
    wait_for_mail(
        &smtp,
        &cora.email,
        &request_decided("approved", "ADMIN", &sam),
        &customer.name,
    )
    .await;

    cluster.stop().await;
    smtp.stop().await;
}

// ---- 4. A partner's policy applies to its customers ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_policy_gates_add_myself_on_its_customers_which_can_only_tighten_it() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "pol-partner", "pam").await;
    let pam = &partner.owner;
    let customer = create_customer(&cluster, pam, &partner.account.name, "pol-cust")
        .await
        .expect("create customer");
    let eli = TestUser::new("eli");
    let erin = TestUser::new("erin");
    for employee in [&eli, &erin] {
        add_member(
            &cluster,
            pam,
            &partner.account.name,
            employee,
            Role::Employee,
        )
        .await
        .expect("a partner EMPLOYEE");
    }
    let partner_policy = policy_name(&partner.account.name);

    // Only the partner's OWNER sets its policy.
    let gate_add_myself = AccessPolicy {
        max_access_duration: days(1),
        short_of_approvers: ShortOfApprovers::EscalateToPartnerOwners as i32,
        ..gating(&partner.account.name, &[GatedGrant::AddMyself], 0)
    };
    expect_code(
        set_policy(&cluster, &eli, gate_add_myself.clone()).await,
        Code::PermissionDenied,
    );
    set_policy(&cluster, pam, gate_add_myself)
        .await
        .expect("the partner's OWNER gates AddMyself");

    // The partner's people need approval to join its customers.
    expect_approval_required(
        cluster
            .membership_as(&eli)
            .add_myself(AddMyselfRequest {
                account: customer.name.clone(),
                access_duration: None,
            })
            .await,
        &partner_policy,
        "ADD_MYSELF",
    );

    // The customer's own policy is unset; the one in force is the partner's.
    let shown = get_policy(&cluster, &eli, &customer.name).await;
    let own = shown.policy.expect("own policy");
    assert_eq!(own.name, policy_name(&customer.name));
    assert!(own.gated_grants.is_empty());
    assert!(own.etag.is_empty());
    assert_eq!(own.update_time, None);
    let effective = shown.effective.expect("effective policy");
    assert_eq!(effective.name, partner_policy);
    assert_eq!(effective.gated_grants, [GatedGrant::AddMyself as i32]);
    assert_eq!(effective.max_access_duration, days(1));
    assert_eq!(
        effective.short_of_approvers,
        ShortOfApprovers::EscalateToPartnerOwners as i32
    );

    // The EMPLOYEE asks for their own Add Myself: with AddMyself's role, for themself, within
    // the maximum.
    expect_code(
        request_access(&cluster, &eli, &customer.name, &erin, Role::Admin, None).await,
        Code::PermissionDenied,
    );
    expect_code(
        request_access(&cluster, &eli, &customer.name, &eli, Role::Owner, None).await,
        Code::PermissionDenied,
    );
    tenantry_e2e::expect_invalid_field(
        request_access(&cluster, &eli, &customer.name, &eli, Role::Admin, days(2)).await,
        "access_request.access_duration",
    );
    let asked = request_access(&cluster, &eli, &customer.name, &eli, Role::Admin, None)
        .await
        .expect("the EMPLOYEE asks to join");
    // The customer has nobody to approve: the partner's OWNER does.
    assert!(asked.escalated);
    assert_eq!(asked.access_duration, days(1));
    assert_eq!(waiting_for(&cluster, pam).await, [asked.name.as_str()]);
    expect_code(
        approve(&cluster, &erin, &asked.name).await,
        Code::PermissionDenied,
    );
    let before = Utc::now();
    let approved = approve(&cluster, pam, &asked.name)
        .await
        .expect("the partner's OWNER approves");
    let after = Utc::now();
    assert_eq!(
        approved.access_request.expect("request").state,
        AccessRequestState::Approved as i32
    );
    let member = approved.member.expect("member");
    assert_eq!(member.name, member_name(&customer.name, &eli));
    assert_eq!(member.role, Role::Admin as i32);
    assert_eq!(member.source, MemberSource::SelfAssigned as i32);
    let end = time_of(member.expire_time);
    assert!(
        end >= before + Duration::days(1) - Duration::seconds(1)
            && end <= after + Duration::days(1),
        "access must end at most a day after the grant: {end}"
    );
    // Now a member: Add Myself answers the membership unchanged.
    let again = cluster
        .membership_as(&eli)
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            access_duration: None,
        })
        .await
        .expect("add myself as a member")
        .into_inner();
    assert!(!again.created);

    // A customer's policy only tightens: a looser maximum keeps the partner's.
    let customer_policy = policy_name(&customer.name);
    let looser = set_policy(
        &cluster,
        &operator,
        AccessPolicy {
            max_access_duration: days(7),
            ..gating(&customer.name, &[], 0)
        },
    )
    .await
    .expect("the operator sets the customer's policy");
    assert_eq!(looser.policy.expect("own").max_access_duration, days(7));
    let effective = looser.effective.expect("effective");
    assert_eq!(effective.max_access_duration, days(1));
    assert_eq!(effective.gated_grants, [GatedGrant::AddMyself as i32]);
    let shown = get_policy(&cluster, pam, &customer.name).await;
    let effective = shown.effective.expect("effective");
    assert_eq!(effective.name, customer_policy);
    assert_eq!(effective.max_access_duration, days(1));
    assert_eq!(effective.gated_grants, [GatedGrant::AddMyself as i32]);
    expect_approval_required(
        cluster
            .membership_as(&erin)
            .add_myself(AddMyselfRequest {
                account: customer.name.clone(),
                access_duration: None,
            })
            .await,
        &partner_policy,
        "ADD_MYSELF",
    );
    // A stricter one applies.
    let tighter = set_policy(
        &cluster,
        &operator,
        AccessPolicy {
            max_access_duration: hours(2),
            ..gating(&customer.name, &[GatedGrant::AdminRole], 3)
        },
    )
    .await
    .expect("a stricter customer policy")
    .effective
    .expect("effective");
    assert_eq!(tighter.max_access_duration, hours(2));
    assert_eq!(tighter.required_approvals, 3);
    assert_eq!(
        tighter.gated_grants,
        [GatedGrant::AdminRole as i32, GatedGrant::AddMyself as i32]
    );
    tenantry_e2e::expect_invalid_field(
        request_access(
            &cluster,
            &erin,
            &customer.name,
            &erin,
            Role::Admin,
            hours(3),
        )
        .await,
        "access_request.access_duration",
    );

    cluster.stop().await;
}

// ---- 5. Invitations ------------------------------------------------------------------------

#[tokio::test]
async fn invitations_with_a_high_role_are_gated_for_people_but_not_operators() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "inv-partner", "pam").await;
    let pam = &partner.owner;
    let mut customers = Vec::new();
    for id in ["inv-cust", "inv-cust-b"] {
        let customer = create_customer(&cluster, pam, &partner.account.name, id)
            .await
            .expect("create customer");
        cluster
            .membership_as(pam)
            .add_myself(AddMyselfRequest {
                account: customer.name.clone(),
                access_duration: None,
            })
            .await
            .expect("add myself (ADMIN), before any policy");
        customers.push(customer.name);
    }
    let (c5, c5b) = (&customers[0], &customers[1]);

    // The customer's own policy gates invitations.
    set_policy(
        &cluster,
        &operator,
        gating(c5, &[GatedGrant::Invitations], 0),
    )
    .await
    .expect("gate invitations on the customer");
    expect_approval_required(
        invite(&cluster, pam, c5, "ivy@example.com", Role::Admin).await,
        &policy_name(c5),
        "INVITATIONS",
    );
    let employee = invite(&cluster, pam, c5, "ivy@example.com", Role::Employee)
        .await
        .expect("an EMPLOYEE invitation is not gated");
    assert_eq!(employee.role, Role::Employee as i32);
    let by_operator = invite(&cluster, &operator, c5, "ian@example.com", Role::Admin)
        .await
        .expect("operators are not gated");
    assert_eq!(by_operator.role, Role::Admin as i32);
    // A policy gating ADMIN grants gates ADMIN invitations too (else an invitation would give
    // the role without approval); EMPLOYEE invitations stay ungated.
    set_policy(
        &cluster,
        &operator,
        gating(c5b, &[GatedGrant::AdminRole], 0),
    )
    .await
    .expect("gate ADMIN grants on the other customer");
    expect_approval_required(
        invite(&cluster, pam, c5b, "ina@example.com", Role::Admin).await,
        &policy_name(c5b),
        "ADMIN_ROLE",
    );
    invite(&cluster, pam, c5b, "ina@example.com", Role::Employee)
        .await
        .expect("an EMPLOYEE invitation is not gated by ADMIN_ROLE");

    // The partner's policy gates its customers' invitations.
    set_policy(
        &cluster,
        pam,
        gating(&partner.account.name, &[GatedGrant::Invitations], 0),
    )
    .await
    .expect("the partner's OWNER gates invitations");
    expect_approval_required(
        invite(&cluster, pam, c5b, "ivan@example.com", Role::Admin).await,
        &policy_name(&partner.account.name),
        "INVITATIONS",
    );
    invite(&cluster, pam, c5b, "ivan@example.com", Role::Employee)
        .await
        .expect("an EMPLOYEE invitation is not gated");

    cluster.stop().await;
}

// ---- 6. Races ------------------------------------------------------------------------------

/// Rounds of each race.
const ROUNDS: usize = 4;

/// Asserts a racing call lost the documented way: FAILED_PRECONDITION NOT_PENDING, or ABORTED.
#[track_caller]
fn assert_lost(status: &Status) {
    match status.code() {
        Code::FailedPrecondition => assert_eq!(
            status.get_details_error_info().map(|info| info.reason),
            Some("NOT_PENDING".to_string()),
            "{status:?}"
        ),
        Code::Aborted => {}
        _ => panic!("a racing call lost with an undocumented status: {status:?}"),
    }
}

/// Two final approvals by two different approvers grant once; a decline racing the final
/// approval leaves exactly one outcome.
async fn final_approvals_race(backend: Backend) {
    let cluster = TestCluster::start(backend).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let adam = TestUser::new("adam");
    let ada = TestUser::new("ada");
    let account = account_with_owner(&cluster, &operator, "race", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    for admin in [&adam, &ada] {
        add_member(&cluster, &owen, &account, admin, Role::Admin)
            .await
            .expect("an ADMIN (before the policy)");
    }
    set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::AdminRole], 3),
    )
    .await
    .expect("three approvals for ADMIN grants");
    let olga_client = own_connection(&cluster, &olga).await;
    let ada_client = own_connection(&cluster, &ada).await;

    let (mut approved_wins, mut declined_wins) = (0, 0);
    for round in 0..ROUNDS {
        // Two final approvals.
        let subject = TestUser::new(&format!("s{round}"));
        let asked = request_access(&cluster, &owen, &account, &subject, Role::Admin, None)
            .await
            .expect("ask");
        let second = approve(&cluster, &adam, &asked.name)
            .await
            .expect("the second approval");
        assert_eq!(
            second.access_request.expect("request").state,
            AccessRequestState::Pending as i32
        );
        assert_eq!(second.member, None);
        let (mut a, mut b) = (olga_client.clone(), ada_client.clone());
        let (name_a, name_b) = (asked.name.clone(), asked.name.clone());
        let first = tokio::spawn(async move { approve_with(&mut a, &name_a).await });
        let other = tokio::spawn(async move { approve_with(&mut b, &name_b).await });
        let results = [first.await.expect("racer"), other.await.expect("racer")];
        let winners: Vec<&ApproveAccessRequestResponse> =
            results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one final approval wins: {results:?}"
        );
        let won = winners[0];
        assert_eq!(
            won.access_request.as_ref().expect("request").state,
            AccessRequestState::Approved as i32
        );
        assert_eq!(
            won.member.as_ref().expect("member").role,
            Role::Admin as i32
        );
        for status in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_lost(status);
        }
        let stored = get_request(&cluster, &owen, &asked.name).await;
        assert_eq!(stored.state, AccessRequestState::Approved as i32);
        assert_eq!(stored.approvals.len(), 3, "{stored:?}");
        assert_eq!(
            listed_memberships(&cluster, &owen, &account, &subject).await,
            1
        );

        // A decline racing the final approval.
        let subject = TestUser::new(&format!("d{round}"));
        let asked = request_access(&cluster, &owen, &account, &subject, Role::Admin, None)
            .await
            .expect("ask");
        approve(&cluster, &adam, &asked.name)
            .await
            .expect("the second approval");
        let (mut a, mut b) = (olga_client.clone(), ada_client.clone());
        let (name_a, name_b) = (asked.name.clone(), asked.name.clone());
        let approving = tokio::spawn(async move { approve_with(&mut a, &name_a).await });
        let declining =
            tokio::spawn(async move { decline_with(&mut b, &name_b, "not this one").await });
        let approved = approving.await.expect("racer");
        let declined = declining.await.expect("racer");
        let stored = get_request(&cluster, &owen, &asked.name).await;
        let member = get_member(&cluster, &owen, &account, &subject).await;
        match (approved, declined) {
            (Ok(approved), Err(status)) => {
                approved_wins += 1;
                assert_lost(&status);
                assert_eq!(
                    approved.access_request.expect("request").state,
                    AccessRequestState::Approved as i32
                );
                assert_eq!(stored.state, AccessRequestState::Approved as i32);
                assert_eq!(member.expect("the granted member").role, Role::Admin as i32);
            }
            (Err(status), Ok(declined)) => {
                declined_wins += 1;
                assert_lost(&status);
                assert_eq!(declined.state, AccessRequestState::Declined as i32);
                assert_eq!(stored.state, AccessRequestState::Declined as i32);
                expect_code(member, Code::NotFound);
            }
            other => panic!("an approval and a decline must have one outcome: {other:?}"),
        }
        assert_eq!(
            listed_memberships(&cluster, &owen, &account, &subject).await,
            usize::from(stored.state == AccessRequestState::Approved as i32)
        );
    }
    eprintln!("approve/decline races: {approved_wins} approved, {declined_wins} declined");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn final_approvals_race_on_sqlite() {
    final_approvals_race(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn final_approvals_race_on_postgres() {
    if tenantry_testkit::postgres_or_skip().is_none() {
        return;
    }
    final_approvals_race(Backend::Postgres).await;
}

// ---- 7. Without a policy -------------------------------------------------------------------

#[tokio::test]
async fn without_a_policy_grants_are_made_as_before() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let account = account_with_owner(&cluster, &operator, "free", &owen).await;

    // A policy never set: defaults, no etag, nothing gated.
    let shown = get_policy(&cluster, &owen, &account).await;
    let own = shown.policy.expect("own policy");
    assert_eq!(own.name, policy_name(&account));
    assert!(own.gated_grants.is_empty());
    assert_eq!(own.required_approvals, 0);
    assert!(own.etag.is_empty());
    assert_eq!(own.update_time, None);
    assert!(own.update_by.is_empty());
    let effective = shown.effective.expect("effective");
    assert!(effective.gated_grants.is_empty());
    assert_eq!(effective.max_access_duration, None);

    let adam = TestUser::new("adam");
    let admin = add_member(&cluster, &owen, &account, &adam, Role::Admin)
        .await
        .expect("an OWNER adds an ADMIN");
    assert_eq!(
        (admin.role, admin.source),
        (Role::Admin as i32, MemberSource::Direct as i32)
    );
    let olga = TestUser::new("olga");
    let owner = add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("an OWNER adds an OWNER");
    assert_eq!(owner.role, Role::Owner as i32);
    let ann = TestUser::new("ann");
    add_member(&cluster, &adam, &account, &ann, Role::Admin)
        .await
        .expect("an ADMIN adds an ADMIN");
    // The rules that held before still hold: an ADMIN grants no OWNER, a 3rd OWNER is refused.
    expect_code(
        add_member(&cluster, &adam, &account, &TestUser::new("x"), Role::Owner).await,
        Code::PermissionDenied,
    );
    expect_reason(
        add_member(&cluster, &owen, &account, &TestUser::new("y"), Role::Owner).await,
        Code::FailedPrecondition,
        "OWNER_LIMIT",
    );
    let emma = TestUser::new("emma");
    let employee = add_member(&cluster, &owen, &account, &emma, Role::Employee)
        .await
        .expect("an EMPLOYEE");
    let raised = cluster
        .membership_as(&adam)
        .update_member(UpdateMemberRequest {
            member: Some(Member {
                name: employee.name.clone(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["role".to_string()],
            }),
        })
        .await
        .expect("raise to ADMIN")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(raised.role, Role::Admin as i32);
    let requests = cluster
        .membership_as(&owen)
        .list_access_requests(ListAccessRequestsRequest {
            parent: account.clone(),
            ..Default::default()
        })
        .await
        .expect("list access requests")
        .into_inner();
    assert!(requests.access_requests.is_empty());

    // A policy that gated ADMIN grants and was set back to gate nothing gates nothing.
    let gated = set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::AdminRole], 2),
    )
    .await
    .expect("gate")
    .policy
    .expect("policy");
    let gil = TestUser::new("gil");
    expect_approval_required(
        add_member(&cluster, &owen, &account, &gil, Role::Admin).await,
        &policy_name(&account),
        "ADMIN_ROLE",
    );
    set_policy(
        &cluster,
        &owen,
        AccessPolicy {
            etag: gated.etag,
            ..gating(&account, &[], 0)
        },
    )
    .await
    .expect("ungate");
    add_member(&cluster, &owen, &account, &gil, Role::Admin)
        .await
        .expect("ADMIN grants are direct again");

    // A partner without a policy: Add Myself as before, without end.
    let partner = partner_with_owner(&cluster, &operator, "free-partner", "pam").await;
    let customer = create_customer(&cluster, &partner.owner, &partner.account.name, "free-cust")
        .await
        .expect("create customer");
    let joined = cluster
        .membership_as(&partner.owner)
        .add_myself(AddMyselfRequest {
            account: customer.name.clone(),
            access_duration: None,
        })
        .await
        .expect("add myself")
        .into_inner();
    assert!(joined.created);
    let member = joined.member.expect("member");
    assert_eq!(member.role, Role::Admin as i32);
    assert_eq!(member.expire_time, None);

    cluster.stop().await;
}

// ---- The OWNER limit at approval -----------------------------------------------------------

/// The last approval re-checks the OWNER limit: a grant that would make a 3rd OWNER is refused
/// and the approval is not recorded; once there is room again, it is granted.
#[tokio::test]
async fn the_owner_limit_is_checked_again_by_the_last_approval() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "lim-partner", "pam").await;
    let pam = &partner.owner;
    let customer = create_customer(&cluster, pam, &partner.account.name, "lim-cust")
        .await
        .expect("create customer");
    let cora = TestUser::new("cora");
    let olga = TestUser::new("olga");
    let sam = TestUser::new("sam");
    add_member(&cluster, &operator, &customer.name, &cora, Role::Owner)
        .await
        .expect("the customer's OWNER");
    set_policy(
        &cluster,
        &cora,
        AccessPolicy {
            short_of_approvers: ShortOfApprovers::EscalateToPartnerOwners as i32,
            ..gating(&customer.name, &[GatedGrant::OwnerRole], 0)
        },
    )
    .await
    .expect("gate OWNER grants, escalating");
    expect_approval_required(
        add_member(&cluster, &cora, &customer.name, &sam, Role::Owner).await,
        &policy_name(&customer.name),
        "OWNER_ROLE",
    );
    let asked = request_access(&cluster, &cora, &customer.name, &sam, Role::Owner, None)
        .await
        .expect("ask for a second OWNER");
    assert!(asked.escalated);

    // Meanwhile an operator (not gated) fills the second OWNER seat.
    add_member(&cluster, &operator, &customer.name, &olga, Role::Owner)
        .await
        .expect("the operator adds a second OWNER");
    expect_reason(
        approve(&cluster, pam, &asked.name).await,
        Code::FailedPrecondition,
        "OWNER_LIMIT",
    );
    let stored = get_request(&cluster, &cora, &asked.name).await;
    assert_eq!(stored.state, AccessRequestState::Pending as i32);
    assert_eq!(
        stored
            .approvals
            .iter()
            .map(|a| a.approver.as_str())
            .collect::<Vec<_>>(),
        [cora.resource_name()],
        "the refused approval is not recorded"
    );
    expect_code(
        get_member(&cluster, &cora, &customer.name, &sam).await,
        Code::NotFound,
    );

    // With the seat free again, the same approval grants.
    cluster
        .membership_as(&operator)
        .remove_member(tenantry_proto::membership::v1::RemoveMemberRequest {
            name: member_name(&customer.name, &olga),
            etag: String::new(),
        })
        .await
        .expect("the operator removes the second OWNER");
    let approved = approve(&cluster, pam, &asked.name)
        .await
        .expect("approved once there is room");
    assert_eq!(approved.member.expect("member").role, Role::Owner as i32);

    cluster.stop().await;
}

// ---- Edges found by these tests (each once a defect, fixed) ----------------------------------

/// Under a policy with a `max_access_duration` (or a default), a member without end is raised to
/// a gated role by request: asked without a duration, the request keeps the membership without
/// end (the policy's durations bound new and time-bound access, not a role change of a
/// permanent membership), and the approval grants the role.
#[tokio::test]
async fn a_member_without_end_is_raised_by_request_under_a_policy_with_a_maximum() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let emma = TestUser::new("emma");
    let account = account_with_owner(&cluster, &operator, "raise", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    let employee = add_member(&cluster, &owen, &account, &emma, Role::Employee)
        .await
        .expect("an EMPLOYEE without end");
    set_policy(
        &cluster,
        &owen,
        AccessPolicy {
            max_access_duration: days(30),
            ..gating(&account, &[GatedGrant::AdminRole], 2)
        },
    )
    .await
    .expect("gate ADMIN grants, access at most 30 days");
    expect_approval_required(
        cluster
            .membership_as(&owen)
            .update_member(UpdateMemberRequest {
                member: Some(Member {
                    name: employee.name.clone(),
                    role: Role::Admin as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".to_string()],
                }),
            })
            .await,
        &policy_name(&account),
        "ADMIN_ROLE",
    );
    let asked = request_access(&cluster, &owen, &account, &emma, Role::Admin, None)
        .await
        .expect(
            "the EMPLOYEE does not have the ADMIN role: the request must be made (the proto's \
             ALREADY_GRANTED is for a subject who already has the role)",
        );
    let approved = approve(&cluster, &olga, &asked.name)
        .await
        .expect("approve the raise");
    assert_eq!(approved.member.expect("member").role, Role::Admin as i32);
    cluster.stop().await;
}

/// CreateAccessRequest for the OWNER role in an account that already has 2 OWNERs is refused
/// at once with OWNER_LIMIT, as AddMember refuses the grant, rather than accepted, e-mailed and
/// then refused by every approval; the last approval still checks the limit again.
#[tokio::test]
async fn a_request_for_a_third_owner_is_refused_when_it_is_made() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let sam = TestUser::new("sam");
    let account = account_with_owner(&cluster, &operator, "third", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    // Without a policy, the grant is refused at once.
    expect_reason(
        add_member(&cluster, &owen, &account, &sam, Role::Owner).await,
        Code::FailedPrecondition,
        "OWNER_LIMIT",
    );
    set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::OwnerRole], 2),
    )
    .await
    .expect("gate OWNER grants");
    let made = request_access(&cluster, &owen, &account, &sam, Role::Owner, None).await;
    if let Ok(request) = &made {
        // What happens today: every approval fails, and the request only blocks.
        expect_reason(
            approve(&cluster, &olga, &request.name).await,
            Code::FailedPrecondition,
            "OWNER_LIMIT",
        );
    }
    expect_reason(made, Code::FailedPrecondition, "OWNER_LIMIT");
    cluster.stop().await;
}

/// Rounds of the decline/cancel races against a partial approval.
const CLOSE_ROUNDS: usize = 20;

/// A decline or a cancel racing an approval that is not the last one succeeds (without an etag
/// the lost write is decided again on what is stored, as ApproveAccessRequest does): either
/// order of the two is fine, never ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decline_or_cancel_racing_a_partial_approval_is_not_aborted() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let owen = TestUser::new("owen");
    let olga = TestUser::new("olga");
    let adam = TestUser::new("adam");
    let ada = TestUser::new("ada");
    let account = account_with_owner(&cluster, &operator, "close-race", &owen).await;
    add_member(&cluster, &owen, &account, &olga, Role::Owner)
        .await
        .expect("a second OWNER");
    for admin in [&adam, &ada] {
        add_member(&cluster, &owen, &account, admin, Role::Admin)
            .await
            .expect("an ADMIN (before the policy)");
    }
    set_policy(
        &cluster,
        &owen,
        gating(&account, &[GatedGrant::AdminRole], 3),
    )
    .await
    .expect("three approvals for ADMIN grants");
    let adam_client = own_connection(&cluster, &adam).await;
    let ada_client = own_connection(&cluster, &ada).await;
    let owen_client = own_connection(&cluster, &owen).await;

    let mut aborted = Vec::new();
    for round in 0..CLOSE_ROUNDS {
        for cancelling in [false, true] {
            let subject = TestUser::new(&format!("s{round}"));
            let asked = request_access(&cluster, &owen, &account, &subject, Role::Admin, None)
                .await
                .expect("ask");
            let mut approver = adam_client.clone();
            let name = asked.name.clone();
            let approving = tokio::spawn(async move { approve_with(&mut approver, &name).await });
            let name = asked.name.clone();
            let closing = if cancelling {
                let mut requester = owen_client.clone();
                tokio::spawn(async move {
                    requester
                        .cancel_access_request(CancelAccessRequestRequest {
                            name,
                            etag: String::new(),
                        })
                        .await
                        .map(|response| response.into_inner().access_request.expect("request"))
                })
            } else {
                let mut decliner = ada_client.clone();
                tokio::spawn(async move { decline_with(&mut decliner, &name, "no").await })
            };
            let approved = approving.await.expect("racer");
            let closed = closing.await.expect("racer");
            if let Err(status) = &approved {
                expect_reason(
                    Err::<(), _>(status.clone()),
                    Code::FailedPrecondition,
                    "NOT_PENDING",
                );
            }
            match closed {
                Ok(request) => assert_eq!(
                    request.state,
                    if cancelling {
                        AccessRequestState::Cancelled
                    } else {
                        AccessRequestState::Declined
                    } as i32
                ),
                Err(status) if status.code() == Code::Aborted => {
                    aborted.push(format!(
                        "round {round} ({}): {}",
                        if cancelling { "cancel" } else { "decline" },
                        status.message()
                    ));
                }
                Err(status) => panic!("unexpected: {status:?}"),
            }
        }
    }
    cluster.stop().await;
    assert!(
        aborted.is_empty(),
        "declines/cancels without an etag answered ABORTED while the request was PENDING: \
         {aborted:#?}"
    );
}
