//! The one error enum of the audit service; `api::errors` maps it to the API.

use tenantry_platform::db::StoreError;

/// Everything that can go wrong in the audit service.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The caller may not read this account's trail (or it does not exist: no existence leaks).
    #[error("permission denied")]
    PermissionDenied,
    /// No entry with this name (only told to callers allowed to know).
    #[error("{0} does not exist")]
    NotFound(String),
    /// A watch asked to resume inside the purged part of the log.
    #[error("entries through sequence {through} of accounts/{account} were purged")]
    Purged {
        /// The account.
        account: String,
        /// The last purged sequence number.
        through: i64,
    },
    /// An event payload that cannot be decoded or names no account.
    #[error("cannot read the event: {0}")]
    Undecodable(String),
    /// An event payload without a field every entry needs.
    #[error("the event has no {0}")]
    Missing(&'static str),
    /// An event type the log does not record.
    #[error("{0} events are not recorded")]
    NotAudited(&'static str),
    /// A stored row that this code cannot read (a defect or a tampered row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for AuditError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::from(error))
    }
}

/// In the consumer: an event that cannot be read fails the same way on every delivery (dead
/// letters at once); a database failure may pass, so the event is retried.
impl tenantry_events::HandlerFailure for AuditError {
    fn permanent(&self) -> bool {
        matches!(
            self,
            Self::Undecodable(_) | Self::Missing(_) | Self::NotAudited(_) | Self::Corrupt(_)
        )
    }
}
