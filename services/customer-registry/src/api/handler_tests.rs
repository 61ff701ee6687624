//! Handler tests that need no membership: operator-only methods (checked locally) and service
//! identities (let through by the authorizer without a call). Everything else is covered by the
//! end-to-end tests.

use tenantry_platform::auth::{ServiceTokenMinter, UserIdentity};
use tenantry_platform::testing::TempDatabase;
use tenantry_platform::{ServiceIdentity, clients};
use tonic::Code;
use tonic_types::StatusExt;

use super::*;

struct Harness {
    api: RegistryApi,
    /// Keeps the database file until the test ends.
    _database: TempDatabase,
}

async fn harness() -> Harness {
    let database = TempDatabase::new::<crate::Migrator>("registry-api").await;
    let minter = ServiceTokenMinter::new("registry", "internal-secret").expect("minter");
    // Never dialled: these tests only use callers the authorizer answers without membership.
    let channel = clients::channel("http://127.0.0.1:9", minter).expect("channel");
    let api = RegistryApi::new(
        32,
        Store::new(database.database.clone(), tenantry_events::Outbox::new()),
        Authorizer::new(channel),
        PageTokens::new(b"test-key"),
    );
    Harness {
        api,
        _database: database,
    }
}

fn user(sub: &str, operator: bool) -> Principal {
    Principal::User(UserIdentity {
        sub: sub.into(),
        email: None,
        email_verified: false,
        given_name: None,
        family_name: None,
        operator,
    })
}

fn service() -> Principal {
    Principal::Service(ServiceIdentity {
        name: "notification".into(),
    })
}

fn call<T>(principal: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(principal.clone());
    request
}

fn create(id: &str, name: &str, request_id: &str) -> pb::CreateAccountRequest {
    pb::CreateAccountRequest {
        account_id: id.into(),
        display_name: name.into(),
        request_id: request_id.into(),
    }
}

fn fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn create_account_is_for_operators_and_validates_everything_at_once() {
    let h = harness().await;
    let operator = user("op", true);
    let status = h
        .api
        .create_account(call(&operator, create("9-A--", " \n ", "nope")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        ["account_id", "display_name", "request_id"]
    );

    let denied = h
        .api
        .create_account(call(&user("u", false), create("acme", "Acme", "")))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unauthenticated = h
        .api
        .create_account(Request::new(create("acme", "Acme", "")))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let account = h
        .api
        .create_account(call(&operator, create("acme", "  Acme  ", "")))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(account.name, "accounts/acme");
    assert_eq!(account.display_name, "Acme");
    assert_eq!(account.creator, "users/op");
    assert_eq!(account.state, pb::AccountState::Active as i32);
    assert_eq!(account.etag, "1");

    let taken = h
        .api
        .create_account(call(&operator, create("acme", "Other", "")))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(
        taken.get_error_details().error_info().unwrap().reason,
        "ACCOUNT_ID_TAKEN"
    );
}

#[tokio::test]
async fn retried_creates_return_the_first_result() {
    let h = harness().await;
    let operator = user("op", true);
    let id = "0b8e0f43-6d0a-4b53-9f0e-3b1f1d2c4e5a";
    let first = h
        .api
        .create_account(call(&operator, create("acme", "Acme", id)))
        .await
        .unwrap()
        .into_inner();
    let again = h
        .api
        .create_account(call(&operator, create("acme", "Acme", id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let other = h
        .api
        .create_account(call(&operator, create("acme", "Renamed", id)))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    assert_eq!(fields(&other), ["request_id"]);
}

#[tokio::test]
async fn update_refuses_identifier_changes_before_authorizing() {
    let h = harness().await;
    let stranger = user("u", false);
    let request = pb::UpdateAccountRequest {
        account: Some(pb::Account {
            name: "accounts/acme".into(),
            account_id: "other".into(),
            display_name: "Acme".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into(), "account_id".into()],
        }),
    };
    let status = h
        .api
        .update_account(call(&stranger, request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["update_mask.paths", "account.account_id"]);
    assert!(status.message().contains("can never be changed"));
}

#[tokio::test]
async fn operators_list_accounts_page_by_page() {
    let h = harness().await;
    let operator = user("op", true);
    for id in ["bbb", "aaa", "ccc"] {
        h.api
            .create_account(call(&operator, create(id, id, "")))
            .await
            .unwrap();
    }
    let list = |token: String| pb::ListAccountsRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = h
        .api
        .list_accounts(call(&operator, list(String::new())))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = first
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["aaa", "bbb"]);
    let second = h
        .api
        .list_accounts(call(&operator, list(first.next_page_token.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.accounts.len(), 1);
    assert!(second.next_page_token.is_empty());
    // A token is bound to its filters.
    let mut partners = list(first.next_page_token);
    partners.partners_only = true;
    let status = h
        .api
        .list_accounts(call(&operator, partners))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["page_token"]);
    let denied = h
        .api
        .list_accounts(call(&user("u", false), list(String::new())))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn services_read_accounts_and_see_missing_ones() {
    let h = harness().await;
    let operator = user("op", true);
    h.api
        .create_account(call(&operator, create("partner", "P", "")))
        .await
        .unwrap();
    let get = |name: &str| pb::GetAccountRequest { name: name.into() };
    assert!(
        h.api
            .get_account(call(&service(), get("accounts/partner")))
            .await
            .is_ok()
    );
    let missing = h
        .api
        .get_account(call(&service(), get("accounts/missing")))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = h
        .api
        .get_account(call(&service(), get("acme")))
        .await
        .unwrap_err();
    assert_eq!(fields(&malformed), ["name"]);

    let customers = |parent: &str| pb::ListManagedCustomersRequest {
        parent: parent.into(),
        ..Default::default()
    };
    // Not a partner: simply no customers.
    let empty = h
        .api
        .list_managed_customers(call(&service(), customers("accounts/partner")))
        .await
        .unwrap()
        .into_inner();
    assert!(empty.accounts.is_empty());
    let unknown = h
        .api
        .list_managed_customers(call(&service(), customers("accounts/missing")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let promote = |name: &str| pb::PromoteToPartnerRequest {
        name: name.into(),
        etag: String::new(),
    };
    let promoted = h
        .api
        .promote_to_partner(call(&operator, promote("accounts/partner")))
        .await
        .unwrap()
        .into_inner();
    assert!(promoted.account.unwrap().partner);
    let unknown = h
        .api
        .promote_to_partner(call(&operator, promote("accounts/missing")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // Services may not act as a person on mutations.
    let denied = h
        .api
        .disable_account(call(
            &service(),
            pb::DisableAccountRequest {
                name: "accounts/partner".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}
