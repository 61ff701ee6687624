//! The one mapping from [`InvitationError`] to the error a caller sees. Rate limits become
//! RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` detail (built here, as the platform's
//! `ApiError` has no RetryInfo); everything else goes through `ApiError`.

use std::collections::HashMap;

use tenantry_platform::ApiError;
use tenantry_platform::error::ERROR_DOMAIN;
use tenantry_platform::names::account_name;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{InvitationError, InvitationState};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

fn state_label(state: InvitationState) -> &'static str {
    match state {
        InvitationState::Pending => "PENDING",
        InvitationState::Accepted => "ACCEPTED (it can be used once)",
        InvitationState::Revoked => "REVOKED",
        InvitationState::Expired => "EXPIRED",
        InvitationState::Declined => "DECLINED by the invitee",
    }
}

fn not_pending_reason(state: InvitationState) -> &'static str {
    match state {
        InvitationState::Accepted => "INVITATION_ACCEPTED",
        InvitationState::Revoked => "INVITATION_REVOKED",
        InvitationState::Expired => "INVITATION_EXPIRED",
        InvitationState::Declined => "INVITATION_DECLINED",
        InvitationState::Pending => "INVITATION_PENDING",
    }
}

impl From<InvitationError> for ApiError {
    fn from(error: InvitationError) -> Self {
        match error {
            InvitationError::PermissionDenied => ApiError::permission_denied(),
            InvitationError::EmailMismatch => ApiError::forbidden(
                "EMAIL_MISMATCH",
                "this invitation was sent to another e-mail address than the one of your login",
            ),
            InvitationError::NotFound(name) => {
                ApiError::not_found("INVITATION_NOT_FOUND", format!("{name} does not exist"))
            }
            InvitationError::SecretNotFound => ApiError::not_found(
                "INVITATION_NOT_FOUND",
                "no invitation has this link; it may have been replaced by a newer e-mail",
            ),
            InvitationError::AlreadyPending { account_id, email } => ApiError::already_exists(
                "INVITATION_PENDING",
                format!(
                    "{} already has a pending invitation for {email}; resend it instead",
                    account_name(&account_id)
                ),
            ),
            InvitationError::AlreadyMember { account_id, email } => ApiError::already_exists(
                "ALREADY_MEMBER",
                format!(
                    "a member of {} already has the e-mail address {email}",
                    account_name(&account_id)
                ),
            ),
            InvitationError::NotPending { name, state } => ApiError::failed_precondition(
                not_pending_reason(state),
                name.clone(),
                format!("{name} is {}", state_label(state)),
            ),
            InvitationError::AcceptedByAnother(name) => ApiError::failed_precondition(
                "INVITATION_ACCEPTED",
                name.clone(),
                format!("{name} was already accepted; it can be used once"),
            ),
            InvitationError::AccountNotActive(account_id) => ApiError::failed_precondition(
                "ACCOUNT_NOT_ACTIVE",
                account_name(&account_id),
                format!("{} is not ACTIVE", account_name(&account_id)),
            ),
            InvitationError::OwnerLimit(account_id) => ApiError::failed_precondition(
                "OWNER_LIMIT",
                account_name(&account_id),
                format!(
                    "{} already has 2 OWNERs, the most an account may have",
                    account_name(&account_id)
                ),
            ),
            InvitationError::ApprovalRequired { policy, grant } => ApiError::failed_precondition(
                "APPROVAL_REQUIRED",
                policy.clone(),
                format!(
                    "{policy} puts invitations with the role OWNER or ADMIN behind approval: \
                     invite as EMPLOYEE, then ask for the role with CreateAccessRequest"
                ),
            )
            .with_metadata("access_policy", policy)
            .with_metadata("gated_grant", grant),
            InvitationError::ResendTooSoon { name, retry_after } => ApiError::resource_exhausted(
                "RESEND_TOO_SOON",
                format!(
                    "{name} was e-mailed recently; resend it again in {}s",
                    retry_after.as_secs()
                ),
            ),
            InvitationError::TooManyGuesses { retry_after } => ApiError::resource_exhausted(
                "TOO_MANY_UNKNOWN_SECRETS",
                format!(
                    "too many unknown invitation links; try again in {}s",
                    retry_after.as_secs()
                ),
            ),
            InvitationError::StaleEtag(name) => ApiError::stale_etag(&name),
            InvitationError::ConcurrentChange => {
                ApiError::concurrent_change("a concurrent change won; retry the call")
            }
            InvitationError::RequestIdReused => ApiError::invalid_field(
                "request_id",
                "already used for a different request; use a new request_id",
            ),
            InvitationError::Upstream(error) => error,
            InvitationError::Corrupt(what) => ApiError::internal(&Corrupt(what)),
            InvitationError::Store(error) => error.into(),
        }
    }
}

/// The status for `error`: rate limits carry RetryInfo besides ErrorInfo.
pub fn to_status(error: InvitationError) -> Status {
    let retry_after = match &error {
        InvitationError::ResendTooSoon { retry_after, .. }
        | InvitationError::TooManyGuesses { retry_after } => Some(*retry_after),
        _ => None,
    };
    let api = ApiError::from(error);
    match retry_after {
        Some(delay) => {
            let mut details = ErrorDetails::new();
            details.set_error_info(api.reason(), ERROR_DOMAIN, HashMap::<String, String>::new());
            details.set_retry_info(Some(delay));
            Status::with_error_details(Code::ResourceExhausted, api.message(), details)
        }
        None => api.into(),
    }
}

/// What the handlers return on failure: either kind of error becomes a [`Status`].
#[derive(Debug)]
pub struct Failure(pub Status);

impl From<InvitationError> for Failure {
    fn from(error: InvitationError) -> Self {
        Failure(to_status(error))
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure(error.into())
    }
}

impl From<tenantry_platform::db::StoreError> for Failure {
    fn from(error: tenantry_platform::db::StoreError) -> Self {
        Failure(ApiError::from(error).into())
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        failure.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenantry_platform::AccountId;

    use super::*;

    #[test]
    fn codes_and_reasons() {
        let cases = [
            (
                InvitationError::PermissionDenied,
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            ),
            (
                InvitationError::EmailMismatch,
                Code::PermissionDenied,
                "EMAIL_MISMATCH",
            ),
            (
                InvitationError::SecretNotFound,
                Code::NotFound,
                "INVITATION_NOT_FOUND",
            ),
            (
                InvitationError::AlreadyPending {
                    account_id: AccountId::trusted("a"),
                    email: "x@y.z".into(),
                },
                Code::AlreadyExists,
                "INVITATION_PENDING",
            ),
            (
                InvitationError::AlreadyMember {
                    account_id: AccountId::trusted("a"),
                    email: "x@y.z".into(),
                },
                Code::AlreadyExists,
                "ALREADY_MEMBER",
            ),
            (
                InvitationError::NotPending {
                    name: "n".into(),
                    state: InvitationState::Expired,
                },
                Code::FailedPrecondition,
                "INVITATION_EXPIRED",
            ),
            (
                InvitationError::AcceptedByAnother("n".into()),
                Code::FailedPrecondition,
                "INVITATION_ACCEPTED",
            ),
            (
                InvitationError::OwnerLimit(AccountId::trusted("a")),
                Code::FailedPrecondition,
                "OWNER_LIMIT",
            ),
            (
                InvitationError::StaleEtag("n".into()),
                Code::Aborted,
                "ETAG_MISMATCH",
            ),
            (
                InvitationError::RequestIdReused,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
        ];
        for (error, code, reason) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.code(), api.reason()), (code, reason));
        }
    }

    #[test]
    fn rate_limits_carry_retry_info() {
        let status = to_status(InvitationError::ResendTooSoon {
            name: "accounts/a/invitations/x".into(),
            retry_after: Duration::from_secs(42),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().and_then(|info| info.retry_delay),
            Some(Duration::from_secs(42))
        );
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "RESEND_TOO_SOON");
        assert_eq!(info.domain, "tenantry");
        // Other errors carry no RetryInfo.
        let status = to_status(InvitationError::SecretNotFound);
        assert!(status.get_error_details().retry_info().is_none());
    }
}
