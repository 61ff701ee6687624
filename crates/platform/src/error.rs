//! The one mapping from errors to `tonic::Status`.
//!
//! Every service turns its own domain error enum into an [`ApiError`]; this module turns an
//! `ApiError` into a status with `google.rpc` details: `ErrorInfo` (reason + domain `tenantry`)
//! always, `BadRequest` field violations for INVALID_ARGUMENT and `PreconditionFailure` for
//! FAILED_PRECONDITION. Internal causes are logged with their whole chain and never reach the
//! caller, so no SQL or stack trace leaks.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

/// The `ErrorInfo.domain` of every error Tenantry returns.
pub const ERROR_DOMAIN: &str = "tenantry";

/// A failure as the API reports it: a canonical code, a machine-readable reason, a message for
/// people, and the structured details that belong to the code.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: Code,
    reason: &'static str,
    message: String,
    field_violations: Vec<FieldViolation>,
    precondition_violations: Vec<PreconditionViolation>,
    metadata: Vec<(String, String)>,
}

impl ApiError {
    fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            field_violations: Vec::new(),
            precondition_violations: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// Adds `key: value` to the `ErrorInfo.metadata` (what a client needs to act on the
    /// reason, e.g. the policy that requires approval).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// The `ErrorInfo.metadata`.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// INVALID_ARGUMENT naming one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid_fields(vec![(field.into(), description.into())])
    }

    /// INVALID_ARGUMENT naming every offending field at once.
    pub fn invalid_fields(violations: Vec<(String, String)>) -> Self {
        let message = violations
            .iter()
            .map(|(field, description)| format!("{field}: {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = Self::new(Code::InvalidArgument, "INVALID_ARGUMENT", message);
        error.field_violations = violations
            .into_iter()
            .map(|(field, description)| FieldViolation::new(field, description))
            .collect();
        error
    }

    /// OUT_OF_RANGE naming `field`: a position (a sequence number, an offset) past what can be
    /// served, which a caller fixes by moving it, not by changing its form.
    pub fn out_of_range(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let (field, description) = (field.into(), description.into());
        let mut error = Self::new(Code::OutOfRange, reason, format!("{field}: {description}"));
        error.field_violations = vec![FieldViolation::new(field, description)];
        error
    }

    /// INVALID_ARGUMENT for a request that cannot be read at all, so no field can be named (a
    /// body that is not protobuf).
    pub fn malformed_request(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, "MALFORMED_REQUEST", message)
    }

    /// UNAUTHENTICATED: no usable credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, "UNAUTHENTICATED", message)
    }

    /// PERMISSION_DENIED with one message for every case, so a denied caller cannot tell whether
    /// the resource exists.
    pub fn permission_denied() -> Self {
        Self::new(
            Code::PermissionDenied,
            "PERMISSION_DENIED",
            "the caller is not allowed to do this, or the resource does not exist",
        )
    }

    /// PERMISSION_DENIED with a specific reason, for refusals that reveal nothing about other
    /// tenants (e.g. "only a service identity may call Authorize").
    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, reason, message)
    }

    /// NOT_FOUND; only for callers who are allowed to know whether the resource exists.
    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, reason, message)
    }

    /// ALREADY_EXISTS.
    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, reason, message)
    }

    /// FAILED_PRECONDITION with one `PreconditionFailure` violation.
    pub fn failed_precondition(
        reason: &'static str,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let description = description.into();
        let mut error = Self::new(Code::FailedPrecondition, reason, description.clone());
        error.precondition_violations =
            vec![PreconditionViolation::new(reason, subject, description)];
        error
    }

    /// ABORTED because the etag the caller sent is not the current one.
    pub fn stale_etag(resource: &str) -> Self {
        Self::new(
            Code::Aborted,
            "ETAG_MISMATCH",
            format!("{resource} was changed since it was read (etag mismatch); read it again"),
        )
    }

    /// ABORTED because a concurrent change won; the caller may retry.
    pub fn concurrent_change(message: impl Into<String>) -> Self {
        Self::new(Code::Aborted, "CONCURRENT_CHANGE", message)
    }

    /// RESOURCE_EXHAUSTED: a rate or size limit.
    pub fn resource_exhausted(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, reason, message)
    }

    /// UNAVAILABLE: a dependency (database, another service) cannot be reached; retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, "UNAVAILABLE", message)
    }

    /// DEADLINE_EXCEEDED: a dependency took too long.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, "TIMEOUT", message)
    }

    /// INTERNAL: a defect. The cause chain is logged here and replaced by a generic message.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(Code::Internal, "INTERNAL", "internal error")
    }

    /// The canonical code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The machine-readable `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `(field, description)` pairs of an INVALID_ARGUMENT (empty for other errors).
    pub fn field_violations(&self) -> Vec<(String, String)> {
        self.field_violations
            .iter()
            .map(|violation| (violation.field.clone(), violation.description.clone()))
            .collect()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            error.reason,
            ERROR_DOMAIN,
            error
                .metadata
                .into_iter()
                .collect::<std::collections::HashMap<String, String>>(),
        );
        if !error.field_violations.is_empty() {
            details.set_bad_request(error.field_violations);
        }
        if !error.precondition_violations.is_empty() {
            details.set_precondition_failure(error.precondition_violations);
        }
        Status::with_error_details(error.code, error.message, details)
    }
}

/// Maps a status received from another Tenantry service to an [`ApiError`] for our own caller:
/// transport failures become UNAVAILABLE, and anything unexpected INTERNAL (logged).
pub fn from_upstream(service: &str, status: &Status) -> ApiError {
    match status.code() {
        Code::Unavailable | Code::Cancelled => {
            ApiError::unavailable(format!("{service} is unavailable; retry later"))
        }
        // A connection that broke under the call (the peer crashed or reset the stream): tonic
        // reports it as UNKNOWN "transport error", or INTERNAL / RESOURCE_EXHAUSTED for some
        // HTTP/2 resets, made here from the error, not sent by the peer.
        _ if broken_transport(status) => {
            ApiError::unavailable(format!("{service} is unavailable; retry later"))
        }
        Code::DeadlineExceeded => ApiError::deadline_exceeded(format!("{service} timed out")),
        Code::PermissionDenied => ApiError::permission_denied(),
        _ => ApiError::internal(&UpstreamError {
            service: service.to_string(),
            status: status.clone(),
        }),
    }
}

/// Whether tonic made `status` here from a failure of the connection or the HTTP/2 stream
/// rather than receiving it from the peer: statuses the peer sends carry no source, those made
/// from a transport, HTTP/2 or I/O error do.
fn broken_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Whether a failed call to a peer says the peer is unreachable (not that it refused).
pub fn is_unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    ) || broken_transport(status)
}

#[derive(Debug, thiserror::Error)]
#[error("{service} answered {status}")]
struct UpstreamError {
    service: String,
    status: Status,
}

/// Displays an error with every `source()` after it: `outer: middle: root`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_upstream_is_unavailable_not_internal() {
        let broken = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stream closed because of a broken pipe",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        let status: Status = from_upstream("registry", &broken).into();
        assert_eq!(status.code(), Code::Unavailable);
        // UNKNOWN sent by the peer itself is still unexpected.
        let status: Status = from_upstream("registry", &Status::unknown("boom")).into();
        assert_eq!(status.code(), Code::Internal);
    }

    #[test]
    fn invalid_argument_carries_bad_request_and_error_info() {
        let status: Status = ApiError::invalid_field("account_id", "too short").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations[0].field, "account_id");
        assert_eq!(details.error_info().expect("error info").domain, "tenantry");
    }

    #[test]
    fn failed_precondition_carries_precondition_failure() {
        let status: Status =
            ApiError::failed_precondition("LAST_OWNER", "accounts/a", "last owner").into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(
            details.precondition_failure().expect("details").violations[0].r#type,
            "LAST_OWNER"
        );
    }
}
