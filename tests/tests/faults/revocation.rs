//! Revocation with the broker down (docs/local-view.md, rule 2): RemoveMember still commits and
//! answers OK — no sooner than confirm wait + heartbeat timeout — and by then neither replica
//! serves the removed member from its warm cache; the members who stay keep working (uncached),
//! and once the broker is back both views trust and serve from memory again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantry_e2e::add_member;
use tenantry_proto::membership::v1::{RemoveMemberRequest, Role};
use tenantry_proto::registry::v1::{CreateAccountRequest, GetAccountRequest};
use tenantry_testkit::proxy::TcpProxy;
use tenantry_testkit::{
    Backend, ClusterOptions, RegistryClient, TestCluster, TestUser, amqp_or_skip,
    metric_sample as sample, postgres_or_skip,
};
use tonic::Code;

use crate::system::{self, Outage};
use crate::{SERIAL, server_addr, through, via_proxy};

const FRESH: &str = "tenantry_view_fresh ";
const HITS: &str = "tenantry_view_lookups_total{cache=\"decisions\",outcome=\"hit\"} ";

async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read(client: &mut RegistryClient, account: &str) -> Result<(), tonic::Status> {
    client
        .get_account(GetAccountRequest {
            name: account.to_string(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_with_the_broker_down_waits_out_every_cache() {
    let _serial = SERIAL.lock().await;
    let (Some(broker), Some(_)) = (amqp_or_skip(), postgres_or_skip()) else {
        eprintln!("skipped: needs TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let (proxy, rabbitmq) = if via_proxy() {
        let proxy = Arc::new(TcpProxy::start(server_addr(&broker, 5672)).await);
        options.amqp_url = Some(through(&broker, proxy.addr()));
        (Some(proxy), None)
    } else {
        let Some(rabbitmq) = system::RabbitMq::locate(&broker) else {
            return;
        };
        (None, Some(rabbitmq))
    };
    let cluster = TestCluster::start_with(options).await;
    let replica = cluster.start_replica().await;
    for metrics in [&|| cluster.metrics(), &|| replica.metrics()] as [&dyn Fn() -> String; 2] {
        wait_until("both views are fresh", Duration::from_secs(20), || {
            sample(&metrics(), FRESH) == 1.0
        })
        .await;
    }

    let operator = TestUser::operator("ops");
    let owner = TestUser::new("owner");
    let leaving = TestUser::new("leaving");
    let staying = TestUser::new("staying");
    let account = cluster
        .registry_as(&operator)
        .create_account(CreateAccountRequest {
            account_id: "outage".into(),
            display_name: "Outage".into(),
            request_id: String::new(),
        })
        .await
        .expect("create")
        .into_inner()
        .account
        .expect("account")
        .name;
    add_member(&cluster, &operator, &account, &owner, Role::Owner)
        .await
        .expect("owner");
    let removed = add_member(&cluster, &owner, &account, &leaving, Role::Admin)
        .await
        .expect("leaving");
    add_member(&cluster, &owner, &account, &staying, Role::Employee)
        .await
        .expect("staying");
    // Warm both replicas' caches for both members (hits prove the caches serve them).
    let hits_before = sample(&cluster.metrics(), HITS) + sample(&replica.metrics(), HITS);
    for user in [&leaving, &staying] {
        for mut client in [cluster.registry_as(user), replica.registry_as(user)] {
            for _ in 0..3 {
                read(&mut client, &account).await.expect("a member reads");
            }
        }
    }
    let hits_after = sample(&cluster.metrics(), HITS) + sample(&replica.metrics(), HITS);
    assert!(
        hits_after >= hits_before + 8.0,
        "the caches served the reads"
    );

    let outage: Outage = match (&proxy, rabbitmq) {
        (Some(proxy), _) => Outage::cut("RabbitMQ", proxy.clone()).await,
        (None, Some(rabbitmq)) => rabbitmq.stop().await,
        (None, None) => unreachable!("one way to make the outage was found"),
    };
    let started = Instant::now();
    cluster
        .membership_as(&owner)
        .remove_member(RemoveMemberRequest {
            name: removed.name.clone(),
            ..Default::default()
        })
        .await
        .expect("the removal commits and answers with the broker down");
    let took = started.elapsed();
    // The defaults: 1 s confirm wait, then 1 s heartbeat timeout + 250 ms clock allowance.
    assert!(
        took >= Duration::from_secs(2),
        "the removal answered only after every cache stopped being trusted ({took:?})"
    );
    for (which, mut client) in [
        ("first", cluster.registry_as(&leaving)),
        ("second", replica.registry_as(&leaving)),
    ] {
        let refused = read(&mut client, &account).await;
        assert_eq!(
            refused.map_err(|status| status.code()).err(),
            Some(Code::PermissionDenied),
            "the {which} replica refuses the removed member with the broker down"
        );
    }
    for mut client in [cluster.registry_as(&staying), replica.registry_as(&staying)] {
        read(&mut client, &account)
            .await
            .expect("the member who stays keeps working, uncached");
    }
    assert_eq!(sample(&cluster.metrics(), FRESH), 0.0);
    assert_eq!(sample(&replica.metrics(), FRESH), 0.0);

    outage.end().await;
    for metrics in [&|| cluster.metrics(), &|| replica.metrics()] as [&dyn Fn() -> String; 2] {
        wait_until(
            "both views are fresh again",
            Duration::from_secs(60),
            || sample(&metrics(), FRESH) == 1.0,
        )
        .await;
    }
    let before = sample(&replica.metrics(), HITS);
    let mut client = replica.registry_as(&staying);
    for _ in 0..3 {
        read(&mut client, &account).await.expect("reads again");
    }
    assert!(
        sample(&replica.metrics(), HITS) > before,
        "served from memory again"
    );
    let refused = read(&mut replica.registry_as(&leaving), &account).await;
    assert_eq!(
        refused.map_err(|status| status.code()).err(),
        Some(Code::PermissionDenied)
    );
    replica.stop().await;
    cluster.stop().await;
}
