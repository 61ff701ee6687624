//! `messages`: one row per sent message.

use sea_orm::entity::prelude::*;

/// A message row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    /// A UUID v7 (time-ordered: newest first = highest first).
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: String,
    /// The sending partner.
    pub partner_id: String,
    /// The partner's display name at send time.
    pub partner_display_name: String,
    /// `users/{sub}` of the sender.
    pub sender: String,
    /// Trimmed title.
    pub title: String,
    /// Body as given.
    pub body: String,
    /// `ALL_MUST_READ` or `SINGLE_READ_ONLY`.
    pub read_policy: String,
    /// Sent to all ACTIVE customers.
    pub all_customers: bool,
    /// Comma-separated role filter (`OWNER,ADMIN`), empty = every role.
    pub roles: String,
    /// When it was sent.
    pub create_time: DateTimeUtc,
    /// When it leaves every inbox.
    pub expire_time: Option<DateTimeUtc>,
    /// `QUEUED`, `DELIVERED` or `EXPIRED`.
    pub state: String,
    /// When the row last changed.
    pub update_time: DateTimeUtc,
    /// Starts at 1, +1 on every state change.
    pub version: i64,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
