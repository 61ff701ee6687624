//! A caller's standing in one account, and the decisions that follow from it: the
//! authorization table for permissions ([`super::authorize`]) and the OWNER authority
//! ([`super::owners`]); and which of the caller's roles let them act ([`Access::granted_by`]),
//! for the `provenance` of the change.

use tenantry_platform::AccountId;
use tenantry_platform::call_context::ActorRole;
use tenantry_proto::membership::v1 as wire;

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

    /// The role that lets this person pass `check` (a test of their standing, e.g. "allows
    /// MEMBERS_MANAGE"): their own role in the account, else their role in its managing
    /// partner, else the operator role — the first that passes it alone. `None` for a service
    /// (the role of the person it acts for comes with its call) and when nothing passes.
    pub fn granted_by(&self, check: impl Fn(&Access) -> bool) -> Option<ActorRole> {
        let Caller::User { user_id, operator } = &self.caller else {
            return None;
        };
        let only = |role: Option<Role>, partner_role: Option<Role>, operator: bool| Access {
            caller: Caller::User {
                user_id: user_id.clone(),
                operator,
            },
            facts: self.facts.clone(),
            role,
            partner_role,
            has_owner: self.has_owner,
        };
        if let Some(role) = self.role
            && check(&only(Some(role), None, false))
        {
            return Some(ActorRole::Member(wire_role(role)));
        }
        if let Some(role) = self.partner_role
            && check(&only(None, Some(role), false))
        {
            return Some(ActorRole::PartnerMember(wire_role(role)));
        }
        (*operator && check(&only(None, None, true))).then_some(ActorRole::Operator)
    }

    /// The role that grants this person `permission` (see [`Self::granted_by`]).
    pub fn granting(&self, permission: Permission) -> Option<ActorRole> {
        self.granted_by(|access| access.allows(permission))
    }
}

/// A role as `tenantry.membership.v1.Role`.
fn wire_role(role: Role) -> wire::Role {
    match role {
        Role::Owner => wire::Role::Owner,
        Role::Admin => wire::Role::Admin,
        Role::Employee => wire::Role::Employee,
    }
}

#[cfg(test)]
mod tests {
    use tenantry_platform::UserId;

    use super::*;
    use crate::domain::AccountState;

    /// A person's standing in `acme`, a customer managed by `partner`, which has an OWNER.
    fn standing(role: Option<Role>, partner_role: Option<Role>, operator: bool) -> Access {
        Access {
            caller: Caller::User {
                user_id: UserId::trusted("u"),
                operator,
            },
            facts: Some(AccountFacts {
                account_id: AccountId::trusted("acme"),
                display_name: "Acme".into(),
                partner: false,
                managed_by: Some(AccountId::trusted("partner")),
                state: AccountState::Active,
            }),
            role,
            partner_role,
            has_owner: true,
        }
    }

    #[test]
    fn the_role_that_grants_is_the_first_that_alone_suffices() {
        let (own, partner) = (Some(Role::Employee), Some(Role::Admin));
        let access = standing(own, partner, true);
        // Reading: the own role suffices.
        assert_eq!(
            access.granting(Permission::MembersList),
            Some(ActorRole::Member(wire::Role::Employee))
        );
        // Updating the account: an EMPLOYEE may not, the partner's ADMIN may.
        assert_eq!(
            access.granting(Permission::AccountUpdate),
            Some(ActorRole::PartnerMember(wire::Role::Admin))
        );
        // Managing members: neither role; the operator role.
        assert_eq!(
            access.granting(Permission::MembersManage),
            Some(ActorRole::Operator)
        );
        // Without the operator role nothing grants it.
        assert_eq!(
            standing(own, partner, false).granting(Permission::MembersManage),
            None
        );
        // Granting OWNER with an OWNER present: an ADMIN's role does not suffice.
        let admin = standing(Some(Role::Admin), None, true);
        assert_eq!(
            admin.granted_by(|access| access.owner_grant_ceiling().is_some()),
            Some(ActorRole::Operator)
        );
        assert_eq!(
            admin.granting(Permission::MembersManage),
            Some(ActorRole::Member(wire::Role::Admin))
        );
    }

    #[test]
    fn a_service_records_no_role_of_its_own() {
        let access = Access {
            caller: Caller::Service {
                name: "invitation".into(),
            },
            ..standing(None, None, false)
        };
        assert!(access.allows(Permission::MembersManage));
        assert_eq!(access.granting(Permission::MembersManage), None);
    }
}
