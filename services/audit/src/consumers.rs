//! What the audit service consumes: every audited event type, into the log.

use std::sync::Arc;

use tenantry_events::{Batch, BatchFailure, Event, Handled, Handler, HandlerError};
use tenantry_platform::error::ErrorChain;
use tracing::Instrument;

use crate::domain::{self, NewEntry};
use crate::hub::EntryHub;
use crate::store::{self, Appended, BatchAppended};

/// The consumer group (= durable queue) that keeps the log.
pub const LOG_GROUP: &str = "tenantry.audit.log";

/// Appends each event to the log of the account it is about.
#[derive(Clone, Debug)]
pub struct AuditLog {
    hub: Arc<EntryHub>,
}

impl AuditLog {
    /// A handler that wakes the watchers in `hub` after each commit.
    pub fn new(hub: Arc<EntryHub>) -> Self {
        Self { hub }
    }
}

/// The entry `event` makes, or why it makes none.
fn new_entry(event: &Event) -> Result<NewEntry, HandlerError> {
    let Some(event_type) = event.known_type() else {
        return Err(HandlerError::unknown_type(event));
    };
    let change = domain::change_of(event_type, &event.payload).map_err(|error| {
        HandlerError::Permanent(format!("event {}: {}", event.id, ErrorChain(&error)))
    })?;
    Ok(NewEntry {
        event_id: event.id.to_string(),
        event_type: event.event_type.clone(),
        event_time: event.time,
        change,
    })
}

fn log_appended(event: &Event, appended: &Appended) {
    match appended {
        Appended::Entry {
            account_id,
            sequence,
        } => tracing::debug!(
            event_id = %event.id,
            event_type = %event.event_type,
            %account_id,
            sequence,
            "audit entry appended"
        ),
        Appended::AlreadyRecorded => tracing::debug!(
            event_id = %event.id,
            "event already in the audit log"
        ),
    }
}

#[async_trait::async_trait]
impl Handler for AuditLog {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let new = new_entry(event)?;
        let appended = store::append(txn, &new, tenantry_platform::time::now()).await?;
        log_appended(event, &appended);
        Ok(())
    }

    /// The whole batch in a few statements (see `store::append_batch`): per event, only the
    /// hash is computed here.
    async fn handle_batch(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        batch: &Batch<'_>,
    ) -> Result<Vec<Handled>, BatchFailure> {
        let events = batch.events();
        let mut handled = Vec::with_capacity(events.len());
        // The entries, and the position in the batch of each entry's event.
        let (mut entries, mut positions) = (Vec::new(), Vec::new());
        for (position, event) in events.iter().enumerate() {
            match new_entry(event) {
                Ok(new) => {
                    entries.push(new);
                    positions.push(position);
                    handled.push(Handled::Done);
                }
                Err(HandlerError::UnknownType(_)) => handled.push(Handled::UnknownType),
                Err(error) => return Err(BatchFailure { position, error }),
            }
        }
        let span = tracing::debug_span!("audit.append_batch", events = entries.len());
        let appended = store::append_batch(txn, &entries, tenantry_platform::time::now())
            .instrument(span)
            .await
            // Not the fault of one event: the runtime tries the batch again without the
            // first and, should that fail too, each event on its own.
            .map_err(|error| BatchFailure {
                position: positions.first().copied().unwrap_or(0),
                error: error.into(),
            })?;
        match appended {
            BatchAppended::Entries(appended) => {
                for (position, appended) in positions.iter().zip(&appended) {
                    log_appended(events[*position], appended);
                }
                Ok(handled)
            }
            BatchAppended::AlreadyRecorded(index) => Err(BatchFailure {
                position: positions[index],
                error: HandlerError::Transient(format!(
                    "event {} is already in the audit log; appended on its own",
                    events[positions[index]].id
                )),
            }),
        }
    }

    async fn after_commit(&self, _event: &Event) {
        self.hub.wake();
    }
}
