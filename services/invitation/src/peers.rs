//! The other services this one calls, behind small interfaces: account facts from the
//! customer registry (the e-mail's display name, the ACTIVE checks, the accept page), kept in
//! the local view by [`CachedAccounts`], and membership's member operations (AddMember on
//! acceptance, and [`Members::check_invitee`]: the e-mail check and the OWNER capacity in one
//! call).
//! Both carry this service's identity.

use tenantry_platform::clients::ServiceChannel;
use tenantry_platform::error::from_upstream;
use tenantry_platform::names::member_name;
use tenantry_platform::view::{LocalView, ViewCache};
use tenantry_platform::{AccountId, ApiError, UserId};
use tenantry_proto::membership::v1 as membership;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::registry::v1 as registry;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::Code;

use crate::domain::{InvitationError, Role, normalize_email};

pub use tenantry_platform::AccountState;

/// What this service needs to know about an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFacts {
    /// The name shown to people.
    pub display_name: String,
    /// Its state.
    pub state: AccountState,
}

/// Where account facts come from (the customer registry; a fake in tests).
#[async_trait::async_trait]
pub trait AccountDirectory: Send + Sync + std::fmt::Debug {
    /// The account, `None` if it does not exist.
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError>;
}

/// Account facts from the registry's `GetAccount`, asked with this service's identity.
#[derive(Clone, Debug)]
pub struct RegistryAccounts {
    client: CustomerRegistryServiceClient<ServiceChannel>,
}

impl RegistryAccounts {
    /// Facts through `client`.
    pub fn new(client: CustomerRegistryServiceClient<ServiceChannel>) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl AccountDirectory for RegistryAccounts {
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        let response = self
            .client
            .clone()
            .get_account(registry::GetAccountRequest {
                name: account_id.name(),
            })
            .await;
        let account = match response {
            Ok(response) => response.into_inner().account.unwrap_or_default(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(from_upstream("customer registry", &status)),
        };
        // A state this build does not know is treated as not usable.
        let state = AccountState::from_wire(account.state).unwrap_or(AccountState::Disabled);
        Ok(Some(AccountFacts {
            display_name: account.display_name,
            state,
        }))
    }
}

/// Account facts kept in the local view (DESIGN.md §9, docs/local-view.md), asked of `source`
/// (the registry's `GetAccount`) on a miss. An `account.*` event about the account drops the
/// entry — DisableAccount and DeleteAccount answer only once every view applied theirs — so the
/// ACTIVE checks stay prompt; nothing is kept while the view is not fresh. Only ACTIVE accounts
/// are kept: like a refused authorization, an unknown or inactive account is asked about again
/// each time, so a refusal never outlives the EnableAccount (or CreateAccount) that ends it.
#[derive(Debug)]
pub struct CachedAccounts<S = RegistryAccounts> {
    source: S,
    cache: ViewCache<AccountFacts>,
}

impl<S: AccountDirectory> CachedAccounts<S> {
    /// Facts from `source`, kept under `view`'s rules.
    pub fn new(source: S, view: &LocalView) -> Self {
        Self {
            source,
            cache: ViewCache::new(view, "accounts"),
        }
    }
}

#[async_trait::async_trait]
impl<S: AccountDirectory> AccountDirectory for CachedAccounts<S> {
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        let key = self.cache.key(&[account_id.as_str().as_bytes()]);
        if let Some(facts) = self.cache.get(key) {
            return Ok(Some(facts));
        }
        // Taken before asking: an `account.*` event arriving while the answer is on its way
        // voids the ticket, so that answer is not kept.
        let ticket = self.cache.view().ticket(None, Some(account_id.as_str()));
        let found = self.source.account(account_id).await?;
        if let (Some(ticket), Some(facts)) = (ticket, &found)
            && facts.state == AccountState::Active
        {
            self.cache.insert(key, facts.clone(), ticket);
        }
        Ok(found)
    }
}

/// Membership's member operations, with this service's identity.
#[derive(Clone, Debug)]
pub struct Members {
    client: MembershipServiceClient<ServiceChannel>,
}

/// What membership says about an address about to be invited (its internal `CheckInvitee`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitee {
    /// A member of the account has the e-mail (case-insensitive).
    pub email_is_member: bool,
    /// The account has room for one more OWNER now (membership keeps the limit).
    pub owner_room: bool,
    /// The access policy that puts an invitation with the asked role behind approval, and
    /// which of its grants does (`INVITATIONS`, `OWNER_ROLE`, `ADMIN_ROLE`).
    pub gating_policy: Option<(String, String)>,
}

impl Members {
    /// Operations through `client`.
    pub fn new(client: MembershipServiceClient<ServiceChannel>) -> Self {
        Self { client }
    }

    /// Whether a member of the account has `email` (case-insensitive), and whether the account
    /// has room for one more OWNER: membership's internal `CheckInvitee`, one call. A
    /// membership replica that does not have it yet (a rolling upgrade that reached this
    /// service first) answers UNIMPLEMENTED; then the two calls it replaced are made.
    pub async fn check_invitee(
        &self,
        account_id: &AccountId,
        email: &str,
        role: tenantry_platform::Role,
    ) -> Result<Invitee, InvitationError> {
        let answer = self
            .client
            .clone()
            .check_invitee(membership::CheckInviteeRequest {
                account: account_id.name(),
                email: email.to_string(),
                role: role.to_wire(),
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                Ok(Invitee {
                    email_is_member: answer.email_is_member,
                    owner_room: answer.owner_room,
                    gating_policy: answer
                        .approval_required
                        .then_some((answer.access_policy, answer.gated_grant)),
                })
            }
            Err(status) if status.code() == Code::Unimplemented => Ok(Invitee {
                email_is_member: self.has_member_with_email(account_id, email).await?,
                owner_room: self.has_owner_room(account_id).await?,
                // A membership without CheckInvitee has no access policies either.
                gating_policy: None,
            }),
            Err(status) => Err(upstream(&status)),
        }
    }

    /// Whether a member of the account has `email`, through ListMembers' `email` filter
    /// (compared again here): for a membership without CheckInvitee.
    async fn has_member_with_email(
        &self,
        account_id: &AccountId,
        email: &str,
    ) -> Result<bool, InvitationError> {
        let wanted = normalize_email(email);
        let page = self
            .client
            .clone()
            .list_members(membership::ListMembersRequest {
                parent: account_id.name(),
                page_size: 1000,
                page_token: String::new(),
                roles: Vec::new(),
                email: email.to_string(),
            })
            .await
            .map_err(|status| upstream(&status))?
            .into_inner();
        // The filter leaves at most the holders of the address: one page is all of them.
        Ok(page
            .members
            .iter()
            .any(|member| normalize_email(&member.email) == wanted))
    }

    /// Whether the account has room for one more OWNER (`GetOwnerCapacity`): for a membership
    /// without CheckInvitee.
    async fn has_owner_room(&self, account_id: &AccountId) -> Result<bool, InvitationError> {
        let capacity = self
            .client
            .clone()
            .get_owner_capacity(membership::GetOwnerCapacityRequest {
                account: account_id.name(),
            })
            .await
            .map_err(|status| upstream(&status))?
            .into_inner();
        Ok(capacity.has_room)
    }

    /// Makes `user_id` a member with `role`, source INVITATION, giving membership the
    /// invitee's e-mail and name from their token (`profile`, when the token has a usable
    /// e-mail) so the member is listed complete at once. If they already are a member their
    /// existing membership is returned unchanged.
    pub async fn add_invited(
        &self,
        account_id: &AccountId,
        user_id: &UserId,
        role: Role,
        profile: Option<membership::InviteeProfile>,
    ) -> Result<membership::Member, InvitationError> {
        let added = self
            .client
            .clone()
            .add_member(membership::AddMemberRequest {
                parent: account_id.name(),
                principal: Some(membership::add_member_request::Principal::User(
                    user_id.name(),
                )),
                role: role.to_wire(),
                source: membership::MemberSource::Invitation as i32,
                request_id: String::new(),
                invitee_profile: profile,
            })
            .await;
        match added {
            Ok(response) => response
                .into_inner()
                .member
                .ok_or_else(|| InvitationError::Corrupt("AddMember answered no member".into())),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.get(account_id, user_id).await
            }
            Err(status) if status.code() == Code::FailedPrecondition => {
                Err(owner_limit_or_inactive(account_id, &status))
            }
            Err(status) => Err(upstream(&status)),
        }
    }

    /// One membership.
    pub async fn get(
        &self,
        account_id: &AccountId,
        user_id: &UserId,
    ) -> Result<membership::Member, InvitationError> {
        self.client
            .clone()
            .get_member(membership::GetMemberRequest {
                name: member_name(account_id, user_id),
            })
            .await
            .map_err(|status| upstream(&status))?
            .into_inner()
            .member
            .ok_or_else(|| InvitationError::Corrupt("GetMember answered no member".into()))
    }
}

/// Membership's FAILED_PRECONDITION on AddMember: the OWNER limit, or an account that cannot
/// take members (deleted).
fn owner_limit_or_inactive(account_id: &AccountId, status: &tonic::Status) -> InvitationError {
    use tonic_types::StatusExt;
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    if reason == "OWNER_LIMIT" {
        InvitationError::OwnerLimit(account_id.clone())
    } else {
        InvitationError::AccountNotActive(account_id.clone())
    }
}

fn upstream(status: &tonic::Status) -> InvitationError {
    InvitationError::Upstream(from_upstream("membership", status))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tenantry_platform::view::ViewSettings;

    use super::*;

    /// A registry that knows `acme` (ACTIVE) and `frozen` (DISABLED), and counts the questions
    /// it is asked.
    #[derive(Debug, Default)]
    struct FakeRegistry {
        asked: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl AccountDirectory for FakeRegistry {
        async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let state = match account_id.as_str() {
                "acme" => AccountState::Active,
                "frozen" => AccountState::Disabled,
                _ => return Ok(None),
            };
            Ok(Some(AccountFacts {
                display_name: account_id.as_str().to_uppercase(),
                state,
            }))
        }
    }

    fn view(fresh: bool) -> LocalView {
        let view = LocalView::new(ViewSettings {
            capacity: 1000,
            max_age: Duration::from_secs(60),
        });
        view.set_fresh(fresh);
        view
    }

    fn acme() -> AccountId {
        AccountId::trusted("acme")
    }

    impl CachedAccounts<FakeRegistry> {
        fn asked(&self) -> usize {
            self.source.asked.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_kept_answer_asks_nothing_until_an_account_event() {
        let view = view(true);
        let accounts = CachedAccounts::new(FakeRegistry::default(), &view);
        let facts = accounts.account(&acme()).await.unwrap().unwrap();
        assert_eq!(facts.display_name, "ACME");
        assert_eq!(
            accounts.account(&acme()).await.unwrap(),
            Some(facts.clone())
        );
        assert_eq!(accounts.asked(), 1, "the second answer came from the view");
        // account.disabled / account.deleted / … about acme: asked again, then kept again.
        view.drop_account("accounts/acme");
        assert_eq!(
            accounts.account(&acme()).await.unwrap(),
            Some(facts.clone())
        );
        assert_eq!(accounts.asked(), 2);
        assert_eq!(accounts.account(&acme()).await.unwrap(), Some(facts));
        assert_eq!(accounts.asked(), 2);
    }

    #[tokio::test]
    async fn unknown_and_inactive_accounts_are_not_kept() {
        let view = view(true);
        let accounts = CachedAccounts::new(FakeRegistry::default(), &view);
        let nowhere = AccountId::trusted("nowhere");
        assert_eq!(accounts.account(&nowhere).await.unwrap(), None);
        assert_eq!(accounts.account(&nowhere).await.unwrap(), None);
        assert_eq!(
            accounts.asked(),
            2,
            "a created account must not stay unknown"
        );
        let frozen = AccountId::trusted("frozen");
        for _ in 0..2 {
            let facts = accounts.account(&frozen).await.unwrap().unwrap();
            assert_eq!(facts.state, AccountState::Disabled);
        }
        assert_eq!(
            accounts.asked(),
            4,
            "an enabled account must not stay DISABLED"
        );
    }

    #[tokio::test]
    async fn a_view_that_is_not_fresh_keeps_nothing() {
        let view = view(false);
        let accounts = CachedAccounts::new(FakeRegistry::default(), &view);
        for asked in 1..=3 {
            assert!(accounts.account(&acme()).await.unwrap().is_some());
            assert_eq!(accounts.asked(), asked);
        }
        // Losing freshness drops what was kept.
        view.set_fresh(true);
        accounts.account(&acme()).await.unwrap();
        accounts.account(&acme()).await.unwrap();
        assert_eq!(accounts.asked(), 4);
        view.set_fresh(false);
        accounts.account(&acme()).await.unwrap();
        assert_eq!(accounts.asked(), 5);
    }

    /// A registry whose answer is overtaken by an `account.*` event while it is on its way.
    #[derive(Debug)]
    struct Overtaken {
        view: LocalView,
        inner: FakeRegistry,
    }

    #[async_trait::async_trait]
    impl AccountDirectory for Overtaken {
        async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
            let answer = self.inner.account(account_id).await;
            self.view.drop_account(account_id.as_str());
            answer
        }
    }

    #[tokio::test]
    async fn an_answer_overtaken_by_an_account_event_is_not_kept() {
        let view = view(true);
        let accounts = CachedAccounts::new(
            Overtaken {
                view: view.clone(),
                inner: FakeRegistry::default(),
            },
            &view,
        );
        accounts.account(&acme()).await.unwrap();
        accounts.account(&acme()).await.unwrap();
        assert_eq!(accounts.source.inner.asked.load(Ordering::SeqCst), 2);
    }
}
