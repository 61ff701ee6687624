//! `recipient_accounts`: one row per (message, recipient account), with its counters.

use sea_orm::entity::prelude::*;

/// A recipient account of a message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "recipient_accounts")]
pub struct Model {
    /// The message.
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The recipient account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// Its position in the message's recipients.
    pub position: i32,
    /// Deliveries made through this account.
    pub recipient_count: i64,
    /// Of those, acknowledged by their user.
    pub acknowledged_count: i64,
    /// Of those, withdrawn before acknowledgement.
    pub withdrawn_count: i64,
    /// SINGLE_READ_ONLY: `users/{sub}` whose ack resolved it (set once, race-free).
    pub resolved_by: Option<String>,
    /// When it was resolved.
    pub resolve_time: Option<DateTimeUtc>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
