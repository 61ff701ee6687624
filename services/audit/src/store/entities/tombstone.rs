//! `audit_tombstones`: per account, what a purge removed, signed.

use sea_orm::entity::prelude::*;

/// A tombstone row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_tombstones")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The last removed sequence number.
    pub through_sequence: i64,
    /// Its hash.
    pub last_hash: String,
    /// How many entries were removed in all.
    pub purged_entries: i64,
    /// The cut-off of the last purge, RFC 3339.
    pub before_time: String,
    /// The operator who purged.
    pub operator: String,
    /// HMAC-SHA256 of the fields above.
    pub signature: String,
    /// When.
    pub purge_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
