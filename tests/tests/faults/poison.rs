//! Poison messages: a garbage body with a valid routing key, and a known event type whose body
//! does not decode, published straight to the cluster's exchange. Both end in the mailer's
//! dead-letter queue with the reason, and the invitations created right behind them are mailed
//! as usual: a message that can never be handled does not block its queue.

use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation};
use tenantry_e2e::{invite, partner_admin_in_customer};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip};

use crate::SERIAL;

const MAILER_GROUP: &str = "tenantry.invitation.mailer";
/// Invitations created right behind the poison.
const BEHIND: usize = 20;

/// Waits until the cluster's mail directory holds `count` e-mails.
async fn wait_for_mails(cluster: &TestCluster, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.mail_files().len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} e-mails after 30 s",
            cluster.mail_files().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_without_blocking_the_queue() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = amqp_or_skip() else {
        eprintln!("skipped: needs TENANTRY_TEST_AMQP_URL");
        return;
    };
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.amqp = true;
    let cluster = TestCluster::start_with(options).await;
    let amqp = cluster.amqp().expect("broker settings").clone();
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    // One e-mail first: the mailer consumes, so its queue is bound.
    invite(
        &cluster,
        &partner.owner,
        &customer.name,
        "first@example.com",
        Role::Employee,
    )
    .await
    .expect("invite");
    wait_for_mails(&cluster, 1).await;

    let connection = lapin::Connection::connect(&broker, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let exchange = format!("{}{}", amqp.queue_prefix, amqp.exchange);
    let mut headers = FieldTable::default();
    headers.insert("cloudEvents:specversion".into(), text("1.0"));
    headers.insert(
        "cloudEvents:id".into(),
        text(&uuid::Uuid::now_v7().to_string()),
    );
    headers.insert("cloudEvents:type".into(), text("invitation.created"));
    headers.insert("cloudEvents:source".into(), text("/test/poison"));
    let poison: [(&str, &[u8], BasicProperties); 2] = [
        // Not an event at all: no CloudEvents attributes, a body of text.
        (
            "garbage",
            b"this is not an event",
            BasicProperties::default(),
        ),
        // A proper envelope whose protobuf body is cut short (a 16-byte field with 7 bytes).
        (
            "undecodable",
            b"\x0a\x10garbage",
            BasicProperties::default()
                .with_content_type("application/protobuf".into())
                .with_headers(headers),
        ),
    ];
    for (what, body, properties) in &poison {
        let confirmation = channel
            .basic_publish(
                exchange.as_str().into(),
                "invitation.created".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.clone(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(
            matches!(confirmation, Confirmation::Ack(None)),
            "the {what} message reached the mailer's queue: {confirmation:?}"
        );
    }

    // Right behind the poison: invitations, each mailed as usual.
    let started = Instant::now();
    for index in 0..BEHIND {
        invite(
            &cluster,
            &partner.owner,
            &customer.name,
            &format!("behind-{index}@example.com"),
            Role::Employee,
        )
        .await
        .expect("invite");
    }
    wait_for_mails(&cluster, 1 + BEHIND).await;
    let mailed_after = started.elapsed();

    // The poison waits in the dead-letter queue, with the reason; nothing else is there.
    let dead_queue = format!("{}{MAILER_GROUP}.dead", amqp.queue_prefix);
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while dead.len() < poison.len() && Instant::now() < deadline {
        match channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            Some(message) => {
                message.ack(BasicAckOptions::default()).await.expect("ack");
                dead.push(message);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut reasons = Vec::new();
    for (what, body, _) in &poison {
        let letter = dead
            .iter()
            .find(|message| message.data == *body)
            .unwrap_or_else(|| panic!("the {what} message is not in {dead_queue}"));
        let reason = letter
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-tenantry-error").cloned());
        let Some(AMQPValue::LongString(reason)) = reason else {
            panic!("the {what} dead letter says why: {:?}", letter.properties);
        };
        reasons.push(format!(
            "{what}: {}",
            String::from_utf8_lossy(reason.as_bytes())
        ));
    }
    assert_eq!(dead.len(), poison.len(), "only the poison is dead-lettered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (queue, what) in [
        (dead_queue.clone(), "further dead letters"),
        (
            format!("{}{MAILER_GROUP}", amqp.queue_prefix),
            "messages left in the mailer's queue",
        ),
    ] {
        let ready = tenantry_testkit::ready_messages(&channel, &queue)
            .await
            .expect("the queue exists");
        assert_eq!(ready, 0, "{what} in {queue}");
    }
    assert_eq!(
        cluster.mail_files().len(),
        1 + BEHIND,
        "no e-mail for poison"
    );
    eprintln!(
        "poison: {} messages dead-lettered ({}); the {BEHIND} invitations behind them were \
         mailed within {mailed_after:.1?}",
        dead.len(),
        reasons.join("; ")
    );
    let _ = connection.close(0, "done".into()).await;
    cluster.stop().await;
}
