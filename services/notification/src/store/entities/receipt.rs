//! `receipts`: one row per acknowledgement (user, recipient account), in ack order.

use sea_orm::entity::prelude::*;

/// A receipt row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receipts")]
pub struct Model {
    /// Insertion order: ListMessageReceipts pages on it (oldest first).
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// The message.
    pub message_id: String,
    /// The account the acknowledgement counts for.
    pub account_id: String,
    /// Who acknowledged.
    pub user_id: String,
    /// When.
    pub acknowledge_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
