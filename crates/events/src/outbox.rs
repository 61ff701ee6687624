//! The write side: events go into the `outbox` table in the caller's transaction.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ActiveValue::NotSet, ConnectionTrait, DbErr, EntityTrait, Set};
use tokio::sync::Notify;

use crate::Event;
use crate::entities::outbox;

/// The longest routing key AMQP allows (a short string).
const MAX_EVENT_TYPE_LEN: usize = 255;

/// Appends events to the `outbox` table in the caller's transaction, and wakes the relay.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    notify: Arc<Notify>,
}

impl Outbox {
    /// An outbox with nobody waiting on it yet; give a clone to the service's [`crate::Relay`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `event` using `txn` (the same transaction as the state change). Nothing is
    /// published until the transaction commits and the relay picks the row up.
    pub async fn append<C: ConnectionTrait>(&self, txn: &C, event: &Event) -> Result<(), DbErr> {
        // Refused here, in the writer's transaction, rather than by the broker later: a row the
        // relay can never publish would block every row behind it.
        if event.event_type.is_empty() || event.event_type.len() > MAX_EVENT_TYPE_LEN {
            return Err(DbErr::Custom(format!(
                "event type {:?} must be 1 to {MAX_EVENT_TYPE_LEN} bytes (an AMQP routing key)",
                event.event_type
            )));
        }
        let row = outbox::ActiveModel {
            seq: NotSet,
            event_id: Set(event.id.to_string()),
            event_type: Set(event.event_type.clone()),
            source: Set(event.source.clone()),
            time: Set(event.time),
            payload: Set(event.payload.clone()),
            traceparent: Set(event.traceparent.clone()),
            tracestate: Set(event.tracestate.clone()),
            create_time: Set(Utc::now()),
        };
        outbox::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }

    /// Call after the transaction committed: wakes the relay at once (no multi-second poll).
    pub fn committed(&self) {
        // notify_one stores a permit when the relay is busy, so a commit during a batch is not
        // missed: the relay looks again right after the batch.
        self.notify.notify_one();
    }

    /// Completes at the next [`Outbox::committed`] (or at once if one happened since the last
    /// wait).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}
