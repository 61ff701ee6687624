//! `deliveries`: a message for one user through one recipient account (the inbox).

use sea_orm::entity::prelude::*;

/// A delivery row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    /// The message.
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The recipient account it came through.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The user (`sub`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `PENDING`, `ACKNOWLEDGED`, `RESOLVED`, `WITHDRAWN` or `EXPIRED`.
    pub state: String,
    /// The message's create_time, copied so the inbox index orders by it.
    pub message_create_time: DateTimeUtc,
    /// The message's expire_time, copied so reads and the sweep filter by it.
    pub message_expire_time: Option<DateTimeUtc>,
    /// When the delivery was made.
    pub create_time: DateTimeUtc,
    /// When the user acknowledged it.
    pub ack_time: Option<DateTimeUtc>,
    /// When the row last changed.
    pub update_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
