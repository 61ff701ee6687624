//! The outbox and the relay against the real broker, on SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;

use std::time::Duration;

use common::*;
use lapin::types::AMQPValue;
use sea_orm::TransactionTrait;
use tenantry_events::{AmqpConfig, Event, EventBus, Outbox, Relay};
use tenantry_platform::db::Database;
use tenantry_platform::server::Shutdown;

fn config(url: &str, prefix: &str) -> AmqpConfig {
    AmqpConfig {
        url: url.to_string(),
        queue_prefix: prefix.to_string(),
        ..AmqpConfig::default()
    }
}

async fn append_all(database: &Database, outbox: &Outbox, events: &[Event]) {
    let connection = database.connection().expect("connected");
    let tx = outbox.begin(connection).await.expect("begin");
    for event in events {
        tx.append(event).await.expect("append");
    }
    tx.commit().await.expect("commit");
}

fn header(message: &lapin::message::BasicGetMessage, key: &str) -> Option<String> {
    match message.properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        _ => None,
    }
}

#[tokio::test]
async fn relay_publishes_in_order_with_cloudevents_attributes_and_deletes_rows() {
    let Some(broker) = broker().await else { return };
    let channel = broker.create_channel().await.expect("channel");
    let prefix = prefix("relay-order");
    let exchange = format!("{prefix}tenantry.events");
    let tap_queue = format!("{prefix}tap");
    tap(&channel, &exchange, &tap_queue, "test.ordered").await;

    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let outbox = Outbox::new();
    let mut events: Vec<Event> = (0..5)
        .map(|i| event("test.ordered", &format!("n{i}")))
        .collect();
    events[0].traceparent =
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string());
    append_all(&database, &outbox, &events).await;
    assert_eq!(count(&database, "outbox").await, 5);

    let bus = EventBus::amqp(config(AMQP_URL, &prefix));
    let shutdown = Shutdown::new();
    // A long idle poll: the relay must be woken by `committed`, not by polling.
    let relay = Relay::new("test", database.clone(), outbox.clone(), bus.publisher())
        .batch_size(2)
        .idle_poll(Duration::from_secs(60));
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    let messages = drain(&channel, &tap_queue, 5, Duration::from_secs(10)).await;
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|message| header(message, "cloudEvents_id"))
        .collect();
    let expected: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
    assert_eq!(ids, expected, "published in outbox order");
    let first = &messages[0];
    assert_eq!(
        first.properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/protobuf")
    );
    assert_eq!(
        first
            .properties
            .message_id()
            .as_ref()
            .map(|c| c.to_string()),
        Some(events[0].id.to_string())
    );
    assert_eq!(
        header(first, "cloudEvents_specversion").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        header(first, "cloudEvents_type").as_deref(),
        Some("test.ordered")
    );
    assert_eq!(
        header(first, "cloudEvents_source").as_deref(),
        Some("/tenantry/test")
    );
    assert_eq!(
        header(first, "cloudEvents_time"),
        Some(events[0].time.to_rfc3339())
    );
    assert_eq!(header(first, "traceparent"), events[0].traceparent);
    assert_eq!(first.delivery.data, events[0].payload);
    assert!(
        eventually(Duration::from_secs(5), || async {
            count(&database, "outbox").await == 0
        })
        .await,
        "rows deleted once confirmed"
    );

    // A commit wakes the idle relay at once (its poll is a minute).
    let later = event("test.ordered", "later");
    append_all(&database, &outbox, std::slice::from_ref(&later)).await;
    let messages = drain(&channel, &tap_queue, 1, Duration::from_secs(3)).await;
    assert_eq!(
        messages.first().and_then(|m| header(m, "cloudEvents_id")),
        Some(later.id.to_string())
    );

    shutdown.trigger();
    relay.await.expect("relay stops");
    cleanup(&channel, &exchange, &[&tap_queue]).await;
    file.remove();
}

#[tokio::test]
async fn relay_keeps_rows_while_the_broker_is_unreachable_and_publishes_them_when_it_is_back() {
    let Some(broker) = broker().await else { return };
    let channel = broker.create_channel().await.expect("channel");
    let prefix = prefix("relay-down");
    let exchange = format!("{prefix}tenantry.events");
    let tap_queue = format!("{prefix}tap");
    tap(&channel, &exchange, &tap_queue, "test.down").await;

    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let outbox = Outbox::new();
    // Nothing listens on this port until the "broker comes back" (a proxy to the real one).
    let port = closed_port().await;
    let bus = EventBus::amqp(config(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        &prefix,
    ));
    let shutdown = Shutdown::new();
    let relay = Relay::new("test", database.clone(), outbox.clone(), bus.publisher())
        .idle_poll(Duration::from_millis(50));
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    let events: Vec<Event> = (0..3)
        .map(|i| event("test.down", &format!("d{i}")))
        .collect();
    append_all(&database, &outbox, &events).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count(&database, "outbox").await,
        3,
        "rows kept while unreachable"
    );

    let proxy = Proxy::start(port, BROKER_ADDR).await;
    let messages = drain(&channel, &tap_queue, 3, Duration::from_secs(15)).await;
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|message| header(message, "cloudEvents_id"))
        .collect();
    let expected: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(
        eventually(Duration::from_secs(5), || async {
            count(&database, "outbox").await == 0
        })
        .await
    );

    // The broker "restarts": the publisher's connection drops; the next batch reconnects.
    proxy.cut();
    let after = event("test.down", "after-restart");
    append_all(&database, &outbox, std::slice::from_ref(&after)).await;
    let messages = drain(&channel, &tap_queue, 1, Duration::from_secs(15)).await;
    assert_eq!(
        messages.first().and_then(|m| header(m, "cloudEvents_id")),
        Some(after.id.to_string())
    );

    shutdown.trigger();
    relay.await.expect("relay stops");
    proxy.stop();
    cleanup(&channel, &exchange, &[&tap_queue]).await;
    file.remove();
}

#[tokio::test]
async fn two_relays_on_postgres_publish_every_row_exactly_once() {
    let Some(broker) = broker().await else { return };
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let channel = broker.create_channel().await.expect("channel");
    let prefix = prefix("relay-pg");
    let exchange = format!("{prefix}tenantry.events");
    let tap_queue = format!("{prefix}tap");
    tap(&channel, &exchange, &tap_queue, "test.pg").await;

    // Two replicas: each its own database pool, outbox handle and broker connection.
    let database_a = database(&pg.url).await;
    let database_b = Database::new(&pg.url);
    database_b
        .connect_and_migrate::<TestMigrator>()
        .await
        .expect("connect b");
    let outbox_a = Outbox::new();
    let outbox_b = Outbox::new();
    let total = 300;
    let events: Vec<Event> = (0..total)
        .map(|i| event("test.pg", &format!("p{i}")))
        .collect();
    for chunk in events.chunks(50) {
        append_all(&database_a, &outbox_a, chunk).await;
    }

    let shutdown = Shutdown::new();
    let relays: Vec<_> = [
        (database_a.clone(), outbox_a),
        (database_b.clone(), outbox_b),
    ]
    .into_iter()
    .map(|(database, outbox)| {
        let bus = EventBus::amqp(config(AMQP_URL, &prefix));
        let relay = Relay::new("test", database, outbox, bus.publisher())
            .batch_size(7)
            .idle_poll(Duration::from_millis(20));
        tokio::spawn(relay.run(shutdown.clone()))
    })
    .collect();

    let messages = drain(&channel, &tap_queue, total, Duration::from_secs(30)).await;
    // Anything published twice would show up shortly after.
    let extra = drain(&channel, &tap_queue, 1, Duration::from_millis(700)).await;
    let ids: Vec<String> = messages
        .iter()
        .chain(extra.iter())
        .filter_map(|message| header(message, "cloudEvents_id"))
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), total, "every row published once");
    assert_eq!(unique.len(), total, "no row published twice");
    assert_eq!(count(&database_a, "outbox").await, 0);

    shutdown.trigger();
    for relay in relays {
        relay.await.expect("relay stops");
    }
    cleanup(&channel, &exchange, &[&tap_queue]).await;
    pg.drop_database(&[&database_a, &database_b]).await;
}

#[tokio::test]
async fn outbox_rows_roll_back_with_the_transaction() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let outbox = Outbox::new();
    let connection = database.connection().expect("connected");
    let txn = connection.begin().await.expect("begin");
    outbox
        .append(&txn, &event("test.rollback", "x"))
        .await
        .expect("append");
    txn.rollback().await.expect("rollback");
    assert_eq!(count(&database, "outbox").await, 0);
    let too_long = event(&"x".repeat(256), "x");
    assert!(outbox.append(connection, &too_long).await.is_err());

    file.remove();
}
