//! The registry's rules, without I/O: identifiers, display names, account states, the
//! transitions between them, and what an update may change.
//!
//! Identifiers travel as the platform's [`AccountId`]; a new one is first checked against the
//! registry's creation rules ([`NewAccountId`], with a configurable maximum length and a reason
//! per broken rule) and then converted.

pub mod error;
pub mod identifier;
pub mod update;

use chrono::{DateTime, Utc};
use tenantry_platform::authz::Grant;
use tenantry_platform::etag::{etag, etag_allows};

pub use error::RegistryError;
pub use identifier::{AccountId as NewAccountId, DisplayName, InvalidValue};
pub use tenantry_platform::AccountId;

/// Lifecycle state of an account: one type for the workspace.
pub use tenantry_platform::AccountState;

/// Which states a list returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// ACTIVE and DISABLED: everything not deleted (the API's UNSPECIFIED).
    NotDeleted,
    /// Exactly this state.
    Only(AccountState),
}

impl StateFilter {
    /// The states the filter lets through.
    pub fn states(self) -> Vec<AccountState> {
        match self {
            StateFilter::NotDeleted => vec![AccountState::Active, AccountState::Disabled],
            StateFilter::Only(state) => vec![state],
        }
    }

    /// A stable label, used to bind page tokens to the filter.
    pub fn label(self) -> &'static str {
        match self {
            StateFilter::NotDeleted => "NOT_DELETED",
            StateFilter::Only(state) => state.as_str(),
        }
    }
}

/// An account as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The immutable identifier.
    pub id: AccountId,
    /// The name shown to people.
    pub display_name: DisplayName,
    /// Whether the account is a partner.
    pub partner: bool,
    /// The managing partner's id, for a managed customer.
    pub managed_by: Option<AccountId>,
    /// Lifecycle state.
    pub state: AccountState,
    /// `users/{sub}` (or `services/{name}`) of whoever created it.
    pub creator: String,
    /// Starts at 1, incremented on every change; the etag.
    pub version: i64,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// When it was deleted, if it is.
    pub delete_time: Option<DateTime<Utc>>,
}

impl Account {
    /// The etag clients send back: the version as a string.
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// Fails with [`RegistryError::StaleEtag`] when `etag` is set and not the current one.
    pub fn check_etag(&self, etag: &str) -> Result<(), RegistryError> {
        if etag_allows(etag, self.version) {
            Ok(())
        } else {
            Err(RegistryError::StaleEtag(self.id.clone()))
        }
    }
}

/// What an operation does to a stored account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// Nothing: the account already is as asked (idempotent repeat).
    Unchanged,
    /// Write this new value.
    To(T),
}

/// ACTIVE → DISABLED; DISABLED stays; DELETED is final.
pub fn disable(account: &Account) -> Result<Change<AccountState>, RegistryError> {
    match account.state {
        AccountState::Active => Ok(Change::To(AccountState::Disabled)),
        AccountState::Disabled => Ok(Change::Unchanged),
        AccountState::Deleted => Err(RegistryError::AccountDeleted(account.id.clone())),
    }
}

/// DISABLED → ACTIVE; ACTIVE stays; DELETED is final.
pub fn enable(account: &Account) -> Result<Change<AccountState>, RegistryError> {
    match account.state {
        AccountState::Disabled => Ok(Change::To(AccountState::Active)),
        AccountState::Active => Ok(Change::Unchanged),
        AccountState::Deleted => Err(RegistryError::AccountDeleted(account.id.clone())),
    }
}

/// Anything but DELETED → DELETED, provided a partner no longer manages live customers
/// (`live_customers`: how many of its customers are not deleted).
pub fn delete(
    account: &Account,
    live_customers: u64,
) -> Result<Change<AccountState>, RegistryError> {
    if account.state == AccountState::Deleted {
        return Ok(Change::Unchanged);
    }
    if live_customers > 0 {
        return Err(RegistryError::PartnerHasCustomers {
            account: account.id.clone(),
            customers: live_customers,
        });
    }
    Ok(Change::To(AccountState::Deleted))
}

/// Sets `partner`; refused for managed customers and deleted accounts.
pub fn promote(account: &Account) -> Result<Change<bool>, RegistryError> {
    if account.state == AccountState::Deleted {
        return Err(RegistryError::AccountDeleted(account.id.clone()));
    }
    if account.managed_by.is_some() {
        return Err(RegistryError::ManagedCannotBePartner(account.id.clone()));
    }
    if account.partner {
        return Ok(Change::Unchanged);
    }
    Ok(Change::To(true))
}

/// Changes the display name; refused for deleted accounts, unchanged when equal.
pub fn rename(account: &Account, name: &DisplayName) -> Result<Change<DisplayName>, RegistryError> {
    if account.state == AccountState::Deleted {
        return Err(RegistryError::AccountDeleted(account.id.clone()));
    }
    if &account.display_name == name {
        return Ok(Change::Unchanged);
    }
    Ok(Change::To(name.clone()))
}

/// Checks that a caller allowed by `grant` (or an operator) may still read `account`. A
/// deleted account's own members lose access at once: membership drops them from the
/// `account.deleted` event, which may run a moment after DeleteAccount answered, and until
/// then its answer (or a local view filled from it) still allows them. The managing partner's
/// members and operators keep seeing the account, as DELETED.
pub fn check_still_readable(
    account: &Account,
    grant: &Grant,
    operator: bool,
) -> Result<(), RegistryError> {
    if account.state == AccountState::Deleted && !operator && grant.partner_role.is_none() {
        return Err(RegistryError::AccessEnded(account.id.clone()));
    }
    Ok(())
}

/// Checks that `parent` may get a new managed customer: an ACTIVE partner.
pub fn check_can_manage_customers(parent: &Account) -> Result<(), RegistryError> {
    if !parent.partner {
        return Err(RegistryError::ParentNotPartner(parent.id.clone()));
    }
    if parent.state != AccountState::Active {
        return Err(RegistryError::ParentNotActive(parent.id.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(state: AccountState, partner: bool, managed: bool) -> Account {
        let now = Utc::now();
        Account {
            id: AccountId::trusted("acme"),
            display_name: DisplayName::trusted("Acme".into()),
            partner,
            managed_by: managed.then(|| AccountId::trusted("partner")),
            state,
            creator: "users/u".into(),
            version: 3,
            create_time: now,
            update_time: now,
            delete_time: None,
        }
    }

    #[test]
    fn state_transitions() {
        use AccountState::*;
        let cases = [
            (Active, Ok(Change::To(Disabled)), Ok(Change::Unchanged)),
            (Disabled, Ok(Change::Unchanged), Ok(Change::To(Active))),
            (Deleted, Err(()), Err(())),
        ];
        for (state, want_disable, want_enable) in cases {
            let a = account(state, false, false);
            assert_eq!(
                disable(&a).map_err(|_| ()),
                want_disable,
                "disable {state:?}"
            );
            assert_eq!(enable(&a).map_err(|_| ()), want_enable, "enable {state:?}");
        }
    }

    #[test]
    fn a_deleted_account_is_read_only_by_its_partner_and_operators() {
        use tenantry_proto::membership::v1::Role;
        let member = Grant {
            role: Some(Role::Owner),
            partner_role: None,
            granted_by: None,
        };
        let partner = Grant {
            role: None,
            partner_role: Some(Role::Employee),
            granted_by: None,
        };
        let nobody = Grant {
            role: None,
            partner_role: None,
            granted_by: None,
        };
        for state in [AccountState::Active, AccountState::Disabled] {
            let a = account(state, false, true);
            assert!(
                check_still_readable(&a, &member, false).is_ok(),
                "{state:?}"
            );
        }
        let gone = account(AccountState::Deleted, false, true);
        assert!(matches!(
            check_still_readable(&gone, &member, false),
            Err(RegistryError::AccessEnded(_))
        ));
        assert!(check_still_readable(&gone, &partner, false).is_ok());
        assert!(check_still_readable(&gone, &nobody, true).is_ok());
    }

    #[test]
    fn delete_is_idempotent_and_blocked_by_live_customers() {
        let a = account(AccountState::Active, true, false);
        assert_eq!(delete(&a, 0).unwrap(), Change::To(AccountState::Deleted));
        assert!(matches!(
            delete(&a, 2),
            Err(RegistryError::PartnerHasCustomers { customers: 2, .. })
        ));
        let gone = account(AccountState::Deleted, false, false);
        assert_eq!(delete(&gone, 0).unwrap(), Change::Unchanged);
    }

    #[test]
    fn promotion_rules() {
        assert_eq!(
            promote(&account(AccountState::Active, false, false)).unwrap(),
            Change::To(true)
        );
        assert_eq!(
            promote(&account(AccountState::Disabled, true, false)).unwrap(),
            Change::Unchanged
        );
        assert!(matches!(
            promote(&account(AccountState::Active, false, true)),
            Err(RegistryError::ManagedCannotBePartner(_))
        ));
        assert!(matches!(
            promote(&account(AccountState::Deleted, false, false)),
            Err(RegistryError::AccountDeleted(_))
        ));
    }

    #[test]
    fn parents_must_be_active_partners() {
        assert!(check_can_manage_customers(&account(AccountState::Active, true, false)).is_ok());
        assert!(matches!(
            check_can_manage_customers(&account(AccountState::Active, false, false)),
            Err(RegistryError::ParentNotPartner(_))
        ));
        assert!(matches!(
            check_can_manage_customers(&account(AccountState::Disabled, true, false)),
            Err(RegistryError::ParentNotActive(_))
        ));
    }

    #[test]
    fn etags_and_renames() {
        let a = account(AccountState::Active, false, false);
        assert!(a.check_etag("").is_ok());
        assert!(a.check_etag("3").is_ok());
        assert!(matches!(
            a.check_etag("2"),
            Err(RegistryError::StaleEtag(_))
        ));
        assert_eq!(
            rename(&a, &DisplayName::trusted("Acme".into())).unwrap(),
            Change::Unchanged
        );
        assert!(
            rename(
                &account(AccountState::Deleted, false, false),
                &a.display_name
            )
            .is_err()
        );
    }

    #[test]
    fn state_filters() {
        assert_eq!(
            StateFilter::NotDeleted.states(),
            vec![AccountState::Active, AccountState::Disabled]
        );
        assert_eq!(
            StateFilter::Only(AccountState::Deleted).states(),
            vec![AccountState::Deleted]
        );
        for state in [
            AccountState::Active,
            AccountState::Disabled,
            AccountState::Deleted,
        ] {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
        }
    }
}
