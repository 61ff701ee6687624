//! What a handler learns about its caller and the account before the domain decides: the
//! caller (refreshing a person's directory entry on the way), the account's facts, the
//! caller's roles; and the user directory's write cache.

use std::collections::HashMap;
use std::sync::Mutex;

use tenantry_platform::{AccountId, ApiError, Principal, UserId};

use super::MembershipApi;
use crate::domain::access::Access;
use crate::domain::{AccountFacts, Caller, Member, MembershipError, Permission, UserProfile};
use crate::store::Store;
use crate::wire;

impl MembershipApi {
    /// The caller as the domain sees it; a person's directory entry is refreshed on the way.
    pub(super) async fn caller(&self, principal: &Principal) -> Result<Caller, ApiError> {
        match principal {
            Principal::Service(service) => Ok(Caller::Service {
                name: service.name.clone(),
            }),
            Principal::User(user) => {
                let user_id = UserId::trusted(user.sub.clone());
                self.directory
                    .remember(&user_id, wire::profile_of_user(user))
                    .await?;
                Ok(Caller::User {
                    user_id,
                    operator: user.operator,
                })
            }
        }
    }

    /// The caller's standing in `account_id`.
    pub(super) async fn access(
        &self,
        caller: &Caller,
        account_id: &AccountId,
    ) -> Result<Access, ApiError> {
        let facts = self.accounts.account(account_id).await?;
        self.access_with(caller, account_id, facts, true).await
    }

    /// Like [`Self::access`], but a refusal is checked once more against the registry's own
    /// facts: the replica follows `account.*` events a moment behind, and a partner promoted
    /// (or a customer enabled) just now must not be refused for that.
    pub(super) async fn access_for(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        permission: Permission,
    ) -> Result<Access, ApiError> {
        // Whether the account has an OWNER only matters to OwnersManage; counting them for
        // every Authorize was one query in four on the path of every call of every service.
        let count_owners = permission == Permission::OwnersManage;
        let facts = self.accounts.account(account_id).await?;
        let access = self
            .access_with(caller, account_id, facts, count_owners)
            .await?;
        if access.allows(permission) || access.facts.is_none() {
            return Ok(access);
        }
        let facts = self.accounts.refresh(account_id).await?;
        self.access_with(caller, account_id, facts, count_owners)
            .await
    }

    /// Like [`Self::access_for`], for `Authorize`: an allow is served from membership's local
    /// view when it holds one (unless `bypass_view`), and what the database answers is kept
    /// there.
    pub(super) async fn authorize_access(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        permission: Permission,
        bypass_view: bool,
    ) -> Result<Access, ApiError> {
        let Some(view) = &self.view else {
            return self.access_for(caller, account_id, permission).await;
        };
        // OWNERS_MANAGE depends on the OWNER count, which the view does not keep.
        let count_owners = permission == Permission::OwnersManage;
        if !bypass_view
            && permission.keepable()
            && let Some(access) = view.cached(caller, account_id)
            && access.allows(permission)
        {
            return Ok(access);
        }
        let mut tickets = view.tickets(caller, account_id);
        let facts = self.accounts.account(account_id).await?;
        if let Some(partner) = facts.as_ref().and_then(|facts| facts.managed_by.as_ref()) {
            view.partner_ticket(caller, partner, &mut tickets);
        }
        let mut access = self
            .access_with(caller, account_id, facts, count_owners)
            .await?;
        if !access.allows(permission) && access.facts.is_some() {
            let facts = self.accounts.refresh(account_id).await?;
            access = self
                .access_with(caller, account_id, facts, count_owners)
                .await?;
        }
        view.keep(&access, account_id, tickets);
        Ok(access)
    }

    /// The caller's standing given the account's `facts`; `has_owner` is only looked up when
    /// `count_owners` (otherwise it is false).
    async fn access_with(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        facts: Option<AccountFacts>,
        count_owners: bool,
    ) -> Result<Access, ApiError> {
        let mut access = Access {
            caller: caller.clone(),
            facts,
            role: None,
            partner_role: None,
            has_owner: false,
        };
        if let (Some(facts), Some(user_id)) = (&access.facts, caller.user_id()) {
            let mut ids = vec![account_id];
            ids.extend(facts.managed_by.as_ref());
            let roles = self.store.roles_of(user_id, &ids).await?;
            access.role = roles.get(account_id).copied();
            access.partner_role = facts
                .managed_by
                .as_ref()
                .and_then(|partner| roles.get(partner).copied());
            if count_owners {
                access.has_owner = self.store.owner_count(account_id).await? > 0;
            }
        }
        Ok(access)
    }

    /// The member, or NOT_FOUND.
    pub(super) async fn existing_member(
        &self,
        account_id: &AccountId,
        user_id: &UserId,
    ) -> Result<Member, MembershipError> {
        self.store
            .member(account_id, user_id)
            .await?
            .ok_or_else(|| MembershipError::MemberNotFound {
                account_id: account_id.to_string(),
                user_id: user_id.to_string(),
            })
    }
}

/// Most directory entries remembered as written; the cache is dropped when it is full.
const DIRECTORY_CACHE_LIMIT: usize = 100_000;

/// Refreshes the user directory from token claims, writing only when they changed since this
/// process last wrote them, so an ordinary call costs no write.
#[derive(Debug)]
pub(super) struct UserDirectory {
    store: Store,
    written: Mutex<HashMap<UserId, UserProfile>>,
}

impl UserDirectory {
    /// A directory writing through `store`.
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            written: Mutex::new(HashMap::new()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserProfile>> {
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the user's latest claims.
    pub(super) async fn remember(
        &self,
        user_id: &UserId,
        profile: UserProfile,
    ) -> Result<(), MembershipError> {
        if self.written().get(user_id) == Some(&profile) {
            return Ok(());
        }
        self.store.upsert_user(user_id, &profile).await?;
        let mut written = self.written();
        if written.len() >= DIRECTORY_CACHE_LIMIT {
            written.clear();
        }
        written.insert(user_id.clone(), profile);
        Ok(())
    }
}
