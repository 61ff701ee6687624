//! `membership_request_ids`: idempotency keys of creates, written with the created row.

use sea_orm::entity::prelude::*;

/// One used request id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "membership_request_ids")]
pub struct Model {
    /// The caller's UUID, lower-case hyphenated.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// `users/{sub}` or `services/{name}` of the caller.
    pub caller: String,
    /// The RPC, e.g. `AddMember`.
    pub method: String,
    /// SHA-256 hex of the request's canonical fields.
    pub fingerprint: String,
    /// What was created: `{account_id}/{user_id}` for a member.
    pub resource_key: String,
    /// When the request was first served.
    pub create_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
