//! The consumer groups of the invitation service (DESIGN.md §2, §6):
//! - `tenantry.invitation.mailer`: `invitation.created` / `invitation.resent` → mint the
//!   secret, send the e-mail, store the secret's hash;
//! - `tenantry.invitation.account-events`: `account.deleted` → withdraw the account's pending
//!   invitations;
//! - `tenantry.invitation.member-events`: `member.added` → close a pending invitation of the
//!   new member's e-mail (they joined some other way).
//!
//! Each handler runs in the runtime's transaction on this service's database; the events they
//! write go into the outbox in that transaction, and the runtime wakes the relay once it
//! committed. A type a handler does not handle is refused with
//! [`HandlerError::unknown_type`].

pub mod mailer;
pub mod reminders;
#[cfg(test)]
mod tests;

use sea_orm::DatabaseTransaction;
use tenantry_events::{Event, Handler, HandlerError, Outbox};
use tenantry_platform::AccountId;
use tenantry_platform::names::parse_member_ids;
use tenantry_platform::time::now;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as events;

use crate::store;

pub use mailer::Mailer;
pub use reminders::Reminders;

/// Group of the mailer.
pub const MAILER_GROUP: &str = "tenantry.invitation.mailer";
/// Group reacting to account events.
pub const ACCOUNT_EVENTS_GROUP: &str = "tenantry.invitation.account-events";
/// Group reacting to member events.
pub const MEMBER_EVENTS_GROUP: &str = "tenantry.invitation.member-events";

/// The types the mailer handles.
pub const MAILER_TYPES: &[EventType] = &[EventType::InvitationCreated, EventType::InvitationResent];
/// The types [`AccountEvents`] handles.
pub const ACCOUNT_EVENT_TYPES: &[EventType] = &[EventType::AccountDeleted];
/// The types [`MemberEvents`] handles.
pub const MEMBER_EVENT_TYPES: &[EventType] = &[EventType::MemberAdded];

/// `account.deleted` → the account's PENDING invitations become REVOKED by
/// `services/invitation` (EXPIRED if already past their expiry), with their events.
#[derive(Debug)]
pub struct AccountEvents {
    outbox: Outbox,
}

impl AccountEvents {
    /// A handler appending its events to `outbox`.
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    async fn account_deleted(
        &self,
        txn: &DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let deleted: events::AccountDeleted = event.decode()?;
        let name = deleted
            .account
            .map(|account| account.name)
            .unwrap_or_default();
        let account_id = AccountId::from_name("account.name", &name).map_err(|_| {
            HandlerError::Permanent(format!("account.deleted {} names no account", event.id))
        })?;
        let withdrawn = store::withdraw_account(txn, &self.outbox, &account_id, now())
            .await
            .map_err(HandlerError::from)?;
        if withdrawn > 0 {
            tracing::info!(account = %name, withdrawn, "withdrew the pending invitations of a deleted account");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Handler for AccountEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        match event.known_type() {
            Some(EventType::AccountDeleted) => self.account_deleted(txn, event).await,
            _ => Err(HandlerError::unknown_type(event)),
        }
    }
}

/// `member.added` → a PENDING invitation in that account for the new member's e-mail is
/// closed: REVOKED by `services/invitation` (the proto's "invitee added directly").
/// An invitation accepted by this service is already ACCEPTED when its `member.added`
/// arrives, and the conditional update leaves it alone even in a race.
#[derive(Debug)]
pub struct MemberEvents {
    outbox: Outbox,
}

impl MemberEvents {
    /// A handler appending its events to `outbox`.
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    async fn member_added(
        &self,
        txn: &DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let added: events::MemberAdded = event.decode()?;
        let Some(member) = added.member else {
            return Err(HandlerError::Permanent(format!(
                "member.added {} carries no member",
                event.id
            )));
        };
        if member.email.trim().is_empty() {
            // A user who never called Tenantry: no e-mail to match.
            return Ok(());
        }
        if member.expire_time.is_some() {
            // Time-bound access (AddMyself for a while) does not stand in for an invitation
            // to join for good: accepting it later makes the membership permanent.
            return Ok(());
        }
        let (account_id, _) = parse_member_ids("member.name", &member.name).map_err(|_| {
            HandlerError::Permanent(format!("member.added {} names no member", event.id))
        })?;
        let closed = store::close_for_member(txn, &self.outbox, &account_id, &member.email, now())
            .await
            .map_err(HandlerError::from)?;
        if closed > 0 {
            tracing::info!(member = %member.name, "closed the pending invitation of a member added directly");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Handler for MemberEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        match event.known_type() {
            Some(EventType::MemberAdded) => self.member_added(txn, event).await,
            _ => Err(HandlerError::unknown_type(event)),
        }
    }
}
