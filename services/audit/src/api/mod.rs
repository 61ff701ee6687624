//! The gRPC handlers of `tenantry.audit.v1.AuditService`: parse and check the request, ask
//! membership whether the caller may read the account's trail (`PERMISSION_AUDIT_READ`), read
//! the store, and map the rows to the wire.

mod errors;
mod watch;

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::Stream;
use tenantry_platform::authz::Authorizer;
use tenantry_platform::names::parse_account;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::from_timestamp;
use tenantry_platform::{ApiError, Principal};
use tenantry_proto::EventType;
use tenantry_proto::audit::v1::{self as wire, audit_service_server::AuditService};
use tenantry_proto::membership::v1::Permission;
use tonic::{Request, Response, Status};

use crate::domain::AuditError;
use crate::hub::EntryHub;
use crate::store::{ListQuery, Store};
use crate::wire::entry_to_proto;

pub use errors::to_status;

/// Most event types one listing may filter by.
const MAX_EVENT_TYPES: usize = 32;
/// The youngest cut-off a purge accepts: recent history is never purged.
pub const MIN_PURGE_AGE: Duration = Duration::hours(24);

/// The keys of purge tombstones: `current` signs; `previous` (before a rotation of the
/// internal secret they derive from) is still accepted when verifying.
#[derive(Clone)]
pub struct TombstoneKeys {
    /// Signs new tombstones.
    pub current: Vec<u8>,
    /// Also accepted.
    pub previous: Option<Vec<u8>>,
}

impl TombstoneKeys {
    /// The keys a signature may be checked with, current first.
    pub fn accepted(&self) -> Vec<&[u8]> {
        std::iter::once(self.current.as_slice())
            .chain(self.previous.as_deref())
            .collect()
    }
}

/// The audit service's handlers.
#[derive(Clone)]
pub struct AuditApi {
    store: Store,
    authorizer: Authorizer,
    page_tokens: PageTokens,
    hub: Arc<EntryHub>,
    keys: Arc<TombstoneKeys>,
    shutdown: tenantry_platform::server::Shutdown,
}

impl std::fmt::Debug for AuditApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditApi").finish_non_exhaustive()
    }
}

impl AuditApi {
    /// Handlers over `store`, authorized by `authorizer`; `keys` sign and check purge
    /// tombstones; open streams end at `shutdown`.
    pub fn new(
        store: Store,
        authorizer: Authorizer,
        page_tokens: PageTokens,
        hub: Arc<EntryHub>,
        keys: TombstoneKeys,
        shutdown: tenantry_platform::server::Shutdown,
    ) -> Self {
        Self {
            store,
            authorizer,
            page_tokens,
            hub,
            keys: Arc::new(keys),
            shutdown,
        }
    }

    /// The account in `field` = `name`, once the caller may read its trail.
    async fn readable_account(
        &self,
        principal: &Principal,
        field: &str,
        name: &str,
    ) -> Result<String, ApiError> {
        let account_id = parse_account(field, name)?;
        self.authorizer
            .require(principal, &account_id, Permission::AuditRead)
            .await?;
        Ok(account_id)
    }

    async fn list(
        &self,
        request: Request<wire::ListAuditEntriesRequest>,
    ) -> Result<wire::ListAuditEntriesResponse, Status> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let query = list_query(&request)?;
        let scope = page_scope(&request);
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let after_id = page
            .after
            .as_deref()
            .map(|cursor| {
                cursor.parse::<i64>().map_err(|_| {
                    ApiError::invalid_field("page_token", "not a page token of this listing")
                })
            })
            .transpose()?;
        let account_id = self
            .readable_account(&principal, "parent", &request.parent)
            .await?;
        let query = ListQuery {
            account_id,
            ..query
        };
        let mut rows = self
            .store
            .list(&query, after_id, page.size + 1)
            .await
            .map_err(to_status)?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut rows, |row| {
            query.page_key(row).to_string()
        });
        Ok(wire::ListAuditEntriesResponse {
            audit_entries: rows.into_iter().map(entry_to_proto).collect(),
            next_page_token,
        })
    }

    async fn get(
        &self,
        request: Request<wire::GetAuditEntryRequest>,
    ) -> Result<wire::GetAuditEntryResponse, Status> {
        let principal = Principal::of(&request)?;
        let name = request.into_inner().name;
        let (account, sequence) = parse_entry_name(&name)?;
        let account_id = self
            .readable_account(&principal, "name", &format!("accounts/{account}"))
            .await?;
        let row = self
            .store
            .get(&account_id, sequence)
            .await
            .map_err(to_status)?
            .ok_or_else(|| to_status(AuditError::NotFound(name)))?;
        Ok(wire::GetAuditEntryResponse {
            audit_entry: Some(entry_to_proto(row)),
        })
    }

    async fn verify(
        &self,
        request: Request<wire::VerifyAuditChainRequest>,
    ) -> Result<wire::VerifyAuditChainResponse, Status> {
        let principal = Principal::of(&request)?;
        let parent = request.into_inner().parent;
        let account_id = self.readable_account(&principal, "parent", &parent).await?;
        let verification = self
            .store
            .verify(&account_id, &self.keys.accepted())
            .await
            .map_err(to_status)?;
        if let Some((sequence, reason)) = &verification.mismatch {
            tracing::warn!(%account_id, sequence, %reason, "audit chain broken");
        }
        let (first_mismatch, reason) = verification
            .mismatch
            .map(|(sequence, reason)| (crate::wire::entry_name(&account_id, sequence), reason))
            .unwrap_or_default();
        Ok(wire::VerifyAuditChainResponse {
            intact: first_mismatch.is_empty(),
            checked_entries: verification.checked,
            first_mismatch,
            reason,
            purged_through_sequence: verification.purged_through,
            last_sequence: verification.last_sequence,
        })
    }

    async fn purge(
        &self,
        request: Request<wire::PurgeAuditEntriesRequest>,
    ) -> Result<wire::PurgeAuditEntriesResponse, Status> {
        let principal = Principal::of(&request)?;
        if !principal.is_operator() {
            return Err(ApiError::forbidden(
                "OPERATOR_REQUIRED",
                "only platform operators may purge the audit log",
            )
            .into());
        }
        let before = request
            .into_inner()
            .before_time
            .ok_or_else(|| ApiError::invalid_field("before_time", "required"))
            .and_then(|time| from_timestamp("before_time", &time))?;
        if before > tenantry_platform::time::now() - MIN_PURGE_AGE {
            return Err(ApiError::invalid_field(
                "before_time",
                "must be at least 24 hours ago: recent history is never purged",
            )
            .into());
        }
        let (purged_entries, accounts) = self
            .store
            .purge(before, &principal.resource_name(), &self.keys.current)
            .await
            .map_err(to_status)?;
        tracing::info!(
            operator = %principal.resource_name(),
            %before,
            purged_entries,
            accounts,
            "audit log purged"
        );
        Ok(wire::PurgeAuditEntriesResponse {
            purged_entries,
            accounts,
        })
    }
}

/// The filters of a listing, checked (the account is filled in once authorized).
fn list_query(request: &wire::ListAuditEntriesRequest) -> Result<ListQuery, ApiError> {
    let mut violations = Vec::new();
    if request.event_types.len() > MAX_EVENT_TYPES {
        violations.push((
            "event_types".to_string(),
            format!("at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    for (index, event_type) in request.event_types.iter().enumerate() {
        if EventType::parse(event_type).is_none() {
            violations.push((
                format!("event_types[{index}]"),
                "not a known event type (e.g. `account.updated`)".to_string(),
            ));
        }
    }
    let actor = (!request.actor.is_empty()).then(|| request.actor.clone());
    if let Some(actor) = &actor
        && !is_actor_name(actor)
    {
        violations.push((
            "actor".to_string(),
            "must be `users/{sub}` or `services/{name}`".to_string(),
        ));
    }
    let resource = (!request.resource.is_empty()).then(|| request.resource.clone());
    if let Some(resource) = &resource
        && (crate::domain::resource_account(resource).is_err()
            || resource.len() > 512
            || resource.chars().any(char::is_control))
    {
        violations.push((
            "resource".to_string(),
            "must be a resource name under `accounts/{account_id}` (at most 512 characters, no control characters)".to_string(),
        ));
    }
    let time = |field: &str, value: &Option<prost_types::Timestamp>| {
        value
            .as_ref()
            .map(|time| from_timestamp(field, time))
            .transpose()
    };
    let (start_time, end_time) = match (
        time("start_time", &request.start_time),
        time("end_time", &request.end_time),
    ) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(error), _) | (_, Err(error)) => {
            violations.extend(error.field_violations());
            (None, None)
        }
    };
    if let (Some(start), Some(end)) = (start_time, end_time)
        && end < start
    {
        violations.push((
            "end_time".to_string(),
            "must not be before start_time".to_string(),
        ));
    }
    let oldest_first = match wire::Order::try_from(request.order) {
        Ok(wire::Order::OldestFirst) => true,
        Ok(wire::Order::Unspecified | wire::Order::NewestFirst) => false,
        Err(_) => {
            violations.push(("order".to_string(), "one of the ORDER_* values".to_string()));
            false
        }
    };
    if !violations.is_empty() {
        return Err(ApiError::invalid_fields(violations));
    }
    Ok(ListQuery {
        account_id: String::new(),
        include_customers: request.include_customers,
        event_types: request.event_types.clone(),
        actor,
        resource,
        start_time: start_time.map(to_micros),
        end_time: end_time.map(to_micros),
        oldest_first,
    })
}

fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    crate::domain::chain::to_micros(time)
}

/// The query a page token belongs to: every filter, so a token cannot be replayed against
/// another listing.
fn page_scope(request: &wire::ListAuditEntriesRequest) -> String {
    let time = |value: &Option<prost_types::Timestamp>| {
        value
            .as_ref()
            .map_or_else(String::new, |t| format!("{}.{}", t.seconds, t.nanos))
    };
    serde_json::json!([
        "audit",
        request.parent,
        request.include_customers,
        request.event_types,
        request.actor,
        request.resource,
        time(&request.start_time),
        time(&request.end_time),
        request.order,
    ])
    .to_string()
}

fn is_actor_name(name: &str) -> bool {
    let valid = |rest: &str| {
        !rest.is_empty()
            && rest.len() <= 255
            && !rest.contains('/')
            && !rest.chars().any(char::is_control)
    };
    name.strip_prefix("users/").is_some_and(valid)
        || name.strip_prefix("services/").is_some_and(valid)
}

/// `(account_id, sequence)` of `accounts/{account_id}/auditEntries/{sequence}`.
fn parse_entry_name(name: &str) -> Result<(String, i64), ApiError> {
    let invalid = || {
        ApiError::invalid_field(
            "name",
            "must be `accounts/{account_id}/auditEntries/{sequence}` with a sequence number ≥ 1",
        )
    };
    let rest = name.strip_prefix("accounts/").ok_or_else(invalid)?;
    let (account, sequence) = rest.split_once("/auditEntries/").ok_or_else(invalid)?;
    if !tenantry_platform::names::is_account_id(account) {
        return Err(invalid());
    }
    // Digits only, no leading zero: every entry has exactly one name.
    let canonical = !sequence.is_empty()
        && !sequence.starts_with('0')
        && sequence.bytes().all(|byte| byte.is_ascii_digit());
    let sequence = sequence
        .parse::<i64>()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(invalid)?;
    Ok((account.to_string(), sequence))
}

/// The stream WatchAuditEntries answers with.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<wire::WatchAuditEntriesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<wire::ListAuditEntriesRequest>,
    ) -> Result<Response<wire::ListAuditEntriesResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn get_audit_entry(
        &self,
        request: Request<wire::GetAuditEntryRequest>,
    ) -> Result<Response<wire::GetAuditEntryResponse>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    type WatchAuditEntriesStream = WatchStream;

    async fn watch_audit_entries(
        &self,
        request: Request<wire::WatchAuditEntriesRequest>,
    ) -> Result<Response<Self::WatchAuditEntriesStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<wire::VerifyAuditChainRequest>,
    ) -> Result<Response<wire::VerifyAuditChainResponse>, Status> {
        Ok(Response::new(self.verify(request).await?))
    }

    async fn purge_audit_entries(
        &self,
        request: Request<wire::PurgeAuditEntriesRequest>,
    ) -> Result<Response<wire::PurgeAuditEntriesResponse>, Status> {
        Ok(Response::new(self.purge(request).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_parsed_strictly() {
        assert_eq!(
            parse_entry_name("accounts/acme/auditEntries/7").unwrap(),
            ("acme".to_string(), 7)
        );
        for bad in [
            "",
            "accounts/acme/auditEntries/0",
            "accounts/acme/auditEntries/-1",
            "accounts/acme/auditEntries/+1",
            "accounts/acme/auditEntries/01",
            "accounts/acme/auditEntries/x",
            "accounts/Acme/auditEntries/1",
            "accounts/acme/members/1",
            "accounts/acme/auditEntries/99999999999999999999",
        ] {
            let error = parse_entry_name(bad).unwrap_err();
            assert_eq!(error.field_violations()[0].0, "name", "{bad}");
        }
    }

    #[test]
    fn list_filters_name_each_bad_field() {
        let request = wire::ListAuditEntriesRequest {
            parent: "accounts/acme".into(),
            event_types: vec!["account.updated".into(), "account.renamed".into()],
            actor: "people/u-1".into(),
            resource: "members/u-1".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 20,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            order: 9,
            ..Default::default()
        };
        let fields: Vec<String> = list_query(&request)
            .unwrap_err()
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            ["event_types[1]", "actor", "resource", "end_time", "order"]
        );
        let fine = wire::ListAuditEntriesRequest {
            parent: "accounts/acme".into(),
            actor: "users/u-1".into(),
            ..Default::default()
        };
        assert_eq!(
            list_query(&fine).unwrap().actor.as_deref(),
            Some("users/u-1")
        );
    }
}
