//! `members`: one row per (account, user) with the user's role.

use sea_orm::entity::prelude::*;

/// A membership row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The user's `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// `OWNER`, `ADMIN` or `EMPLOYEE`.
    pub role: String,
    /// `DIRECT`, `SELF_ASSIGNED` or `INVITATION`.
    pub source: String,
    /// `users/{sub}` or `services/{name}`.
    pub added_by: String,
    /// When the membership was created.
    pub create_time: DateTimeUtc,
    /// When the role last changed.
    pub update_time: DateTimeUtc,
    /// Starts at 1, +1 on every change; the etag.
    pub version: i64,
    /// When a time-bound membership ends; NULL: no end.
    pub expire_time: Option<DateTimeUtc>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
