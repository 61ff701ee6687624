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

/// The event announcing `change` of `account` (as it is after the change), made by `actor`
/// (`users/{sub}` or `services/{name}`), under its payload's declared type. `previous` is the
/// account as it was before the change (`None` for [`AccountChange::Created`], whose payload
/// has no such field). The payload's `provenance` is filled by [`Event::of`] from the call.
pub fn account_event(
    change: AccountChange,
    account: &Account,
    previous: Option<&Account>,
    actor: &str,
) -> Event {
    let account = Some(account_to_proto(account.clone()));
    let previous = previous.map(|previous| account_to_proto(previous.clone()));
    let actor = actor.to_string();
    let provenance = None;
    match change {
        AccountChange::Created => Event::of(
            SOURCE,
            &pb::AccountCreated {
                account,
                actor,
                provenance,
            },
        ),
        AccountChange::Updated => Event::of(
            SOURCE,
            &pb::AccountUpdated {
                account,
                actor,
                previous,
                provenance,
            },
        ),
        AccountChange::PromotedToPartner => Event::of(
            SOURCE,
            &pb::AccountPromotedToPartner {
                account,
                actor,
                previous,
                provenance,
            },
        ),
        AccountChange::Disabled => Event::of(
            SOURCE,
            &pb::AccountDisabled {
                account,
                actor,
                previous,
                provenance,
            },
        ),
        AccountChange::Enabled => Event::of(
            SOURCE,
            &pb::AccountEnabled {
                account,
                actor,
                previous,
                provenance,
            },
        ),
        AccountChange::Deleted => Event::of(
            SOURCE,
            &pb::AccountDeleted {
                account,
                actor,
                previous,
                provenance,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use tenantry_proto::EventType;
    use tenantry_proto::registry::v1 as wire;

    use super::*;
    use crate::domain::{AccountId, AccountState, DisplayName};

    fn acme(display_name: &str, version: i64) -> Account {
        let now = tenantry_platform::time::now();
        Account {
            id: AccountId::trusted("acme"),
            display_name: DisplayName::trusted(display_name.into()),
            partner: false,
            managed_by: None,
            state: AccountState::Active,
            creator: "users/op".into(),
            version,
            create_time: now,
            update_time: now,
            delete_time: None,
        }
    }

    #[test]
    fn each_change_is_published_under_its_type() {
        let account = acme("Acme", 1);
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
            let event = account_event(change, &account, None, "users/op");
            assert_eq!(event.known_type(), Some(event_type), "{change:?}");
            assert_eq!(event.source, SOURCE);
        }
        let created = account_event(AccountChange::Created, &account, None, "users/op")
            .decode::<pb::AccountCreated>()
            .unwrap();
        assert_eq!(created.actor, "users/op");
        assert_eq!(created.account.unwrap().name, "accounts/acme");
    }

    #[test]
    fn changes_carry_the_account_as_it_was_before() {
        let before = acme("Acme", 1);
        let renamed = Account {
            display_name: DisplayName::trusted("Acme Corp".into()),
            version: 2,
            ..before.clone()
        };
        let updated = account_event(AccountChange::Updated, &renamed, Some(&before), "users/op")
            .decode::<pb::AccountUpdated>()
            .unwrap();
        let (after, previous) = (updated.account.unwrap(), updated.previous.unwrap());
        assert_eq!(
            (after.display_name.as_str(), previous.display_name.as_str()),
            ("Acme Corp", "Acme")
        );
        assert_eq!((after.etag.as_str(), previous.etag.as_str()), ("2", "1"));

        let disabled = Account {
            state: AccountState::Disabled,
            version: 2,
            ..before.clone()
        };
        let event = account_event(
            AccountChange::Disabled,
            &disabled,
            Some(&before),
            "users/op",
        )
        .decode::<pb::AccountDisabled>()
        .unwrap();
        assert_eq!(
            event.account.unwrap().state,
            wire::AccountState::Disabled as i32
        );
        assert_eq!(
            event.previous.unwrap().state,
            wire::AccountState::Active as i32
        );

        let promoted = Account {
            partner: true,
            version: 2,
            ..before.clone()
        };
        let event = account_event(
            AccountChange::PromotedToPartner,
            &promoted,
            Some(&before),
            "users/op",
        )
        .decode::<pb::AccountPromotedToPartner>()
        .unwrap();
        assert!(event.account.unwrap().partner);
        assert!(!event.previous.unwrap().partner);
    }
}
