//! The other services this one calls, behind small interfaces: account facts from the
//! customer registry (the e-mail's display name, the ACTIVE checks, the accept page), and
//! membership's member operations (AddMember on acceptance, the e-mail check, the OWNER
//! capacity).
//! Both carry this service's identity.

use tenantry_platform::clients::ServiceChannel;
use tenantry_platform::error::from_upstream;
use tenantry_platform::names::member_name;
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

/// Membership's member operations, with this service's identity.
#[derive(Clone, Debug)]
pub struct Members {
    client: MembershipServiceClient<ServiceChannel>,
}

/// Members read per ListMembers page when checking an e-mail.
const MEMBER_PAGE: i32 = 1000;
/// Pages read at most when checking an e-mail (only reached if the server ignores the filter).
const MAX_MEMBER_PAGES: usize = 20;

impl Members {
    /// Operations through `client`.
    pub fn new(client: MembershipServiceClient<ServiceChannel>) -> Self {
        Self { client }
    }

    /// Whether a member of the account has `email` (case-insensitive). Uses ListMembers'
    /// `email` filter and compares again here, so a server that ignores the filter still
    /// gives the right answer.
    pub async fn has_member_with_email(
        &self,
        account_id: &AccountId,
        email: &str,
    ) -> Result<bool, InvitationError> {
        let wanted = normalize_email(email);
        let mut page_token = String::new();
        for _ in 0..MAX_MEMBER_PAGES {
            let page = self
                .client
                .clone()
                .list_members(membership::ListMembersRequest {
                    parent: account_id.name(),
                    page_size: MEMBER_PAGE,
                    page_token: page_token.clone(),
                    roles: Vec::new(),
                    email: email.to_string(),
                })
                .await
                .map_err(|status| upstream(&status))?
                .into_inner();
            if page
                .members
                .iter()
                .any(|member| normalize_email(&member.email) == wanted)
            {
                return Ok(true);
            }
            if page.next_page_token.is_empty() {
                return Ok(false);
            }
            page_token = page.next_page_token;
        }
        Ok(false)
    }

    /// Whether the account has room for one more OWNER now (membership's internal
    /// `GetOwnerCapacity`; membership keeps the limit).
    pub async fn has_owner_room(&self, account_id: &AccountId) -> Result<bool, InvitationError> {
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

    /// Makes `user_id` a member with `role`, source INVITATION. If they already are a member
    /// their existing membership is returned unchanged.
    pub async fn add_invited(
        &self,
        account_id: &AccountId,
        user_id: &UserId,
        role: Role,
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
