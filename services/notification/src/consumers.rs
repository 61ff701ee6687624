//! The consumer groups of the notification service (DESIGN.md §2, §6):
//! - `tenantry.notification.fanout`: `message.sent` → one fan-out job per recipient account
//!   (the worker does the rest, page by page);
//! - `tenantry.notification.membership-events`: `member.removed` and `member.expired` (the
//!   expiry sweep's removal, handled the same way) → the removal is recorded (fan-out pages
//!   read before it leave the user out) and the user's pending deliveries through that account
//!   are withdrawn;
//! - `tenantry.notification.account-events`: `account.deleted` / `account.disabled` → the
//!   account's fan-out stops and its pending deliveries are withdrawn.
//!
//! Each handler runs in the runtime's transaction; the events they write go into the outbox
//! in that transaction, and the runtime wakes the relay once it committed. The fan-out jobs
//! handler wakes this instance's fan-out workers in [`Handler::after_commit`], when the jobs
//! are there to be claimed.

use sea_orm::DatabaseTransaction;
use tenantry_events::{Event, Handler, HandlerError, Outbox};
use tenantry_platform::names::parse_member_ids;
use tenantry_platform::time::{from_timestamp, now};
use tenantry_platform::{AccountId, ApiError};
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as events;

use crate::store::{fanout, removals, withdraw};
use crate::wire::parse_message_name;
use crate::worker::FanoutWake;

/// Group recording fan-out jobs.
pub const FANOUT_GROUP: &str = "tenantry.notification.fanout";
/// Group reacting to member events.
pub const MEMBERSHIP_EVENTS_GROUP: &str = "tenantry.notification.membership-events";
/// Group reacting to account events.
pub const ACCOUNT_EVENTS_GROUP: &str = "tenantry.notification.account-events";

/// `message.sent` → fan-out jobs; once they are committed, wakes the fan-out workers.
#[derive(Debug)]
pub struct FanoutJobs {
    wake: FanoutWake,
}

impl FanoutJobs {
    /// A handler waking the fan-out workers of its instance through `wake`.
    pub fn new(wake: FanoutWake) -> Self {
        Self { wake }
    }
}

#[async_trait::async_trait]
impl Handler for FanoutJobs {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        let Some(EventType::MessageSent) = event.known_type() else {
            return Err(HandlerError::unknown_type(event));
        };
        let sent: events::MessageSent = event.decode()?;
        let message = sent.message.unwrap_or_default();
        let (_, message_id) = parse_message_name("message.name", &message.name).map_err(|_| {
            HandlerError::Permanent(format!("message.sent {} names no message", event.id))
        })?;
        let accounts = message
            .recipients
            .iter()
            .map(|name| AccountId::from_name("recipients", name))
            .collect::<Result<Vec<_>, ApiError>>()
            .map_err(|_| {
                HandlerError::Permanent(format!("message.sent {} has a bad recipient", event.id))
            })?;
        fanout::record_jobs(txn, &message_id, &accounts, now())
            .await
            .map_err(HandlerError::from)
    }

    async fn after_commit(&self, _event: &Event) {
        self.wake.wake();
    }
}

/// `member.removed` / `member.expired` → record the removal (for fan-out pages read before it)
/// and withdraw that user's pending deliveries through that account. An expiry is a removal
/// made by membership's sweep, so both take the same path.
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
        let member = match event.known_type() {
            Some(EventType::MemberRemoved) => event.decode::<events::MemberRemoved>()?.member,
            Some(EventType::MemberExpired) => event.decode::<events::MemberExpired>()?.member,
            _ => return Err(HandlerError::unknown_type(event)),
        };
        let member = member.unwrap_or_default();
        let name = member.name;
        let (account_id, user_id) = parse_member_ids("member.name", &name).map_err(|_| {
            HandlerError::Permanent(format!("{} {} names no member", event.event_type, event.id))
        })?;
        // The removed membership's start is the value fan-out pages list for it (both are
        // membership's create_time). An event without it (none is sent so) falls back to the
        // removal's time, which leaves out every membership that began before the removal.
        let removal = removals::Removal {
            member_since: member
                .create_time
                .and_then(|time| from_timestamp("member.create_time", &time).ok())
                .unwrap_or(event.time),
            remove_time: event.time,
        };
        let withdrawn =
            removals::member_removed(txn, &self.outbox, &account_id, &user_id, removal, now())
                .await
                .map_err(HandlerError::from)?;
        if withdrawn > 0 {
            tracing::info!(member = %name, event_type = %event.event_type, withdrawn, "withdrew the pending deliveries of a removed member");
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
        let account = match event.known_type() {
            Some(EventType::AccountDeleted) => event.decode::<events::AccountDeleted>()?.account,
            Some(EventType::AccountDisabled) => event.decode::<events::AccountDisabled>()?.account,
            _ => return Err(HandlerError::unknown_type(event)),
        };
        let name = account.map(|a| a.name).unwrap_or_default();
        let account_id = AccountId::from_name("account.name", &name).map_err(|_| {
            HandlerError::Permanent(format!(
                "{} {} names no account",
                event.event_type, event.id
            ))
        })?;
        let withdrawn = withdraw::withdraw_account(txn, &self.outbox, &account_id, now())
            .await
            .map_err(HandlerError::from)?;
        if withdrawn > 0 {
            tracing::info!(account = %name, withdrawn, "withdrew the pending deliveries of an account");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;
    use tenantry_platform::testing::TempDatabase;
    use tenantry_proto::events::v1 as events;

    use super::*;
    use crate::Migrator;

    /// Every handler refuses a type it does not handle (the runtime counts and acknowledges
    /// it) instead of dropping it with `Ok`, and the fan-out handler does not wake anybody.
    #[tokio::test]
    async fn unknown_types_are_refused_not_dropped() {
        let temp = TempDatabase::new::<Migrator>("notification-consumers").await;
        let connection = temp.database.connection().unwrap();
        let wake = FanoutWake::new();
        let woken = wake.subscribe();
        let handlers: Vec<Box<dyn Handler>> = vec![
            Box::new(FanoutJobs::new(wake.clone())),
            Box::new(MembershipEvents::new(Outbox::new())),
            Box::new(AccountEvents::new(Outbox::new())),
        ];
        let typo = Event::new("message.snet", "/test", &events::MessageSent::default());
        // A known type that no notification group binds.
        let other = Event::of("/test", &events::AccountCreated::default());
        for (index, handler) in handlers.iter().enumerate() {
            for event in [&typo, &other] {
                let txn = connection.begin().await.unwrap();
                let result = handler.handle(&txn, event).await;
                assert!(
                    matches!(&result, Err(HandlerError::UnknownType(t)) if *t == event.event_type),
                    "handler {index} on {}: {result:?}",
                    event.event_type
                );
                txn.rollback().await.unwrap();
            }
        }
        assert!(!woken.has_changed().unwrap(), "nothing was recorded");
    }

    /// `message.sent` records one job per recipient account in the runtime's transaction and
    /// wakes the workers only after the commit.
    #[tokio::test]
    async fn sent_messages_become_jobs_and_wake_the_workers_after_the_commit() {
        let temp = TempDatabase::new::<Migrator>("notification-consumers").await;
        let connection = temp.database.connection().unwrap();
        let wake = FanoutWake::new();
        let woken = wake.subscribe();
        let handler = FanoutJobs::new(wake);
        let sent = events::MessageSent {
            message: Some(tenantry_proto::notification::v1::Message {
                name: "accounts/acme/messages/0190a6a8-7c2b-7d3e-8f40-1234567890ab".into(),
                recipients: vec!["accounts/globex".into(), "accounts/initech".into()],
                ..Default::default()
            }),
            actor: "users/alice".into(),
            provenance: None,
        };
        let event = Event::of(crate::events::SOURCE, &sent);
        let txn = connection.begin().await.unwrap();
        handler.handle(&txn, &event).await.unwrap();
        assert!(!woken.has_changed().unwrap(), "not before the commit");
        txn.commit().await.unwrap();
        handler.after_commit(&event).await;
        assert!(woken.has_changed().unwrap());
        let store = crate::store::Store::new(temp.database.clone(), Outbox::new());
        let mut claimed = Vec::new();
        while let Some(job) = store.claim_job(now()).await.unwrap() {
            claimed.push(job.account_id);
        }
        claimed.sort();
        assert_eq!(claimed, ["globex", "initech"]);
    }
}
