//! The in-process bus: the same outbox, relay, idempotency, retry and dead-letter behaviour
//! with no broker (SQLite, as `tenantry up` runs it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
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
        outbox: None,
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
    let tx = outbox.begin(connection).await.expect("begin");
    tx.append(&created).await.expect("append");
    tx.append(&resent).await.expect("append");
    tx.commit().await.expect("commit");

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

/// A handler that records its own outcome in `prepare` (like the mailer): counts its prepares
/// and the `handle` calls the runtime must not make.
#[derive(Debug, Default)]
struct FinalInPrepare {
    prepared: std::sync::atomic::AtomicUsize,
    handled: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Handler for FinalInPrepare {
    async fn prepare(
        &self,
        _database: &sea_orm::DatabaseConnection,
        _event: &tenantry_events::Event,
    ) -> Result<tenantry_events::Prepared, tenantry_events::HandlerError> {
        self.prepared
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(None)
    }

    async fn handle(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        _event: &tenantry_events::Event,
    ) -> Result<(), tenantry_events::HandlerError> {
        self.handled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn prepare_is_final(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_final_prepare_is_acknowledged_without_a_processed_event_record() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let bus = EventBus::in_process(retry(3));
    let shutdown = Shutdown::new();
    let handler = Arc::new(FinalInPrepare::default());
    let consumer = bus.spawn_consumer(
        ConsumerSpec {
            group: "final".to_string(),
            bindings: vec!["invitation.created".to_string()],
            database: database.clone(),
            handler: handler.clone() as Arc<dyn Handler>,
            outbox: None,
        },
        shutdown.clone(),
    );
    let created = event("invitation.created", "ok");
    bus.publisher()
        .publish(std::slice::from_ref(&created))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            handler.prepared.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await
    );
    // No transaction of the runtime's: nothing recorded, `handle` never called; a copy of the
    // event prepares again (the handler's own row is the record).
    assert_eq!(count(&database, "processed_events").await, 0);
    bus.publisher()
        .publish(std::slice::from_ref(&created))
        .await
        .expect("publish");
    assert!(
        eventually(Duration::from_secs(5), || async {
            handler.prepared.load(std::sync::atomic::Ordering::SeqCst) == 2
        })
        .await
    );
    assert_eq!(handler.handled.load(std::sync::atomic::Ordering::SeqCst), 0);
    shutdown.trigger();
    consumer.await.expect("consumer stops");
    file.remove();
}
