//! The one mapping from [`AuditError`] to the error a caller sees.

use tenantry_platform::ApiError;
use tenantry_platform::names::account_name;
use tonic::Status;

use crate::domain::AuditError;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Defect(String);

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::PermissionDenied => ApiError::permission_denied(),
            AuditError::NotFound(name) => {
                ApiError::not_found("AUDIT_ENTRY_NOT_FOUND", format!("{name} does not exist"))
            }
            AuditError::Purged { account, through } => ApiError::out_of_range(
                "AUDIT_ENTRIES_PURGED",
                "after_sequence",
                format!(
                    "the entries of {} through sequence {through} were purged; resume with \
                     after_sequence {through} or later",
                    account_name(&account)
                ),
            ),
            // Only the consumer meets these; a handler seeing one is a defect.
            error @ (AuditError::Undecodable(_)
            | AuditError::Missing(_)
            | AuditError::NotAudited(_)
            | AuditError::Corrupt(_)) => ApiError::internal(&Defect(error.to_string())),
            AuditError::Store(error) => error.into(),
        }
    }
}

/// The status for `error`.
pub fn to_status(error: AuditError) -> Status {
    ApiError::from(error).into()
}
