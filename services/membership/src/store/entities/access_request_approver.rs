//! `access_request_approvers`: who was asked to approve a request when it was made.

use sea_orm::entity::prelude::*;

/// An approver row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_request_approvers")]
pub struct Model {
    /// The approver's `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The request.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// When the request lapses (the list's order).
    pub expire_time: DateTimeUtc,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
