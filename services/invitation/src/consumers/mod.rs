//! The consumer groups of the invitation service (DESIGN.md §2, §6):
//! - `tenantry.invitation.mailer`: `invitation.created` / `invitation.resent` → mint the
//!   secret, send the e-mail, store the secret's hash;
//! - `tenantry.invitation.account-events`: `account.deleted` → withdraw the account's pending
//!   invitations;
//! - `tenantry.invitation.member-events`: `member.added` → close a pending invitation of the
//!   new member's e-mail (they joined some other way).
//!
//! Each handler runs in the runtime's transaction on this service's database; the events they
//! write go into the outbox in that transaction. `Outbox::committed` is called before the
//! runtime commits (the handler cannot see the commit), so the relay may find the rows only on
//! its next idle poll (≤ 500 ms) instead of at once.

pub mod mailer;

use chrono::Utc;
use sea_orm::DatabaseTransaction;
use tenantry_events::{Event, Handler, HandlerError, Outbox};
use tenantry_platform::names::{parse_account, parse_member};
use tenantry_proto::events::v1 as events;

use crate::domain::InvitationError;
use crate::store;

pub use mailer::Mailer;

/// Group of the mailer.
pub const MAILER_GROUP: &str = "tenantry.invitation.mailer";
/// Group reacting to account events.
pub const ACCOUNT_EVENTS_GROUP: &str = "tenantry.invitation.account-events";
/// Group reacting to member events.
pub const MEMBER_EVENTS_GROUP: &str = "tenantry.invitation.member-events";

/// A store failure inside a handler: retry (database trouble passes), except a corrupt row.
pub(crate) fn handler_error(error: InvitationError) -> HandlerError {
    match error {
        InvitationError::Corrupt(what) => HandlerError::Permanent(format!("corrupt row: {what}")),
        other => HandlerError::Transient(other.to_string()),
    }
}

fn now() -> chrono::DateTime<Utc> {
    tenantry_platform::time::now()
}

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
}

#[async_trait::async_trait]
impl Handler for AccountEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != crate::events::ACCOUNT_DELETED {
            return Ok(());
        }
        let deleted: events::AccountDeleted = event.decode()?;
        let name = deleted
            .account
            .map(|account| account.name)
            .unwrap_or_default();
        let account_id = parse_account("account.name", &name).map_err(|_| {
            HandlerError::Permanent(format!("account.deleted {} names no account", event.id))
        })?;
        let withdrawn = store::withdraw_account(txn, &self.outbox, &account_id, now())
            .await
            .map_err(handler_error)?;
        if withdrawn > 0 {
            tracing::info!(account = %name, withdrawn, "withdrew the pending invitations of a deleted account");
            self.outbox.committed();
        }
        Ok(())
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
}

#[async_trait::async_trait]
impl Handler for MemberEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != crate::events::MEMBER_ADDED {
            return Ok(());
        }
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
        let (account_id, _) = parse_member("member.name", &member.name).map_err(|_| {
            HandlerError::Permanent(format!("member.added {} names no member", event.id))
        })?;
        let closed = store::close_for_member(txn, &self.outbox, &account_id, &member.email, now())
            .await
            .map_err(handler_error)?;
        if closed > 0 {
            tracing::info!(member = %member.name, "closed the pending invitation of a member added directly");
            self.outbox.committed();
        }
        Ok(())
    }
}
