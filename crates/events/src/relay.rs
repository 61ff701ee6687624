//! The relay: publishes a service's outbox rows and deletes them once confirmed.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::error::ErrorChain;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;
use tenantry_platform::telemetry;
use uuid::Uuid;

use crate::consumer::{BROKER_BACKOFF, Backoff};
use crate::entities::outbox;
use crate::{Event, Outbox, PublishError};

/// How long one batch may take to be confirmed. On PostgreSQL the claimed rows stay locked
/// meanwhile, so a broker that accepts the connection but never answers must not hold them for
/// ever.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes events to a transport.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Publishes every event of the batch; Ok only when all were confirmed by the transport.
    async fn publish(&self, batch: &[Event]) -> Result<(), PublishError>;
}

/// Why one relay round failed (logged; the relay backs off and tries again).
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("cannot read or delete outbox rows")]
    Store(#[from] StoreError),
    #[error("cannot publish the batch")]
    Publish(#[from] PublishError),
    #[error("outbox row {seq} has a malformed event id {event_id:?}")]
    Malformed { seq: i64, event_id: String },
}

impl From<DbErr> for RelayError {
    fn from(error: DbErr) -> Self {
        Self::Store(error.into())
    }
}

/// Publishes a service's outbox rows in order, in batches, deleting rows only after the
/// publisher confirmed them. On PostgreSQL rows are claimed with FOR UPDATE SKIP LOCKED so several
/// replicas relay safely. Woken after every commit that appended events, and otherwise polls every `idle_poll`
/// (default 500 ms; rows written by another replica). Retries with back-off while the broker is down.
pub struct Relay {
    service: &'static str,
    database: Database,
    outbox: Outbox,
    publisher: Arc<dyn Publisher>,
    batch_size: usize,
    idle_poll: Duration,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.service)
            .field("database", &self.database)
            .field("publisher", &self.publisher)
            .field("batch_size", &self.batch_size)
            .field("idle_poll", &self.idle_poll)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl Relay {
    /// A relay for `service`'s outbox in `database`, publishing through `publisher`.
    pub fn new(
        service: &'static str,
        database: Database,
        outbox: Outbox,
        publisher: Arc<dyn Publisher>,
    ) -> Self {
        Self {
            service,
            database,
            outbox,
            publisher,
            batch_size: 100,
            idle_poll: Duration::from_millis(500),
            metrics: None,
        }
    }

    /// Records `tenantry_events_published_total`, `tenantry_outbox_backlog` and
    /// `tenantry_relay_lag_seconds` (labelled with this relay's service) in `metrics`; the
    /// backlog and lag are sampled once per cycle (default: no metrics, no sampling).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// At most `n` events per publish (default 100; at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How often an idle relay looks for rows nobody woke it for (default 500 ms). Not in the
    /// original contract: added so deployments and tests can tune the fallback poll (rows
    /// committed by another replica, or before this relay started).
    pub fn idle_poll(mut self, every: Duration) -> Self {
        self.idle_poll = every.max(Duration::from_millis(1));
        self
    }

    /// Relays until `shutdown`; rows left over stay in the outbox for the next start.
    pub async fn run(self, shutdown: Shutdown) {
        let service = self.service;
        tracing::info!(service, "outbox relay started");
        let mut backoff = Backoff::new(BROKER_BACKOFF.0, BROKER_BACKOFF.1);
        let mut failing = false;
        let mut last_sample: Option<tokio::time::Instant> = None;
        while !shutdown.is_triggered() {
            // Until the service has migrated its database there is nothing to relay; waiting
            // quietly keeps start-up logs free of expected failures.
            if !self.database.is_ready() {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {},
                    () = shutdown.wait() => {},
                }
                continue;
            }
            let result = self.relay_batch().await;
            self.sample_backlog(&result, &mut last_sample).await;
            let wait = match result {
                Ok(published) => {
                    if failing {
                        tracing::info!(service, "outbox relay recovered");
                        failing = false;
                    }
                    backoff.reset();
                    if published >= self.batch_size {
                        continue; // more rows are probably waiting
                    }
                    None
                }
                Err(error) => {
                    failing = true;
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        service, error = %ErrorChain(&error), retry_in = ?delay,
                        "outbox relay failed; rows are kept"
                    );
                    Some(delay)
                }
            };
            match wait {
                // While failing, a commit does not cut the back-off short: a busy writer would
                // otherwise hammer a broker that is down.
                Some(delay) => tokio::select! {
                    () = tokio::time::sleep(delay) => {},
                    () = shutdown.wait() => {},
                },
                None => tokio::select! {
                    () = self.outbox.wait() => {},
                    () = tokio::time::sleep(self.idle_poll) => {},
                    () = shutdown.wait() => {},
                },
            }
        }
        tracing::info!(service, "outbox relay stopped");
    }

    /// Samples the rows waiting and the age of the oldest into the metrics, if any, after a
    /// cycle that ended in `result`. A cycle that drained the outbox (fewer rows than a batch)
    /// records an empty backlog without a query, so sampling never delays the next publish;
    /// otherwise (a full batch, or publishing failed) the outbox is counted, at most once a
    /// second. A failed count (the database is down) leaves the last sample in place.
    async fn sample_backlog(
        &self,
        result: &Result<usize, RelayError>,
        last_sample: &mut Option<tokio::time::Instant>,
    ) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if matches!(result, Ok(published) if *published < self.batch_size) {
            metrics.set_outbox(self.service, 0, Duration::ZERO);
            return;
        }
        let now = tokio::time::Instant::now();
        if last_sample.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            return;
        }
        *last_sample = Some(now);
        let Ok(connection) = self.database.connection() else {
            return;
        };
        let sample = async {
            let backlog = outbox::Entity::find().count(connection).await?;
            let oldest = outbox::Entity::find()
                .order_by_asc(outbox::Column::Seq)
                .one(connection)
                .await?;
            Ok::<_, DbErr>((backlog, oldest))
        };
        match sample.await {
            Ok((backlog, oldest)) => {
                let lag = oldest
                    .and_then(|row| (chrono::Utc::now() - row.create_time).to_std().ok())
                    .unwrap_or_default();
                metrics.set_outbox(self.service, backlog, lag);
            }
            Err(error) => {
                tracing::debug!(service = self.service, %error, "cannot sample the outbox backlog");
            }
        }
    }

    /// Publishes and deletes one batch; returns how many events it published.
    async fn relay_batch(&self) -> Result<usize, RelayError> {
        let connection = self.database.connection()?;
        match connection.get_database_backend() {
            DbBackend::Postgres => self.relay_batch_locked(connection).await,
            _ => self.relay_batch_single(connection).await,
        }
    }

    /// PostgreSQL: claim, publish and delete inside one transaction holding the row locks, so a
    /// replica running the same relay skips these rows instead of publishing them again; if this
    /// replica dies mid-batch, the locks go with its connection and another replica takes over.
    async fn relay_batch_locked(
        &self,
        connection: &DatabaseConnection,
    ) -> Result<usize, RelayError> {
        let txn = connection.begin().await?;
        let rows = outbox::Entity::find()
            .order_by_asc(outbox::Column::Seq)
            .limit(self.batch_size as u64)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        // On failure the transaction is dropped, which rolls back and releases the locks.
        let count = self.publish_and_delete(&txn, rows).await?;
        txn.commit().await?;
        self.outbox.published();
        Ok(count)
    }

    /// SQLite: one process owns the file, so there is no other relay to race with. The rows are
    /// read and deleted outside a transaction, because the embedded database has a single
    /// connection and holding it while the broker confirms would stall every request.
    async fn relay_batch_single(
        &self,
        connection: &DatabaseConnection,
    ) -> Result<usize, RelayError> {
        let rows = outbox::Entity::find()
            .order_by_asc(outbox::Column::Seq)
            .limit(self.batch_size as u64)
            .all(connection)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let count = self.publish_and_delete(connection, rows).await?;
        self.outbox.published();
        Ok(count)
    }

    async fn publish_and_delete(
        &self,
        connection: &impl ConnectionTrait,
        rows: Vec<outbox::Model>,
    ) -> Result<usize, RelayError> {
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        let mut events = rows
            .into_iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Held until the batch is confirmed, so each span covers its event's publication.
        let _spans = publish_spans(self.service, &mut events);
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publisher.publish(&events)).await {
            Ok(result) => result?,
            Err(_) => return Err(PublishError::Timeout(PUBLISH_TIMEOUT).into()),
        }
        // Deleted only now that every event of the batch is confirmed. Should this delete fail,
        // the batch is published again later: consumers are idempotent by event id.
        outbox::Entity::delete_many()
            .filter(outbox::Column::Seq.is_in(seqs))
            .exec(connection)
            .await?;
        tracing::debug!(
            service = self.service,
            count = events.len(),
            "relayed events"
        );
        if let Some(metrics) = &self.metrics {
            metrics.events_published(self.service, events.len() as u64);
        }
        Ok(events.len())
    }
}

/// One `outbox.publish` span per event that belongs to a trace (a child of the span that wrote
/// it), whose context replaces the event's: consumers then see the hop through the relay.
/// Events written outside any trace stay untraced.
fn publish_spans(service: &str, events: &mut [Event]) -> Vec<tracing::Span> {
    let mut spans = Vec::new();
    for event in events.iter_mut() {
        if event.traceparent.is_none() {
            continue;
        }
        let span = tracing::info_span!(
            parent: None,
            "outbox.publish",
            otel.name = %format_args!("{} publish", event.event_type),
            otel.kind = "producer",
            messaging.operation.type = "send",
            messaging.destination.name = %event.event_type,
            messaging.message.id = %event.id,
            service,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::continue_trace(
            &span,
            event.traceparent.as_deref(),
            event.tracestate.as_deref(),
        );
        let trace = telemetry::trace_headers(&span);
        if trace.traceparent.is_some() {
            event.traceparent = trace.traceparent;
            event.tracestate = trace.tracestate;
        }
        spans.push(span);
    }
    spans
}

fn event_from_row(row: outbox::Model) -> Result<Event, RelayError> {
    let id = Uuid::parse_str(&row.event_id).map_err(|_| RelayError::Malformed {
        seq: row.seq,
        event_id: row.event_id.clone(),
    })?;
    Ok(Event {
        id,
        event_type: row.event_type,
        source: row.source,
        time: row.time,
        payload: row.payload,
        traceparent: row.traceparent,
        tracestate: row.tracestate,
    })
}
