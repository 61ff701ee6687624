//! The OWNER limit at approval, and the edges these tests found.

use tenantry_e2e::{add_member, create_customer, expect_code, partner_with_owner};
use tenantry_proto::membership::v1::{
    AccessPolicy, AccessRequestState, CancelAccessRequestRequest, GatedGrant, Role,
    ShortOfApprovers,
};
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::Code;

use super::{
    account_with_owner, approve, approve_with, days, decline_with, expect_approval_required,
    expect_reason, gating, get_member, get_request, member_name, own_connection, policy_name,
    race_account, raise_role, request_access, set_policy,
};

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
        raise_role(&cluster, &owen, &employee.name, Role::Admin).await,
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
    let (account, [owen, _olga, adam, ada]) = race_account(&cluster, "close-race").await;
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
