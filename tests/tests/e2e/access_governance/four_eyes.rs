//! The four-eyes grant with e-mail, declines, withdrawals and self-approval, and too few
//! approvers with escalation to the managing partner's OWNERs.

use chrono::{Duration, Utc};
use tenantry_e2e::{add_member, create_customer, expect_code, partner_with_owner};
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequest, AccessRequestState, CancelAccessRequestRequest, GatedGrant,
    ListAccessRequestsRequest, ListMyAccountsRequest, MemberSource, Role, ShortOfApprovers,
};
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::{Code, Status};

use super::{
    account_with_owner, approval_needed, approve, days, decline_with, expect_approval_required,
    expect_reason, gating, get_member, get_request, hours, is_about, member_name, policy_name,
    raise_role, request_access, request_decided, set_policy, smtp_cluster_options, subjects,
    time_of, wait_for_mail, waiting_for,
};

/// `user` makes a call, so the user directory knows their e-mail (approvers are e-mailed at
/// the directory's address; a person added by user id only is known once they called).
async fn sign_in(cluster: &TestCluster, user: &TestUser) {
    cluster
        .membership_as(user)
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts");
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
        raise_role(&cluster, &olga, &employee.name, Role::Admin).await,
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
