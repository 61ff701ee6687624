//! The OWNER rules: at most [`MAX_OWNERS`] per account; only an OWNER (or an operator, or a
//! trusted service) grants or revokes OWNER, unless the account has none, in which case an
//! ADMIN may grant it; the last OWNER can be neither removed nor demoted.
//!
//! The store enforces the counts race-free with conditional updates of a per-account counter
//! (`owners < ceiling` to grant, `owners > 1` to revoke); these functions decide the ceiling
//! and explain a refused update.

use tenantry_platform::AccountId;

use super::{Caller, MembershipError, Role};

/// Most OWNERs an account may have (the one limit: the invitation service asks for it with
/// `GetOwnerCapacity` rather than keeping a copy).
pub const MAX_OWNERS: i64 = 2;

/// How many OWNERs an account has against the limit (GetOwnerCapacity's answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerCapacity {
    /// The account's OWNERs (0 for an account membership does not know).
    pub owners: i64,
    /// [`MAX_OWNERS`].
    pub max_owners: i64,
    /// Whether one more OWNER fits: `owners < MAX_OWNERS`.
    pub has_room: bool,
}

impl OwnerCapacity {
    /// The capacity of an account with `owners` OWNERs.
    pub fn of(owners: i64) -> Self {
        Self {
            owners,
            max_owners: MAX_OWNERS,
            has_room: owners < MAX_OWNERS,
        }
    }
}

/// How a role change moves the account's OWNER count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerDelta {
    /// No OWNER gained or lost.
    Unchanged,
    /// One more OWNER.
    Gained,
    /// One OWNER fewer.
    Lost,
}

/// The change in OWNER count when a member's role goes from `from` to `to` (`None`: not a
/// member before / after).
pub fn owner_delta(from: Option<Role>, to: Option<Role>) -> OwnerDelta {
    match (from == Some(Role::Owner), to == Some(Role::Owner)) {
        (false, true) => OwnerDelta::Gained,
        (true, false) => OwnerDelta::Lost,
        _ => OwnerDelta::Unchanged,
    }
}

/// What a caller may do with the OWNER role of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerAuthority {
    /// Grant and revoke OWNER: OWNERs, operators, trusted services.
    Full,
    /// Grant OWNER only while the account has none: ADMINs.
    WhileOwnerless,
    /// Nothing.
    None,
}

/// The caller's authority over OWNER, given their role in the account.
pub fn owner_authority(caller: &Caller, role_in_account: Option<Role>) -> OwnerAuthority {
    match caller {
        Caller::Service { .. } | Caller::User { operator: true, .. } => OwnerAuthority::Full,
        Caller::User { .. } => match role_in_account {
            Some(Role::Owner) => OwnerAuthority::Full,
            Some(Role::Admin) => OwnerAuthority::WhileOwnerless,
            _ => OwnerAuthority::None,
        },
    }
}

/// The counter condition for a grant: it succeeds only while `owners < ceiling`. `None`: the
/// caller may not grant OWNER at all.
pub fn grant_ceiling(authority: OwnerAuthority) -> Option<i64> {
    match authority {
        OwnerAuthority::Full => Some(MAX_OWNERS),
        // "No OWNER yet" is part of the same conditional update, so a concurrent grant that
        // creates the first OWNER revokes the ADMIN's right atomically.
        OwnerAuthority::WhileOwnerless => Some(1),
        OwnerAuthority::None => None,
    }
}

/// Whether a grant may happen with `owners` OWNERs present, and why not.
pub fn check_grant(
    account_id: &AccountId,
    owners: i64,
    ceiling: i64,
) -> Result<(), MembershipError> {
    if owners >= MAX_OWNERS {
        return Err(MembershipError::OwnerLimit(account_id.to_string()));
    }
    if owners >= ceiling {
        return Err(MembershipError::PermissionDenied);
    }
    Ok(())
}

/// Whether an OWNER may go (removed or demoted) with `owners` OWNERs present.
pub fn check_revoke(account_id: &AccountId, owners: i64) -> Result<(), MembershipError> {
    if owners <= 1 {
        return Err(MembershipError::LastOwner(account_id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(operator: bool) -> Caller {
        Caller::User {
            user_id: tenantry_platform::UserId::trusted("u"),
            operator,
        }
    }

    #[test]
    fn deltas() {
        use OwnerDelta::*;
        let cases = [
            (None, Some(Role::Owner), Gained),
            (None, Some(Role::Admin), Unchanged),
            (Some(Role::Admin), Some(Role::Owner), Gained),
            (Some(Role::Owner), Some(Role::Owner), Unchanged),
            (Some(Role::Owner), Some(Role::Employee), Lost),
            (Some(Role::Owner), None, Lost),
            (Some(Role::Employee), None, Unchanged),
        ];
        for (from, to, delta) in cases {
            assert_eq!(owner_delta(from, to), delta, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn authority_by_caller_and_role() {
        let service = Caller::Service {
            name: "invitation".into(),
        };
        let cases = [
            (service, None, OwnerAuthority::Full),
            (user(true), None, OwnerAuthority::Full),
            (user(false), Some(Role::Owner), OwnerAuthority::Full),
            (
                user(false),
                Some(Role::Admin),
                OwnerAuthority::WhileOwnerless,
            ),
            (user(false), Some(Role::Employee), OwnerAuthority::None),
            (user(false), None, OwnerAuthority::None),
        ];
        for (caller, role, authority) in cases {
            assert_eq!(
                owner_authority(&caller, role),
                authority,
                "{caller:?} {role:?}"
            );
        }
        assert_eq!(grant_ceiling(OwnerAuthority::Full), Some(2));
        assert_eq!(grant_ceiling(OwnerAuthority::WhileOwnerless), Some(1));
        assert_eq!(grant_ceiling(OwnerAuthority::None), None);
    }

    #[test]
    fn capacity_has_room_below_the_limit() {
        assert_eq!(
            OwnerCapacity::of(0),
            OwnerCapacity {
                owners: 0,
                max_owners: 2,
                has_room: true
            }
        );
        assert!(OwnerCapacity::of(1).has_room);
        assert!(!OwnerCapacity::of(2).has_room);
        assert!(!OwnerCapacity::of(3).has_room);
    }

    #[test]
    fn grants_respect_the_limit_and_the_ceiling() {
        let a = &AccountId::trusted("a");
        assert!(check_grant(a, 0, 2).is_ok());
        assert!(check_grant(a, 1, 2).is_ok());
        assert!(matches!(
            check_grant(a, 2, 2),
            Err(MembershipError::OwnerLimit(_))
        ));
        // An ADMIN may create the first OWNER, not a second one.
        assert!(check_grant(a, 0, 1).is_ok());
        assert!(matches!(
            check_grant(a, 1, 1),
            Err(MembershipError::PermissionDenied)
        ));
        assert!(matches!(
            check_grant(a, 2, 1),
            Err(MembershipError::OwnerLimit(_))
        ));
    }

    #[test]
    fn the_last_owner_stays() {
        let a = &AccountId::trusted("a");
        assert!(matches!(
            check_revoke(a, 1),
            Err(MembershipError::LastOwner(_))
        ));
        assert!(matches!(
            check_revoke(a, 0),
            Err(MembershipError::LastOwner(_))
        ));
        assert!(check_revoke(a, 2).is_ok());
    }
}
