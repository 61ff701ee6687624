//! Handler tests: a fake account directory, a temporary SQLite store, principals put in the
//! request extensions the way the edge layer does.

use std::collections::HashMap;
use std::sync::Mutex;

use tenantry_platform::testing::TempDatabase;
use tenantry_platform::{AccountId, ApiError, Principal, ServiceIdentity, UserIdentity};
use tonic::Code;

use super::*;
use crate::domain::{AccountFacts, AccountState, Member};
use crate::store::migrations::Migrator;

mod governance;
mod internal;
mod members;
mod provenance;

#[derive(Debug, Default)]
struct FakeAccounts(
    Mutex<HashMap<String, AccountFacts>>,
    Arc<Mutex<HashMap<String, AccountFacts>>>,
);

/// `account` answers from the replica (`.1`, the lagging copy, when it has an entry), `refresh`
/// from the source of record (`.0`).
#[async_trait::async_trait]
impl AccountDirectory for FakeAccounts {
    async fn account(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        if let Some(stale) = self.1.lock().unwrap().get(account_id.as_str()) {
            return Ok(Some(stale.clone()));
        }
        Ok(self.0.lock().unwrap().get(account_id.as_str()).cloned())
    }

    async fn refresh(&self, account_id: &AccountId) -> Result<Option<AccountFacts>, ApiError> {
        Ok(self.0.lock().unwrap().get(account_id.as_str()).cloned())
    }
}

struct Harness {
    api: MembershipApi,
    /// Lagging replica entries that shadow the source of record in `account` lookups.
    stale: Arc<Mutex<HashMap<String, AccountFacts>>>,
    /// The database (its outbox is read by the provenance tests).
    temp: TempDatabase,
}

fn account(id: &str, partner: bool, managed_by: Option<&str>, state: AccountState) -> AccountFacts {
    AccountFacts {
        account_id: AccountId::trusted(id),
        display_name: id.to_uppercase(),
        partner,
        managed_by: managed_by.map(AccountId::trusted),
        state,
    }
}

/// `partner` (a partner), `acme` (its ACTIVE customer), `frozen` (its DISABLED customer),
/// `gone` (its DELETED customer), `solo` (standalone).
async fn harness() -> Harness {
    let temp = TempDatabase::new::<Migrator>("membership-api").await;
    let accounts = FakeAccounts::default();
    for facts in [
        account("partner", true, None, AccountState::Active),
        account("acme", false, Some("partner"), AccountState::Active),
        account("frozen", false, Some("partner"), AccountState::Disabled),
        account("gone", false, Some("partner"), AccountState::Deleted),
        account("solo", false, None, AccountState::Active),
    ] {
        accounts
            .0
            .lock()
            .unwrap()
            .insert(facts.account_id.to_string(), facts);
    }
    let stale = accounts.1.clone();
    let deps = Deps {
        database: temp.database.clone(),
        accounts: Arc::new(accounts),
        page_tokens: PageTokens::new(b"test"),
        outbox: tenantry_events::Outbox::new(),
        view: None,
        request_mail: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    Harness {
        api: MembershipApi::new(Config::default(), deps),
        stale,
        temp,
    }
}

fn person(sub: &str, operator: bool) -> Principal {
    Principal::User(UserIdentity {
        sub: sub.into(),
        email: Some(format!("{sub}@Example.com")),
        email_verified: true,
        given_name: Some(sub.to_uppercase()),
        family_name: None,
        operator,
    })
}

fn service() -> Principal {
    Principal::Service(ServiceIdentity {
        name: "invitation".into(),
    })
}

fn as_<T>(principal: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(principal.clone());
    request
}

fn add(parent: &str, user: &str, role: wire::Role) -> wire::AddMemberRequest {
    wire::AddMemberRequest {
        parent: format!("accounts/{parent}"),
        principal: Some(wire::add_member_request::Principal::User(format!(
            "users/{user}"
        ))),
        role: role as i32,
        ..Default::default()
    }
}

impl Harness {
    async fn add(
        &self,
        who: &Principal,
        request: wire::AddMemberRequest,
    ) -> Result<Member, ApiError> {
        self.api.add_member(as_(who, request)).await
    }

    async fn seed(&self, account: &str, user: &str, role: wire::Role) {
        self.add(&person("op", true), add(account, user, role))
            .await
            .unwrap();
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, ApiError>) -> (Code, &'static str) {
    let error = result.unwrap_err();
    (error.code(), error.reason())
}
