//! An account's lifecycle state, one type for the whole workspace: the customer registry owns
//! it (ACTIVE → DISABLED → DELETED, soft), and every service that keeps or asks for account
//! facts reads it in the same three values.

use tenantry_proto::registry::v1 as wire;

/// Lifecycle state of an account (DESIGN.md §1, §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountState {
    /// In normal use.
    Active,
    /// Suspended; reversible.
    Disabled,
    /// Soft-deleted; final.
    Deleted,
}

impl AccountState {
    /// Every state.
    pub const ALL: [AccountState; 3] = [
        AccountState::Active,
        AccountState::Disabled,
        AccountState::Deleted,
    ];

    /// The stored spelling (every service's tables use it).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "ACTIVE",
            AccountState::Disabled => "DISABLED",
            AccountState::Deleted => "DELETED",
        }
    }

    /// The state stored as `text`.
    pub fn parse(text: &str) -> Option<AccountState> {
        AccountState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// The `tenantry.registry.v1.AccountState` value.
    pub fn to_wire(self) -> i32 {
        (match self {
            AccountState::Active => wire::AccountState::Active,
            AccountState::Disabled => wire::AccountState::Disabled,
            AccountState::Deleted => wire::AccountState::Deleted,
        }) as i32
    }

    /// The state a wire value names; `None` for ACCOUNT_STATE_UNSPECIFIED and unknown numbers.
    pub fn from_wire(value: i32) -> Option<AccountState> {
        match wire::AccountState::try_from(value) {
            Ok(wire::AccountState::Active) => Some(AccountState::Active),
            Ok(wire::AccountState::Disabled) => Some(AccountState::Disabled),
            Ok(wire::AccountState::Deleted) => Some(AccountState::Deleted),
            Ok(wire::AccountState::Unspecified) | Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_wire_forms_round_trip() {
        for state in AccountState::ALL {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
            assert_eq!(AccountState::from_wire(state.to_wire()), Some(state));
        }
        assert_eq!(AccountState::parse("active"), None);
        assert_eq!(AccountState::from_wire(0), None);
        assert_eq!(AccountState::from_wire(42), None);
    }
}
