//! A partner's policy on its customers, gated invitations, and accounts without a policy.

use chrono::{Duration, Utc};
use tenantry_e2e::{add_member, create_customer, expect_code, invite, partner_with_owner};
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequestState, AddMyselfRequest, GatedGrant, GetAccessPolicyRequest,
    GetAccessPolicyResponse, ListAccessRequestsRequest, MemberSource, Role, ShortOfApprovers,
};
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::Code;

use super::{
    account_with_owner, approve, days, expect_approval_required, expect_reason, gating, hours,
    member_name, policy_name, raise_role, request_access, set_policy, time_of, waiting_for,
};

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
async fn invitations_with_a_gated_role_are_refused_even_to_operators() {
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
    // Operators too: a gated role is never given by an invitation (its acceptance would be
    // refused as well); operators grant it with AddMember.
    expect_approval_required(
        invite(&cluster, &operator, c5, "ian@example.com", Role::Admin).await,
        &policy_name(c5),
        "INVITATIONS",
    );
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
    let raised = raise_role(&cluster, &adam, &employee.name, Role::Admin)
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
