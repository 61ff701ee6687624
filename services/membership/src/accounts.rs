//! Account facts, owned by the customer registry. Until membership keeps a replica from the
//! `account.*` events, it asks the registry on every need.

use tenantry_platform::ApiError;
use tenantry_platform::clients::ServiceChannel;
use tenantry_platform::error::from_upstream;
use tenantry_platform::names::account_name;
use tenantry_proto::registry::v1::{
    Account, AccountState as WireState, GetAccountRequest,
    customer_registry_service_client::CustomerRegistryServiceClient,
};

use crate::domain::{AccountFacts, AccountState};

/// Where membership learns about accounts.
#[async_trait::async_trait]
pub trait AccountDirectory: Send + Sync + std::fmt::Debug {
    /// The account's facts, None if it does not exist.
    async fn account(&self, account_id: &str) -> Result<Option<AccountFacts>, ApiError>;
}

/// [`AccountDirectory`] over the registry's gRPC `GetAccount`, called with this service's
/// identity (the registry answers NOT_FOUND → `None`).
#[derive(Clone, Debug)]
pub struct RegistryAccounts {
    client: CustomerRegistryServiceClient<ServiceChannel>,
}

impl RegistryAccounts {
    /// A directory calling the registry over `channel`.
    pub fn new(channel: ServiceChannel) -> Self {
        Self {
            client: CustomerRegistryServiceClient::new(channel),
        }
    }
}

#[async_trait::async_trait]
impl AccountDirectory for RegistryAccounts {
    async fn account(&self, account_id: &str) -> Result<Option<AccountFacts>, ApiError> {
        let response = self
            .client
            .clone()
            .get_account(GetAccountRequest {
                name: account_name(account_id),
            })
            .await;
        match response {
            Ok(response) => match response.into_inner().account {
                Some(account) => facts_of(account).map(Some),
                None => Err(ApiError::internal(&UnusableAccount(
                    "GetAccount returned no account".into(),
                ))),
            },
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(from_upstream("registry", &status)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the registry answered an unusable account: {0}")]
struct UnusableAccount(String);

/// The facts membership keeps of a registry account.
pub fn facts_of(account: Account) -> Result<AccountFacts, ApiError> {
    let state = match WireState::try_from(account.state) {
        Ok(WireState::Active) => AccountState::Active,
        Ok(WireState::Disabled) => AccountState::Disabled,
        Ok(WireState::Deleted) => AccountState::Deleted,
        _ => {
            return Err(ApiError::internal(&UnusableAccount(format!(
                "{} has state {}",
                account.name, account.state
            ))));
        }
    };
    let managed_by = if account.managed_by.is_empty() {
        None
    } else {
        let partner = tenantry_platform::names::parse_account("managed_by", &account.managed_by)
            .map_err(|_| {
                ApiError::internal(&UnusableAccount(format!(
                    "{} is managed by {:?}",
                    account.name, account.managed_by
                )))
            })?;
        Some(partner)
    };
    Ok(AccountFacts {
        account_id: account.account_id,
        display_name: account.display_name,
        partner: account.partner,
        managed_by,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_accounts_become_facts() {
        let account = Account {
            name: "accounts/acme".into(),
            account_id: "acme".into(),
            display_name: "Acme".into(),
            managed_by: "accounts/partner".into(),
            state: WireState::Disabled as i32,
            ..Default::default()
        };
        assert_eq!(
            facts_of(account.clone()).unwrap(),
            AccountFacts {
                account_id: "acme".into(),
                display_name: "Acme".into(),
                partner: false,
                managed_by: Some("partner".into()),
                state: AccountState::Disabled,
            }
        );
        let unmanaged = Account {
            managed_by: String::new(),
            ..account.clone()
        };
        assert_eq!(facts_of(unmanaged).unwrap().managed_by, None);
        let unspecified = Account {
            state: 0,
            ..account
        };
        assert_eq!(
            facts_of(unspecified).unwrap_err().code(),
            tonic::Code::Internal
        );
    }
}
