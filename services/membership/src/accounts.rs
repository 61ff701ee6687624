//! Account facts, owned by the customer registry. Membership keeps a replica of them
//! (`account_replica`, filled from the `account.*` events by [`crate::consumers`]);
//! [`ReplicatedAccounts`] answers from it and, on a miss (an account created a moment ago
//! whose event has not arrived yet), reads through to the registry's `GetAccount`
//! ([`RegistryAccounts`]) and keeps the answer.

use chrono::DateTime;
use tenantry_platform::clients::ServiceChannel;
use tenantry_platform::db::Database;
use tenantry_platform::error::{ErrorChain, from_upstream};
use tenantry_platform::{AccountId, ApiError};
use tenantry_proto::registry::v1::{
    Account, GetAccountRequest, customer_registry_service_client::CustomerRegistryServiceClient,
};

use crate::domain::{AccountFacts, AccountState, VersionedFacts};
use crate::store::replica;

/// Where membership learns about accounts.
#[async_trait::async_trait]
pub trait AccountDirectory: Send + Sync + std::fmt::Debug {
    /// The account's facts, None if it does not exist.
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError>;

    /// The account's facts from the source of record, bypassing any replica: for a decision
    /// that a replica lagging behind a change (e.g. a promotion to partner a moment ago) would
    /// get wrong. Default: [`AccountDirectory::account`].
    async fn refresh(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        self.account(account_id).await
    }
}

/// The source of record for accounts, answering with the registry's version of each, so a
/// replica can tell newer facts from older ones.
#[async_trait::async_trait]
pub trait AccountSource: Send + Sync + std::fmt::Debug {
    /// The account's facts at its current version, None if it does not exist.
    async fn fetch(&self, account_id: &AccountId) -> Result<Option<VersionedFacts>, ApiError>;
}

/// [`AccountDirectory`] over the replica, reading through to `registry` on a miss.
#[derive(Clone, Debug)]
pub struct ReplicatedAccounts<S = RegistryAccounts> {
    database: Database,
    registry: S,
}

impl<S: AccountSource> ReplicatedAccounts<S> {
    /// A directory over the replica in membership's `database`, asking `registry` for the
    /// accounts the replica does not know yet.
    pub fn new(database: Database, registry: S) -> Self {
        Self { database, registry }
    }
}

#[async_trait::async_trait]
impl<S: AccountSource> AccountDirectory for ReplicatedAccounts<S> {
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        let connection = self.database.connection().map_err(ApiError::from)?;
        if let Some(known) = replica::load(connection, account_id).await? {
            return Ok(Some(known.facts));
        }
        self.refresh(account_id).await
    }

    async fn refresh(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        let connection = self.database.connection().map_err(ApiError::from)?;
        let Some(fetched) = self.registry.fetch(account_id).await? else {
            return Ok(None);
        };
        // Kept under the same newer-version rule as the events, so a read-through racing an
        // event never overwrites newer facts. Failing to keep it only costs a later lookup.
        if let Err(error) = replica::save(connection, &fetched).await {
            tracing::warn!(
                %account_id,
                error = %ErrorChain(&error),
                "could not keep the registry's answer in the account replica"
            );
        }
        Ok(Some(fetched.facts))
    }
}

/// [`AccountDirectory`] and [`AccountSource`] over the registry's gRPC `GetAccount`, called
/// with this service's identity (the registry answers NOT_FOUND → `None`).
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
impl AccountSource for RegistryAccounts {
    async fn fetch(&self, account_id: &AccountId) -> Result<Option<VersionedFacts>, ApiError> {
        let response = self
            .client
            .clone()
            .get_account(GetAccountRequest {
                name: account_id.name(),
            })
            .await;
        match response {
            Ok(response) => match response.into_inner().account {
                Some(account) => versioned_facts_of(account)
                    .map(Some)
                    .map_err(|error| ApiError::internal(&error)),
                None => Err(ApiError::internal(&UnusableAccount(
                    "GetAccount returned no account".into(),
                ))),
            },
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(from_upstream("registry", &status)),
        }
    }
}

#[async_trait::async_trait]
impl AccountDirectory for RegistryAccounts {
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        Ok(self.fetch(account_id).await?.map(|fetched| fetched.facts))
    }
}

/// A registry account membership cannot make sense of.
#[derive(Debug, thiserror::Error)]
#[error("the registry answered an unusable account: {0}")]
pub struct UnusableAccount(pub String);

/// The facts membership keeps of a registry account.
pub fn facts_of(account: Account) -> Result<AccountFacts, ApiError> {
    facts_from(account).map_err(|error| ApiError::internal(&error))
}

/// The facts of a registry account with its version (the etag as an integer) and update time,
/// as the replica keeps them.
pub fn versioned_facts_of(account: Account) -> Result<VersionedFacts, UnusableAccount> {
    let version = account
        .etag
        .parse::<i64>()
        .ok()
        .filter(|version| *version > 0)
        .ok_or_else(|| UnusableAccount(format!("{} has etag {:?}", account.name, account.etag)))?;
    let update_time = account
        .update_time
        .and_then(|time| DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?))
        .ok_or_else(|| UnusableAccount(format!("{} has no valid update_time", account.name)))?;
    Ok(VersionedFacts {
        facts: facts_from(account)?,
        version,
        update_time,
    })
}

fn facts_from(account: Account) -> Result<AccountFacts, UnusableAccount> {
    let Some(state) = AccountState::from_wire(account.state) else {
        return Err(UnusableAccount(format!(
            "{} has state {}",
            account.name, account.state
        )));
    };
    let managed_by = if account.managed_by.is_empty() {
        None
    } else {
        let partner = AccountId::from_name("managed_by", &account.managed_by).map_err(|_| {
            UnusableAccount(format!(
                "{} is managed by {:?}",
                account.name, account.managed_by
            ))
        })?;
        Some(partner)
    };
    Ok(AccountFacts {
        account_id: AccountId::trusted(account.account_id),
        display_name: account.display_name,
        partner: account.partner,
        managed_by,
        state,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tenantry_platform::testing::TempDatabase;

    use super::*;
    use crate::store::migrations::Migrator;

    fn id(account_id: &str) -> AccountId {
        AccountId::trusted(account_id)
    }

    /// A registry stand-in answering from a map and counting the questions.
    #[derive(Debug, Default)]
    struct FakeRegistry {
        accounts: Mutex<HashMap<String, VersionedFacts>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl AccountSource for FakeRegistry {
        async fn fetch(&self, account_id: &AccountId) -> Result<Option<VersionedFacts>, ApiError> {
            self.asked.lock().unwrap().push(account_id.to_string());
            Ok(self
                .accounts
                .lock()
                .unwrap()
                .get(account_id.as_str())
                .cloned())
        }
    }

    fn versioned(id: &str, version: i64, state: AccountState) -> VersionedFacts {
        VersionedFacts {
            facts: AccountFacts {
                account_id: AccountId::trusted(id),
                display_name: format!("{id} v{version}"),
                partner: false,
                managed_by: Some(AccountId::trusted("partner")),
                state,
            },
            version,
            update_time: tenantry_platform::time::now(),
        }
    }

    #[tokio::test]
    async fn a_miss_reads_through_and_is_kept() {
        let temp = TempDatabase::new::<Migrator>("membership-accounts").await;
        let registry = FakeRegistry::default();
        let fresh = versioned("fresh", 1, AccountState::Active);
        registry
            .accounts
            .lock()
            .unwrap()
            .insert("fresh".into(), fresh.clone());
        let directory = ReplicatedAccounts::new(temp.database.clone(), registry);

        // Created a moment ago, before its event arrived: the registry answers, the replica
        // keeps it, and the next lookup does not ask again.
        assert_eq!(
            directory.account(&id("fresh")).await.unwrap(),
            Some(fresh.facts.clone())
        );
        let connection = temp.database.connection().unwrap();
        assert_eq!(
            replica::load(connection, &id("fresh")).await.unwrap(),
            Some(fresh.clone())
        );
        assert_eq!(
            directory.account(&id("fresh")).await.unwrap(),
            Some(fresh.facts.clone())
        );
        assert_eq!(*directory.registry.asked.lock().unwrap(), ["fresh"]);

        // The replica answers on its own once it knows the account (here: from an event).
        let event = versioned("known", 4, AccountState::Disabled);
        replica::save(connection, &event).await.unwrap();
        assert_eq!(
            directory.account(&id("known")).await.unwrap(),
            Some(event.facts)
        );
        // An account the registry does not know is None and not kept.
        assert_eq!(directory.account(&id("nowhere")).await.unwrap(), None);
        assert_eq!(
            replica::load(connection, &id("nowhere")).await.unwrap(),
            None
        );
        assert_eq!(
            *directory.registry.asked.lock().unwrap(),
            ["fresh", "nowhere"]
        );

        // A newer version from the events replaces the read-through copy.
        let renamed = versioned("fresh", 2, AccountState::Active);
        assert!(replica::save(connection, &renamed).await.unwrap());
        assert!(!replica::save(connection, &fresh).await.unwrap());
        assert_eq!(
            directory.account(&id("fresh")).await.unwrap(),
            Some(renamed.facts)
        );
    }

    #[test]
    fn registry_accounts_carry_their_version() {
        let account = Account {
            name: "accounts/acme".into(),
            account_id: "acme".into(),
            display_name: "Acme".into(),
            state: AccountState::Active.to_wire(),
            etag: "12".into(),
            update_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000,
            }),
            ..Default::default()
        };
        let versioned = versioned_facts_of(account.clone()).unwrap();
        assert_eq!(versioned.version, 12);
        assert_eq!(
            versioned.update_time.timestamp_micros(),
            1_700_000_000_000_005
        );
        for etag in ["", "0", "-3", "twelve"] {
            let bad = Account {
                etag: etag.into(),
                ..account.clone()
            };
            assert!(versioned_facts_of(bad).is_err(), "etag {etag:?}");
        }
        let timeless = Account {
            update_time: None,
            ..account
        };
        assert!(versioned_facts_of(timeless).is_err());
    }

    #[test]
    fn registry_accounts_become_facts() {
        let account = Account {
            name: "accounts/acme".into(),
            account_id: "acme".into(),
            display_name: "Acme".into(),
            managed_by: "accounts/partner".into(),
            state: AccountState::Disabled.to_wire(),
            ..Default::default()
        };
        assert_eq!(
            facts_of(account.clone()).unwrap(),
            AccountFacts {
                account_id: id("acme"),
                display_name: "Acme".into(),
                partner: false,
                managed_by: Some(id("partner")),
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
