//! What the audit service consumes: every audited event type, into the log.

use std::sync::Arc;

use tenantry_events::{Event, Handler, HandlerError};
use tenantry_platform::error::ErrorChain;

use crate::domain::{self, NewEntry};
use crate::hub::EntryHub;
use crate::store::{self, Appended};

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

#[async_trait::async_trait]
impl Handler for AuditLog {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(event_type) = event.known_type() else {
            return Err(HandlerError::unknown_type(event));
        };
        let change = domain::change_of(event_type, &event.payload).map_err(|error| {
            HandlerError::Permanent(format!("event {}: {}", event.id, ErrorChain(&error)))
        })?;
        let new = NewEntry {
            event_id: event.id.to_string(),
            event_type: event.event_type.clone(),
            event_time: event.time,
            change,
        };
        let appended = store::append(txn, &new, tenantry_platform::time::now()).await?;
        match appended {
            Appended::Entry {
                account_id,
                sequence,
            } => tracing::debug!(
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
        Ok(())
    }

    async fn begin_batch(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        events: &[&Event],
    ) -> Result<(), HandlerError> {
        // The accounts the batch appends to; an event that cannot be read fails on its own
        // in `handle`.
        let accounts: Vec<String> = events
            .iter()
            .filter_map(|event| {
                let event_type = event.known_type()?;
                domain::change_of(event_type, &event.payload)
                    .ok()
                    .map(|change| change.account_id)
            })
            .collect();
        store::lock_heads(txn, &accounts, tenantry_platform::time::now()).await?;
        Ok(())
    }

    async fn after_commit(&self, _event: &Event) {
        self.hub.wake();
    }
}
