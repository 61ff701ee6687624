//! `account_member_counts`: per-account counters changed by conditional updates in the same
//! transaction as the member rows, so the OWNER rules hold under concurrency on every backend.

use sea_orm::entity::prelude::*;

/// The counters of one account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_member_counts")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// How many members are OWNERs.
    pub owners: i64,
    /// How many members there are.
    pub members: i64,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
