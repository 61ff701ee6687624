//! The one mapping from [`NotificationError`] to the error a caller sees.

use tenantry_platform::names::account_name;
use tenantry_platform::{ApiError, Violations};
use tonic::Status;
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

use crate::domain::{NOT_A_MANAGED_CUSTOMER, NotificationError};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::PermissionDenied => ApiError::permission_denied(),
            NotificationError::NotFound(name) => {
                ApiError::not_found("MESSAGE_NOT_FOUND", format!("{name} does not exist"))
            }
            NotificationError::NotActivePartner(partner_id) => ApiError::failed_precondition(
                "NOT_AN_ACTIVE_PARTNER",
                account_name(&partner_id),
                format!(
                    "{} is not an ACTIVE partner account",
                    account_name(&partner_id)
                ),
            ),
            NotificationError::NoActiveCustomers(partner_id) => ApiError::failed_precondition(
                "NO_ACTIVE_CUSTOMERS",
                account_name(&partner_id),
                format!("{} has no ACTIVE customer", account_name(&partner_id)),
            ),
            NotificationError::InvalidRecipients(indexes) => {
                let mut violations = Violations::new();
                for index in indexes {
                    violations.add(format!("recipients[{index}]"), NOT_A_MANAGED_CUSTOMER);
                }
                violations.into_error()
            }
            NotificationError::RecipientsNotActive(accounts) => {
                // Only the first violation fits ApiError; to_status adds one per account.
                let first = accounts.first().cloned().unwrap_or_default();
                ApiError::failed_precondition(
                    "RECIPIENT_NOT_ACTIVE",
                    account_name(&first),
                    format!("{} is not ACTIVE", account_name(&first)),
                )
            }
            NotificationError::Expired(name) => ApiError::failed_precondition(
                "MESSAGE_EXPIRED",
                name.clone(),
                format!("{name} has expired"),
            ),
            NotificationError::ConcurrentChange => {
                ApiError::concurrent_change("a concurrent change won; retry the call")
            }
            NotificationError::RequestIdReused => ApiError::invalid_field(
                "request_id",
                "already used for a different request; use a new request_id",
            ),
            NotificationError::Upstream(error) => error,
            NotificationError::Corrupt(what) => ApiError::internal(&Corrupt(what)),
            NotificationError::Store(error) => error.into(),
        }
    }
}

/// The status for `error`: recipients that are not ACTIVE get one `PreconditionFailure`
/// violation each; everything else goes through `ApiError`.
pub fn to_status(error: NotificationError) -> Status {
    if let NotificationError::RecipientsNotActive(accounts) = &error
        && accounts.len() > 1
    {
        let names: Vec<String> = accounts.iter().map(|id| account_name(id)).collect();
        let mut details = ErrorDetails::new();
        details.set_error_info(
            "RECIPIENT_NOT_ACTIVE",
            tenantry_platform::error::ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        details.set_precondition_failure(
            names
                .iter()
                .map(|name| {
                    PreconditionViolation::new(
                        "RECIPIENT_NOT_ACTIVE",
                        name.clone(),
                        format!("{name} is not ACTIVE"),
                    )
                })
                .collect::<Vec<_>>(),
        );
        return Status::with_error_details(
            tonic::Code::FailedPrecondition,
            format!("recipients not ACTIVE: {}", names.join(", ")),
            details,
        );
    }
    ApiError::from(error).into()
}

/// A handler failure: a domain error or an API error built on the way.
#[derive(Debug)]
pub enum Failure {
    /// From the domain or the store.
    Domain(NotificationError),
    /// Already in API form.
    Api(ApiError),
}

impl From<NotificationError> for Failure {
    fn from(error: NotificationError) -> Self {
        Self::Domain(error)
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Domain(error) => to_status(error),
            Failure::Api(error) => error.into(),
        }
    }
}
