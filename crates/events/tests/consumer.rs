//! The consumer runtime against the real broker: idempotency, retry through the delay queue,
//! dead letters, and reconnection after the connection drops.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::types::FieldTable;
use tenantry_events::{AmqpConfig, ConsumerSpec, EventBus, Handler, RetryPolicy};
use tenantry_platform::db::Database;
use tenantry_platform::server::Shutdown;

const GROUP: &str = "tenantry.test.consumer";

fn config(url: &str, prefix: &str, prefetch: u16, max_attempts: u32) -> AmqpConfig {
    AmqpConfig {
        url: url.to_string(),
        queue_prefix: prefix.to_string(),
        prefetch,
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        // One at a time: these tests count handler calls per delivery attempt (a batch tries
        // a failing event once more, in the batch, before it is retried alone).
        batch_size: 1,
        ..AmqpConfig::default()
    }
}

fn spec(database: &Database, handler: &Arc<Scripted>, bindings: &[&str]) -> ConsumerSpec {
    ConsumerSpec {
        group: GROUP.to_string(),
        bindings: bindings.iter().map(|b| b.to_string()).collect(),
        database: database.clone(),
        handler: handler.clone() as Arc<dyn Handler>,
        outbox: None,
    }
}

/// Waits until the consumer is consuming, which it does only after declaring and binding its
/// whole topology (a passive declare on a fresh channel each time: a missing queue closes the
/// channel it was asked on).
async fn started(broker: &lapin::Connection, queue: &str) {
    let declared = eventually(Duration::from_secs(10), || async {
        let Ok(channel) = broker.create_channel().await else {
            return false;
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .is_ok_and(|queue| queue.consumer_count() > 0)
    })
    .await;
    assert!(declared, "consumer declared its queue");
}

/// Takes dead letters from `queue` until `count` arrived or 10 s passed.
async fn dead_letters(channel: &lapin::Channel, queue: &str, count: usize) -> Vec<BasicGetMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.len() < count && tokio::time::Instant::now() < deadline {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            Some(message) => {
                message.ack(BasicAckOptions::default()).await.expect("ack");
                found.push(message);
            }
            None => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    found
}

fn header(message: &BasicGetMessage, key: &str) -> Option<AMQPValue> {
    message
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(key)
        .cloned()
}

/// Records, for each event, the transaction it was committed in: [`Scripted`]'s work and
/// outcome, plus `txid_current()` (the top-level transaction's id, also inside a savepoint).
struct TransactionRecorder(Arc<Scripted>);

#[async_trait::async_trait]
impl Handler for TransactionRecorder {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &tenantry_events::Event,
    ) -> Result<(), tenantry_events::HandlerError> {
        use sea_orm::ConnectionTrait;
        self.0.handle(txn, event).await?;
        let record = format!(
            "INSERT INTO committed_in (event_id, txid) VALUES ('{}', txid_current())",
            event.id
        );
        txn.execute_unprepared(&record)
            .await
            .map_err(|error| tenantry_events::HandlerError::Transient(error.to_string()))?;
        Ok(())
    }

    /// Records which events each batch was handed, in the batch's transaction, then handles
    /// them one by one.
    async fn handle_batch(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        batch: &tenantry_events::Batch<'_>,
    ) -> Result<Vec<tenantry_events::Handled>, tenantry_events::BatchFailure> {
        use sea_orm::ConnectionTrait;
        for (position, event) in batch.events().iter().enumerate() {
            let record = format!(
                "INSERT INTO batch_begun (event_id, txid) VALUES ('{}', txid_current())",
                event.id
            );
            txn.execute_unprepared(&record).await.map_err(|error| {
                tenantry_events::BatchFailure {
                    position,
                    error: tenantry_events::HandlerError::Transient(error.to_string()),
                }
            })?;
        }
        let mut handled = Vec::new();
        for (position, event) in batch.events().iter().enumerate() {
            self.handle(txn, event)
                .await
                .map_err(|error| tenantry_events::BatchFailure { position, error })?;
            handled.push(tenantry_events::Handled::Done);
        }
        Ok(handled)
    }
}

#[tokio::test]
async fn a_batch_commits_together_and_a_poison_event_is_retried_alone_on_postgres() {
    use sea_orm::ConnectionTrait;
    let Some(broker) = broker().await else { return };
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let prefix = prefix("batch");
    let database = database(&pg.url).await;
    database
        .connection()
        .expect("connected")
        .execute_unprepared(
            "CREATE TABLE committed_in (event_id TEXT PRIMARY KEY, txid BIGINT); \
             CREATE TABLE batch_begun (event_id TEXT, txid BIGINT)",
        )
        .await
        .expect("create committed_in and batch_begun");
    let scripted = Scripted::new();
    let config = AmqpConfig {
        batch_size: 16,
        // Long enough that every published event is in a batch before it is handled.
        batch_linger: Duration::from_millis(200),
        ..config(AMQP_URL, &prefix, 32, 2)
    };
    let bus = EventBus::amqp(config);
    let shutdown = Shutdown::new();
    let consumer = bus.spawn_consumer(
        ConsumerSpec {
            group: GROUP.to_string(),
            bindings: vec!["test.batch".to_string()],
            database: database.clone(),
            handler: Arc::new(TransactionRecorder(scripted.clone())),
            outbox: None,
        },
        shutdown.clone(),
    );
    let probe = broker.create_channel().await.expect("channel");
    let queue = format!("{prefix}{GROUP}");
    started(&broker, &queue).await;

    // 19 good events and one that always fails, published together.
    let mut events: Vec<_> = (0..19).map(|_| event("test.batch", "ok")).collect();
    let poison = event("test.batch", "permanent");
    events.insert(7, poison.clone());
    bus.publisher().publish(&events).await.expect("publish");

    assert!(
        eventually(Duration::from_secs(10), || async {
            count(&database, "handled").await == 19
        })
        .await,
        "every good event handled"
    );
    let dead = dead_letters(&probe, &format!("{queue}.dead"), 1).await;
    assert_eq!(dead.len(), 1, "the poison event is dead-lettered");
    assert_eq!(
        dead[0]
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
        Some(poison.id.to_string())
    );
    // Tried once in its batch (which was rolled back and tried again without it), then
    // alone: permanent.
    assert_eq!(scripted.calls(poison.id), 2);
    for good in events.iter().filter(|event| event.id != poison.id) {
        // Called again when its batch was retried without the poison, committed once.
        assert!(
            (1..=2).contains(&scripted.calls(good.id)),
            "a good event is tried at most twice"
        );
    }
    // 19 events in at most a few transactions (16 + 4 deliveries), not 19.
    let transactions = database
        .connection()
        .expect("connected")
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(DISTINCT txid) FROM committed_in",
        ))
        .await
        .expect("count transactions")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count");
    assert!(
        (1..=4).contains(&transactions),
        "19 events committed in {transactions} transactions"
    );
    // Every event committed in a batch was handed to handle_batch in that very transaction,
    // and no batch announced an event it did not commit (the poison's batches rolled back).
    let unannounced = database
        .connection()
        .expect("connected")
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) FROM committed_in c WHERE c.txid IN \
               (SELECT txid FROM committed_in GROUP BY txid HAVING COUNT(*) > 1) \
             AND NOT EXISTS (SELECT 1 FROM batch_begun b WHERE b.event_id = c.event_id AND b.txid = c.txid)",
        ))
        .await
        .expect("count unannounced")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count");
    assert_eq!(unannounced, 0, "batched events handed to handle_batch");
    let unhandled = database
        .connection()
        .expect("connected")
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) FROM batch_begun b WHERE NOT EXISTS \
               (SELECT 1 FROM committed_in c WHERE c.event_id = b.event_id AND c.txid = b.txid)",
        ))
        .await
        .expect("count unhandled")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count");
    assert_eq!(
        unhandled, 0,
        "handle_batch is handed only events the batch then commits"
    );
    // The dead-lettered event is not recorded as processed (a replay would try it again).
    assert_eq!(count(&database, "processed_events").await, 19);

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[&queue]).await;
    pg.drop_database(&[&database]).await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_handled_once_on_postgres() {
    let Some(broker) = broker().await else { return };
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let prefix = prefix("idempotent");
    let database = database(&pg.url).await;
    let handler = Scripted::new();
    // Prefetch 1: deliveries are handled one after the other, so when the marker is handled
    // both copies before it were too.
    let bus = EventBus::amqp(config(AMQP_URL, &prefix, 1, 5));
    let shutdown = Shutdown::new();
    let consumer = bus.spawn_consumer(spec(&database, &handler, &["test.dup"]), shutdown.clone());
    let probe = broker.create_channel().await.expect("channel");
    started(&broker, &format!("{prefix}{GROUP}")).await;

    let publisher = bus.publisher();
    let duplicate = event("test.dup", "ok");
    let marker = event("test.dup", "ok");
    publisher
        .publish(std::slice::from_ref(&duplicate))
        .await
        .expect("publish");
    publisher
        .publish(std::slice::from_ref(&duplicate))
        .await
        .expect("publish again");
    publisher
        .publish(std::slice::from_ref(&marker))
        .await
        .expect("publish marker");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(marker.id) == 1
        })
        .await,
        "marker handled"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handler.calls(duplicate.id), 1, "handler called once");
    assert_eq!(count(&database, "handled").await, 2);
    assert_eq!(count(&database, "processed_events").await, 2);

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    cleanup(
        &probe,
        &format!("{prefix}tenantry.events"),
        &[&format!("{prefix}{GROUP}")],
    )
    .await;
    pg.drop_database(&[&database]).await;
}

#[tokio::test]
async fn transient_failures_are_retried_through_the_delay_queue_and_dead_letters_do_not_block() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("retry");
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let handler = Scripted::new();
    let bus = EventBus::amqp(config(AMQP_URL, &prefix, 8, 3));
    let shutdown = Shutdown::new();
    let consumer = bus.spawn_consumer(
        spec(&database, &handler, &["test.retry", "test.other"]),
        shutdown.clone(),
    );
    let probe = broker.create_channel().await.expect("channel");
    let queue = format!("{prefix}{GROUP}");
    started(&broker, &queue).await;

    let publisher = bus.publisher();
    let flaky = event("test.retry", "fail-2");
    let hopeless = event("test.retry", "always");
    let broken = event("test.other", "permanent");
    publisher
        .publish(&[flaky.clone(), hopeless.clone(), broken.clone()])
        .await
        .expect("publish");

    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(flaky.id) == 3
        })
        .await,
        "two failures, then success on the third delivery"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(hopeless.id) == 3
        })
        .await,
        "tried max_attempts times"
    );

    // Both failures end in {group}.dead, with the attempt count and the reason.
    let dead = dead_letters(&probe, &format!("{queue}.dead"), 2).await;
    assert_eq!(dead.len(), 2, "two dead letters");
    for message in &dead {
        let id = message
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let attempt = header(message, "x-tenantry-attempt");
        if id == hopeless.id.to_string() {
            assert_eq!(attempt, Some(AMQPValue::LongUInt(3)));
        } else {
            assert_eq!(id, broken.id.to_string());
            assert_eq!(attempt, Some(AMQPValue::LongUInt(1)));
        }
        assert!(header(message, "x-tenantry-error").is_some());
        assert!(
            header(message, "cloudEvents_type").is_some(),
            "CloudEvents kept"
        );
        assert!(message.properties.expiration().is_none());
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handler.calls(broken.id),
        1,
        "permanent failures are not retried"
    );
    assert_eq!(handler.calls(flaky.id), 3, "handled once it succeeded");

    // The queue is not blocked: a later good event is handled.
    let good = event("test.other", "ok");
    publisher
        .publish(std::slice::from_ref(&good))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(good.id) == 1
        })
        .await
    );
    assert_eq!(count(&database, "handled").await, 2, "flaky and good");

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[&queue]).await;
    file.remove();
}

/// A 1 s retry queued behind a 60 s one (a busy event) comes back in about 1 s: each delay has
/// its own queue, so no message waits behind a longer one (one queue with per-message TTLs
/// would hold it back for the whole 60 s).
#[tokio::test]
async fn a_one_second_retry_is_not_held_back_by_a_sixty_second_one() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("retry-order");
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let handler = Scripted::new();
    let config = AmqpConfig {
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        },
        ..config(AMQP_URL, &prefix, 1, 5)
    };
    let bus = EventBus::amqp(config);
    let shutdown = Shutdown::new();
    let consumer = bus.spawn_consumer(spec(&database, &handler, &["test.order"]), shutdown.clone());
    let probe = broker.create_channel().await.expect("channel");
    let queue = format!("{prefix}{GROUP}");
    started(&broker, &queue).await;

    let long = event("test.order", "busy-60000");
    let short = event("test.order", "fail-1");
    let publisher = bus.publisher();
    publisher
        .publish(std::slice::from_ref(&long))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(long.id) == 1
        })
        .await,
        "the 60 s retry is waiting"
    );
    publisher
        .publish(std::slice::from_ref(&short))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(short.id) == 1
        })
        .await,
        "the short one failed once"
    );
    let failed_at = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(15), || async {
            handler.calls(short.id) == 2
        })
        .await,
        "the 1 s retry came back long before the 60 s one"
    );
    println!(
        "1 s retry behind a 60 s one delivered again after {:?}",
        failed_at.elapsed()
    );
    assert_eq!(handler.calls(long.id), 1, "the 60 s one still waits");

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[&queue]).await;
    file.remove();
}

/// Messages another producer made by hand, with the CloudEvents attributes under the current
/// AMQP binding's `cloudEvents_` prefix and under the older `cloudEvents:` one (and no
/// `message_id`, so the id comes from the attribute), are both handled.
#[tokio::test]
async fn hand_made_messages_with_either_cloudevents_prefix_are_handled() {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    use lapin::types::LongString;
    let Some(broker) = broker().await else { return };
    let prefix = prefix("handmade");
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let handler = Scripted::new();
    let bus = EventBus::amqp(config(AMQP_URL, &prefix, 8, 3));
    let shutdown = Shutdown::new();
    let consumer = bus.spawn_consumer(
        spec(&database, &handler, &["test.handmade"]),
        shutdown.clone(),
    );
    let queue = format!("{prefix}{GROUP}");
    started(&broker, &queue).await;
    let channel = broker.create_channel().await.expect("channel");
    let exchange = format!("{prefix}tenantry.events");

    let mut ids = Vec::new();
    for attribute_prefix in ["cloudEvents_", "cloudEvents:"] {
        let id = uuid::Uuid::now_v7();
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("specversion", "1.0".to_string()),
            ("id", id.to_string()),
            ("type", "test.handmade".to_string()),
            ("source", "/somebody-else".to_string()),
            ("time", "2026-01-02T03:04:05Z".to_string()),
        ] {
            headers.insert(
                format!("{attribute_prefix}{name}").as_str().into(),
                AMQPValue::LongString(LongString::from(value.into_bytes())),
            );
        }
        // The body a producer of `test.handmade` sends: the scripted handler's "ok".
        let body = event("test.handmade", "ok").payload;
        channel
            .basic_publish(
                exchange.as_str().into(),
                "test.handmade".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_content_type("application/protobuf".into())
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("routed");
        ids.push((attribute_prefix, id));
    }
    for (attribute_prefix, id) in &ids {
        assert!(
            eventually(Duration::from_secs(10), || async {
                handler.calls(*id) == 1
            })
            .await,
            "the message with {attribute_prefix} attributes was handled under its own id"
        );
    }

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    cleanup(&channel, &exchange, &[&queue]).await;
    file.remove();
}

/// The consumer survives the broker going away (and is back within seconds of its return: the
/// reconnect back-off is capped at 2 s, jittered, where doubling to 30 s left it asleep for
/// 12 s more after this 13 s outage, and up to 30 s after longer ones) and a channel error.
#[tokio::test]
async fn the_consumer_reconnects_redeclares_and_resumes_after_the_broker_goes_away() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("reconnect");
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let handler = Scripted::new();
    // The consumer reaches the broker through a proxy; dropping the proxy's connections is what
    // a broker restart looks like from here.
    let port = closed_port().await;
    let proxy = Proxy::start(port, BROKER_ADDR).await;
    let through_proxy = EventBus::amqp(config(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        &prefix,
        8,
        3,
    ));
    let direct = EventBus::amqp(config(AMQP_URL, &prefix, 8, 3));
    let shutdown = Shutdown::new();
    let consumer = through_proxy.spawn_consumer(
        spec(&database, &handler, &["test.reconnect"]),
        shutdown.clone(),
    );
    let queue = format!("{prefix}{GROUP}");
    started(&broker, &queue).await;

    let publisher = direct.publisher();
    let before = event("test.reconnect", "ok");
    publisher
        .publish(std::slice::from_ref(&before))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(before.id) == 1
        })
        .await
    );

    // The broker goes away for a while; events published meanwhile wait in the durable queue.
    proxy.stop();
    let during = event("test.reconnect", "ok");
    publisher
        .publish(std::slice::from_ref(&during))
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        handler.calls(during.id),
        0,
        "nothing handled while the broker is away"
    );
    let proxy = Proxy::start(port, BROKER_ADDR).await;
    let back_at = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || async {
            handler.calls(during.id) == 1
        })
        .await,
        "handled after reconnecting"
    );
    let resumed_after = back_at.elapsed();
    println!("consumer resumed {resumed_after:?} after the broker came back from a 13 s outage");
    // The back-off's 2 s cap plus a generous margin for a loaded machine, still half of what
    // the doubling back-off took.
    assert!(
        resumed_after < Duration::from_secs(6),
        "resumed {resumed_after:?} after the broker's return"
    );

    // A channel error (the group queue deleted under the consumer) is survived too: the
    // consumer is cancelled, reconnects and redeclares its topology.
    let probe = broker.create_channel().await.expect("channel");
    probe
        .queue_delete(
            queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("delete queue");
    started(&broker, &queue).await;
    let after = event("test.reconnect", "ok");
    publisher
        .publish(std::slice::from_ref(&after))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(20), || async {
            handler.calls(after.id) == 1
        })
        .await,
        "handled after redeclaring"
    );

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    proxy.stop();
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[&queue]).await;
    file.remove();
}
