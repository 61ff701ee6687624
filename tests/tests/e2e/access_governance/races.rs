//! Final approvals, and an approval and a decline, racing each other.

use tenantry_e2e::expect_code;
use tenantry_proto::membership::v1::{
    AccessRequestState, ApproveAccessRequestResponse, ListMembersRequest, Role,
};
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{
    approve, approve_with, decline_with, get_member, get_request, own_connection, race_account,
    request_access,
};

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
    let (account, [owen, olga, adam, ada]) = race_account(&cluster, "race").await;
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
