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

mod edges;
mod four_eyes;
mod policies;
mod races;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tenantry_e2e::{add_member, expect_code};
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequest, ApproveAccessRequestRequest, ApproveAccessRequestResponse,
    CreateAccessRequestRequest, DeclineAccessRequestRequest, GatedGrant, GetAccessRequestRequest,
    GetMemberRequest, ListAccessRequestsWaitingForMeRequest, Member, Role,
    UpdateAccessPolicyRequest, UpdateAccessPolicyResponse,
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
pub(super) fn expect_reason<T: std::fmt::Debug>(
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
pub(super) fn expect_approval_required<T: std::fmt::Debug>(
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
pub(super) fn policy_name(account: &str) -> String {
    format!("{account}/accessPolicy")
}

/// `accounts/{id}/members/{sub}`.
pub(super) fn member_name(account: &str, user: &TestUser) -> String {
    format!("{account}/members/{}", user.sub)
}

pub(super) fn days(days: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: days * 86_400,
        nanos: 0,
    })
}

pub(super) fn hours(hours: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: hours * 3_600,
        nanos: 0,
    })
}

pub(super) fn time_of(timestamp: Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let timestamp = timestamp.expect("a timestamp");
    DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32).expect("a valid time")
}

/// A policy for `account` gating `gated` with `required_approvals`; the rest unset.
pub(super) fn gating(account: &str, gated: &[GatedGrant], required_approvals: i32) -> AccessPolicy {
    AccessPolicy {
        name: policy_name(account),
        gated_grants: gated.iter().map(|grant| *grant as i32).collect(),
        required_approvals,
        ..Default::default()
    }
}

/// An operator creates a plain (not partner, not managed) account and adds `owner` as OWNER.
pub(super) async fn account_with_owner(
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

pub(super) async fn set_policy(
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

/// UpdateMember by `who`: `member` (its name) gets `role`.
pub(super) async fn raise_role(
    cluster: &TestCluster,
    who: &TestUser,
    member: &str,
    role: Role,
) -> Result<tonic::Response<tenantry_proto::membership::v1::UpdateMemberResponse>, Status> {
    cluster
        .membership_as(who)
        .update_member(tenantry_proto::membership::v1::UpdateMemberRequest {
            member: Some(Member {
                name: member.to_string(),
                role: role as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["role".to_string()],
            }),
        })
        .await
}

/// The racers' account `id`: OWNERs owen and olga, ADMINs adam and ada (added before the
/// policy), ADMIN grants needing three approvals.
pub(super) async fn race_account(cluster: &TestCluster, id: &str) -> (String, [TestUser; 4]) {
    let operator = TestUser::operator("ops");
    let people = [
        TestUser::new("owen"),
        TestUser::new("olga"),
        TestUser::new("adam"),
        TestUser::new("ada"),
    ];
    let [owen, olga, adam, ada] = &people;
    let account = account_with_owner(cluster, &operator, id, owen).await;
    add_member(cluster, owen, &account, olga, Role::Owner)
        .await
        .expect("a second OWNER");
    for admin in [adam, ada] {
        add_member(cluster, owen, &account, admin, Role::Admin)
            .await
            .expect("an ADMIN (before the policy)");
    }
    set_policy(cluster, owen, gating(&account, &[GatedGrant::AdminRole], 3))
        .await
        .expect("three approvals for ADMIN grants");
    (account, people)
}

/// `actor` asks for `role` for `subject` in `account`.
pub(super) async fn request_access(
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

pub(super) async fn approve_with(
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

pub(super) async fn approve(
    cluster: &TestCluster,
    actor: &TestUser,
    name: &str,
) -> Result<ApproveAccessRequestResponse, Status> {
    approve_with(&mut cluster.membership_as(actor), name).await
}

pub(super) async fn decline_with(
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

pub(super) async fn get_request(
    cluster: &TestCluster,
    actor: &TestUser,
    name: &str,
) -> AccessRequest {
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
pub(super) async fn waiting_for(cluster: &TestCluster, user: &TestUser) -> Vec<String> {
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

pub(super) async fn get_member(
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

/// A membership client for `user` on a connection of its own, so racing calls really run side
/// by side on the server.
pub(super) async fn own_connection(cluster: &TestCluster, user: &TestUser) -> MembershipClient {
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
pub(super) fn is_about(subject: &str, prefix: &str, account: &str) -> bool {
    subject
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.contains(account_id(account)))
}

/// "Approval needed: {ROLE} for {subject e-mail} on " — the approvers' e-mail.
pub(super) fn approval_needed(role: &str, subject: &TestUser) -> String {
    format!("Approval needed: {role} for {} on ", subject.email)
}

/// "Your access request was {verdict}: {ROLE} for {subject e-mail} on " — the requester's.
pub(super) fn request_decided(verdict: &str, role: &str, subject: &TestUser) -> String {
    format!(
        "Your access request was {verdict}: {role} for {} on ",
        subject.email
    )
}

/// Waits until `address` received an e-mail whose subject is `prefix` followed by a mention of
/// `account`; returns it.
pub(super) async fn wait_for_mail(
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
pub(super) fn subjects(smtp: &SmtpServer, address: &str) -> Vec<String> {
    smtp.received_by(address)
        .into_iter()
        .map(|mail| mail.subject)
        .collect()
}

pub(super) fn smtp_cluster_options(backend: Backend, smtp: &SmtpServer) -> ClusterOptions {
    let mut options = ClusterOptions::new(backend);
    options.mail.smtp_url = Some(smtp.url());
    options
}
