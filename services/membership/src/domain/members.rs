//! The rules of membership's own RPCs, free of I/O: who AddMember adds and under which OWNER
//! ceiling, who may change or take away a role (OWNER authority), who may remove whom and what
//! a refused caller may learn, and who AddMyself lets in.

use chrono::{DateTime, Utc};
use tenantry_platform::call_context::ActorRole;
use tenantry_platform::etag::etag_allows;
use tenantry_platform::idempotency::{RequestKey, RequestRecord};
use tenantry_platform::{AccountId, UserId};

use super::access::Access;
use super::owners::MAX_OWNERS;
use super::{
    AccountFacts, AccountState, Caller, Member, MemberSource, MembershipError, NewMember,
    Permission, Role, UserProfile,
};

/// The method name under which AddMember records its request ids.
pub const ADD_MEMBER: &str = "AddMember";

/// Who AddMember adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A user by id.
    User(UserId),
    /// The one user of the directory with this (normalized) e-mail address.
    Email(String),
}

impl Target {
    /// How the target enters the request's fingerprint.
    fn key(&self) -> String {
        match self {
            Target::User(user_id) => format!("user:{user_id}"),
            Target::Email(email) => format!("email:{email}"),
        }
    }
}

/// A parsed AddMember request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddMember {
    /// The account to add to.
    pub account_id: AccountId,
    /// Who to add.
    pub target: Target,
    /// The role to give.
    pub role: Role,
    /// How the membership comes about.
    pub source: MemberSource,
    /// The optional request id (canonical UUID).
    pub request_id: Option<String>,
    /// The invitee's directory entry from their verified token (source INVITATION only),
    /// written before the membership so it is listed complete at once.
    pub profile: Option<UserProfile>,
}

impl AddMember {
    /// What the request id (if any) is recorded under for `caller`: the caller, the method and
    /// the fingerprint of the request's fields.
    pub fn request_key(&self, caller: &Caller) -> Option<RequestKey> {
        let request_id = self.request_id.clone()?;
        Some(RequestKey::new(
            request_id,
            caller.resource_name(),
            ADD_MEMBER,
            &[
                &self.account_id,
                &self.target.key(),
                self.role.as_str(),
                self.source.as_str(),
            ],
        ))
    }

    /// The membership to create for `user_id` (whom the target names), added by `caller`,
    /// and the record of its request id `key`.
    pub fn into_new(
        self,
        user_id: UserId,
        caller: &Caller,
        key: Option<RequestKey>,
    ) -> (NewMember, Option<RequestRecord>) {
        let record = key.map(|key| RequestRecord {
            key,
            resource_key: format!("{}/{user_id}", self.account_id),
        });
        let new = NewMember {
            account_id: self.account_id,
            user_id,
            role: self.role,
            source: self.source,
            added_by: caller.resource_name(),
            expire_time: None,
        };
        (new, record)
    }
}

/// Whether AddMember may add a member with `role` to `account`, and the counter ceiling of
/// the grant: granting OWNER needs OWNER authority; a deleted account takes no members.
pub fn check_add(
    access: &Access,
    account: &AccountFacts,
    role: Role,
) -> Result<i64, MembershipError> {
    let owner_ceiling = match role {
        Role::Owner => access
            .owner_grant_ceiling()
            .ok_or(MembershipError::PermissionDenied)?,
        _ => MAX_OWNERS,
    };
    if account.state == AccountState::Deleted {
        return Err(MembershipError::AccountDeleted(
            account.account_id.to_string(),
        ));
    }
    Ok(owner_ceiling)
}

/// The role that let the caller pass [`check_add`] for `role` (see [`Access::granted_by`]).
pub fn add_granted_by(access: &Access, role: Role) -> Option<ActorRole> {
    access.granted_by(|access| {
        access.allows(Permission::MembersManage)
            && (role != Role::Owner || access.owner_grant_ceiling().is_some())
    })
}

/// Whether a change from `from` to `to` raises the role (a grant a policy may gate; lowering
/// one never is).
pub fn raises(from: Role, to: Role) -> bool {
    let rank = |role: Role| match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Employee => 1,
    };
    rank(to) > rank(from)
}

/// The user an e-mail address names, given up to two directory users holding it.
pub fn the_user_with(email: String, mut holders: Vec<UserId>) -> Result<UserId, MembershipError> {
    match holders.len() {
        0 => Err(MembershipError::UserNotFound(email)),
        1 => Ok(holders.remove(0)),
        _ => Err(MembershipError::AmbiguousEmail(email)),
    }
}

/// Whether UpdateMember may change `current` to `role` with the etag `sent` (for the resource
/// `name`), and the counter ceiling of an OWNER grant: taking OWNER away needs full OWNER
/// authority, granting it an OWNER ceiling; a deleted account's roles stay; a stale etag is
/// refused. Call after MEMBERS_MANAGE was required.
pub fn check_update(
    access: &Access,
    account: &AccountFacts,
    current: &Member,
    role: Role,
    sent: &str,
    name: &str,
) -> Result<i64, MembershipError> {
    let mut owner_ceiling = MAX_OWNERS;
    if current.role == Role::Owner && role != Role::Owner && !access.may_revoke_owner() {
        return Err(MembershipError::PermissionDenied);
    }
    if role == Role::Owner && current.role != Role::Owner {
        owner_ceiling = access
            .owner_grant_ceiling()
            .ok_or(MembershipError::PermissionDenied)?;
    }
    if account.state == AccountState::Deleted {
        return Err(MembershipError::AccountDeleted(
            account.account_id.to_string(),
        ));
    }
    if !etag_allows(sent, current.version) {
        return Err(MembershipError::StaleEtag(name.to_string()));
    }
    Ok(owner_ceiling)
}

/// The role that let the caller pass [`check_update`] changing `current` to `role` (see
/// [`Access::granted_by`]).
pub fn update_granted_by(access: &Access, current: &Member, role: Role) -> Option<ActorRole> {
    access.granted_by(|access| {
        access.allows(Permission::MembersList)
            && access.allows(Permission::MembersManage)
            && (current.role != Role::Owner || role == Role::Owner || access.may_revoke_owner())
            && (role != Role::Owner
                || current.role == Role::Owner
                || access.owner_grant_ceiling().is_some())
    })
}

/// RemoveMember's rules: anyone may leave; removing someone else needs MEMBERS_MANAGE (and
/// full OWNER authority for an OWNER); only callers allowed to list members learn whether the
/// account or the member exists.
#[derive(Debug)]
pub struct Removal<'a> {
    access: &'a Access,
    account_id: &'a AccountId,
    user_id: &'a UserId,
    may_list: bool,
    is_self: bool,
}

impl<'a> Removal<'a> {
    /// The removal of `user_id` from `account_id` by the caller of `access`.
    pub fn new(access: &'a Access, account_id: &'a AccountId, user_id: &'a UserId) -> Self {
        Self {
            access,
            account_id,
            user_id,
            may_list: access.allows(Permission::MembersList),
            is_self: access.caller.user_id() == Some(user_id),
        }
    }

    /// `error`, or PERMISSION_DENIED for a caller who may not learn it.
    fn hidden(&self, error: MembershipError) -> MembershipError {
        if self.may_list {
            error
        } else {
            MembershipError::PermissionDenied
        }
    }

    /// Whether the caller may look the member up at all (before the lookup).
    pub fn may_look(&self) -> Result<(), MembershipError> {
        if !self.may_list && !self.is_self {
            return Err(MembershipError::PermissionDenied);
        }
        if self.access.facts.is_none() {
            return Err(self.hidden(MembershipError::AccountNotFound(
                self.account_id.to_string(),
            )));
        }
        Ok(())
    }

    /// The member to remove, given what the lookup found and the etag `sent` (for the
    /// resource `name`).
    pub fn check(
        &self,
        current: Option<Member>,
        sent: &str,
        name: &str,
    ) -> Result<Member, MembershipError> {
        let Some(current) = current else {
            return Err(self.hidden(MembershipError::MemberNotFound {
                account_id: self.account_id.to_string(),
                user_id: self.user_id.to_string(),
            }));
        };
        if !self.is_self {
            self.access.require(Permission::MembersManage)?;
            if current.role == Role::Owner && !self.access.may_revoke_owner() {
                return Err(MembershipError::PermissionDenied);
            }
        }
        if !etag_allows(sent, current.version) {
            return Err(MembershipError::StaleEtag(name.to_string()));
        }
        Ok(current)
    }

    /// The role that let the caller remove `current` (after [`Self::check`] allowed it): a
    /// member leaving holds their own role; removing someone else takes MEMBERS_MANAGE (and
    /// full OWNER authority for an OWNER), see [`Access::granted_by`].
    pub fn granted_by(&self, current: &Member) -> Option<ActorRole> {
        if self.is_self {
            return self.access.granted_by(|access| access.role.is_some());
        }
        self.access.granted_by(|access| {
            access.allows(Permission::MembersManage)
                && (current.role != Role::Owner || access.may_revoke_owner())
        })
    }
}

/// The caller AddMyself decides for: the person, as a partner member only (operators join
/// customers with AddMember).
pub fn add_myself_caller(user_id: UserId) -> Caller {
    Caller::User {
        user_id,
        operator: false,
    }
}

/// Whether AddMyself may join an account in this state (only ACTIVE ones).
pub fn joinable(account: &AccountFacts) -> bool {
    account.state == AccountState::Active
}

/// The membership AddMyself creates: `user_id` in `account_id` with the configured `role`,
/// ending at `expire_time` if time-bound.
pub fn self_assigned(
    account_id: AccountId,
    user_id: UserId,
    role: Role,
    expire_time: Option<DateTime<Utc>>,
) -> NewMember {
    let added_by = user_id.name();
    NewMember {
        account_id,
        user_id,
        role,
        source: MemberSource::SelfAssigned,
        added_by,
        expire_time,
    }
}

/// Whether ListMyAccounts shows a membership of an account in this state (not DELETED ones:
/// their members are dropped a moment later).
pub fn listed(account: &AccountFacts) -> bool {
    account.state != AccountState::Deleted
}

/// ListMembers' filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFilter {
    /// Only members with one of these roles (deduplicated, in role order); empty: all.
    pub roles: Vec<Role>,
    /// Only the members whose directory e-mail (lower case) is this.
    pub email: Option<String>,
}

impl MemberFilter {
    /// The page-token scope of a listing of `account_id` with these filters.
    pub fn scope(&self, account_id: &AccountId) -> String {
        let role_names: Vec<&str> = self.roles.iter().map(|role| role.as_str()).collect();
        format!(
            "ListMembers|{account_id}|{}|{}",
            role_names.join(","),
            self.email.as_deref().unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(state: AccountState) -> AccountFacts {
        AccountFacts {
            account_id: AccountId::trusted("acme"),
            display_name: "Acme".into(),
            partner: false,
            managed_by: None,
            state,
        }
    }

    fn access(user: &str, role: Option<Role>, has_owner: bool) -> Access {
        Access {
            caller: Caller::User {
                user_id: UserId::trusted(user),
                operator: false,
            },
            facts: Some(account(AccountState::Active)),
            role,
            partner_role: None,
            has_owner,
        }
    }

    #[test]
    fn owner_grants_need_owner_authority() {
        let active = account(AccountState::Active);
        let owner = access("olga", Some(Role::Owner), true);
        let admin = access("adam", Some(Role::Admin), true);
        let lone_admin = access("adam", Some(Role::Admin), false);
        assert_eq!(check_add(&owner, &active, Role::Owner).unwrap(), MAX_OWNERS);
        assert_eq!(check_add(&lone_admin, &active, Role::Owner).unwrap(), 1);
        assert!(matches!(
            check_add(&admin, &active, Role::Owner),
            Err(MembershipError::PermissionDenied)
        ));
        assert_eq!(check_add(&admin, &active, Role::Admin).unwrap(), MAX_OWNERS);
        assert!(matches!(
            check_add(&owner, &account(AccountState::Deleted), Role::Admin),
            Err(MembershipError::AccountDeleted(_))
        ));
    }

    #[test]
    fn an_email_names_exactly_one_user() {
        let email = "ivy@example.com".to_string();
        assert!(matches!(
            the_user_with(email.clone(), vec![]),
            Err(MembershipError::UserNotFound(_))
        ));
        assert_eq!(
            the_user_with(email.clone(), vec![UserId::trusted("ivy")]).unwrap(),
            "ivy"
        );
        let two = vec![UserId::trusted("ivy"), UserId::trusted("ivy-2")];
        assert!(matches!(
            the_user_with(email, two),
            Err(MembershipError::AmbiguousEmail(_))
        ));
    }

    #[test]
    fn strangers_learn_nothing_from_a_removal() {
        let account_id = AccountId::trusted("acme");
        let (eve, adam) = (UserId::trusted("eve"), UserId::trusted("adam"));
        let mut stranger = access("mallory", None, true);
        stranger.facts = None;
        assert!(matches!(
            Removal::new(&stranger, &account_id, &adam).may_look(),
            Err(MembershipError::PermissionDenied)
        ));
        // Even leaving an account that does not exist tells a caller who may not list its
        // members nothing.
        assert!(matches!(
            Removal::new(&stranger, &account_id, &UserId::trusted("mallory")).may_look(),
            Err(MembershipError::PermissionDenied)
        ));
        let employee = access("eve", Some(Role::Employee), true);
        let removal = Removal::new(&employee, &account_id, &adam);
        assert!(removal.may_look().is_ok());
        assert!(matches!(
            removal.check(None, "", "accounts/acme/members/adam"),
            Err(MembershipError::MemberNotFound { .. })
        ));
        assert!(
            Removal::new(&employee, &account_id, &eve)
                .may_look()
                .is_ok()
        );
    }

    #[test]
    fn list_scopes_bind_the_filters() {
        let account_id = AccountId::trusted("acme");
        let all = MemberFilter {
            roles: vec![],
            email: None,
        };
        let managers = MemberFilter {
            roles: vec![Role::Owner, Role::Admin],
            email: Some("a@b.io".into()),
        };
        assert_eq!(all.scope(&account_id), "ListMembers|acme||");
        assert_eq!(
            managers.scope(&account_id),
            "ListMembers|acme|OWNER,ADMIN|a@b.io"
        );
    }
}
