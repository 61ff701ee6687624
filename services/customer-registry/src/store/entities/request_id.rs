//! `registry_request_ids`: the `request_id`s of creates, written in the same transaction as the
//! created account, so a retried create returns the first result.

use sea_orm::entity::prelude::*;

/// A remembered create request.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registry_request_ids")]
pub struct Model {
    /// The caller's idempotency key (a UUID, stored lower-case hyphenated).
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// `users/{sub}` or `services/{name}` of the caller.
    pub caller: String,
    /// The RPC, e.g. `CreateAccount`.
    pub method: String,
    /// SHA-256 hex of the request's canonical fields.
    pub fingerprint: String,
    /// The account id the request created.
    pub resource_key: String,
    /// When the request was first served.
    pub create_time: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
