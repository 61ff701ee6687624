//! `audit_chains`: the head of each account's chain, locked while an entry is appended.

use sea_orm::entity::prelude::*;

/// A chain head row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_chains")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The partner managing it, from its `account.*` events.
    pub managed_by: Option<String>,
    /// The last sequence number appended (0: none yet).
    pub last_sequence: i64,
    /// That entry's hash.
    pub last_hash: String,
    /// When the last entry was appended.
    pub update_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
