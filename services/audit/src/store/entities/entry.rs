//! `audit_entries`: the log, one row per recorded event, never updated.

use sea_orm::entity::prelude::*;

/// An entry row (see audit.proto's `AuditEntry`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_entries")]
pub struct Model {
    /// Global append order (keyset of listings across accounts).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The account whose log holds it.
    pub account_id: String,
    /// 1, 2, 3, … per account.
    pub sequence: i64,
    /// The event's CloudEvents id (unique: a redelivery makes no second entry).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The event's time, to the microsecond.
    pub event_time: DateTimeUtc,
    /// `users/{sub}` or `services/{name}`.
    pub actor: String,
    /// `ACTOR_KIND_*`.
    pub actor_kind: String,
    /// The service acting for the actor.
    pub via: String,
    /// What let the actor act.
    pub actor_role: String,
    /// The resource changed.
    pub resource: String,
    /// JSON object: changed fields before.
    pub before_json: String,
    /// JSON object: changed fields after.
    pub after_json: String,
    /// The call's request id.
    pub request_id: String,
    /// The call's trace id.
    pub trace_id: String,
    /// The previous entry's hash.
    pub previous_hash: String,
    /// This entry's hash.
    pub hash: String,
    /// When it was appended.
    pub record_time: DateTimeUtc,
}

impl Model {
    /// A row of a `SELECT` that `Entity::find()` built (every column, in the order declared
    /// above), read by position: a listing decodes many rows, and the derived decoder looks
    /// each column up by name.
    pub fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get_by_index(0)?,
            account_id: row.try_get_by_index(1)?,
            sequence: row.try_get_by_index(2)?,
            event_id: row.try_get_by_index(3)?,
            event_type: row.try_get_by_index(4)?,
            event_time: row.try_get_by_index(5)?,
            actor: row.try_get_by_index(6)?,
            actor_kind: row.try_get_by_index(7)?,
            via: row.try_get_by_index(8)?,
            actor_role: row.try_get_by_index(9)?,
            resource: row.try_get_by_index(10)?,
            before_json: row.try_get_by_index(11)?,
            after_json: row.try_get_by_index(12)?,
            request_id: row.try_get_by_index(13)?,
            trace_id: row.try_get_by_index(14)?,
            previous_hash: row.try_get_by_index(15)?,
            hash: row.try_get_by_index(16)?,
            record_time: row.try_get_by_index(17)?,
        })
    }
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
