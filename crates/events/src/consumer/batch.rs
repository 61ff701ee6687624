//! Several deliveries of one group handled in one transaction: one commit (one WAL flush on
//! PostgreSQL) for the batch instead of one per event, which is what bounds a consumer on a busy
//! database.
//!
//! The batch first records every event id in `processed_events` with one statement (insert first,
//! as one event at a time does: a replica handling a redelivered copy at the same time waits on the
//! row and then sees the conflict); the ids already there are duplicates. The new events then go to
//! [`Handler::handle_batch`] in the same transaction (by default each event's handler in turn,
//! without a savepoint each). If it fails on an event, the transaction is rolled back and the batch
//! is tried again without that event, which the transport then handles on its own with the usual
//! retries and dead letters: one poison message never holds the others back, it only costs them
//! another try. Should the batch's own statements fail (begin, the record, commit), nothing is
//! committed and every event is handled again on its own.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::error::ErrorChain;

use super::{Batch, BatchFailure, Handled, Handler, Outcome};
use crate::{Event, Outbox};

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
    let mut outcomes: Vec<Option<Outcome>> = events.iter().map(|_| None).collect();
    // The events still in the batch (indexes into `events`); each failed try removes one, so
    // this ends after at most `events.len()` tries.
    let mut remaining: Vec<usize> = (0..events.len()).collect();
    while !remaining.is_empty() {
        let batch: Vec<&Event> = remaining.iter().map(|&index| events[index]).collect();
        match try_batch(group, database, handler, outbox, &batch).await {
            Ok(Tried::Committed(committed)) => {
                for (index, outcome) in remaining.iter().zip(committed) {
                    outcomes[*index] = Some(outcome);
                }
                break;
            }
            Ok(Tried::HandlerFailed(position)) => {
                // Left to be handled on its own (its outcome stays None).
                remaining.remove(position);
            }
            Err(error) => {
                tracing::info!(
                    group, events = batch.len(), error = %ErrorChain(&error),
                    "a batch could not be committed; its events are handled one by one"
                );
                break;
            }
        }
    }
    outcomes
}

/// How one try of a batch ended.
enum Tried {
    /// Committed, with each event's outcome in batch order.
    Committed(Vec<Outcome>),
    /// The handler failed on the event at this position; nothing was committed.
    HandlerFailed(usize),
}

async fn try_batch(
    group: &str,
    database: &Database,
    handler: &dyn Handler,
    outbox: Option<&Outbox>,
    events: &[&Event],
) -> Result<Tried, StoreError> {
    let connection = database.connection()?;
    let txn = connection.begin().await?;
    let appended_before = outbox.map(Outbox::appended);
    let new = record_processed(&txn, group, events).await?;
    // The events to handle, each once, with their positions in `events`; the others are
    // duplicates (recorded before, or earlier in this batch).
    let mut seen = HashSet::new();
    let (positions, to_handle): (Vec<usize>, Vec<&Event>) = events
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, event)| new.contains(&event.id) && seen.insert(event.id))
        .unzip();
    let mut outcomes: Vec<Outcome> = events.iter().map(|_| Outcome::Duplicate).collect();
    if !to_handle.is_empty() {
        match handler
            .handle_batch(&txn, &Batch::new(group, &to_handle))
            .await
        {
            Ok(handled) if handled.len() == to_handle.len() => {
                for (position, handled) in positions.iter().zip(handled) {
                    outcomes[*position] = match handled {
                        Handled::Done => Outcome::Handled,
                        // Recorded as handled, so it is not retried.
                        Handled::UnknownType => Outcome::UnknownType,
                    };
                }
            }
            Ok(handled) => {
                txn.rollback().await?;
                return Err(StoreError::Other(sea_orm::DbErr::Custom(format!(
                    "the handler answered for {} of a batch of {} events",
                    handled.len(),
                    to_handle.len()
                ))));
            }
            Err(BatchFailure { position, error }) => {
                let Some(&position) = positions.get(position) else {
                    txn.rollback().await?;
                    return Err(StoreError::Other(sea_orm::DbErr::Custom(format!(
                        "the handler failed a batch of {} events at {position}: {}",
                        to_handle.len(),
                        ErrorChain(&error)
                    ))));
                };
                tracing::debug!(
                    group, event_id = %events[position].id, error = %ErrorChain(&error),
                    "failed in a batch; handled again on its own"
                );
                txn.rollback().await?;
                return Ok(Tried::HandlerFailed(position));
            }
        }
    }
    txn.commit().await?;
    if let Some(outbox) = outbox
        && appended_before != Some(outbox.appended())
    {
        outbox.wake();
    }
    for (event, outcome) in events.iter().zip(&outcomes) {
        if matches!(outcome, Outcome::Handled) {
            handler.after_commit(event).await;
        }
    }
    Ok(Tried::Committed(outcomes))
}

/// Records `events` as processed by `group` in one statement; returns the ids this statement
/// recorded (the others were recorded before). The ids travel as one JSON array, so the
/// statement has three parameters whatever the batch size.
async fn record_processed(
    txn: &impl ConnectionTrait,
    group: &str,
    events: &[&Event],
) -> Result<HashSet<uuid::Uuid>, StoreError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO processed_events (consumer_group, event_id, handled_time) \
             SELECT $1, id, $2 FROM json_array_elements_text($3::json) AS id \
             ON CONFLICT DO NOTHING RETURNING event_id"
        }
        // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
        _ => {
            "INSERT INTO processed_events (consumer_group, event_id, handled_time) \
             SELECT ?1, value, ?2 FROM json_each(?3) WHERE true \
             ON CONFLICT DO NOTHING RETURNING event_id"
        }
    };
    // UUIDs need no escaping in JSON.
    let ids = events
        .iter()
        .map(|event| format!("\"{}\"", event.id))
        .collect::<Vec<_>>()
        .join(",");
    let ids = format!("[{ids}]");
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [group.into(), Utc::now().into(), ids.into()],
        ))
        .await?;
    let mut recorded = HashSet::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("", "event_id")?;
        let id = uuid::Uuid::parse_str(&id).map_err(|error| {
            StoreError::Other(sea_orm::DbErr::Custom(format!(
                "processed_events returned {id:?}: {error}"
            )))
        })?;
        recorded.insert(id);
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database as Connect, TransactionTrait};

    use super::*;

    fn event() -> Event {
        Event::of(
            "/test",
            &tenantry_proto::events::v1::MemberRemoved::default(),
        )
    }

    /// SQLite's form of the statement (PostgreSQL's runs in the consumer tests): ids recorded
    /// before and ids twice in one batch are left out of what it returns.
    #[tokio::test]
    async fn records_a_batch_and_returns_only_the_new_ids_on_sqlite() {
        let connection = Connect::connect("sqlite::memory:").await.unwrap();
        connection
            .execute_unprepared(
                "CREATE TABLE processed_events (consumer_group TEXT NOT NULL, \
                 event_id TEXT NOT NULL, handled_time TEXT NOT NULL, \
                 PRIMARY KEY (consumer_group, event_id))",
            )
            .await
            .unwrap();
        let (old, new) = (event(), event());
        let txn = connection.begin().await.unwrap();
        let first = record_processed(&txn, "g", &[&old]).await.unwrap();
        assert_eq!(first, HashSet::from([old.id]));
        let second = record_processed(&txn, "g", &[&old, &new, &new])
            .await
            .unwrap();
        assert_eq!(second, HashSet::from([new.id]));
        let other_group = record_processed(&txn, "h", &[&old]).await.unwrap();
        assert_eq!(other_group, HashSet::from([old.id]));
        txn.commit().await.unwrap();
    }
}
