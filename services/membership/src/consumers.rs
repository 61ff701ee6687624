//! What membership consumes (DESIGN.md §2, §6): the registry's `account.*` events keep the
//! account replica, and `account.deleted` drops the deleted account's memberships.

use tenantry_events::{Event, Handler, HandlerError};
use tenantry_platform::error::ErrorChain;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as pb;
use tenantry_proto::registry::v1::Account;

use crate::accounts::versioned_facts_of;
use crate::domain::MembershipError;
use crate::store::replica;

/// The consumer group (= durable queue) keeping the account replica.
pub const ACCOUNTS_GROUP: &str = "tenantry.membership.accounts";

/// The event types [`ACCOUNTS_GROUP`] is bound to: every `account.*` type.
pub const ACCOUNT_EVENTS: [EventType; 6] = [
    EventType::AccountCreated,
    EventType::AccountUpdated,
    EventType::AccountPromotedToPartner,
    EventType::AccountDisabled,
    EventType::AccountEnabled,
    EventType::AccountDeleted,
];

/// Keeps `account_replica` from the `account.*` events: a row is replaced only by a newer
/// registry version (deliveries may come late or twice after retries), and `account.deleted`
/// drops the account's memberships and counters (no `member.removed` is published for them:
/// consumers of `member.*` handle `account.deleted` themselves).
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountReplicaHandler;

#[async_trait::async_trait]
impl Handler for AccountReplicaHandler {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let (account, deleted) = account_of(event)?;
        let account = account.ok_or_else(|| {
            HandlerError::Permanent(format!(
                "{} event {} has no account",
                event.event_type, event.id
            ))
        })?;
        let fetched = versioned_facts_of(account)
            .map_err(|error| HandlerError::Permanent(format!("event {}: {error}", event.id)))?;
        let account_id = &fetched.facts.account_id;
        if deleted {
            // Before DELETED is stored: AddMember's and AddMyself's transactions hold this lock
            // shared while they check and write (`replica::deleted_for_write`), so either they
            // see DELETED or their member is there for the DELETE below to drop.
            replica::lock_for_deletion(txn, account_id)
                .await
                .map_err(transient)?;
        }
        let written = replica::save(txn, &fetched).await.map_err(transient)?;
        if deleted {
            // Deleting is final, so this holds whatever order the events came in.
            let dropped = replica::drop_members(txn, account_id)
                .await
                .map_err(transient)?;
            tracing::info!(
                %account_id,
                dropped,
                "dropped the members of a deleted account"
            );
        }
        tracing::debug!(
            event_type = %event.event_type,
            %account_id,
            version = fetched.version,
            written,
            "account replica"
        );
        Ok(())
    }
}

/// The account an `account.*` event carries, and whether the event is `account.deleted`; any
/// other type is [`HandlerError::unknown_type`].
fn account_of(event: &Event) -> Result<(Option<Account>, bool), HandlerError> {
    let account = match event.known_type() {
        Some(EventType::AccountCreated) => event.decode::<pb::AccountCreated>()?.account,
        Some(EventType::AccountUpdated) => event.decode::<pb::AccountUpdated>()?.account,
        Some(EventType::AccountPromotedToPartner) => {
            event.decode::<pb::AccountPromotedToPartner>()?.account
        }
        Some(EventType::AccountDisabled) => event.decode::<pb::AccountDisabled>()?.account,
        Some(EventType::AccountEnabled) => event.decode::<pb::AccountEnabled>()?.account,
        Some(EventType::AccountDeleted) => {
            return Ok((event.decode::<pb::AccountDeleted>()?.account, true));
        }
        _ => return Err(HandlerError::unknown_type(event)),
    };
    Ok((account, false))
}

/// A database failure: the event may be handled on a later attempt.
fn transient(error: MembershipError) -> HandlerError {
    HandlerError::Transient(ErrorChain(&error).to_string())
}

#[cfg(test)]
mod tests;
