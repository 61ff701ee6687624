//! The in-process bus: the same outbox, relay, idempotency, retry and dead-letter behaviour
//! with no broker (SQLite, as `tenantry up` runs it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sea_orm::{ConnectionTrait, TransactionTrait};
use tenantry_events::{ConsumerSpec, EventBus, Handler, Outbox, Relay, RetryPolicy};
use tenantry_platform::db::Database;
use tenantry_platform::server::Shutdown;

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn spec(
    group: &str,
    database: &Database,
    handler: &Arc<Scripted>,
    bindings: &[&str],
) -> ConsumerSpec {
    ConsumerSpec {
        group: group.to_string(),
        bindings: bindings.iter().map(|b| b.to_string()).collect(),
        database: database.clone(),
        handler: handler.clone() as Arc<dyn Handler>,
    }
}

#[tokio::test]
async fn outbox_to_consumer_end_to_end_with_routing_and_idempotency() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    // The auditor is another service: its own database (and `handled` table).
    let auditor_file = SqliteFile::new();
    let auditor_database = common::database(&auditor_file.url).await;
    let bus = EventBus::in_process(retry(3));
    let shutdown = Shutdown::new();
    let mailer = Scripted::new();
    let auditor = Scripted::new();
    let consumers = [
        bus.spawn_consumer(
            spec("mailer", &database, &mailer, &["invitation.created"]),
            shutdown.clone(),
        ),
        bus.spawn_consumer(
            spec("auditor", &auditor_database, &auditor, &["invitation.#"]),
            shutdown.clone(),
        ),
    ];
    let outbox = Outbox::new();
    let relay = Relay::new("test", database.clone(), outbox.clone(), bus.publisher())
        .idle_poll(Duration::from_secs(60));
    let relay = tokio::spawn(relay.run(shutdown.clone()));

    let created = event("invitation.created", "ok");
    let resent = event("invitation.resent", "ok");
    let connection = database.connection().expect("connected");
    let txn = connection.begin().await.expect("begin");
    outbox.append(&txn, &created).await.expect("append");
    outbox.append(&txn, &resent).await.expect("append");
    txn.commit().await.expect("commit");
    outbox.committed();

    assert!(
        eventually(Duration::from_secs(5), || async {
            mailer.calls(created.id) == 1
                && auditor.calls(created.id) == 1
                && auditor.calls(resent.id) == 1
        })
        .await
    );
    assert_eq!(mailer.calls(resent.id), 0, "not bound");
    assert_eq!(count(&database, "outbox").await, 0);

    // The same event again (a relay that crashed after publishing, before deleting).
    bus.publisher()
        .publish(std::slice::from_ref(&created))
        .await
        .expect("publish");
    let marker = event("invitation.created", "ok");
    bus.publisher()
        .publish(std::slice::from_ref(&marker))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            mailer.calls(marker.id) == 1
        })
        .await
    );
    assert_eq!(mailer.calls(created.id), 1, "duplicate not handled again");

    shutdown.trigger();
    relay.await.expect("relay stops");
    for consumer in consumers {
        consumer.await.expect("consumer stops");
    }
    file.remove();
    auditor_file.remove();
}

#[tokio::test]
async fn retries_with_back_off_then_dead_letters_without_blocking_the_group() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let EventBus::InProcess(in_process) = EventBus::in_process(retry(3)) else {
        unreachable!("an in-process bus");
    };
    let bus = EventBus::InProcess(in_process.clone());
    let shutdown = Shutdown::new();
    let handler = Scripted::new();
    let consumer = bus.spawn_consumer(
        spec("worker", &database, &handler, &["job.run"]),
        shutdown.clone(),
    );
    let publisher = bus.publisher();

    let flaky = event("job.run", "fail-2");
    let hopeless = event("job.run", "always");
    let broken = event("job.run", "permanent");
    let started = tokio::time::Instant::now();
    publisher
        .publish(&[flaky.clone(), hopeless.clone(), broken.clone()])
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            handler.calls(flaky.id) == 3
        })
        .await
    );
    // Two back-offs: 20 ms then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert!(
        eventually(Duration::from_secs(5), || async {
            in_process.dead_letters("worker").len() == 2
        })
        .await
    );
    let dead: Vec<_> = in_process
        .dead_letters("worker")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(dead.contains(&hopeless.id) && dead.contains(&broken.id));
    assert_eq!(handler.calls(hopeless.id), 3, "max_attempts tries");
    assert_eq!(handler.calls(broken.id), 1, "permanent: no retry");

    let good = event("job.run", "ok");
    publisher
        .publish(std::slice::from_ref(&good))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            handler.calls(good.id) == 1
        })
        .await
    );
    assert_eq!(count(&database, "handled").await, 2, "flaky and good");

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    file.remove();
}

/// A consumer whose own database cannot be reached (not up yet, restarting, failing over) waits
/// for it: the event is not at fault, so no attempt is used up and nothing ends in the dead
/// letters; once the database answers, the event is handled once.
#[tokio::test]
async fn waits_for_its_database_instead_of_using_up_attempts() {
    let file = SqliteFile::new();
    // Not connected yet: every transaction fails as with a database that is down.
    let database = Database::new(&file.url);
    let EventBus::InProcess(in_process) = EventBus::in_process(retry(3)) else {
        unreachable!("an in-process bus");
    };
    let bus = EventBus::InProcess(in_process.clone());
    let shutdown = Shutdown::new();
    let handler = Scripted::new();
    let consumer = bus.spawn_consumer(
        spec("worker", &database, &handler, &["job.run"]),
        shutdown.clone(),
    );
    let waiting = event("job.run", "ok");
    bus.publisher()
        .publish(std::slice::from_ref(&waiting))
        .await
        .expect("publish");
    // Three attempts with back-offs of 20 and 40 ms would be over long before this.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        in_process.dead_letters("worker").is_empty(),
        "an unreachable database dead-lettered the event"
    );
    assert_eq!(handler.calls(waiting.id), 0);

    database
        .connect_and_migrate::<TestMigrator>()
        .await
        .expect("the database comes up");
    assert!(
        eventually(Duration::from_secs(10), || async {
            handler.calls(waiting.id) == 1
        })
        .await,
        "handled once the database answers"
    );
    assert_eq!(count(&database, "handled").await, 1);
    assert!(in_process.dead_letters("worker").is_empty());

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    file.remove();
}

/// A handler that does its slow part in `prepare`: records whether a transaction was open
/// on the database while it prepared, and hands a value to `handle_prepared`.
#[derive(Default)]
struct Preparing {
    /// Payloads handed from `prepare` to `handle_prepared`, in order.
    handed: std::sync::Mutex<Vec<String>>,
    /// Prepare calls that failed on purpose (`"fail-once"` fails the first).
    failed: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Handler for Preparing {
    async fn handle(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        _event: &tenantry_events::Event,
    ) -> Result<(), tenantry_events::HandlerError> {
        panic!("the runtime calls handle_prepared");
    }

    async fn prepare(
        &self,
        database: &sea_orm::DatabaseConnection,
        event: &tenantry_events::Event,
    ) -> Result<tenantry_events::Prepared, tenantry_events::HandlerError> {
        let script: String = event.decode()?;
        if script == "fail-once"
            && self
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                == 0
        {
            return Err(tenantry_events::HandlerError::Transient(
                "prepare failed".into(),
            ));
        }
        // SQLite has one pooled connection: were the runtime's transaction open, this read
        // would wait for it forever (the test would time out).
        let open = database
            .query_one_raw(sea_orm::Statement::from_string(
                database.get_database_backend(),
                "SELECT 1",
            ))
            .await
            .map_err(|error| tenantry_events::HandlerError::Transient(error.to_string()))?;
        assert!(open.is_some());
        Ok(tenantry_events::Prepared::new(format!("prepared {script}")))
    }

    async fn handle_prepared(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        _event: &tenantry_events::Event,
        prepared: tenantry_events::Prepared,
    ) -> Result<(), tenantry_events::HandlerError> {
        let value = prepared.take::<String>().expect("what prepare returned");
        self.handed.lock().expect("lock").push(value);
        Ok(())
    }
}

/// `prepare` runs outside the transaction (on SQLite's single connection, too), its value
/// reaches `handle_prepared`, and a failed prepare is a failed attempt that is retried.
#[tokio::test]
async fn prepare_runs_before_the_transaction_and_hands_its_value_over() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let bus = EventBus::in_process(retry(3));
    let shutdown = Shutdown::new();
    let handler = Arc::new(Preparing::default());
    let consumer = bus.spawn_consumer(
        ConsumerSpec {
            group: "preparer".into(),
            bindings: vec!["job.run".into()],
            database: database.clone(),
            handler: handler.clone() as Arc<dyn Handler>,
        },
        shutdown.clone(),
    );
    bus.publisher()
        .publish(&[event("job.run", "fail-once"), event("job.run", "ok")])
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            handler.handed.lock().expect("lock").len() == 2
        })
        .await,
        "both events handled: {:?}",
        handler.handed.lock().expect("lock")
    );
    let mut handed = handler.handed.lock().expect("lock").clone();
    handed.sort();
    assert_eq!(handed, ["prepared fail-once", "prepared ok"]);
    assert_eq!(
        handler.failed.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the failed prepare was retried"
    );
    let processed = database
        .connection()
        .expect("ready")
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM processed_events WHERE consumer_group = 'preparer'",
        ))
        .await
        .expect("count")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(processed, 2);
    shutdown.trigger();
    consumer.await.expect("consumer stops");
    file.remove();
}
