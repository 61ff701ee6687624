//! What the pruner deletes of this crate's tables.
//!
//! - `processed_events`: a consumer group's record of an event id it handled is kept for
//!   `TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS` (default 7 days) after it was handled. A
//!   redelivery within that window is acknowledged as a duplicate; redeliveries come within the
//!   retry policy's delays (minutes) or when a relay that could not delete a confirmed batch
//!   reaches its database again, both far inside the window. Each service that consumes prunes
//!   its own table (see [`processed_events_target`]).
//! - `outbox`: nothing to prune. The relay deletes each row as soon as the broker confirmed it
//!   ([`crate::Relay`]); rows left are the ones still waiting to be published, which must stay.

use std::time::Duration;

use tenantry_platform::retention::PruneTarget;

/// The index of `processed_events.handled_time` (created by
/// [`crate::processed_events_retention_migration`]).
pub const PROCESSED_EVENTS_TIME_INDEX: &str = "processed_events_by_handled_time";

/// The `processed_events` records handled more than `retention` ago, for the pruner of a
/// service that consumes (its database has the table and
/// [`crate::processed_events_retention_migration`]'s index).
pub fn processed_events_target(retention: Duration) -> PruneTarget {
    PruneTarget::new(
        "processed_events",
        &["consumer_group", "event_id"],
        "handled_time",
        retention,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::{TimeDelta, Utc};
    use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, Set, Statement};
    use sea_orm_migration::prelude::*;
    use tenantry_platform::db::Database;
    use tenantry_platform::retention::{Pruned, prune_table};
    use tenantry_platform::server::Shutdown;
    use tenantry_platform::testing::{TempDatabase, TempPostgres};
    use uuid::Uuid;

    use super::*;
    use crate::consumer::{Outcome, process};
    use crate::entities::processed_events;
    use crate::{Event, Handler, HandlerError};

    const GROUP: &str = "tenantry.test.retention";
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    struct Migrator;

    #[async_trait::async_trait]
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![
                crate::processed_events_migration(),
                crate::processed_events_retention_migration(),
            ]
        }
    }

    /// Counts the events it handles.
    #[derive(Default)]
    struct Counting(Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl Handler for Counting {
        async fn handle(
            &self,
            _txn: &sea_orm::DatabaseTransaction,
            _event: &Event,
        ) -> Result<(), HandlerError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn event(id: Uuid) -> Event {
        Event {
            id,
            event_type: "test.happened".into(),
            source: "/tenantry/test".into(),
            time: Utc::now(),
            payload: Vec::new(),
            traceparent: None,
            tracestate: None,
        }
    }

    /// 2,500 records handled eight days ago go in three batches; an event handled just now is
    /// still a duplicate for the consumer runtime afterwards, while a pruned one would be
    /// handled again.
    async fn prunes_old_records_and_still_recognises_replays(database: &Database) {
        let connection = database.connection().unwrap();
        let old_time = Utc::now() - TimeDelta::days(8);
        let old_ids: Vec<Uuid> = (0..2500).map(|_| Uuid::now_v7()).collect();
        for chunk in old_ids.chunks(500) {
            processed_events::Entity::insert_many(chunk.iter().map(|id| {
                processed_events::ActiveModel {
                    consumer_group: Set(GROUP.into()),
                    event_id: Set(id.to_string()),
                    handled_time: Set(old_time),
                }
            }))
            .exec_without_returning(connection)
            .await
            .unwrap();
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = Counting(calls.clone());
        let shutdown = Shutdown::new();
        let recent = event(Uuid::now_v7());
        let handle = |event: Event| {
            let (handler, shutdown) = (&handler, &shutdown);
            async move { process(GROUP, database, handler, None, &event, 1, shutdown).await }
        };
        assert!(matches!(handle(recent.clone()).await, Outcome::Handled));

        let pruned = prune_table(
            connection,
            &processed_events_target(WEEK),
            tenantry_platform::time::now(),
            1000,
            Duration::from_millis(1),
            &shutdown,
        )
        .await
        .unwrap();
        assert_eq!(
            pruned,
            Pruned {
                table: "processed_events",
                rows: 2500,
                statements: 3
            }
        );
        assert_eq!(
            processed_events::Entity::find()
                .count(connection)
                .await
                .unwrap(),
            1
        );

        // A redelivery of the recent event inside the window: acknowledged, not handled again.
        assert!(matches!(handle(recent.clone()).await, Outcome::Duplicate));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A pruned id is forgotten: were it delivered again, it would be handled again.
        assert!(matches!(handle(event(old_ids[0])).await, Outcome::Handled));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn prunes_processed_events_on_sqlite() {
        let temp = TempDatabase::new::<Migrator>("processed-events-retention").await;
        prunes_old_records_and_still_recognises_replays(&temp.database).await;
        // The batches find old records through the index.
        let connection = temp.database.connection().unwrap();
        let (sql, values) = processed_events_target(WEEK)
            .delete_batch(DbBackend::Sqlite, Utc::now(), 1000)
            .build(sea_orm::sea_query::SqliteQueryBuilder);
        let plan = connection
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {sql}"),
                values,
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect::<Vec<_>>();
        assert!(
            plan.iter()
                .any(|step| step.contains(PROCESSED_EVENTS_TIME_INDEX)),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn prunes_processed_events_on_postgres() {
        let Some(temp) = TempPostgres::create("processed_events_retention").await else {
            return;
        };
        let database = temp.database();
        database.connect_and_migrate::<Migrator>().await.unwrap();
        prunes_old_records_and_still_recognises_replays(&database).await;
        let _ = database.connection().unwrap().clone().close().await;
    }
}
