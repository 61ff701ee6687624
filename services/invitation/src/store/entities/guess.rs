//! `invitation_guesses`: unknown invitation secrets counted per key (a caller or an address)
//! and window, shared by every replica of the service.

use sea_orm::entity::prelude::*;

/// One key's count in one window.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitation_guesses")]
pub struct Model {
    /// `caller` or `address` (see `domain::limits::GuessScope`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// The caller's `sub` or the address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The window's start in Unix seconds (aligned to its length).
    #[sea_orm(primary_key, auto_increment = false)]
    pub window_start: i64,
    /// Unknown secrets tried in the window.
    pub failures: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
