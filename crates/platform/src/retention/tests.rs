//! The pruner on SQLite files and on fresh PostgreSQL databases, over a request-id table.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::prelude::*;

use super::*;
use crate::idempotency::{RequestIds, RequestKey, index_request_ids, request_ids_table};
use crate::testing::{TempDatabase, TempPostgres};

const TABLE: &str = "test_request_ids";
const RECORDS: RequestIds = RequestIds::new(TABLE);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

struct TestMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateRequestIds)]
    }
}

#[derive(DeriveMigrationName)]
struct CreateRequestIds;

#[async_trait::async_trait]
impl MigrationTrait for CreateRequestIds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(request_ids_table(TABLE)).await?;
        index_request_ids(manager.get_connection(), TABLE).await
    }

    // As the services' retention migrations: outside a transaction.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

fn key(request_id: &str) -> RequestKey {
    RequestKey::new(
        request_id.into(),
        "users/op".into(),
        "CreateAccount",
        &["acme"],
    )
}

/// Inserts `count` records created at `time`, in statements of 500 rows.
async fn insert_records(
    connection: &DatabaseConnection,
    prefix: &str,
    count: usize,
    time: DateTime<Utc>,
) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut insert = Query::insert();
        insert.into_table(Alias::new(TABLE)).columns(
            [
                "request_id",
                "caller",
                "method",
                "fingerprint",
                "resource_key",
                "create_time",
            ]
            .map(Alias::new),
        );
        for index in chunk {
            insert.values_panic([
                format!("{prefix}-{index}").into(),
                "users/op".into(),
                "CreateAccount".into(),
                "fp".into(),
                format!("resource-{index}").into(),
                time.into(),
            ]);
        }
        connection.execute(&insert).await.expect("insert records");
    }
}

async fn count(connection: &DatabaseConnection) -> i64 {
    let row = connection
        .query_one_raw(Statement::from_string(
            connection.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {TABLE}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// 2,500 records older than the retention go in three statements of at most 1,000 rows; the
/// recent ones stay, and a create retried inside the window still gets its first result.
async fn prunes_in_batches_and_keeps_the_window(database: &Database) {
    let connection = database.connection().unwrap();
    let now = crate::time::now();
    insert_records(connection, "old", 2500, now - TimeDelta::days(8)).await;
    insert_records(connection, "recent", 2, now - TimeDelta::days(6)).await;
    // A create made just now, under the real clock.
    let retried = key("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
    RECORDS.record(connection, &retried, "acme").await.unwrap();
    let target = RECORDS.prune_target(WEEK);
    let shutdown = Shutdown::new();

    let pruned = prune_table(
        connection,
        &target,
        now,
        1000,
        Duration::from_millis(1),
        &shutdown,
    )
    .await
    .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            table: TABLE,
            rows: 2500,
            statements: 3
        }
    );
    assert_eq!(count(connection).await, 3);
    assert_eq!(
        RECORDS.replay(connection, &retried).await.unwrap(),
        Some("acme".to_string()),
        "a retry inside the window returns the first result"
    );
    assert!(
        RECORDS
            .find(connection, "recent-1")
            .await
            .unwrap()
            .is_some()
    );
    // Past the window the id is forgotten: a retry would create anew.
    assert!(RECORDS.find(connection, "old-0").await.unwrap().is_none());

    // Nothing more to do: one statement that deletes nothing.
    let again = prune_table(connection, &target, now, 1000, Duration::ZERO, &shutdown)
        .await
        .unwrap();
    assert_eq!((again.rows, again.statements), (0, 1));

    // A day later the two recent records are past the window too, the new one is not.
    let later = prune_table(
        connection,
        &target,
        now + TimeDelta::days(1) + TimeDelta::minutes(1),
        1000,
        Duration::ZERO,
        &shutdown,
    )
    .await
    .unwrap();
    assert_eq!(later.rows, 2);
    assert!(
        RECORDS
            .find(connection, &retried.request_id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn prunes_in_batches_on_sqlite() {
    let temp = TempDatabase::new::<TestMigrator>("retention").await;
    prunes_in_batches_and_keeps_the_window(&temp.database).await;
}

#[tokio::test]
async fn prunes_in_batches_on_postgres() {
    let Some(temp) = TempPostgres::create("retention").await else {
        return;
    };
    let database = temp.database();
    database
        .connect_and_migrate::<TestMigrator>()
        .await
        .unwrap();
    prunes_in_batches_and_keeps_the_window(&database).await;
    let connection = database.connection().unwrap();
    // The index was built and is valid; building it again is a no-op.
    let valid = connection
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'test_request_ids_by_create_time'",
        ))
        .await
        .unwrap()
        .expect("the index exists");
    assert!(valid.try_get::<bool>("", "valid").unwrap());
    index_request_ids(connection, TABLE).await.unwrap();
    // The batch's row choice is an index scan when the planner may not scan the table.
    let plan = explain_postgres(connection, &RECORDS.prune_target(WEEK)).await;
    assert!(plan.contains("test_request_ids_by_create_time"), "{plan}");
    connection.clone().close().await.unwrap();
}

async fn explain_postgres(connection: &DatabaseConnection, target: &PruneTarget) -> String {
    use sea_orm::TransactionTrait;
    let statement = target.delete_batch(DbBackend::Postgres, crate::time::now(), 1000);
    let (sql, values) = statement.build(sea_orm::sea_query::PostgresQueryBuilder);
    let txn = connection.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN {sql}"),
            values,
        ))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_index_serves_the_batches_on_sqlite() {
    let temp = TempDatabase::new::<TestMigrator>("retention-plan").await;
    let connection = temp.database.connection().unwrap();
    let statement =
        RECORDS
            .prune_target(WEEK)
            .delete_batch(DbBackend::Sqlite, crate::time::now(), 1000);
    let (sql, values) = statement.build(sea_orm::sea_query::SqliteQueryBuilder);
    let rows = connection
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {sql}"),
            values,
        ))
        .await
        .unwrap();
    let plan: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("", "detail").unwrap())
        .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("INDEX test_request_ids_by_create_time")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn stops_between_batches_at_shutdown() {
    let temp = TempDatabase::new::<TestMigrator>("retention-shutdown").await;
    let connection = temp.database.connection().unwrap();
    let now = crate::time::now();
    insert_records(connection, "old", 250, now - TimeDelta::days(30)).await;
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let pruned = prune_table(
        connection,
        &RECORDS.prune_target(WEEK),
        now,
        100,
        Duration::from_secs(60),
        &shutdown,
    )
    .await
    .unwrap();
    assert_eq!((pruned.rows, pruned.statements), (100, 1));
    assert_eq!(count(connection).await, 150);
}

#[tokio::test]
async fn a_failing_table_does_not_stop_the_others() {
    let temp = TempDatabase::new::<TestMigrator>("retention-failing").await;
    let connection = temp.database.connection().unwrap();
    let now = crate::time::now();
    insert_records(connection, "old", 10, now - TimeDelta::days(30)).await;
    let missing = PruneTarget::new("no_such_table", &["id"], "create_time", WEEK);
    let pruner = Pruner::new(
        "test",
        temp.database.clone(),
        vec![missing, RECORDS.prune_target(WEEK)],
    );
    let results = pruner.prune_once(now, &Shutdown::new()).await;
    assert!(results[0].is_err());
    assert_eq!(results[1].as_ref().unwrap().rows, 10);
}

#[tokio::test]
async fn the_pruner_runs_every_interval_until_shutdown() {
    let temp = TempDatabase::new::<TestMigrator>("retention-run").await;
    let connection = temp.database.connection().unwrap().clone();
    insert_records(
        &connection,
        "old",
        30,
        crate::time::now() - TimeDelta::days(30),
    )
    .await;
    let metrics = Metrics::new();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(
        Pruner::new(
            "test",
            temp.database.clone(),
            vec![RECORDS.prune_target(WEEK)],
        )
        .interval(Duration::from_millis(20))
        .batch_size(7)
        .pause(Duration::from_millis(1))
        .metrics(metrics.clone())
        .run(shutdown.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(&connection).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the pruner stops at shutdown")
        .unwrap();
    let text = metrics.render();
    assert!(
        text.contains(
            "tenantry_pruned_rows_total{table=\"test_request_ids\",tenantry_service=\"test\"} 30"
        ),
        "{text}"
    );
}

#[test]
fn statements_choose_old_rows_by_primary_key() {
    let cutoff = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let composite = PruneTarget::new(
        "processed_events",
        &["consumer_group", "event_id"],
        "handled_time",
        WEEK,
    );
    let postgres = composite
        .delete_batch(DbBackend::Postgres, cutoff, 1000)
        .to_string(sea_orm::sea_query::PostgresQueryBuilder);
    assert_eq!(
        postgres,
        "DELETE FROM \"processed_events\" WHERE \"handled_time\" < '2027-01-15 08:00:00.000000 +00:00' \
         AND (\"consumer_group\", \"event_id\") IN (SELECT \"consumer_group\", \"event_id\" \
         FROM \"processed_events\" WHERE \"handled_time\" < '2027-01-15 08:00:00.000000 +00:00' \
         LIMIT 1000 FOR UPDATE SKIP LOCKED)"
    );
    let closed = PruneTarget::new("invitations", &["invitation_id"], "update_time", WEEK)
        .only_where("state <> 'PENDING'");
    let sqlite = closed
        .delete_batch(DbBackend::Sqlite, cutoff, 10)
        .to_string(sea_orm::sea_query::SqliteQueryBuilder);
    assert!(!sqlite.contains("FOR UPDATE"), "{sqlite}");
    assert!(
        sqlite.contains("\"invitation_id\" IN (SELECT \"invitation_id\" FROM \"invitations\" WHERE \"update_time\" < ")
            && sqlite.matches("state <> 'PENDING'").count() == 2
            && sqlite.ends_with("LIMIT 10)"),
        "{sqlite}"
    );
    assert_eq!(closed.cutoff(cutoff), Some(cutoff - TimeDelta::days(7)));
    let forever = PruneTarget::new("t", &["id"], "time", Duration::MAX);
    assert_eq!(forever.cutoff(cutoff), None);
}
