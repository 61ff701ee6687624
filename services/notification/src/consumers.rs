//! The consumer groups of the notification service (DESIGN.md §2, §6):
//! - `tenantry.notification.fanout`: `message.sent` → one fan-out job per recipient account
//!   (the worker does the rest, page by page);
//! - `tenantry.notification.membership-events`: `member.removed` → the user's pending
//!   deliveries through that account are withdrawn;
//! - `tenantry.notification.account-events`: `account.deleted` / `account.disabled` → the
//!   account's fan-out stops and its pending deliveries are withdrawn.
//!
//! Each handler runs in the runtime's transaction; the events they write go into the outbox
//! in that transaction. `Outbox::committed` is called before the runtime commits (the handler
//! cannot see the commit), so the relay may find the rows only at its next idle poll.

use chrono::Utc;
use sea_orm::DatabaseTransaction;
use tenantry_events::{Event, Handler, HandlerError, Outbox};
use tenantry_platform::names::{parse_account, parse_member};
use tenantry_proto::events::v1 as events;

use crate::api::convert::parse_message_name;
use crate::domain::NotificationError;
use crate::store::{fanout, withdraw};
use crate::worker::FanoutWake;

/// Group recording fan-out jobs.
pub const FANOUT_GROUP: &str = "tenantry.notification.fanout";
/// Group reacting to member events.
pub const MEMBERSHIP_EVENTS_GROUP: &str = "tenantry.notification.membership-events";
/// Group reacting to account events.
pub const ACCOUNT_EVENTS_GROUP: &str = "tenantry.notification.account-events";

/// A store failure inside a handler: retry (database trouble passes), except a corrupt row.
fn handler_error(error: NotificationError) -> HandlerError {
    match error {
        NotificationError::Corrupt(what) => HandlerError::Permanent(format!("corrupt row: {what}")),
        other => HandlerError::Transient(other.to_string()),
    }
}

fn now() -> chrono::DateTime<Utc> {
    tenantry_platform::time::now()
}

/// `message.sent` → fan-out jobs, then wakes the worker.
#[derive(Debug)]
pub struct FanoutJobs {
    wake: FanoutWake,
}

impl FanoutJobs {
    /// A handler waking the fan-out worker through `wake`.
    pub fn new(wake: FanoutWake) -> Self {
        Self { wake }
    }
}

#[async_trait::async_trait]
impl Handler for FanoutJobs {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != crate::events::MESSAGE_SENT {
            return Ok(());
        }
        let sent: events::MessageSent = event.decode()?;
        let message = sent.message.unwrap_or_default();
        let (_, message_id) = parse_message_name("message.name", &message.name).map_err(|_| {
            HandlerError::Permanent(format!("message.sent {} names no message", event.id))
        })?;
        let accounts = message
            .recipients
            .iter()
            .map(|name| parse_account("recipients", name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                HandlerError::Permanent(format!("message.sent {} has a bad recipient", event.id))
            })?;
        fanout::record_jobs(txn, &message_id, &accounts, now())
            .await
            .map_err(handler_error)?;
        // The runtime commits right after this returns; the wake is repeated shortly after so
        // a worker that looked before the commit looks again.
        self.wake.wake_soon();
        Ok(())
    }
}

/// `member.removed` → withdraw that user's pending deliveries through that account.
#[derive(Debug)]
pub struct MembershipEvents {
    outbox: Outbox,
}

impl MembershipEvents {
    /// A handler appending its events to `outbox`.
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

#[async_trait::async_trait]
impl Handler for MembershipEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != crate::events::MEMBER_REMOVED {
            return Ok(());
        }
        let removed: events::MemberRemoved = event.decode()?;
        let name = removed.member.map(|m| m.name).unwrap_or_default();
        let (account_id, user_id) = parse_member("member.name", &name).map_err(|_| {
            HandlerError::Permanent(format!("member.removed {} names no member", event.id))
        })?;
        let withdrawn = withdraw::withdraw_member(txn, &self.outbox, &account_id, &user_id, now())
            .await
            .map_err(handler_error)?;
        if withdrawn > 0 {
            tracing::info!(member = %name, withdrawn, "withdrew the pending deliveries of a removed member");
            self.outbox.committed();
        }
        Ok(())
    }
}

/// `account.deleted` / `account.disabled` → stop the account's fan-out and withdraw its
/// pending deliveries.
#[derive(Debug)]
pub struct AccountEvents {
    outbox: Outbox,
}

impl AccountEvents {
    /// A handler appending its events to `outbox`.
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

#[async_trait::async_trait]
impl Handler for AccountEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        let account = match event.event_type.as_str() {
            crate::events::ACCOUNT_DELETED => event.decode::<events::AccountDeleted>()?.account,
            crate::events::ACCOUNT_DISABLED => event.decode::<events::AccountDisabled>()?.account,
            _ => return Ok(()),
        };
        let name = account.map(|a| a.name).unwrap_or_default();
        let account_id = parse_account("account.name", &name).map_err(|_| {
            HandlerError::Permanent(format!(
                "{} {} names no account",
                event.event_type, event.id
            ))
        })?;
        let withdrawn = withdraw::withdraw_account(txn, &self.outbox, &account_id, now())
            .await
            .map_err(handler_error)?;
        if withdrawn > 0 {
            tracing::info!(account = %name, withdrawn, "withdrew the pending deliveries of an account");
            self.outbox.committed();
        }
        Ok(())
    }
}
