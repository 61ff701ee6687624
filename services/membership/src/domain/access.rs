//! A caller's standing in one account, and the decisions that follow from it: the
//! authorization table for permissions ([`super::authorize`]) and the OWNER authority
//! ([`super::owners`]).

use tenantry_platform::AccountId;

use super::authorize::{AuthzFacts, Decision, decide};
use super::owners::{OwnerAuthority, grant_ceiling, owner_authority};
use super::{AccountFacts, Caller, MembershipError, Permission, Role};

/// The caller's standing in one account.
#[derive(Clone, Debug)]
pub struct Access {
    /// Who is asking.
    pub caller: Caller,
    /// The account, `None` if it does not exist.
    pub facts: Option<AccountFacts>,
    /// The caller's role in the account.
    pub role: Option<Role>,
    /// The caller's role in the account's managing partner.
    pub partner_role: Option<Role>,
    /// Whether the account has an OWNER (only looked up where a decision depends on it).
    pub has_owner: bool,
}

impl Access {
    /// The decision for `permission`. Service identities are trusted: they act for a caller
    /// they have already authorized.
    pub fn decide(&self, permission: Permission) -> Decision {
        match &self.caller {
            Caller::Service { name } => Decision {
                allowed: true,
                reason: format!("trusted service {name}"),
            },
            Caller::User { operator, .. } => decide(
                permission,
                &AuthzFacts {
                    operator: *operator,
                    account: self.facts.as_ref(),
                    role: self.role,
                    partner_role: self.partner_role,
                    account_has_owner: self.has_owner,
                },
            ),
        }
    }

    /// Whether `permission` is granted.
    pub fn allows(&self, permission: Permission) -> bool {
        self.decide(permission).allowed
    }

    /// PERMISSION_DENIED unless `permission` is granted.
    pub fn require(&self, permission: Permission) -> Result<(), MembershipError> {
        if self.allows(permission) {
            Ok(())
        } else {
            Err(MembershipError::PermissionDenied)
        }
    }

    /// The account, or NOT_FOUND (call only after a permission check passed).
    pub fn existing(&self, account_id: &AccountId) -> Result<&AccountFacts, MembershipError> {
        self.facts
            .as_ref()
            .ok_or_else(|| MembershipError::AccountNotFound(account_id.to_string()))
    }

    /// The counter ceiling under which this caller may grant OWNER, `None` if they may not.
    pub fn owner_grant_ceiling(&self) -> Option<i64> {
        let authority = owner_authority(&self.caller, self.role);
        if authority == OwnerAuthority::WhileOwnerless && self.has_owner {
            return None;
        }
        grant_ceiling(authority)
    }

    /// Whether this caller may take the OWNER role away from someone else.
    pub fn may_revoke_owner(&self) -> bool {
        owner_authority(&self.caller, self.role) == OwnerAuthority::Full
    }
}
