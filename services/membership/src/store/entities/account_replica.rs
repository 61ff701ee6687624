//! `account_replica`: the account facts membership needs, copied from the registry.

use sea_orm::entity::prelude::*;

/// One account as the registry last reported it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_replica")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The name shown to people.
    pub display_name: String,
    /// Whether the account is a partner.
    pub partner: bool,
    /// The managing partner's account id, for a managed customer.
    pub managed_by: Option<String>,
    /// `ACTIVE`, `DISABLED` or `DELETED`.
    pub state: String,
    /// The registry's version of the account (its etag): a row is only replaced by a newer one.
    pub registry_version: i64,
    /// The registry's `update_time` of that version.
    pub update_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
