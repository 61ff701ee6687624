//! Partner messages on the production shape: the live inbox fed by a per-replica RabbitMQ
//! queue, a 20,000-delivery fan-out that survives a restart of every service, and every replica
//! seeing every inbox change.

use std::time::{Duration, Instant};

use super::{acknowledge, get_message, live_inbox_and_withdrawals};
use tenantry_e2e::{
    add_member, create_customer, inbox, load_members, partner_with_owner, send_message, watch_inbox,
};
use tenantry_proto::membership::v1::Role;
use tenantry_proto::notification::v1::{MessageState, ReadPolicy, watch_inbox_response};
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip, postgres_or_skip,
};
use tokio_stream::StreamExt;

/// The live inbox and withdrawals on the production shape, where WatchInbox is fed by a
/// per-replica queue on RabbitMQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_inbox_through_rabbitmq() {
    if amqp_or_skip().is_none() {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL");
        return;
    }
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    live_inbox_and_withdrawals(&cluster).await;
    cluster.stop().await;
}

/// 20,000 deliveries to one customer through PostgreSQL and RabbitMQ, with every service
/// restarted in the middle of the fan-out: exactly 20,000, no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_of_20000_deliveries_survives_a_restart() {
    let (postgres, amqp) = (postgres_or_skip(), amqp_or_skip());
    if postgres.is_none() || amqp.is_none() {
        eprintln!("skipped: needs PostgreSQL and RabbitMQ");
        return;
    }
    const RECIPIENTS: usize = 20_000;
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let mut cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "acme", "alice").await;
    let customer = create_customer(&cluster, &partner.owner, &partner.account.name, "bigcorp")
        .await
        .expect("customer");
    load_members(&cluster, "bigcorp", "fan", RECIPIENTS).await;

    let started = Instant::now();
    let message = send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &[&customer.name],
        "Everyone",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send");
    let notification_db = sea_orm::Database::connect(
        cluster.database_url(tenantry_testkit::ServiceKind::Notification),
    )
    .await
    .expect("notification database");
    let count = async |sql: &str| -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let row = notification_db
            .query_one_raw(Statement::from_string(
                notification_db.get_database_backend(),
                sql.to_string(),
            ))
            .await
            .expect("count")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("number")
    };
    // Restart while the fan-out is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = count("SELECT COUNT(*) FROM deliveries").await;
        if written > 0 {
            assert!(
                (written as usize) < RECIPIENTS,
                "fan-out finished before the restart ({written})"
            );
            break;
        }
        assert!(Instant::now() < deadline, "fan-out never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.restart().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let view = get_message(&cluster, &partner.owner, &message.name).await;
        if view.state == MessageState::Delivered as i32 {
            assert_eq!(view.stats[0].recipient_count as usize, RECIPIENTS);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fan-out did not finish: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "fan-out of {RECIPIENTS} deliveries (with a restart) took {:?}",
        started.elapsed()
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries").await as usize,
        RECIPIENTS
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM (SELECT DISTINCT message_id, account_id, user_id FROM deliveries) AS d").await as usize,
        RECIPIENTS,
        "no duplicates"
    );
    let sample = TestUser {
        sub: "fan-12345".into(),
        email: "fan@example.com".into(),
        operator: false,
    };
    assert_eq!(inbox(&cluster, &sample).await.len(), 1);
    let _ = notification_db.close().await;
    cluster.stop().await;
}

/// Two replicas of every service on PostgreSQL + RabbitMQ: a user watching their inbox on one
/// replica sees the arrival and the removal caused through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_sees_every_inbox_change() {
    let (postgres, amqp) = (postgres_or_skip(), amqp_or_skip());
    if postgres.is_none() || amqp.is_none() {
        eprintln!("skipped: needs PostgreSQL and RabbitMQ");
        return;
    }
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    let replica = cluster.start_replica().await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "acme", "alice").await;
    let globex = create_customer(&cluster, &partner.owner, &partner.account.name, "globex")
        .await
        .expect("globex");
    let wanda = TestUser::new("wanda");
    add_member(&cluster, &operator, &globex.name, &wanda, Role::Employee)
        .await
        .expect("wanda");

    // Wanda watches through the replica; everything else goes through the first process.
    let (mut watch, _snapshot) = watch_inbox(replica.notification_as(&wanda)).await;
    let message = send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &[&globex.name],
        "Both",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send");
    let arrived = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("an arrival")
        .expect("open")
        .expect("ok");
    assert!(
        matches!(arrived.event, Some(watch_inbox_response::Event::Arrived(ref item)) if item.message == message.name),
        "{arrived:?}"
    );
    acknowledge(&cluster, &wanda, &message.name)
        .await
        .expect("ack on the first process");
    let removed = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a removal")
        .expect("open")
        .expect("ok");
    assert!(
        matches!(removed.event, Some(watch_inbox_response::Event::Removed(ref name)) if *name == message.name),
        "{removed:?}"
    );
    drop(watch);
    replica.stop().await;
    cluster.stop().await;
}
