//! `access_policies`: an account's own access policy (a row only once it was set).

use sea_orm::entity::prelude::*;

/// A policy row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_policies")]
pub struct Model {
    /// The account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: String,
    /// The gated grants, comma-separated (`OWNER_ROLE,ADD_MYSELF`), in wire order.
    pub gated_grants: String,
    /// Approvals needed (0: the default).
    pub required_approvals: i32,
    /// How long a request waits; NULL: the default.
    pub request_lifetime_seconds: Option<i64>,
    /// `REFUSE` or `ESCALATE_TO_PARTNER_OWNERS`; NULL: not set.
    pub short_of_approvers: Option<String>,
    /// The default access duration.
    pub default_duration_seconds: Option<i64>,
    /// The longest access duration.
    pub max_duration_seconds: Option<i64>,
    /// A duration is required.
    pub duration_required: bool,
    /// Starts at 1, +1 on every change; the etag.
    pub version: i64,
    /// When it was last set.
    pub update_time: DateTimeUtc,
    /// `users/{sub}` of who set it.
    pub update_by: String,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
