//! `removed_members`: the latest removal of a user from an account, kept for a while so a
//! fan-out page read before the removal leaves the user out (`store/removals.rs`).

use sea_orm::entity::prelude::*;

/// A removal record.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "removed_members")]
pub struct Model {
    /// The account the user was removed from.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The user (`sub`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// When membership removed them (its clock: the `member.removed` event's time); the
    /// latest removal when there were several.
    pub remove_time: DateTimeUtc,
    /// When the removed membership began (the removed member's `create_time`, membership's
    /// clock): a listed membership that began no later is that one or an older one. `None` in
    /// records written before this column existed (they compare with `remove_time`).
    pub member_since: Option<DateTimeUtc>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
