//! The `account.*` events the registry publishes (DESIGN.md §6), built from the account as it
//! is after the change, inside the transaction that made the change.

use tenantry_events::Event;
use tenantry_proto::events::v1 as pb;

use crate::domain::Account;
use crate::wire::account_to_proto;

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

impl AccountChange {
    /// Whether the change takes access away (its call answers only once no replica's local
    /// view can still serve the account as it was).
    pub fn takes_access_away(self) -> bool {
        matches!(self, AccountChange::Disabled | AccountChange::Deleted)
    }
}

/// The event announcing `change` of `account`, made by `actor` (`users/{sub}` or
/// `services/{name}`), under its payload's declared type.
pub fn account_event(change: AccountChange, account: &Account, actor: &str) -> Event {
    let account = Some(account_to_proto(account.clone()));
    let actor = actor.to_string();
    match change {
        AccountChange::Created => Event::of(SOURCE, &pb::AccountCreated { account, actor }),
        AccountChange::Updated => Event::of(SOURCE, &pb::AccountUpdated { account, actor }),
        AccountChange::PromotedToPartner => {
            Event::of(SOURCE, &pb::AccountPromotedToPartner { account, actor })
        }
        AccountChange::Disabled => Event::of(SOURCE, &pb::AccountDisabled { account, actor }),
        AccountChange::Enabled => Event::of(SOURCE, &pb::AccountEnabled { account, actor }),
        AccountChange::Deleted => Event::of(SOURCE, &pb::AccountDeleted { account, actor }),
    }
}

#[cfg(test)]
mod tests {
    use tenantry_proto::EventType;

    use super::*;
    use crate::domain::{AccountId, AccountState, DisplayName};

    #[test]
    fn each_change_is_published_under_its_type() {
        let now = tenantry_platform::time::now();
        let account = Account {
            id: AccountId::trusted("acme"),
            display_name: DisplayName::trusted("Acme".into()),
            partner: false,
            managed_by: None,
            state: AccountState::Active,
            creator: "users/op".into(),
            version: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
        };
        let cases = [
            (AccountChange::Created, EventType::AccountCreated),
            (AccountChange::Updated, EventType::AccountUpdated),
            (
                AccountChange::PromotedToPartner,
                EventType::AccountPromotedToPartner,
            ),
            (AccountChange::Disabled, EventType::AccountDisabled),
            (AccountChange::Enabled, EventType::AccountEnabled),
            (AccountChange::Deleted, EventType::AccountDeleted),
        ];
        for (change, event_type) in cases {
            let event = account_event(change, &account, "users/op");
            assert_eq!(event.known_type(), Some(event_type), "{change:?}");
            assert_eq!(event.source, SOURCE);
        }
        let created = account_event(AccountChange::Created, &account, "users/op")
            .decode::<pb::AccountCreated>()
            .unwrap();
        assert_eq!(created.actor, "users/op");
        assert_eq!(created.account.unwrap().name, "accounts/acme");
    }
}
