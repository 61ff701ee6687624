//! Revocation across two replicas with warm local views (DESIGN.md §9, docs/local-view.md):
//! once RemoveMember, UpdateMember, DisableAccount or DeleteAccount answered OK, the next call
//! of the person it affects is refused on either replica, however warm its cache was; and a
//! replica whose event subscription was cut serves no cached allow.
//!
//! PostgreSQL and RabbitMQ (two processes of one cluster need a shared database and broker).
//! Each test first shows that the caches were really used (hits in the replicas' metrics), so a
//! pass means "revoked despite a warm cache", not "never cached".

use std::time::{Duration, Instant};

use tenantry_e2e::{add_member, expect_code, server_addr, through};
use tenantry_proto::invitation::v1::CreateInvitationRequest;
use tenantry_proto::membership::v1::{Member, RemoveMemberRequest, Role, UpdateMemberRequest};
use tenantry_proto::registry::v1::{
    Account, AccountState, CreateAccountRequest, DeleteAccountRequest, DisableAccountRequest,
    GetAccountRequest,
};
use tenantry_testkit::proxy::TcpProxy;
use tenantry_testkit::{
    Backend, ClusterOptions, RegistryClient, Replica, TestCluster, TestUser, amqp_or_skip,
    metric_sample as sample, postgres_or_skip,
};
use tonic::Code;

/// A cluster of two replicas on PostgreSQL and RabbitMQ, or `None` (skipped) without them.
async fn two_replicas() -> Option<(TestCluster, Replica)> {
    let (Some(_), Some(_)) = (postgres_or_skip(), amqp_or_skip()) else {
        return None;
    };
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    let replica = cluster.start_replica().await;
    wait_fresh(&cluster.metrics_source(), "first replica").await;
    wait_fresh(&replica.metrics_source(), "second replica").await;
    Some((cluster, replica))
}

/// Reads one process's metrics.
pub(crate) trait MetricsSource {
    fn metrics_source(&self) -> Box<dyn Fn() -> String + Send + Sync + '_>;
}

impl MetricsSource for TestCluster {
    fn metrics_source(&self) -> Box<dyn Fn() -> String + Send + Sync + '_> {
        Box::new(|| self.metrics())
    }
}

impl MetricsSource for Replica {
    fn metrics_source(&self) -> Box<dyn Fn() -> String + Send + Sync + '_> {
        Box::new(|| self.metrics())
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_fresh(metrics: &(dyn Fn() -> String + Send + Sync + '_), who: &str) {
    wait_until(&format!("the {who}'s view is fresh"), || {
        sample(&metrics(), "tenantry_view_fresh ") == 1.0
    })
    .await;
}

fn decision_hits(metrics: &str) -> f64 {
    sample(
        metrics,
        "tenantry_view_lookups_total{cache=\"decisions\",outcome=\"hit\"} ",
    )
}

async fn create_account(cluster: &TestCluster, operator: &TestUser, id: &str) -> Account {
    cluster
        .registry_as(operator)
        .create_account(CreateAccountRequest {
            account_id: id.to_string(),
            display_name: format!("{id} account"),
            request_id: String::new(),
        })
        .await
        .expect("create account")
        .into_inner()
        .account
        .expect("account")
}

async fn get_account(client: &mut RegistryClient, name: &str) -> Result<Account, tonic::Status> {
    client
        .get_account(GetAccountRequest {
            name: name.to_string(),
        })
        .await
        .map(|response| response.into_inner().account.expect("account"))
}

/// Calls GetAccount as `user` on both replicas until both served it from their view.
async fn warm(cluster: &TestCluster, replica: &Replica, user: &TestUser, account: &str) {
    for (client, metrics) in [
        (cluster.registry_as(user), cluster.metrics_source()),
        (replica.registry_as(user), replica.metrics_source()),
    ] {
        let mut client = client;
        let before = decision_hits(&metrics());
        for _ in 0..3 {
            get_account(&mut client, account)
                .await
                .expect("the member reads the account");
        }
        assert!(
            decision_hits(&metrics()) > before,
            "the replica served the decision from its view"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_demoted_members_are_refused_on_both_replicas_at_once() {
    let Some((cluster, replica)) = two_replicas().await else {
        return;
    };
    let operator = TestUser::operator("ops");
    let owner = TestUser::new("olivia");
    let account = create_account(&cluster, &operator, "revoked").await;
    add_member(&cluster, &operator, &account.name, &owner, Role::Owner)
        .await
        .expect("owner");
    for round in 0..10 {
        let member = TestUser::new(&format!("bob-{round}"));
        let added: Member = add_member(&cluster, &owner, &account.name, &member, Role::Admin)
            .await
            .expect("add member");
        warm(&cluster, &replica, &member, &account.name).await;
        // The revoking call goes to either replica in turn.
        let mut membership = if round % 2 == 0 {
            cluster.membership_as(&owner)
        } else {
            replica.membership_as(&owner)
        };
        if round % 3 == 2 {
            // A demotion to EMPLOYEE takes ADMIN's rights away: an ADMIN-only call is refused,
            // reading still works.
            membership
                .update_member(UpdateMemberRequest {
                    member: Some(Member {
                        role: Role::Employee as i32,
                        ..added.clone()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["role".into()],
                    }),
                })
                .await
                .expect("demote");
            for mut invitations in [
                cluster.invitation_as(&member),
                replica.invitation_as(&member),
            ] {
                let refused = invitations
                    .create_invitation(CreateInvitationRequest {
                        parent: account.name.clone(),
                        email: format!("someone-{round}@example.com"),
                        role: Role::Employee as i32,
                        ..Default::default()
                    })
                    .await;
                expect_code(refused, Code::PermissionDenied);
            }
            continue;
        }
        membership
            .remove_member(RemoveMemberRequest {
                name: added.name.clone(),
                ..Default::default()
            })
            .await
            .expect("remove member");
        for (which, mut client) in [
            ("first", cluster.registry_as(&member)),
            ("second", replica.registry_as(&member)),
        ] {
            let refused = get_account(&mut client, &account.name).await;
            assert_eq!(
                refused.as_ref().map_err(tonic::Status::code).err(),
                Some(Code::PermissionDenied),
                "round {round}: the {which} replica refuses the removed member: {refused:?}"
            );
        }
    }
    // Both replicas heard each other: every removal and demotion was acknowledged by the
    // other replica's view before it answered (not merely queued, not waited out).
    let applied = "tenantry_revocations_total{outcome=\"applied\"} ";
    let held = "tenantry_revocations_total{outcome=\"held\"} ";
    let (first, second) = (cluster.metrics(), replica.metrics());
    assert_eq!(sample(&first, applied) + sample(&second, applied), 10.0);
    assert_eq!(sample(&first, held) + sample(&second, held), 0.0);
    replica.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_deleted_accounts_are_seen_at_once_on_both_replicas() {
    let Some((cluster, replica)) = two_replicas().await else {
        return;
    };
    let operator = TestUser::operator("ops");
    let owner = TestUser::new("dora");
    let member = TestUser::new("eve");
    let account = create_account(&cluster, &operator, "fading").await;
    add_member(&cluster, &operator, &account.name, &owner, Role::Owner)
        .await
        .expect("owner");
    add_member(&cluster, &owner, &account.name, &member, Role::Employee)
        .await
        .expect("member");
    warm(&cluster, &replica, &member, &account.name).await;

    let disabled = replica
        .registry_as(&operator)
        .disable_account(DisableAccountRequest {
            name: account.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("disable")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(disabled.state, AccountState::Disabled as i32);
    for mut client in [cluster.registry_as(&member), replica.registry_as(&member)] {
        let seen = get_account(&mut client, &account.name)
            .await
            .expect("members still read a disabled account");
        assert_eq!(
            seen.state,
            AccountState::Disabled as i32,
            "no replica serves the account as it was"
        );
    }
    // Disabling again changes nothing, but a concurrent first call may still be announcing the
    // change: the repeat is announced too (and acknowledged by the other replica) before OK.
    let applied = "tenantry_revocations_total{outcome=\"applied\"} ";
    let before = sample(&cluster.metrics(), applied);
    cluster
        .registry_as(&operator)
        .disable_account(DisableAccountRequest {
            name: account.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("disabling a disabled account is OK");
    assert_eq!(sample(&cluster.metrics(), applied), before + 1.0);
    for mut invitations in [cluster.invitation_as(&owner), replica.invitation_as(&owner)] {
        let refused = invitations
            .create_invitation(CreateInvitationRequest {
                parent: account.name.clone(),
                email: "late@example.com".into(),
                role: Role::Employee as i32,
                ..Default::default()
            })
            .await;
        expect_code(refused, Code::FailedPrecondition);
    }

    cluster
        .registry_as(&operator)
        .delete_account(DeleteAccountRequest {
            name: account.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    for (which, mut client) in [
        ("first", cluster.registry_as(&member)),
        ("second", replica.registry_as(&member)),
    ] {
        let refused = get_account(&mut client, &account.name).await;
        assert!(
            refused.is_err(),
            "the {which} replica no longer serves the deleted account: {refused:?}"
        );
    }
    replica.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_subscription_is_cut_serves_no_cached_allow() {
    let (Some(_), Some(broker)) = (postgres_or_skip(), amqp_or_skip()) else {
        return;
    };
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    let addr = server_addr(&broker, 5672);
    let proxy = TcpProxy::start(addr).await;
    let replica = cluster
        .start_replica_via_broker(&through(&broker, proxy.addr()))
        .await;
    wait_fresh(&cluster.metrics_source(), "first replica").await;
    wait_fresh(&replica.metrics_source(), "second replica").await;

    let operator = TestUser::operator("ops");
    let owner = TestUser::new("fred");
    let member = TestUser::new("gina");
    let account = create_account(&cluster, &operator, "cutoff").await;
    add_member(&cluster, &operator, &account.name, &owner, Role::Owner)
        .await
        .expect("owner");
    let added = add_member(&cluster, &owner, &account.name, &member, Role::Employee)
        .await
        .expect("member");
    warm(&cluster, &replica, &member, &account.name).await;

    // Only the second replica loses the broker; the first answers the removal as usual.
    proxy.cut().await;
    cluster
        .membership_as(&owner)
        .remove_member(RemoveMemberRequest {
            name: added.name.clone(),
            ..Default::default()
        })
        .await
        .expect("remove member");
    let refused = get_account(&mut replica.registry_as(&member), &account.name).await;
    expect_code(refused, Code::PermissionDenied);
    let metrics = replica.metrics();
    assert_eq!(
        sample(&metrics, "tenantry_view_fresh "),
        0.0,
        "the cut replica knows its view cannot be trusted"
    );

    // Back on the broker, it trusts its (emptied) view again.
    proxy.restore();
    wait_fresh(&replica.metrics_source(), "second replica").await;
    let refused = get_account(&mut replica.registry_as(&member), &account.name).await;
    expect_code(refused, Code::PermissionDenied);
    replica.stop().await;
    cluster.stop().await;
}
