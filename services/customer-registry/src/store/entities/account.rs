//! `accounts`: one row per account, for ever (deletion is a state, so ids are never reused).

use sea_orm::entity::prelude::*;

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    /// The identifier; the primary key keeps it unique for ever.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The trimmed display name.
    pub display_name: String,
    /// Whether the account is a partner.
    pub partner: bool,
    /// The managing partner's account id, for a managed customer.
    pub managed_by: Option<String>,
    /// `ACTIVE`, `DISABLED` or `DELETED`.
    pub state: String,
    /// `users/{sub}` of the creator.
    pub creator: String,
    /// Starts at 1, incremented on every change; the etag.
    pub version: i64,
    /// When the account was created.
    pub create_time: DateTimeUtc,
    /// When the account last changed.
    pub update_time: DateTimeUtc,
    /// When the account was deleted.
    pub delete_time: Option<DateTimeUtc>,
}

/// No relations: `managed_by` points into the same table but is only read by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
