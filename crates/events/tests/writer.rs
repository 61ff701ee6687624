//! The one transactional writer and the consumer runtime's after-commit hook, on the in-process
//! bus with SQLite: events leave only with a commit, the relay is woken by the commit itself
//! (the relay here polls only once a minute), a handler's after-commit work sees committed
//! state and never follows a rollback, and an unknown event type is counted, not lost silently.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use tenantry_events::{
    ConsumerSpec, Event, EventBus, Handler, HandlerError, Outbox, Relay, RetryPolicy,
};
use tenantry_platform::db::Database;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(50),
    }
}

/// A relay that would take a minute to notice rows on its own: only a wake-up makes it quick.
fn slow_relay(database: &Database, outbox: &Outbox, bus: &EventBus, shutdown: &Shutdown) {
    let relay = Relay::new("test", database.clone(), outbox.clone(), bus.publisher())
        .idle_poll(Duration::from_secs(60));
    tokio::spawn(relay.run(shutdown.clone()));
}

/// An outbox on `database` relayed by a slow relay (see [`slow_relay`]) to an in-process bus,
/// and the scripted consumer `seen` of every `test.*` event, until `shutdown`.
fn watched_outbox(
    database: &Database,
    shutdown: &Shutdown,
) -> (Outbox, Arc<Scripted>, tokio::task::JoinHandle<()>) {
    let bus = EventBus::in_process(retry());
    let seen = Scripted::new();
    let consumer = bus.spawn_consumer(
        ConsumerSpec {
            group: "seen".into(),
            bindings: vec!["test.#".into()],
            database: database.clone(),
            handler: seen.clone() as Arc<dyn Handler>,
            outbox: None,
        },
        shutdown.clone(),
    );
    let outbox = Outbox::new();
    slow_relay(database, &outbox, &bus, shutdown);
    (outbox, seen, consumer)
}

async fn insert_handled<C: ConnectionTrait>(connection: &C, event: &Event) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(Alias::new("handled"))
        .columns([Alias::new("event_id")])
        .values_panic([event.id.to_string().into()])
        .to_owned();
    connection.execute(&insert).await.map(|_| ())
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("the work refused")]
    Refused,
}

#[tokio::test]
async fn write_commits_state_and_events_together_or_neither() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let shutdown = Shutdown::new();
    let (outbox, seen, consumer) = watched_outbox(&database, &shutdown);
    let connection = database.connection().expect("connected");

    let refused = event("test.refused", "ok");
    let result: Result<(), WriteError> = outbox
        .write(connection, |tx| {
            let refused = refused.clone();
            Box::pin(async move {
                tx.append(&refused).await?;
                Err(WriteError::Refused)
            })
        })
        .await;
    assert!(matches!(result, Err(WriteError::Refused)));
    assert_eq!(
        count(&database, "outbox").await,
        0,
        "rolled back, event included"
    );

    let written = event("test.written", "ok");
    let value = outbox
        .write(connection, |tx| {
            let written = written.clone();
            Box::pin(async move {
                tx.append(&written).await?;
                Ok::<_, WriteError>(7)
            })
        })
        .await
        .expect("written");
    assert_eq!(value, 7);
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.calls(written.id) == 1
        })
        .await,
        "the commit itself woke the relay (it polls once a minute)"
    );
    assert_eq!(seen.calls(refused.id), 0);

    // Dropped without commit: rolled back.
    let dropped = event("test.dropped", "ok");
    {
        let tx = outbox.begin(connection).await.expect("begin");
        tx.append(&dropped).await.expect("append");
    }
    assert_eq!(count(&database, "outbox").await, 0);

    shutdown.trigger();
    consumer.await.expect("consumer ends");
    file.remove();
}

/// Appends a follow-up event in the runtime's transaction (like a consumer that publishes), and
/// checks in `after_commit` that its work is visible from another connection.
struct Publishing {
    outbox: Outbox,
    database: Database,
    fail_first: AtomicU32,
    after_commit: Mutex<Vec<(String, bool)>>,
}

#[async_trait::async_trait]
impl Handler for Publishing {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != "test.cause" {
            return Err(HandlerError::unknown_type(event));
        }
        insert_handled(txn, event)
            .await
            .map_err(|error| HandlerError::Transient(error.to_string()))?;
        self.outbox
            .append(txn, &common::event("test.effect", "ok"))
            .await
            .map_err(|error| HandlerError::Transient(error.to_string()))?;
        if self.fail_first.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(HandlerError::Transient("first attempt fails".into()));
        }
        Ok(())
    }

    async fn after_commit(&self, event: &Event) {
        let visible = count(&self.database, "handled").await > 0;
        self.after_commit
            .lock()
            .expect("lock")
            .push((event.id.to_string(), visible));
    }
}

#[tokio::test]
async fn after_commit_follows_the_runtime_commit_only_and_the_outbox_is_woken_by_it() {
    let file = SqliteFile::new();
    let database = database(&file.url).await;
    let effects_file = SqliteFile::new();
    let effects_database = common::database(&effects_file.url).await;
    let metrics = Metrics::new();
    let bus = EventBus::in_process(retry()).with_metrics(metrics.clone());
    let shutdown = Shutdown::new();
    let outbox = Outbox::new();
    slow_relay(&database, &outbox, &bus, &shutdown);
    let handler = Arc::new(Publishing {
        outbox: outbox.clone(),
        database: database.clone(),
        fail_first: AtomicU32::new(1),
        after_commit: Mutex::new(Vec::new()),
    });
    let effects = Scripted::new();
    let consumers = [
        bus.spawn_consumer(
            ConsumerSpec {
                group: "publishing".into(),
                bindings: vec!["test.cause".into(), "test.stray".into()],
                database: database.clone(),
                handler: handler.clone() as Arc<dyn Handler>,
                outbox: Some(outbox.clone()),
            },
            shutdown.clone(),
        ),
        bus.spawn_consumer(
            ConsumerSpec {
                group: "effects".into(),
                bindings: vec!["test.effect".into()],
                database: effects_database.clone(),
                handler: effects.clone() as Arc<dyn Handler>,
                outbox: None,
            },
            shutdown.clone(),
        ),
    ];

    // The cause reaches the consumer through the outbox, like any event.
    let cause = event("test.cause", "ok");
    let stray = event("test.stray", "ok");
    let connection = database.connection().expect("connected");
    let tx = outbox.begin(connection).await.expect("begin");
    tx.append(&cause).await.expect("append");
    tx.append(&stray).await.expect("append");
    tx.commit().await.expect("commit");

    assert!(
        eventually(Duration::from_secs(5), || async {
            count(&effects_database, "handled").await == 1
        })
        .await,
        "the follow-up event was relayed at once after the consumer's commit"
    );
    let calls = handler.after_commit.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [(cause.id.to_string(), true)],
        "once, after the successful attempt only, with the work committed"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            metrics
                .render()
                .contains(r#"tenantry_consumer_deliveries_total{group="publishing",outcome="unknown_type"} 1"#)
        })
        .await,
        "{}",
        metrics.render()
    );

    shutdown.trigger();
    for consumer in consumers {
        consumer.await.expect("consumer ends");
    }
    file.remove();
    effects_file.remove();
}

/// `Outbox::write_one` on PostgreSQL: a change and its event in one statement — both or
/// neither, the event only when the change returned a row — and the relay woken at once.
#[tokio::test]
async fn write_one_writes_a_change_and_its_event_in_one_statement_on_postgres() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let database = database(&pg.url).await;
    let shutdown = Shutdown::new();
    let (outbox, seen, consumer) = watched_outbox(&database, &shutdown);
    let connection = database.connection().expect("connected");
    let insert = |id: &str, condition: &str| {
        sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            format!(
                "INSERT INTO handled (event_id) SELECT $1 WHERE {condition} RETURNING event_id"
            ),
            [id.into()],
        )
    };

    let written = event("test.written", "ok");
    assert!(
        outbox
            .write_one(connection, insert("row-1", "TRUE"), &written)
            .await
            .expect("written")
    );
    assert!(has_row(&database, "row-1").await);
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.calls(written.id) == 1
        })
        .await,
        "the statement itself woke the relay (it polls once a minute)"
    );

    // The change wrote nothing: no event either.
    let skipped = event("test.skipped", "ok");
    assert!(
        !outbox
            .write_one(connection, insert("row-2", "FALSE"), &skipped)
            .await
            .expect("ran")
    );
    // The change failed (the key is taken): neither is written.
    let failed = event("test.failed", "ok");
    outbox
        .write_one(connection, insert("row-1", "TRUE"), &failed)
        .await
        .expect_err("duplicate key");
    assert!(!has_row(&database, "row-2").await);
    assert_eq!(count(&database, "outbox").await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((seen.calls(skipped.id), seen.calls(failed.id)), (0, 0));

    // Refused on SQLite, which has no data-modifying WITH.
    let file = SqliteFile::new();
    let sqlite = common::database(&file.url).await;
    let refused = outbox
        .write_one(
            sqlite.connection().expect("connected"),
            insert("row-3", "TRUE"),
            &event("test.refused", "ok"),
        )
        .await;
    assert!(
        matches!(&refused, Err(error) if error.to_string().contains("PostgreSQL")),
        "{refused:?}"
    );

    shutdown.trigger();
    consumer.await.expect("consumer ends");
    file.remove();
    pg.drop_database(&[&database, &sqlite]).await;
}

/// Whether `handled` holds `event_id`.
async fn has_row(database: &Database, event_id: &str) -> bool {
    use sea_orm::sea_query::ExprTrait;
    let connection = database.connection().expect("connected");
    let query = Query::select()
        .expr(sea_orm::sea_query::Expr::cust("1"))
        .from(Alias::new("handled"))
        .and_where(sea_orm::sea_query::Expr::col(Alias::new("event_id")).eq(event_id))
        .to_owned();
    connection.query_one(&query).await.expect("query").is_some()
}
