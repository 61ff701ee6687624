//! The `request_id` of creates, shared by every service: parsing the optional field, the
//! fingerprint of a request, and the decision whether a call under a seen `request_id` is a
//! retry (answered with the first call's result) or a reuse for another request (refused).
//!
//! Each service keeps the records in its own database, in a table made by [`request_ids_table`];
//! [`RequestIds`] reads and writes it. A record is written in the same transaction as the row
//! the request created, so a create and its record exist together or not at all.
//!
//! Records are kept for `TENANTRY_REQUEST_ID_RETENTION_HOURS` (default 7 days, at least 24
//! hours): each service's pruner deletes older ones ([`RequestIds::prune_target`], indexed by
//! [`index_request_ids`]), and a create retried after that is a new create.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The name of the field on every create request.
pub const REQUEST_ID_FIELD: &str = "request_id";

/// A request's optional `request_id` in `field`: `None` when empty, otherwise a UUID returned
/// in canonical form (lower-case, hyphenated); anything else is INVALID_ARGUMENT naming `field`.
pub fn parse_request_id(field: &str, raw: &str) -> Result<Option<String>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::parse_str(raw)
        .map(|uuid| Some(uuid.hyphenated().to_string()))
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                "must be a UUID (e.g. 3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b) or empty",
            )
        })
}

/// SHA-256 hex of a request's canonical fields, which are hashed as a JSON array so fields
/// cannot run together whatever they contain.
///
/// Fingerprints are stored with the request ids; changing this function makes retries of
/// requests recorded before the change look like reuses.
pub fn fingerprint(fields: &[&str]) -> String {
    let canonical = serde_json::Value::from(fields.to_vec()).to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Who asked what under a `request_id`: what a service stores with the row a create made, and
/// what it compares a later call with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// The request id, a UUID in canonical form (see [`parse_request_id`]).
    pub request_id: String,
    /// `users/{sub}` or `services/{name}` of the caller.
    pub caller: String,
    /// The RPC, e.g. `CreateAccount`.
    pub method: String,
    /// The request's [`fingerprint`].
    pub fingerprint: String,
}

impl RequestKey {
    /// The key of a `method` call by `caller` under `request_id`, fingerprinted over the
    /// method and the request's canonical `fields`. Keep the fields and their order fixed:
    /// fingerprints are stored, and a changed one turns retries into reuses.
    pub fn new(request_id: String, caller: String, method: &str, fields: &[&str]) -> Self {
        let mut canonical = Vec::with_capacity(fields.len() + 1);
        canonical.push(method);
        canonical.extend_from_slice(fields);
        Self {
            request_id,
            caller,
            method: method.to_string(),
            fingerprint: fingerprint(&canonical),
        }
    }

    /// Whether this call, whose `request_id` was already recorded as `earlier`, is a retry of
    /// that request: the same caller, method and fingerprint. A retry is `Ok` (the caller gets
    /// the first call's result); anything else is [`RequestIdReused`].
    pub fn check_retry_of(&self, earlier: &RequestKey) -> Result<(), RequestIdReused> {
        if (&earlier.caller, &earlier.method, &earlier.fingerprint)
            == (&self.caller, &self.method, &self.fingerprint)
        {
            Ok(())
        } else {
            Err(RequestIdReused)
        }
    }
}

/// A `request_id` already used by another caller or for a different request. Its API error is
/// INVALID_ARGUMENT naming `request_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("request_id was already used for a different request")]
pub struct RequestIdReused;

impl From<RequestIdReused> for ApiError {
    fn from(_: RequestIdReused) -> Self {
        ApiError::invalid_field(
            REQUEST_ID_FIELD,
            "this request_id was already used for a different request; use a new UUID",
        )
    }
}

/// The table in which a service remembers the request ids of its creates (each service owns one
/// in its own database, named after it, e.g. `invitation_request_ids`): the request id, who sent
/// it, for which method, the request's fingerprint, what it created, and when.
pub fn request_ids_table(name: &str) -> sea_orm_migration::prelude::TableCreateStatement {
    use sea_orm_migration::prelude::Table;
    use sea_orm_migration::schema::{string, timestamp_with_time_zone};
    Table::create()
        .table(sea_orm_migration::prelude::Alias::new(name))
        .col(string("request_id").primary_key())
        .col(string("caller"))
        .col(string("method"))
        .col(string("fingerprint"))
        .col(string("resource_key"))
        .col(timestamp_with_time_zone("create_time"))
        .to_owned()
}

/// The name of the index [`index_request_ids`] creates on `table`.
fn request_ids_index(table: &str) -> String {
    format!("{table}_by_create_time")
}

/// The index of `table`'s `create_time` that the pruner's batches use, if missing (see
/// [`crate::retention::create_index_if_missing`]). Named `{table}_by_create_time`.
pub async fn index_request_ids<C: ConnectionTrait>(
    connection: &C,
    table: &str,
) -> Result<(), DbErr> {
    crate::retention::create_index_if_missing(
        connection,
        &request_ids_index(table),
        table,
        &["create_time"],
        None,
    )
    .await
}

/// Drops the index [`index_request_ids`] created on `table` (a migration's `down`).
pub async fn unindex_request_ids<C: ConnectionTrait>(
    connection: &C,
    table: &str,
) -> Result<(), DbErr> {
    let statement = sea_orm::sea_query::Index::drop()
        .name(request_ids_index(table))
        .table(sea_orm::sea_query::Alias::new(table))
        .to_owned();
    connection.execute(&statement).await.map(drop)
}

/// What a service remembers of a create: who asked what under the request id, and the key of
/// the resource it created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Who asked what.
    pub key: RequestKey,
    /// The key of the created resource (an account id, an invitation id, …).
    pub resource_key: String,
}

/// Why a request id could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The id was recorded for another caller, method or request.
    #[error(transparent)]
    Reused(#[from] RequestIdReused),
    /// The table could not be read.
    #[error("cannot read the request id records")]
    Database(#[from] DbErr),
}

/// One service's request-id table (see [`request_ids_table`]): find, record and replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestIds {
    table: &'static str,
}

/// The columns, in the order [`RequestIds::record`] writes them.
const COLUMNS: [&str; 6] = [
    "request_id",
    "caller",
    "method",
    "fingerprint",
    "resource_key",
    "create_time",
];

fn columns(count: usize) -> impl Iterator<Item = Alias> {
    COLUMNS[..count].iter().map(|name| Alias::new(*name))
}

impl RequestIds {
    /// The records in `table` (e.g. `invitation_request_ids`).
    pub const fn new(table: &'static str) -> Self {
        Self { table }
    }

    /// The table.
    pub const fn table(&self) -> &'static str {
        self.table
    }

    /// The records older than `retention` (by `create_time`), for the service's pruner: a
    /// create retried after that is a new create.
    pub fn prune_target(&self, retention: std::time::Duration) -> crate::retention::PruneTarget {
        crate::retention::PruneTarget::new(self.table, &["request_id"], "create_time", retention)
    }

    /// The record of an earlier create under `request_id`, if any.
    pub async fn find<C: ConnectionTrait>(
        &self,
        connection: &C,
        request_id: &str,
    ) -> Result<Option<RequestRecord>, DbErr> {
        let query = Query::select()
            .columns(columns(5))
            .from(Alias::new(self.table))
            .and_where(Expr::col(Alias::new("request_id")).eq(Expr::val(request_id)))
            .to_owned();
        let Some(row) = connection.query_one(&query).await? else {
            return Ok(None);
        };
        let column = |name: &str| row.try_get::<String>("", name);
        Ok(Some(RequestRecord {
            key: RequestKey {
                request_id: column("request_id")?,
                caller: column("caller")?,
                method: column("method")?,
                fingerprint: column("fingerprint")?,
            },
            resource_key: column("resource_key")?,
        }))
    }

    /// The key of what an earlier call under `key.request_id` created, if that call was this
    /// same request (a retry); [`ReplayError::Reused`] if it was another; `None` if the id is new.
    pub async fn replay<C: ConnectionTrait>(
        &self,
        connection: &C,
        key: &RequestKey,
    ) -> Result<Option<String>, ReplayError> {
        let Some(earlier) = self.find(connection, &key.request_id).await? else {
            return Ok(None);
        };
        key.check_retry_of(&earlier.key)?;
        Ok(Some(earlier.resource_key))
    }

    /// Remembers that `key` created `resource_key`; call it in the transaction that created
    /// it. A concurrent create under the same id makes this fail with a unique violation
    /// (see [`crate::db::is_unique_violation`]).
    pub async fn record<C: ConnectionTrait>(
        &self,
        connection: &C,
        key: &RequestKey,
        resource_key: &str,
    ) -> Result<(), DbErr> {
        let insert = Query::insert()
            .into_table(Alias::new(self.table))
            .columns(columns(6))
            .values_panic([
                key.request_id.clone().into(),
                key.caller.clone().into(),
                key.method.clone().into(),
                key.fingerprint.clone().into(),
                resource_key.into(),
                crate::time::now().into(),
            ])
            .to_owned();
        connection.execute(&insert).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn key(caller: &str, method: &str, fingerprint: &str) -> RequestKey {
        RequestKey {
            request_id: "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into(),
            caller: caller.into(),
            method: method.into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[tokio::test]
    async fn the_pruning_index_is_created_once_and_dropped_by_name() {
        let connection = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        connection
            .execute_unprepared("CREATE TABLE demo_request_ids (create_time TEXT NOT NULL)")
            .await
            .expect("table");
        let indexes = || async {
            connection
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT name FROM sqlite_master WHERE type = 'index' \
                     AND name = 'demo_request_ids_by_create_time'",
                ))
                .await
                .expect("indexes")
                .len()
        };
        index_request_ids(&connection, "demo_request_ids")
            .await
            .expect("index");
        index_request_ids(&connection, "demo_request_ids")
            .await
            .expect("again");
        assert_eq!(indexes().await, 1);
        unindex_request_ids(&connection, "demo_request_ids")
            .await
            .expect("drop");
        assert_eq!(indexes().await, 0);
    }

    #[test]
    fn request_ids_are_optional_canonical_uuids() {
        assert_eq!(parse_request_id("request_id", "").unwrap(), None);
        assert_eq!(
            parse_request_id("request_id", "3F1C9A2E-5B7D-4E8F-9A0B-1C2D3E4F5A6B").unwrap(),
            Some("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into())
        );
        // The simple (unhyphenated) form is accepted and hyphenated.
        assert_eq!(
            parse_request_id("request_id", "3f1c9a2e5b7d4e8f9a0b1c2d3e4f5a6b").unwrap(),
            Some("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into())
        );
        for bad in ["not-a-uuid", " ", "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6"] {
            let error = parse_request_id("create.request_id", bad).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}");
            assert_eq!(error.reason(), "INVALID_ARGUMENT");
            assert!(
                error
                    .message()
                    .starts_with("create.request_id: must be a UUID"),
                "{}",
                error.message()
            );
        }
    }

    #[test]
    fn fingerprints_separate_fields() {
        let print = fingerprint(&["a", "bc"]);
        assert_eq!(print.len(), 64);
        assert!(
            print
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(print, fingerprint(&["a", "bc"]));
        assert_ne!(print, fingerprint(&["ab", "c"]));
        assert_ne!(print, fingerprint(&["a", "b", "c"]));
        assert_ne!(fingerprint(&["a\0", "b"]), fingerprint(&["a", "\0b"]));
        assert_ne!(fingerprint(&["a\",\"b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&[]), fingerprint(&[""]));
        // Stored fingerprints must stay valid: this is the hash of `["a","bc"]`.
        assert_eq!(
            print,
            "42a6f3f44be0aaf23c936b1547dd5e41d2d25ff25f36a31474eb1851639f6751"
        );
    }

    #[test]
    fn new_keys_fingerprint_the_method_before_the_fields() {
        let key = RequestKey::new("id".into(), "users/op".into(), "CreateAccount", &["a", "b"]);
        assert_eq!(key.method, "CreateAccount");
        assert_eq!(key.fingerprint, fingerprint(&["CreateAccount", "a", "b"]));
    }

    #[test]
    fn the_same_request_is_a_retry() {
        let first = key("users/op", "CreateAccount", "fp");
        assert_eq!(first.check_retry_of(&first.clone()), Ok(()));
    }

    #[test]
    fn another_caller_method_or_request_is_a_reuse() {
        let earlier = key("users/op", "CreateAccount", "fp");
        for this in [
            key("users/someone-else", "CreateAccount", "fp"),
            key("users/op", "CreateManagedCustomer", "fp"),
            key("users/op", "CreateAccount", "fp-2"),
        ] {
            assert_eq!(this.check_retry_of(&earlier), Err(RequestIdReused));
        }
        let error = ApiError::from(RequestIdReused);
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(error.reason(), "INVALID_ARGUMENT");
        assert!(
            error.message().starts_with("request_id: "),
            "{}",
            error.message()
        );
    }

    #[tokio::test]
    async fn records_are_found_replayed_and_refused_for_another_request() {
        use sea_orm_migration::prelude::SchemaManager;
        let connection = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        SchemaManager::new(&connection)
            .create_table(request_ids_table("test_request_ids"))
            .await
            .unwrap();
        let records = RequestIds::new("test_request_ids");
        let first = key("users/op", "CreateAccount", "fp");
        assert_eq!(records.replay(&connection, &first).await.unwrap(), None);
        records.record(&connection, &first, "acme").await.unwrap();
        let found = records
            .find(&connection, &first.request_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.key, found.resource_key.as_str()),
            (first.clone(), "acme")
        );
        assert_eq!(
            records.replay(&connection, &first).await.unwrap(),
            Some("acme".to_string())
        );
        let other = key("users/op", "CreateAccount", "fp-2");
        assert!(matches!(
            records.replay(&connection, &other).await,
            Err(ReplayError::Reused(_))
        ));
        let again = records
            .record(&connection, &first, "acme")
            .await
            .unwrap_err();
        assert!(crate::db::is_unique_violation(&again), "{again}");
    }
}
