//! Measures a partner message's fan-out to N recipients (default 20,000) and the latency of
//! `ListPendingMessages` (the login inbox) with those deliveries present, on PostgreSQL +
//! RabbitMQ.
//!
//! ```text
//! TENANTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! TENANTRY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!   cargo run --release -p tenantry-e2e --example message_fanout -- 20000
//! ```

use std::time::{Duration, Instant};

use tenantry_e2e::{create_customer, load_members, partner_with_owner, send_message};
use tenantry_proto::notification::v1::{
    GetMessageRequest, ListPendingMessagesRequest, MessageState, ReadPolicy,
};
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser};

#[tokio::main]
async fn main() {
    let recipients: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(20_000);
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "acme", "alice").await;
    let customer = create_customer(&cluster, &partner.owner, &partner.account.name, "bigcorp")
        .await
        .expect("customer");
    eprintln!("loading {recipients} members…");
    load_members(&cluster, "bigcorp", "fan", recipients).await;

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
    loop {
        let view = cluster
            .notification_as(&partner.owner)
            .get_message(GetMessageRequest {
                name: message.name.clone(),
            })
            .await
            .expect("get")
            .into_inner()
            .message
            .expect("message");
        let written: i32 = view.stats.iter().map(|s| s.recipient_count).sum();
        eprint!("\r{written}/{recipients} deliveries");
        if view.state == MessageState::Delivered as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fan_out = started.elapsed();
    eprintln!();

    // The login inbox of 1,000 different recipients, one call at a time.
    let mut latencies = Vec::new();
    for n in 0..1000 {
        let user = TestUser {
            sub: format!("fan-{}", (n * 7919) % recipients),
            email: "fan@example.com".into(),
            operator: false,
        };
        let mut client = cluster.notification_as(&user);
        let call = Instant::now();
        let page = client
            .list_pending_messages(ListPendingMessagesRequest::default())
            .await
            .expect("inbox")
            .into_inner();
        latencies.push(call.elapsed());
        assert_eq!(page.items.len(), 1);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "fan-out of {recipients} deliveries (PostgreSQL + RabbitMQ): {:.2} s ({:.0} deliveries/s)",
        fan_out.as_secs_f64(),
        recipients as f64 / fan_out.as_secs_f64()
    );
    println!(
        "ListPendingMessages with {recipients} deliveries present (n = 1000): p50 {:.2} ms, p99 {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    cluster.stop().await;
}
