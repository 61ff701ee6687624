//! The other services this one calls, with this service's identity: the customer registry
//! (the sender is an ACTIVE partner; its customers and their states) and membership (the
//! members of a recipient account, page by page, for the fan-out).

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use tenantry_platform::clients::ServiceChannel;
use tenantry_platform::error::from_upstream;
use tenantry_platform::names::{account_name, parse_user};
use tenantry_platform::time::from_timestamp;
use tenantry_platform::{AccountId, ApiError, Role};
use tenantry_proto::membership::v1 as membership;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::registry::v1 as registry;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::Code;

use crate::domain::{AccountFacts, AccountState, ListedMember};

/// Customers read per ListManagedCustomers page.
const CUSTOMER_PAGE: i32 = 1000;
/// Names per BatchGetAccounts call (the registry's limit).
const BATCH_NAMES: usize = 1024;

fn facts_of(account: registry::Account) -> AccountFacts {
    // A state this build does not know is treated as not usable.
    let state = AccountState::from_wire(account.state).unwrap_or(AccountState::Disabled);
    AccountFacts {
        display_name: account.display_name,
        partner: account.partner,
        managed_by: account
            .managed_by
            .strip_prefix("accounts/")
            .map(str::to_string),
        state,
    }
}

/// The customer registry, asked with this service's identity.
#[derive(Clone, Debug)]
pub struct Registry {
    client: CustomerRegistryServiceClient<ServiceChannel>,
}

impl Registry {
    /// Calls through `client`.
    pub fn new(client: CustomerRegistryServiceClient<ServiceChannel>) -> Self {
        Self { client }
    }

    /// The account, `None` if it does not exist.
    pub async fn account(&self, account_id: &str) -> Result<Option<AccountFacts>, ApiError> {
        let response = self
            .client
            .clone()
            .get_account(registry::GetAccountRequest {
                name: account_name(account_id),
            })
            .await;
        match response {
            Ok(response) => Ok(Some(facts_of(
                response.into_inner().account.unwrap_or_default(),
            ))),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(from_upstream("customer registry", &status)),
        }
    }

    /// The facts of those of `ids` that exist, in one BatchGetAccounts call per 1,024 ids (one
    /// call for a message's partner and its up to 1,000 recipients).
    pub async fn accounts(
        &self,
        ids: &[AccountId],
    ) -> Result<HashMap<AccountId, AccountFacts>, ApiError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_NAMES) {
            let accounts = self
                .client
                .clone()
                .batch_get_accounts(registry::BatchGetAccountsRequest {
                    names: chunk.iter().map(|id| account_name(id.as_str())).collect(),
                })
                .await
                .map_err(|status| from_upstream("customer registry", &status))?
                .into_inner()
                .accounts;
            for account in accounts {
                let id = AccountId::trusted(account.account_id.clone());
                found.insert(id, facts_of(account));
            }
        }
        Ok(found)
    }

    /// Every not-deleted customer of the partner: `(account_id, state)`, by id, paging.
    pub async fn customers(
        &self,
        partner_id: &str,
    ) -> Result<Vec<(AccountId, AccountState)>, ApiError> {
        let mut customers = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_managed_customers(registry::ListManagedCustomersRequest {
                    parent: account_name(partner_id),
                    page_size: CUSTOMER_PAGE,
                    page_token: page_token.clone(),
                    state: registry::AccountState::Unspecified as i32,
                })
                .await
                .map_err(|status| from_upstream("customer registry", &status))?
                .into_inner();
            for account in page.accounts {
                let id = AccountId::trusted(account.account_id.clone());
                customers.push((id, facts_of(account).state));
            }
            if page.next_page_token.is_empty() || page.next_page_token == page_token {
                return Ok(customers);
            }
            page_token = page.next_page_token;
        }
    }
}

/// One page of an account's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// The members, with when each membership began.
    pub members: Vec<ListedMember>,
    /// Token of the next page; empty on the last.
    pub next_page_token: String,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MemberPageError {
    /// The account is gone (deleted, unknown) or the cursor no longer works: nothing more to
    /// fan out to.
    #[error("the account's members cannot be listed any more: {0}")]
    Gone(String),
    /// Try again later.
    #[error("membership unavailable: {0}")]
    Unavailable(String),
}

/// A listed member, `None` for one naming no user. A membership without a valid start time
/// counts as begun at the earliest time: any removal of the user then leaves it out of the
/// fan-out, which errs on the side of not delivering to a removed member.
fn listed(member: &membership::Member) -> Option<ListedMember> {
    let user_id = parse_user("user", &member.user).ok()?;
    let added_time = member
        .create_time
        .as_ref()
        .and_then(|time| from_timestamp("create_time", time).ok())
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    Some(ListedMember {
        user_id,
        added_time,
    })
}

/// Where the fan-out reads members from (membership; a fake in tests).
#[async_trait::async_trait]
pub trait MemberSource: Send + Sync + std::fmt::Debug {
    /// One page of the members of `account_id` with one of `roles` (empty = all).
    async fn page(
        &self,
        account_id: &str,
        roles: &[Role],
        page_size: i32,
        page_token: &str,
    ) -> Result<MemberPage, MemberPageError>;
}

/// Membership's ListMembers with this service's identity.
#[derive(Clone, Debug)]
pub struct Membership {
    client: MembershipServiceClient<ServiceChannel>,
}

impl Membership {
    /// Calls through `client`.
    pub fn new(client: MembershipServiceClient<ServiceChannel>) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl MemberSource for Membership {
    async fn page(
        &self,
        account_id: &str,
        roles: &[Role],
        page_size: i32,
        page_token: &str,
    ) -> Result<MemberPage, MemberPageError> {
        let response = self
            .client
            .clone()
            .list_members(membership::ListMembersRequest {
                parent: account_name(account_id),
                page_size,
                page_token: page_token.to_string(),
                roles: roles.iter().copied().map(Role::to_wire).collect(),
                email: String::new(),
            })
            .await;
        match response {
            Ok(response) => {
                let page = response.into_inner();
                Ok(MemberPage {
                    members: page.members.iter().filter_map(listed).collect(),
                    next_page_token: page.next_page_token,
                })
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
                ) =>
            {
                Err(MemberPageError::Gone(status.message().to_string()))
            }
            Err(status) => Err(MemberPageError::Unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use tenantry_platform::time::to_timestamp;

    use super::*;

    #[test]
    fn listed_members_carry_when_their_membership_began() {
        let added = tenantry_platform::time::now();
        let member = |user: &str, create_time| membership::Member {
            user: user.into(),
            create_time,
            ..Default::default()
        };
        let alice = listed(&member("users/alice", Some(to_timestamp(added)))).unwrap();
        assert_eq!((alice.user_id.as_str(), alice.added_time), ("alice", added));
        // No start time: the earliest, so any recorded removal of the user leaves it out.
        let bob = listed(&member("users/bob", None)).unwrap();
        assert_eq!(bob.added_time, DateTime::<Utc>::MIN_UTC);
        assert_eq!(listed(&member("accounts/acme", None)), None);
    }
}
