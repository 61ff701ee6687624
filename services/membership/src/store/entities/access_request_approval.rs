//! `access_request_approvals`: one row per approval of a request.

use sea_orm::entity::prelude::*;

/// An approval row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_request_approvals")]
pub struct Model {
    /// The request.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// The approver's `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub approver: String,
    /// When.
    pub approve_time: DateTimeUtc,
    /// Whether the approver approved as an operator.
    pub operator: bool,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
