//! The transport-agnostic consumer runtime: one event is handled in a transaction on the
//! consumer's database together with its idempotency record.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{EntityTrait, Set, TransactionTrait, TryInsertResult};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::error::ErrorChain;
use tenantry_platform::metrics::{DeliveryOutcome, Metrics};
use tenantry_platform::server::Shutdown;
use tenantry_platform::telemetry;
use tracing::Instrument;

use crate::entities::processed_events;

pub(crate) mod batch;
use crate::{Event, HandlerError, Outbox};

/// What [`Handler::prepare`] hands to [`Handler::handle_prepared`]: anything, or nothing.
pub type Prepared = Option<Box<dyn std::any::Any + Send + Sync>>;

/// What a consumer group does with one event. Runs inside a transaction on the consumer's own
/// database that the runtime commits together with the processed-event record; the delivery is
/// acknowledged only after that commit. An event id already recorded for the group is acked
/// without calling the handler (idempotency).
///
/// A handler whose work includes an exchange with another system that must not hold a
/// database transaction open (an SMTP server) does that part in [`Handler::prepare`], before
/// the transaction, and must then guard it itself (e.g. with a lease on its row): the
/// processed-event record only guards what happens inside the transaction.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs before the transaction, outside it, once per delivery; what it returns goes to
    /// [`Handler::handle_prepared`]. An error ends the delivery as a failed attempt (nothing
    /// was committed by the runtime). Default: nothing to prepare.
    async fn prepare(
        &self,
        _database: &sea_orm::DatabaseConnection,
        _event: &Event,
    ) -> Result<Prepared, HandlerError> {
        Ok(None)
    }

    /// Like [`Handler::handle`], with what [`Handler::prepare`] returned (may run more than
    /// once for one `prepared` if the transaction has to be retried). Default: `handle`.
    async fn handle_prepared(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &Event,
        _prepared: &Prepared,
    ) -> Result<(), HandlerError> {
        self.handle(txn, event).await
    }

    /// Handles `event` using `txn`; the runtime commits on Ok and rolls back on Err. Events
    /// it appends to the service's outbox (in `txn`) are relayed once the runtime committed.
    /// A type it does not handle is [`HandlerError::unknown_type`], never a silent `Ok`.
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError>;

    /// Called once the runtime committed the work of [`Handler::handle`] for `event` (never
    /// before, never after a rollback): wake whatever waits for that work. Default: nothing.
    async fn after_commit(&self, _event: &Event) {}

    /// Whether [`Handler::prepare`] records the event's outcome durably itself (the e-mail's
    /// SENT state, which a later copy of the event finds), so that the runtime's own
    /// transaction would only add a processed-event record nobody needs: after a successful
    /// `prepare` the delivery is then acknowledged at once, without that transaction, and
    /// [`Handler::handle`] is not called. Such a handler is never batched. Default: false.
    fn prepare_is_final(&self) -> bool {
        false
    }

    /// Whether the runtime may handle several events of this group in one transaction (each
    /// in a savepoint of its own; see `consumer/batch.rs`). A handler that prepares work
    /// outside the transaction answers false. Default: true.
    fn handles_batches(&self) -> bool {
        true
    }

    /// Handles the events of a batch (duplicates left out, in delivery order) in `txn`, all
    /// or nothing: the runtime commits on Ok, with the processed-event records, and rolls back
    /// on Err, then tries the batch again without the event at [`BatchFailure::position`]
    /// (handled on its own, with the usual retries). Ok holds one [`Handled`] per event.
    ///
    /// Default: [`Handler::handle`] for each event in turn, each in its own `event.process`
    /// span. A handler overrides it to do a batch's work in a few statements whatever its
    /// size, or to take the row locks its events need in one consistent order (so two batches
    /// never wait on each other in a cycle).
    async fn handle_batch(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        batch: &Batch<'_>,
    ) -> Result<Vec<Handled>, BatchFailure> {
        let mut handled = Vec::with_capacity(batch.events().len());
        for (position, event) in batch.events().iter().enumerate() {
            match self
                .handle_prepared(txn, event, &None)
                .instrument(batch.span(event))
                .await
            {
                Ok(()) => handled.push(Handled::Done),
                Err(HandlerError::UnknownType(_)) => handled.push(Handled::UnknownType),
                Err(error) => return Err(BatchFailure { position, error }),
            }
        }
        Ok(handled)
    }

    /// Called after a failed attempt was rolled back, outside any transaction: lets a handler record
    /// the failure (e.g. an e-mail's delivery status). `dead_lettered` = no more retries. Default: nothing.
    async fn failed(
        &self,
        _database: &sea_orm::DatabaseConnection,
        _event: &Event,
        _attempt: u32,
        _error: &HandlerError,
        _dead_lettered: bool,
    ) {
    }
}

/// The events a consumer group handles in one transaction (see [`Handler::handle_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    group: &'a str,
    events: &'a [&'a Event],
}

impl<'a> Batch<'a> {
    pub(crate) fn new(group: &'a str, events: &'a [&'a Event]) -> Self {
        Self { group, events }
    }

    /// The events, in delivery order, each once.
    pub fn events(&self) -> &'a [&'a Event] {
        self.events
    }

    /// The consumer group.
    pub fn group(&self) -> &'a str {
        self.group
    }

    /// The `event.process` span of `event` (continuing the trace it was published in), as
    /// one event handled on its own gets.
    pub fn span(&self, event: &Event) -> tracing::Span {
        process_span(self.group, event)
    }
}

/// What handling one event of a batch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Its work was done in the batch's transaction.
    Done,
    /// The handler does not handle its type; recorded as handled so it is not retried.
    UnknownType,
}

/// Why a batch's transaction must be rolled back: the event at `position` (an index into
/// [`Batch::events`]) failed with `error`.
#[derive(Debug)]
pub struct BatchFailure {
    /// The failed event's index in the batch.
    pub position: usize,
    /// Why.
    pub error: HandlerError,
}

/// A consumer group: its durable queue, the routing keys bound to it, and its handler.
pub struct ConsumerSpec {
    /// The group name, e.g. `tenantry.invitation.mailer` (= durable queue name).
    pub group: String,
    /// Routing keys (= event types), e.g. `["invitation.created", "invitation.resent"]`.
    pub bindings: Vec<String>,
    /// Where `processed_events` lives (the consumer service's database).
    pub database: Database,
    /// What the group does with each event.
    pub handler: Arc<dyn Handler>,
    /// The service's outbox, woken after each commit so the events the handler appended are
    /// relayed at once; `None` for a handler that appends none.
    pub outbox: Option<Outbox>,
}

impl ConsumerSpec {
    /// The group `group` on `database`, bound to the routing keys of `types`, handled by
    /// `handler`. Its outbox is filled in by [`crate::ServiceContext::consume`].
    pub fn new(
        group: &str,
        types: &[tenantry_proto::EventType],
        database: Database,
        handler: impl Handler,
    ) -> Self {
        Self {
            group: group.to_string(),
            bindings: routing_keys(types),
            database,
            handler: Arc::new(handler),
            outbox: None,
        }
    }
}

/// The routing keys (AMQP bindings) of `types`.
pub fn routing_keys(types: &[tenantry_proto::EventType]) -> Vec<String> {
    types
        .iter()
        .map(|event_type| event_type.as_str().to_string())
        .collect()
}

impl std::fmt::Debug for ConsumerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSpec")
            .field("group", &self.group)
            .field("bindings", &self.bindings)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// How often and how fast failed events are retried before they become dead letters.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Deliveries before an event is dead-lettered (default 5).
    pub max_attempts: u32,
    /// The delay after the first failure; doubled after each further one (default 500 ms).
    pub base_delay: Duration,
    /// The longest delay (default 30 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th delivery failed: `base_delay * 2^(attempt-1)`, at most
    /// `max_delay`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// The delays a retry may wait, each with a delay queue of its own on RabbitMQ:
    /// `base_delay` doubled until `max_delay`, which ends the list (whole milliseconds, at
    /// least 1). A delay queue holds one delay only, so what expires first is always at its
    /// head; with one queue for all delays a long wait at the head held shorter ones back.
    pub fn delay_levels(&self) -> Vec<Duration> {
        let millis = |delay: Duration| (delay.as_millis().max(1)).min(u128::from(u32::MAX)) as u64;
        let max = millis(self.max_delay.max(self.base_delay));
        let mut levels = Vec::new();
        let mut level = millis(self.base_delay);
        while level < max {
            levels.push(Duration::from_millis(level));
            level = level.saturating_mul(2);
        }
        levels.push(Duration::from_millis(max));
        levels
    }

    /// The delay level a retry after `delay` waits: the shortest not shorter than `delay` (the
    /// longest if all are), so a retry never comes back early.
    pub(crate) fn level_for(&self, delay: Duration) -> Duration {
        let levels = self.delay_levels();
        let longest = *levels.last().unwrap_or(&self.max_delay);
        levels
            .into_iter()
            .find(|level| *level >= delay)
            .unwrap_or(longest)
    }

    /// What to do after delivery `attempt` (1-based) of an event ended in `error`.
    pub(crate) fn after_failure(&self, attempt: u32, error: &HandlerError) -> Disposition {
        match error {
            // Waiting for someone else does not use an attempt.
            HandlerError::Busy { retry_after, .. } => Disposition::Retry {
                next_attempt: attempt,
                delay: (*retry_after).clamp(self.base_delay, self.max_delay.max(self.base_delay)),
            },
            HandlerError::Permanent(_) | HandlerError::UnknownType(_) => Disposition::Dead,
            HandlerError::Transient(_) if attempt >= self.max_attempts.max(1) => Disposition::Dead,
            HandlerError::Transient(_) => Disposition::Retry {
                next_attempt: attempt.saturating_add(1),
                delay: self.delay(attempt),
            },
        }
    }
}

/// What a transport does with a delivery whose handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Deliver again after `delay`, as attempt `next_attempt`.
    Retry { next_attempt: u32, delay: Duration },
    /// Give up: into the group's dead letters.
    Dead,
}

/// How handling one delivery ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler's work and the processed-event record were committed.
    Handled,
    /// The group had already handled this event id; the handler was not called.
    Duplicate,
    /// The handler does not handle this event type; recorded as handled so it is not retried.
    UnknownType,
    /// Nothing was committed.
    Failed(HandlerError),
    /// Shutdown came while the consumer waited for its database: nothing was committed and no
    /// attempt was used; the transport leaves the delivery to be delivered again.
    Interrupted,
}

/// How long a consumer waits before trying its unreachable database again: the first wait,
/// doubled after each further failure, up to the longest.
const DATABASE_WAIT: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// The name of the header carrying the delivery attempt (1 when absent).
pub(crate) const ATTEMPT_HEADER: &str = "x-tenantry-attempt";

/// Handles `event` for `group`: in one transaction on `database`, records the event id (the
/// insert doubles as the idempotency check: a concurrent or earlier record makes it a no-op) and
/// runs the handler; commits only if both succeeded. Logs the outcome of this `attempt`.
///
/// While `database` cannot be reached (not up yet, restarting, failing over) the event waits
/// for it, with back-off, until `shutdown`: the event is not at fault, and counting such
/// failures as attempts would retry it into the dead letters within seconds of an outage — lost
/// to the service until an operator replays it.
pub(crate) async fn process(
    group: &str,
    database: &Database,
    handler: &dyn Handler,
    outbox: Option<&Outbox>,
    event: &Event,
    attempt: u32,
    shutdown: &Shutdown,
) -> Outcome {
    let span = process_span(group, event);
    async {
        let prepared = match prepare(database, handler, event, shutdown).await {
            Ok(_) if handler.prepare_is_final() => {
                log_outcome(group, event, attempt, &Outcome::Handled);
                return Outcome::Handled;
            }
            Ok(prepared) => prepared,
            Err(outcome) => {
                log_outcome(group, event, attempt, &outcome);
                return outcome;
            }
        };
        let mut waiting: Option<Backoff> = None;
        let outcome = loop {
            match try_process(group, database, handler, outbox, event, &prepared).await {
                Ok(outcome) => break outcome,
                Err(error @ (StoreError::NotReady | StoreError::Unavailable(_))) => {
                    let backoff = waiting.get_or_insert_with(|| {
                        tracing::warn!(
                            group, event_id = %event.id, error = %ErrorChain(&error),
                            "the consumer's database is unreachable; the event waits for it"
                        );
                        Backoff::new(DATABASE_WAIT.0, DATABASE_WAIT.1)
                    });
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {},
                        () = shutdown.wait() => break Outcome::Interrupted,
                    }
                }
                // Any other database failure: the work may succeed on a later attempt.
                Err(error) => {
                    break Outcome::Failed(HandlerError::Transient(ErrorChain(&error).to_string()));
                }
            }
        };
        log_outcome(group, event, attempt, &outcome);
        outcome
    }
    .instrument(span)
    .await
}

/// One try in one transaction. Err: the runtime's own statements failed (begin, the
/// processed-event record, rollback, commit); the handler's failures are `Outcome::Failed`.
async fn try_process(
    group: &str,
    database: &Database,
    handler: &dyn Handler,
    outbox: Option<&Outbox>,
    event: &Event,
    prepared: &Prepared,
) -> Result<Outcome, StoreError> {
    let connection = database.connection()?;
    let txn = connection.begin().await?;
    // Inserting first (rather than SELECT then INSERT) means a replica handling a redelivered
    // copy of the same event at the same time waits on the row lock (PostgreSQL) or the write
    // lock (SQLite) and then sees the conflict, so the handler runs once even under races.
    let record = processed_events::ActiveModel {
        consumer_group: Set(group.to_string()),
        event_id: Set(event.id.to_string()),
        handled_time: Set(Utc::now()),
    };
    let inserted = processed_events::Entity::insert(record)
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
    if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        txn.rollback().await?;
        return Ok(Outcome::Duplicate);
    }
    let appended_before = outbox.map(Outbox::appended);
    match handler.handle_prepared(&txn, event, prepared).await {
        Ok(()) => {}
        // Committed with the processed-event record: a redelivery is then a duplicate, not
        // another warning.
        Err(HandlerError::UnknownType(_)) => {
            txn.commit().await?;
            return Ok(Outcome::UnknownType);
        }
        Err(error) => {
            txn.rollback().await?;
            return Ok(Outcome::Failed(error));
        }
    }
    txn.commit().await?;
    // Only a handler that appended events has anything for the relay.
    if let Some(outbox) = outbox
        && appended_before != Some(outbox.appended())
    {
        outbox.wake();
    }
    handler.after_commit(event).await;
    Ok(Outcome::Handled)
}

/// The `event.process` span of one event. The handler's work joins the trace of whoever caused
/// the event (through the relay's publish span); events it appends in turn carry this span's
/// context.
pub(crate) fn process_span(group: &str, event: &Event) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "event.process",
        otel.name = %format_args!("{} process", event.event_type),
        otel.kind = "consumer",
        messaging.operation.type = "process",
        messaging.destination.name = %event.event_type,
        messaging.consumer.group.name = group,
        messaging.message.id = %event.id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    telemetry::continue_trace(
        &span,
        event.traceparent.as_deref(),
        event.tracestate.as_deref(),
    );
    span
}

/// Runs the handler's [`Handler::prepare`], waiting (like the transaction) while the database
/// is not ready yet. Err: the delivery's outcome (failed, or interrupted by `shutdown`).
async fn prepare(
    database: &Database,
    handler: &dyn Handler,
    event: &Event,
    shutdown: &Shutdown,
) -> Result<Prepared, Outcome> {
    let mut waiting: Option<Backoff> = None;
    loop {
        match database.connection() {
            Ok(connection) => {
                return handler
                    .prepare(connection, event)
                    .await
                    .map_err(Outcome::Failed);
            }
            Err(_) => {
                let backoff =
                    waiting.get_or_insert_with(|| Backoff::new(DATABASE_WAIT.0, DATABASE_WAIT.1));
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {},
                    () = shutdown.wait() => return Err(Outcome::Interrupted),
                }
            }
        }
    }
}

/// Lets the handler record a failed attempt (e.g. an e-mail's delivery status) on a fresh
/// connection: the attempt's own transaction was rolled back with everything it wrote.
pub(crate) async fn report_failure(
    database: &Database,
    handler: &dyn Handler,
    event: &Event,
    attempt: u32,
    error: &HandlerError,
    disposition: &Disposition,
) {
    if let Ok(connection) = database.connection() {
        let dead = matches!(disposition, Disposition::Dead);
        handler
            .failed(connection, event, attempt, error, dead)
            .await;
    }
}

/// Logs how a delivery ended (one place, so both transports log alike).
pub(crate) fn log_outcome(group: &str, event: &Event, attempt: u32, outcome: &Outcome) {
    match outcome {
        Outcome::Handled => tracing::debug!(
            group, event_id = %event.id, event_type = %event.event_type, attempt, "event handled"
        ),
        Outcome::Duplicate => tracing::info!(
            group, event_id = %event.id, event_type = %event.event_type,
            "event already handled by this group; acknowledged without handling"
        ),
        Outcome::Failed(error @ HandlerError::Busy { .. }) => tracing::info!(
            group, event_id = %event.id, event_type = %event.event_type, attempt,
            reason = %error, "the event's work is held elsewhere; it waits"
        ),
        Outcome::Failed(error) => tracing::warn!(
            group, event_id = %event.id, event_type = %event.event_type, attempt,
            error = %ErrorChain(error), "event handler failed"
        ),
        Outcome::UnknownType => tracing::warn!(
            group, event_id = %event.id, event_type = %event.event_type,
            "the group does not handle this event type; acknowledged without effect"
        ),
        Outcome::Interrupted => tracing::info!(
            group, event_id = %event.id, event_type = %event.event_type,
            "shutting down while the database is unreachable; the event is left for redelivery"
        ),
    }
}

/// Records how a delivery ended and what happens next in `metrics`, if any: one
/// `tenantry_consumer_deliveries_total` by outcome, plus a retry or a dead letter for a failure.
pub(crate) fn record_outcome(
    metrics: Option<&Metrics>,
    group: &str,
    outcome: &Outcome,
    disposition: Option<&Disposition>,
) {
    let Some(metrics) = metrics else {
        return;
    };
    let label = match outcome {
        Outcome::Handled => DeliveryOutcome::Handled,
        Outcome::Duplicate => DeliveryOutcome::Duplicate,
        Outcome::UnknownType => DeliveryOutcome::UnknownType,
        Outcome::Failed(_) => DeliveryOutcome::Failed,
        Outcome::Interrupted => return,
    };
    metrics.consumer_delivery(group, label);
    match disposition {
        Some(Disposition::Retry { .. }) => metrics.consumer_retry(group),
        Some(Disposition::Dead) => metrics.consumer_dead_letter(group),
        None => {}
    }
}

/// The back-off of everything that waits for the broker to come back (consumers, broadcast
/// subscriptions, the relay): 200 ms doubling to at most 2 s, so work resumes within about 2 s
/// of the broker's return, while a long outage costs one connection attempt per process every
/// 2 s. Jittered (see [`Backoff::next_delay`]), so a fleet does not reconnect in lockstep.
pub(crate) const BROKER_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(2));

/// Exponential back-off with jitter for reconnecting and relaying while a dependency is down.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The delay to wait now, between half and all of the current step ("equal jitter": many
    /// replicas that lost the broker together spread their reconnects); the next step is twice
    /// as long, up to the maximum.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Back to the shortest delay (the dependency answered again).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_within_each_doubling_step_and_capped() {
        let mut backoff = Backoff::new(BROKER_BACKOFF.0, BROKER_BACKOFF.1);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (delay, step_ms) in delays
            .iter()
            .zip([200u64, 400, 800, 1600, 2000, 2000, 2000, 2000])
        {
            let step = Duration::from_millis(step_ms);
            assert!(
                *delay >= step / 2 && *delay <= step,
                "{delay:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BROKER_BACKOFF.0);
        let spread: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(spread.len() > 1, "jittered: {spread:?}");
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<_> = (1..=5).map(|attempt| policy.delay(attempt)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 500, 500]
                .map(Duration::from_millis)
                .to_vec()
        );
        assert_eq!(policy.delay(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn every_delay_has_a_level_no_shorter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(
            policy.delay_levels(),
            [100, 200, 400, 500].map(Duration::from_millis).to_vec()
        );
        for attempt in 1..=10 {
            let delay = policy.delay(attempt);
            assert_eq!(
                policy.level_for(delay),
                delay,
                "transient delays are levels"
            );
        }
        let ms = Duration::from_millis;
        assert_eq!(policy.level_for(ms(0)), ms(100));
        assert_eq!(policy.level_for(ms(150)), ms(200));
        assert_eq!(policy.level_for(ms(401)), ms(500));
        assert_eq!(policy.level_for(ms(90_000)), ms(500), "the longest at most");
        let default = RetryPolicy::default().delay_levels();
        assert_eq!(default.len(), 7, "{default:?}");
        let odd = RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        };
        assert_eq!(odd.delay_levels(), vec![ms(1)]);
    }

    #[test]
    fn gives_up_after_max_attempts_or_at_once_when_permanent() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let transient = HandlerError::Transient("down".into());
        assert!(matches!(
            policy.after_failure(1, &transient),
            Disposition::Retry {
                next_attempt: 2,
                ..
            }
        ));
        assert_eq!(policy.after_failure(3, &transient), Disposition::Dead);
        let permanent = HandlerError::Permanent("bad".into());
        assert_eq!(policy.after_failure(1, &permanent), Disposition::Dead);
    }
}
