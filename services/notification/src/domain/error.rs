//! The one error enum of the notification service; `api::errors` maps it to the API.

use tenantry_platform::ApiError;
use tenantry_platform::db::StoreError;

/// Everything that can go wrong in the notification service.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The caller may not do this (or the resource does not exist: no existence leaks).
    #[error("permission denied")]
    PermissionDenied,
    /// No message with this name (only told to callers allowed to know).
    #[error("{0} does not exist")]
    NotFound(String),
    /// The sending account is not an ACTIVE partner.
    #[error("accounts/{0} is not an ACTIVE partner")]
    NotActivePartner(String),
    /// `all_customers` was asked for, but the partner has no ACTIVE customer.
    #[error("accounts/{0} has no ACTIVE customer")]
    NoActiveCustomers(String),
    /// Listed recipients that are not customers of the partner (their index in the request).
    #[error("recipients not managed by the sender: {0:?}")]
    InvalidRecipients(Vec<usize>),
    /// Recipients managed by the partner that are not ACTIVE (account ids).
    #[error("recipients not ACTIVE: {0:?}")]
    RecipientsNotActive(Vec<String>),
    /// The message passed its expire_time.
    #[error("{0} has expired")]
    Expired(String),
    /// A concurrent change won; retrying may succeed.
    #[error("a concurrent change won")]
    ConcurrentChange,
    /// The request_id was used by another caller or for another request.
    #[error("request_id already used for a different request")]
    RequestIdReused,
    /// A peer service's error, already in the form a caller may see.
    #[error("{0}")]
    Upstream(ApiError),
    /// A stored row that this code cannot read (a defect).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for NotificationError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::from(error))
    }
}

impl From<ApiError> for NotificationError {
    fn from(error: ApiError) -> Self {
        Self::Upstream(error)
    }
}

/// In a consumer: a corrupt row fails the same way on every delivery (dead letters at once);
/// anything else (the database, a peer) may pass, so the event is retried.
impl tenantry_events::HandlerFailure for NotificationError {
    fn permanent(&self) -> bool {
        matches!(self, Self::Corrupt(_))
    }
}
