//! Several deliveries of one group handled in one transaction: one commit (one WAL flush on
//! PostgreSQL) for the batch instead of one per event, which is what bounds a consumer on a
//! busy database.
//!
//! Each event runs in a savepoint of its own, with its processed-event record (the same
//! idempotency check as one at a time). An event whose handler fails is rolled back to its
//! savepoint and left out; the transport then handles it again on its own, with the usual
//! retries and dead letters, so one poison message never holds a batch back. Should the batch's
//! own statements fail (begin, commit, a savepoint), nothing is committed and every event is
//! handled again on its own.

use chrono::Utc;
use sea_orm::{DatabaseTransaction, EntityTrait, Set, TransactionTrait, TryInsertResult};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::error::ErrorChain;
use tracing::Instrument;

use super::{Handler, Outcome, process_span};
use crate::entities::processed_events;
use crate::{Event, HandlerError, Outbox};

/// Handles `events` for `group` in one transaction. For each event: `Some(outcome)` if its
/// work (or its duplicate or unknown-type record) was committed with the batch, `None` if it
/// must be handled again on its own.
pub(crate) async fn process_batch(
    group: &str,
    database: &Database,
    handler: &dyn Handler,
    outbox: Option<&Outbox>,
    events: &[&Event],
) -> Vec<Option<Outcome>> {
    match try_batch(group, database, handler, outbox, events).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::info!(
                group, events = events.len(), error = %ErrorChain(&error),
                "a batch could not be committed; its events are handled one by one"
            );
            events.iter().map(|_| None).collect()
        }
    }
}

async fn try_batch(
    group: &str,
    database: &Database,
    handler: &dyn Handler,
    outbox: Option<&Outbox>,
    events: &[&Event],
) -> Result<Vec<Option<Outcome>>, StoreError> {
    let connection = database.connection()?;
    let txn = connection.begin().await?;
    let appended_before = outbox.map(Outbox::appended);
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let outcome = in_savepoint(&txn, group, handler, event)
            .instrument(process_span(group, event))
            .await?;
        outcomes.push(outcome);
    }
    txn.commit().await?;
    if let Some(outbox) = outbox
        && appended_before != Some(outbox.appended())
    {
        outbox.wake();
    }
    for (event, outcome) in events.iter().zip(&outcomes) {
        if matches!(outcome, Some(Outcome::Handled)) {
            handler.after_commit(event).await;
        }
    }
    Ok(outcomes)
}

/// One event in a savepoint of the batch's transaction.
async fn in_savepoint(
    txn: &DatabaseTransaction,
    group: &str,
    handler: &dyn Handler,
    event: &Event,
) -> Result<Option<Outcome>, StoreError> {
    let savepoint = txn.begin().await?;
    let record = processed_events::ActiveModel {
        consumer_group: Set(group.to_string()),
        event_id: Set(event.id.to_string()),
        handled_time: Set(Utc::now()),
    };
    let inserted = processed_events::Entity::insert(record)
        .on_conflict_do_nothing()
        .exec_without_returning(&savepoint)
        .await?;
    if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        savepoint.rollback().await?;
        return Ok(Some(Outcome::Duplicate));
    }
    match handler.handle_prepared(&savepoint, event, &None).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(Some(Outcome::Handled))
        }
        Err(HandlerError::UnknownType(_)) => {
            savepoint.commit().await?;
            Ok(Some(Outcome::UnknownType))
        }
        Err(error) => {
            savepoint.rollback().await?;
            tracing::debug!(
                group, event_id = %event.id, error = %ErrorChain(&error),
                "failed in a batch; handled again on its own"
            );
            Ok(None)
        }
    }
}
