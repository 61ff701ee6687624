//! `users`: the user directory, refreshed from each person's token claims.

use sea_orm::entity::prelude::*;

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// The token's `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The `email` claim as given (empty if none).
    pub email: String,
    /// Trimmed, lower-case `email`, for case-insensitive lookups.
    pub email_normalized: String,
    /// The `given_name` claim (empty if none).
    pub given_name: String,
    /// The `family_name` claim (empty if none).
    pub family_name: String,
    /// When the entry last changed.
    pub update_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
