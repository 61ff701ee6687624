//! The `account.*` events the registry publishes (DESIGN.md §6), built from the account as it
//! is after the change, inside the transaction that made the change.

use tenantry_events::Event;
use tenantry_proto::events::v1 as pb;

use crate::api::convert::account_to_proto;
use crate::domain::Account;

/// The CloudEvents `source` of every registry event.
pub const SOURCE: &str = "/tenantry/customer-registry";

/// What happened to an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountChange {
    /// CreateAccount or CreateManagedCustomer.
    Created,
    /// The display name changed.
    Updated,
    /// PromoteToPartner.
    PromotedToPartner,
    /// ACTIVE → DISABLED.
    Disabled,
    /// DISABLED → ACTIVE.
    Enabled,
    /// Soft delete.
    Deleted,
}

/// The event announcing `change` of `account`, made by `actor` (`users/{sub}` or
/// `services/{name}`).
pub fn account_event(change: AccountChange, account: &Account, actor: &str) -> Event {
    let account = Some(account_to_proto(account.clone()));
    let actor = actor.to_string();
    match change {
        AccountChange::Created => Event::new(
            "account.created",
            SOURCE,
            &pb::AccountCreated { account, actor },
        ),
        AccountChange::Updated => Event::new(
            "account.updated",
            SOURCE,
            &pb::AccountUpdated { account, actor },
        ),
        AccountChange::PromotedToPartner => Event::new(
            "account.promoted_to_partner",
            SOURCE,
            &pb::AccountPromotedToPartner { account, actor },
        ),
        AccountChange::Disabled => Event::new(
            "account.disabled",
            SOURCE,
            &pb::AccountDisabled { account, actor },
        ),
        AccountChange::Enabled => Event::new(
            "account.enabled",
            SOURCE,
            &pb::AccountEnabled { account, actor },
        ),
        AccountChange::Deleted => Event::new(
            "account.deleted",
            SOURCE,
            &pb::AccountDeleted { account, actor },
        ),
    }
}
