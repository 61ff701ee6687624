//! `notification_request_ids`: idempotency keys of SendMessage, written with the row.

use sea_orm::entity::prelude::*;

/// One used request id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_request_ids")]
pub struct Model {
    /// The caller's UUID, lower-case hyphenated.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// `users/{sub}` of the caller.
    pub caller: String,
    /// The RPC: `SendMessage`.
    pub method: String,
    /// SHA-256 hex of the request's canonical fields.
    pub fingerprint: String,
    /// The sent message's id.
    pub resource_key: String,
    /// When the request was first served.
    pub create_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
