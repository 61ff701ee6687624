//! `access_requests`: one row per access request.

use sea_orm::entity::prelude::*;

/// A request row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_requests")]
pub struct Model {
    /// The request's id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// The account.
    pub account_id: String,
    /// The subject's `sub`.
    pub subject_user_id: String,
    /// The subject's directory e-mail when it was made ("" if none).
    pub subject_email: String,
    /// `OWNER`, `ADMIN` or `EMPLOYEE`.
    pub role: String,
    /// Why.
    pub reason: String,
    /// The asked duration; NULL: without end.
    pub access_duration_seconds: Option<i64>,
    /// `PENDING`, `APPROVED`, `DECLINED` or `CANCELLED` (lapsed requests stay `PENDING`).
    pub state: String,
    /// The requester's `sub`.
    pub requester: String,
    /// Approvals needed.
    pub required_approvals: i32,
    /// The partner's OWNERs may approve.
    pub escalated: bool,
    /// When it was made.
    pub create_time: DateTimeUtc,
    /// When a PENDING request lapses.
    pub expire_time: DateTimeUtc,
    /// When it was decided.
    pub decide_time: Option<DateTimeUtc>,
    /// `users/{sub}` of who decided it.
    pub decided_by: Option<String>,
    /// The decliner's reason.
    pub decline_reason: Option<String>,
    /// Starts at 1, +1 on every change; the etag.
    pub version: i64,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
