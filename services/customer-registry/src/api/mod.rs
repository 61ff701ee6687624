//! The gRPC handlers: authenticate, validate the request's shape, authorize, then call the
//! store. Shape errors come first (they reveal nothing); existence is only revealed after
//! authorization passed.

pub mod convert;
pub mod errors;

use tenantry_platform::authz::Authorizer;
use tenantry_platform::idempotency::{REQUEST_ID_FIELD, RequestKey, fingerprint, parse_request_id};
use tenantry_platform::names::parse_account;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::{ApiError, Principal};
use tenantry_proto::membership::v1::Permission;
use tenantry_proto::registry::v1 as pb;
use tenantry_proto::registry::v1::customer_registry_service_server::CustomerRegistryService;
use tonic::{Request, Response, Status};

use crate::domain::{AccountId, DisplayName};
use crate::store::{ListQuery, NewAccount, Store};
use convert::{account_to_proto, state_filter};

/// The only path UpdateAccount's `update_mask` may name.
const DISPLAY_NAME_PATH: &str = "display_name";

/// The registry's gRPC service.
#[derive(Clone, Debug)]
pub struct RegistryApi {
    max_account_id_length: usize,
    store: Store,
    authorizer: Authorizer,
    page_tokens: PageTokens,
}

impl RegistryApi {
    /// A service over `store`, asking `authorizer` about account-scoped calls.
    pub fn new(
        max_account_id_length: usize,
        store: Store,
        authorizer: Authorizer,
        page_tokens: PageTokens,
    ) -> Self {
        Self {
            max_account_id_length,
            store,
            authorizer,
            page_tokens,
        }
    }

    fn account_id(
        &self,
        field: &str,
        raw: &str,
        violations: &mut Vec<(String, String)>,
    ) -> Option<AccountId> {
        AccountId::parse(raw, self.max_account_id_length)
            .map_err(|invalid| violations.push((field.to_string(), invalid.description())))
            .ok()
    }
}

/// Parses one field, recording its violation instead of failing, so a request's problems are
/// reported all at once.
fn display_name(
    field: &str,
    raw: &str,
    violations: &mut Vec<(String, String)>,
) -> Option<DisplayName> {
    DisplayName::parse(raw)
        .map_err(|invalid| violations.push((field.to_string(), invalid.description())))
        .ok()
}

/// An account name parsed with the platform's parser, its violation recorded.
fn account_ref(field: &str, raw: &str, violations: &mut Vec<(String, String)>) -> Option<String> {
    parse_account(field, raw)
        .map_err(|error| violations.push(violation_of(field, &error)))
        .ok()
}

/// The `(field, description)` of a single-field INVALID_ARGUMENT from the platform.
fn violation_of(field: &str, error: &ApiError) -> (String, String) {
    let prefix = format!("{field}: ");
    let description = error
        .message()
        .strip_prefix(&prefix)
        .unwrap_or(error.message());
    (field.to_string(), description.to_string())
}

/// A canonical request_id (see [`parse_request_id`]), `None` when empty or invalid (its
/// violation recorded).
fn request_id(raw: &str, violations: &mut Vec<(String, String)>) -> Option<String> {
    parse_request_id(REQUEST_ID_FIELD, raw)
        .map_err(|error| violations.push(violation_of(REQUEST_ID_FIELD, &error)))
        .ok()
        .flatten()
}

fn finish_validation(violations: Vec<(String, String)>) -> Result<(), ApiError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(violations))
    }
}

fn require_operator(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "OPERATOR_REQUIRED",
            "only platform operators may call this method",
        ))
    }
}

/// Runs a handler body and turns its error into a status.
async fn answer<T>(body: impl Future<Output = Result<T, ApiError>>) -> Result<Response<T>, Status> {
    body.await.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl CustomerRegistryService for RegistryApi {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let mut violations = Vec::new();
            let id = self.account_id("account_id", &request.account_id, &mut violations);
            let name = display_name("display_name", &request.display_name, &mut violations);
            let request_id = request_id(&request.request_id, &mut violations);
            let (Some(id), Some(name)) = (id, name) else {
                return Err(ApiError::invalid_fields(violations));
            };
            finish_validation(violations)?;
            require_operator(&principal)?;
            let key = request_id.map(|request_id| RequestKey {
                request_id,
                caller: principal.resource_name(),
                method: "CreateAccount".into(),
                fingerprint: fingerprint(&["CreateAccount", id.as_str(), name.as_str()]),
            });
            let new = NewAccount {
                id,
                display_name: name,
                managed_by: None,
                creator: principal.resource_name(),
            };
            let account = self.store.create_account(new, key).await?;
            Ok(pb::CreateAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn promote_to_partner(
        &self,
        request: Request<pb::PromoteToPartnerRequest>,
    ) -> Result<Response<pb::PromoteToPartnerResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let id = parse_account("name", &request.name)?;
            require_operator(&principal)?;
            let account = self
                .store
                .promote_to_partner(&id, &request.etag, &principal.resource_name())
                .await?;
            Ok(pb::PromoteToPartnerResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn create_managed_customer(
        &self,
        request: Request<pb::CreateManagedCustomerRequest>,
    ) -> Result<Response<pb::CreateManagedCustomerResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let mut violations = Vec::new();
            let parent = account_ref("parent", &request.parent, &mut violations);
            let id = self.account_id("customer_id", &request.customer_id, &mut violations);
            let name = display_name("display_name", &request.display_name, &mut violations);
            let request_id = request_id(&request.request_id, &mut violations);
            let (Some(parent), Some(id), Some(name)) = (parent, id, name) else {
                return Err(ApiError::invalid_fields(violations));
            };
            finish_validation(violations)?;
            // A customer is created for a person; its creator is `users/{sub}`.
            principal.user()?;
            self.authorizer
                .require(&principal, &parent, Permission::CustomersCreate)
                .await?;
            let key = request_id.map(|request_id| RequestKey {
                request_id,
                caller: principal.resource_name(),
                method: "CreateManagedCustomer".into(),
                fingerprint: fingerprint(&[
                    "CreateManagedCustomer",
                    &parent,
                    id.as_str(),
                    name.as_str(),
                ]),
            });
            let new = NewAccount {
                id,
                display_name: name,
                managed_by: Some(AccountId::trusted(parent)),
                creator: principal.resource_name(),
            };
            let account = self.store.create_account(new, key).await?;
            Ok(pb::CreateManagedCustomerResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn list_managed_customers(
        &self,
        request: Request<pb::ListManagedCustomersRequest>,
    ) -> Result<Response<pb::ListManagedCustomersResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let parent = parse_account("parent", &request.parent)?;
            let states = state_filter("state", request.state)?;
            let scope = format!("ListManagedCustomers|{parent}|{}", states.label());
            let page = self
                .page_tokens
                .request(&scope, request.page_size, &request.page_token)?;
            // Peers list a partner's customers (notification resolves recipients).
            self.authorizer
                .require_or_service(&principal, &parent, Permission::CustomersList)
                .await?;
            // Allowed callers may learn that the parent does not exist.
            self.store.get(&parent).await?;
            let query = ListQuery {
                managed_by: Some(parent),
                states,
                partners_only: false,
            };
            let mut accounts = self
                .store
                .list(&query, page.after.as_deref(), page.size + 1)
                .await?;
            let next_page_token =
                self.page_tokens
                    .finish(&scope, &page, &mut accounts, |account| {
                        account.id.to_string()
                    });
            Ok(pb::ListManagedCustomersResponse {
                accounts: accounts.into_iter().map(account_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let id = parse_account("name", &request.get_ref().name)?;
            // Peers read accounts (display names, partner and state checks).
            self.authorizer
                .require_or_service(&principal, &id, Permission::AccountRead)
                .await?;
            let account = self.store.get(&id).await?;
            Ok(pb::GetAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let states = state_filter("state", request.state)?;
            let scope = format!(
                "ListAccounts|{}|partners_only={}",
                states.label(),
                request.partners_only
            );
            let page = self
                .page_tokens
                .request(&scope, request.page_size, &request.page_token)?;
            require_operator(&principal)?;
            let query = ListQuery {
                managed_by: None,
                states,
                partners_only: request.partners_only,
            };
            let mut accounts = self
                .store
                .list(&query, page.after.as_deref(), page.size + 1)
                .await?;
            let next_page_token =
                self.page_tokens
                    .finish(&scope, &page, &mut accounts, |account| {
                        account.id.to_string()
                    });
            Ok(pb::ListAccountsResponse {
                accounts: accounts.into_iter().map(account_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::UpdateAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let Some(account) = &request.account else {
                return Err(ApiError::invalid_field(
                    "account",
                    "required: the account with `name` and the new `display_name`",
                ));
            };
            let mut violations = Vec::new();
            let id = account_ref("account.name", &account.name, &mut violations);
            let paths: Vec<&str> = request
                .update_mask
                .as_ref()
                .map(|mask| mask.paths.iter().map(String::as_str).collect())
                .unwrap_or_default();
            for path in &paths {
                if *path == DISPLAY_NAME_PATH {
                    continue;
                }
                let why = if *path == "account_id" || *path == "name" {
                    format!(
                        "`{path}` cannot be updated: the account identifier can never be changed; \
                         only `display_name` may be updated"
                    )
                } else {
                    format!("`{path}` cannot be updated; only `display_name` may be updated")
                };
                violations.push(("update_mask.paths".into(), why));
            }
            if let Some(id) = &id
                && !account.account_id.is_empty()
                && account.account_id != *id
            {
                violations.push((
                    "account.account_id".into(),
                    format!(
                        "must be empty or equal the id in `account.name` (`{id}`): the account \
                         identifier can never be changed"
                    ),
                ));
            }
            // Empty mask = display_name. A mask without it named another path, already refused.
            let name = (paths.is_empty() || paths.contains(&DISPLAY_NAME_PATH))
                .then(|| {
                    display_name(
                        "account.display_name",
                        &account.display_name,
                        &mut violations,
                    )
                })
                .flatten();
            let (Some(id), Some(name)) = (id, name) else {
                return Err(ApiError::invalid_fields(violations));
            };
            finish_validation(violations)?;
            principal.user()?;
            self.authorizer
                .require(&principal, &id, Permission::AccountUpdate)
                .await?;
            let updated = self
                .store
                .rename_account(&id, &name, &account.etag, &principal.resource_name())
                .await?;
            Ok(pb::UpdateAccountResponse {
                account: Some(account_to_proto(updated)),
            })
        })
        .await
    }

    async fn disable_account(
        &self,
        request: Request<pb::DisableAccountRequest>,
    ) -> Result<Response<pb::DisableAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let id = parse_account("name", &request.name)?;
            principal.user()?;
            self.authorizer
                .require(&principal, &id, Permission::AccountUpdate)
                .await?;
            let account = self
                .store
                .disable_account(&id, &request.etag, &principal.resource_name())
                .await?;
            Ok(pb::DisableAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn enable_account(
        &self,
        request: Request<pb::EnableAccountRequest>,
    ) -> Result<Response<pb::EnableAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let id = parse_account("name", &request.name)?;
            principal.user()?;
            self.authorizer
                .require(&principal, &id, Permission::AccountUpdate)
                .await?;
            let account = self
                .store
                .enable_account(&id, &request.etag, &principal.resource_name())
                .await?;
            Ok(pb::EnableAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        answer(async {
            let principal = Principal::of(&request)?;
            let request = request.get_ref();
            let id = parse_account("name", &request.name)?;
            principal.user()?;
            self.authorizer
                .require(&principal, &id, Permission::AccountDelete)
                .await?;
            let account = self
                .store
                .delete_account(&id, &request.etag, &principal.resource_name())
                .await?;
            Ok(pb::DeleteAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_fields() {
        assert_ne!(fingerprint(&["a", "bc"]), fingerprint(&["ab", "c"]));
        assert_eq!(fingerprint(&["x"]).len(), 64);
    }

    #[test]
    fn request_ids_must_be_uuids() {
        let mut violations = Vec::new();
        assert_eq!(request_id("", &mut violations), None);
        assert_eq!(
            request_id("3F1C9A2E-5B7D-4E8F-9A0B-1C2D3E4F5A6B", &mut violations).as_deref(),
            Some("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
        );
        assert!(violations.is_empty());
        assert_eq!(request_id("not-a-uuid", &mut violations), None);
        assert_eq!(violations[0].0, "request_id");
    }

    #[test]
    fn platform_name_errors_keep_their_description() {
        let mut violations = Vec::new();
        assert!(account_ref("parent", "acme", &mut violations).is_none());
        assert_eq!(violations[0].0, "parent");
        assert!(
            !violations[0].1.starts_with("parent:"),
            "{:?}",
            violations[0]
        );
    }
}

#[cfg(test)]
mod handler_tests;
