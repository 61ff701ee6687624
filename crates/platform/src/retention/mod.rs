//! Bounded tables: rows that only matter for a while (consumer idempotency records, request
//! ids, closed invitations) are deleted once they are older than their retention period.
//!
//! Each service runs one [`Pruner`] over its database (started by `ServiceContext::prune`),
//! with one [`PruneTarget`] per table: the events crate describes `processed_events`,
//! [`crate::idempotency::RequestIds::prune_target`] a service's request ids, a service its own
//! tables. A run deletes old rows of each table in small batches, one statement each, chosen by
//! primary key:
//!
//! ```sql
//! DELETE FROM t WHERE time < $cutoff AND pk IN
//!   (SELECT pk FROM t WHERE time < $cutoff LIMIT 1000 [FOR UPDATE SKIP LOCKED])
//! ```
//!
//! Every statement commits on its own (no transaction spans batches), the pruner pauses between
//! batches, and stops at shutdown. On PostgreSQL `SKIP LOCKED` passes over rows a request or
//! another replica's pruner holds, so pruning never waits on (or makes wait) the hot path; on
//! SQLite each statement holds the one connection for a single short batch. An index on the time
//! column (created by [`create_index_if_missing`]) keeps each batch an index range scan.

mod settings;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Condition, DeleteStatement, Expr, LockBehavior, LockType, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

pub use settings::{
    DEFAULT_INVITATION_RETENTION_DAYS, DEFAULT_PROCESSED_EVENTS_RETENTION_HOURS,
    DEFAULT_PRUNE_INTERVAL_SECONDS, DEFAULT_REQUEST_ID_RETENTION_HOURS,
    MAX_INVITATION_RETENTION_DAYS, MAX_PRUNE_INTERVAL_SECONDS, MAX_RETENTION_HOURS,
    MIN_RETENTION_HOURS, RetentionConfig, RetentionSettings, parse_invitation_days,
    parse_processed_events_hours, parse_prune_interval, parse_request_id_hours, set_settings,
    settings,
};

use crate::db::Database;
use crate::error::ErrorChain;
use crate::metrics::Metrics;
use crate::server::Shutdown;

/// Rows one statement deletes at most.
pub const DEFAULT_BATCH: u64 = 1000;
/// The pause between two batches, in which requests get the database (and, on SQLite, its
/// one connection).
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(100);

/// A table kept bounded: which rows are old (a time column older than the retention, and
/// optionally a fixed SQL condition) and the primary key they are deleted by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneTarget {
    table: &'static str,
    key: Vec<&'static str>,
    time_column: &'static str,
    only: Option<&'static str>,
    retention: Duration,
}

impl PruneTarget {
    /// Rows of `table` whose `time_column` is older than `retention`, deleted by their primary
    /// key `key` (one column or several). Index `time_column`, or each batch scans the table.
    pub fn new(
        table: &'static str,
        key: &[&'static str],
        time_column: &'static str,
        retention: Duration,
    ) -> Self {
        assert!(!key.is_empty(), "a prune target needs its primary key");
        Self {
            table,
            key: key.to_vec(),
            time_column,
            only: None,
            retention,
        }
    }

    /// Prunes only rows that also satisfy `condition`, a fixed SQL condition valid on SQLite
    /// and PostgreSQL (e.g. `state <> 'PENDING'`). It is written into each statement as is, so
    /// a partial index with the same `WHERE` serves it.
    pub fn only_where(mut self, condition: &'static str) -> Self {
        self.only = Some(condition);
        self
    }

    /// The table (also the `table` label of `tenantry_pruned_rows_total`).
    pub fn table(&self) -> &'static str {
        self.table
    }

    /// How long rows are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The oldest time a row is kept at `now`; `None` when the retention reaches before the
    /// first representable time (nothing is old enough then).
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        now.checked_sub_signed(TimeDelta::from_std(self.retention).ok()?)
    }

    /// The statement deleting at most `limit` rows older than `cutoff`.
    pub fn delete_batch(
        &self,
        backend: DbBackend,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> DeleteStatement {
        use sea_orm::sea_query::ExprTrait;
        let table = Alias::new(self.table);
        let old = || {
            let condition =
                Condition::all().add(Expr::col(Alias::new(self.time_column)).lt(cutoff));
            match self.only {
                Some(sql) => condition.add(Expr::cust(sql)),
                None => condition,
            }
        };
        let mut chosen = Query::select();
        chosen
            .columns(self.key.iter().map(|column| Alias::new(*column)))
            .from(table.clone())
            .cond_where(old())
            .limit(limit);
        if backend == DbBackend::Postgres {
            chosen.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let key = match self.key.as_slice() {
            [column] => Expr::col(Alias::new(*column)),
            columns => Expr::tuple(columns.iter().map(|column| Expr::col(Alias::new(*column)))),
        };
        // The outer condition repeats the inner one: a row is deleted only if it is old when
        // the statement deletes it.
        Query::delete()
            .from_table(table)
            .cond_where(old())
            .and_where(key.in_subquery(chosen))
            .to_owned()
    }
}

/// What one pass did to one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// The table.
    pub table: &'static str,
    /// Rows deleted.
    pub rows: u64,
    /// DELETE statements issued (each one batch, committed on its own).
    pub statements: u64,
}

/// A pass over one table that failed after deleting [`PruneError::pruned`].
#[derive(Debug, thiserror::Error)]
#[error("pruning {} failed after {} rows", pruned.table, pruned.rows)]
pub struct PruneError {
    /// What was deleted before the failure (committed).
    pub pruned: Pruned,
    /// Why it stopped.
    #[source]
    pub source: DbErr,
}

/// Deletes `target`'s rows older than its retention at `now`, `batch` rows per statement with
/// `pause` between statements, until a statement deletes fewer than `batch` rows or `shutdown`
/// triggers. Each statement commits on its own: call it outside any transaction.
pub async fn prune_table<C: ConnectionTrait>(
    connection: &C,
    target: &PruneTarget,
    now: DateTime<Utc>,
    batch: u64,
    pause: Duration,
    shutdown: &Shutdown,
) -> Result<Pruned, PruneError> {
    let batch = batch.max(1);
    let mut pruned = Pruned {
        table: target.table,
        rows: 0,
        statements: 0,
    };
    let Some(cutoff) = target.cutoff(now) else {
        return Ok(pruned);
    };
    let statement = target.delete_batch(connection.get_database_backend(), cutoff, batch);
    loop {
        let deleted = match connection.execute(&statement).await {
            Ok(result) => result.rows_affected(),
            Err(source) => return Err(PruneError { pruned, source }),
        };
        pruned.statements += 1;
        pruned.rows += deleted;
        if deleted < batch || shutdown.is_triggered() {
            return Ok(pruned);
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {},
            () = shutdown.wait() => return Ok(pruned),
        }
    }
}

/// One service's pruning task: every interval (jittered ±20 %, the first run after a random
/// part of it, so replicas started together do not prune together) it prunes each of its
/// targets in turn, skipping runs while the database is not ready, until shutdown.
#[derive(Debug)]
pub struct Pruner {
    service: &'static str,
    database: Database,
    targets: Vec<PruneTarget>,
    interval: Duration,
    batch: u64,
    pause: Duration,
    metrics: Option<Metrics>,
}

impl Pruner {
    /// A pruner of `targets` (pruned in this order) in `service`'s `database`, every
    /// [`RetentionSettings::interval`] of the process's [`settings`].
    pub fn new(service: &'static str, database: Database, targets: Vec<PruneTarget>) -> Self {
        Self {
            service,
            database,
            targets,
            interval: settings().interval,
            batch: DEFAULT_BATCH,
            pause: DEFAULT_PAUSE,
            metrics: None,
        }
    }

    /// Runs every `interval` instead (at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Deletes at most `rows` rows per statement (default [`DEFAULT_BATCH`]; at least 1).
    pub fn batch_size(mut self, rows: u64) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Pauses this long between two statements (default [`DEFAULT_PAUSE`]).
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Counts deleted rows in `tenantry_pruned_rows_total{tenantry_service,table}` of `metrics`.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Prunes until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        if self.targets.is_empty() {
            return;
        }
        if let Some(metrics) = &self.metrics {
            for target in &self.targets {
                metrics.rows_pruned(self.service, target.table, 0);
            }
        }
        let mut wait = scaled(self.interval, 0.1 + 0.9 * crate::time::random_fraction());
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {},
                () = shutdown.wait() => return,
            }
            if self.database.is_ready() {
                self.prune_once(crate::time::now(), &shutdown).await;
            }
            if shutdown.is_triggered() {
                return;
            }
            wait = scaled(self.interval, 0.8 + 0.4 * crate::time::random_fraction());
        }
    }

    /// One pass over every target at `now`; a failing table is logged and the next one is
    /// still pruned. Logs the counts at INFO when anything was deleted.
    pub async fn prune_once(
        &self,
        now: DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> Vec<Result<Pruned, PruneError>> {
        let Ok(connection) = self.database.connection() else {
            return Vec::new();
        };
        let mut results = Vec::with_capacity(self.targets.len());
        let (mut total, mut counts) = (0, Vec::with_capacity(self.targets.len()));
        for target in &self.targets {
            if shutdown.is_triggered() {
                break;
            }
            let result =
                prune_table(connection, target, now, self.batch, self.pause, shutdown).await;
            if let Err(error) = &result {
                tracing::warn!(
                    service = self.service, table = target.table,
                    error = %ErrorChain(error),
                    "pruning old rows failed; retrying at the next run"
                );
            }
            let pruned = done(&result);
            if let Some(metrics) = &self.metrics {
                metrics.rows_pruned(self.service, pruned.table, pruned.rows);
            }
            total += pruned.rows;
            counts.push(format!("{}={}", pruned.table, pruned.rows));
            results.push(result);
        }
        if total > 0 {
            tracing::info!(
                service = self.service, total, pruned = %counts.join(" "),
                "pruned rows past their retention"
            );
        } else {
            tracing::debug!(service = self.service, "nothing to prune");
        }
        results
    }
}

/// What a pass over one table deleted, whether it finished or failed.
fn done(result: &Result<Pruned, PruneError>) -> &Pruned {
    match result {
        Ok(pruned) => pruned,
        Err(error) => &error.pruned,
    }
}

/// `interval` × `factor`, or `interval` itself when that is not representable.
fn scaled(interval: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

/// Creates the index `name` on `table (columns)` (with `WHERE predicate` if given, a fixed SQL
/// condition valid on both backends) if it does not exist, with a plain `CREATE INDEX`.
///
/// Not `CONCURRENTLY`: migrations run under the migration lock (`db::with_migration_lock`),
/// and a concurrent build waits for every older snapshot in the database, including a second
/// replica's statement waiting for that lock, so two replicas starting at once would deadlock.
/// The tables indexed here are small next to the hot ones, and the build blocks writes to them
/// only while it runs.
pub async fn create_index_if_missing<C: ConnectionTrait>(
    connection: &C,
    name: &str,
    table: &str,
    columns: &[&str],
    predicate: Option<&str>,
) -> Result<(), DbErr> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let columns = columns
        .iter()
        .map(|column| quote(column))
        .collect::<Vec<_>>()
        .join(", ");
    let predicate = predicate
        .map(|predicate| format!(" WHERE {predicate}"))
        .unwrap_or_default();
    let (index, table) = (quote(name), quote(table));
    connection
        .execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {table} ({columns}){predicate}"
        ))
        .await?;
    Ok(())
}
