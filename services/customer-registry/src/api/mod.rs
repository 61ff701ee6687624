//! The gRPC handlers: authenticate, validate the request's shape, authorize, then call the
//! store. Shape errors come first (they reveal nothing); existence is only revealed after
//! authorization passed.

pub mod errors;

use tenantry_platform::authz::Authorizer;
use tenantry_platform::call_context::{self, ActorRole};
use tenantry_platform::idempotency::{REQUEST_ID_FIELD, RequestKey, parse_request_id};
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::{ApiError, Principal, Violations};
use tenantry_proto::membership::v1::Permission;
use tenantry_proto::registry::v1 as pb;
use tenantry_proto::registry::v1::customer_registry_service_server::CustomerRegistryService;
use tonic::{Request, Response, Status};

use crate::domain::{AccountId, DisplayName, NewAccountId, update};
use crate::store::{ListQuery, NewAccount, Store};
use crate::wire::{account_to_proto, state_filter};

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

    /// The identifier of a new account in `field`, checked against the creation rules (its
    /// violation recorded).
    fn new_account_id(
        &self,
        violations: &mut Violations,
        field: &str,
        raw: &str,
    ) -> Option<NewAccountId> {
        violations.check(field, NewAccountId::parse(raw, self.max_account_id_length))
    }
}

/// A canonical request_id (see [`parse_request_id`]), `None` when empty or invalid (its
/// violation recorded).
fn request_id(violations: &mut Violations, raw: &str) -> Option<String> {
    violations
        .check_api(REQUEST_ID_FIELD, parse_request_id(REQUEST_ID_FIELD, raw))
        .flatten()
}

/// What a create sent with `request_id` is remembered under: the caller, `method`, and the
/// fingerprint of `method` and the request's canonical `fields`.
fn request_key(
    request_id: Option<String>,
    principal: &Principal,
    method: &str,
    fields: &[&str],
) -> Option<RequestKey> {
    request_id
        .map(|request_id| RequestKey::new(request_id, principal.resource_name(), method, fields))
}

/// The account an UpdateAccount names and its new display name, every problem of the request
/// reported at once: only the display name may change (see [`update`]).
fn parse_update(
    account: &pb::Account,
    mask: Option<&prost_types::FieldMask>,
) -> Result<(AccountId, DisplayName), ApiError> {
    let mut violations = Violations::new();
    let id = violations.check_api(
        "account.name",
        AccountId::from_name("account.name", &account.name),
    );
    let paths = mask.map(|mask| mask.paths.as_slice()).unwrap_or_default();
    for why in update::refused_paths(paths) {
        violations.add("update_mask.paths", why);
    }
    if let Some(id) = &id
        && let Err(why) = update::check_id_unchanged(id, &account.account_id)
    {
        violations.add("account.account_id", why);
    }
    // A mask without display_name named another path, already refused.
    let name = update::updates_display_name(paths)
        .then(|| {
            violations.check(
                "account.display_name",
                DisplayName::parse(&account.display_name),
            )
        })
        .flatten();
    let (Some(id), Some(name)) = (id, name) else {
        return Err(violations.into_error());
    };
    violations.finish()?;
    Ok((id, name))
}

fn require_operator(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_operator() {
        call_context::record_role(ActorRole::Operator);
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
            let mut violations = Violations::new();
            let id = self.new_account_id(&mut violations, "account_id", &request.account_id);
            let name = violations.check("display_name", DisplayName::parse(&request.display_name));
            let request_id = request_id(&mut violations, &request.request_id);
            let (Some(id), Some(name)) = (id, name) else {
                return Err(violations.into_error());
            };
            violations.finish()?;
            require_operator(&principal)?;
            let fields = [id.as_str(), name.as_str()];
            let key = request_key(request_id, &principal, "CreateAccount", &fields);
            let new = NewAccount {
                id: id.into(),
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
            let id = AccountId::from_name("name", &request.name)?;
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
            let mut violations = Violations::new();
            let parent =
                violations.check_api("parent", AccountId::from_name("parent", &request.parent));
            let id = self.new_account_id(&mut violations, "customer_id", &request.customer_id);
            let name = violations.check("display_name", DisplayName::parse(&request.display_name));
            let request_id = request_id(&mut violations, &request.request_id);
            let (Some(parent), Some(id), Some(name)) = (parent, id, name) else {
                return Err(violations.into_error());
            };
            violations.finish()?;
            // A customer is created for a person; its creator is `users/{sub}`.
            principal.user()?;
            let grant = self
                .authorizer
                .require(&principal, &parent, Permission::CustomersCreate)
                .await?;
            // The change is the customer's: its creator acted as a member of its partner.
            if let Some(ActorRole::Member(role)) = grant.granted_by {
                call_context::record_role(ActorRole::PartnerMember(role));
            }
            let fields = [parent.as_str(), id.as_str(), name.as_str()];
            let key = request_key(request_id, &principal, "CreateManagedCustomer", &fields);
            let new = NewAccount {
                id: id.into(),
                display_name: name,
                managed_by: Some(parent),
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
            let parent = AccountId::from_name("parent", &request.parent)?;
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
            let id = AccountId::from_name("name", &request.get_ref().name)?;
            // Peers read accounts (display names, partner and state checks).
            let grant = self
                .authorizer
                .require_or_service(&principal, &id, Permission::AccountRead)
                .await?;
            // A peer reads the source of record: membership keeps what it reads here, and a
            // view is never filled from another view.
            let account = match &principal {
                Principal::Service(_) => self.store.find_in_database(&id).await?,
                Principal::User(_) => self.store.find(&id).await?,
            }
            .ok_or_else(|| crate::domain::RegistryError::AccountNotFound(id.clone()))?;
            if let Principal::User(user) = &principal {
                crate::domain::check_still_readable(&account, &grant, user.operator)?;
            }
            Ok(pb::GetAccountResponse {
                account: Some(account_to_proto(account)),
            })
        })
        .await
    }

    async fn batch_get_accounts(
        &self,
        request: Request<pb::BatchGetAccountsRequest>,
    ) -> Result<Response<pb::BatchGetAccountsResponse>, Status> {
        answer(async {
            // Internal: people read accounts one by one, each authorized (GetAccount).
            Principal::of(&request)?.service()?;
            let ids = crate::wire::batch_names(&request.get_ref().names)?;
            let accounts = self.store.find_many_in_database(&ids).await?;
            Ok(pb::BatchGetAccountsResponse {
                accounts: accounts.into_iter().map(account_to_proto).collect(),
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
            let (id, name) = parse_update(account, request.update_mask.as_ref())?;
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
            let id = AccountId::from_name("name", &request.name)?;
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
            let id = AccountId::from_name("name", &request.name)?;
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
            let id = AccountId::from_name("name", &request.name)?;
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
    use tenantry_platform::idempotency::fingerprint;

    use super::*;

    #[test]
    fn fingerprints_separate_fields() {
        assert_ne!(fingerprint(&["a", "bc"]), fingerprint(&["ab", "c"]));
        assert_eq!(fingerprint(&["x"]).len(), 64);
    }

    #[test]
    fn request_ids_must_be_uuids() {
        let mut violations = Violations::new();
        assert_eq!(request_id(&mut violations, ""), None);
        assert_eq!(
            request_id(&mut violations, "3F1C9A2E-5B7D-4E8F-9A0B-1C2D3E4F5A6B").as_deref(),
            Some("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
        );
        assert!(violations.is_empty());
        assert_eq!(request_id(&mut violations, "not-a-uuid"), None);
        assert_eq!(
            violations.into_error().field_violations()[0].0,
            "request_id"
        );
    }

    #[test]
    fn platform_name_errors_keep_their_description() {
        let mut violations = Violations::new();
        assert!(
            violations
                .check_api("parent", AccountId::from_name("parent", "acme"))
                .is_none()
        );
        let violations = violations.into_error().field_violations();
        assert_eq!(violations[0].0, "parent");
        assert!(
            !violations[0].1.starts_with("parent:"),
            "{:?}",
            violations[0]
        );
    }

    #[test]
    fn request_keys_fingerprint_the_method_and_fields() {
        let principal = Principal::Service(tenantry_platform::ServiceIdentity {
            name: "notification".into(),
        });
        assert_eq!(request_key(None, &principal, "CreateAccount", &["a"]), None);
        let key = request_key(Some("r".into()), &principal, "CreateAccount", &["a", "b"]).unwrap();
        assert_eq!(key.caller, "services/notification");
        assert_eq!(key.method, "CreateAccount");
        assert_eq!(key.fingerprint, fingerprint(&["CreateAccount", "a", "b"]));
    }
}

#[cfg(test)]
mod handler_tests;
