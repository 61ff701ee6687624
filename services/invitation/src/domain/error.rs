//! The one error enum of the invitation service; `api::errors` maps it to the API.

use tenantry_platform::db::StoreError;
use tenantry_platform::{AccountId, ApiError};

use super::InvitationState;

/// Everything that can go wrong in the invitation service.
#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// The caller may not do this (or the resource does not exist: no existence leaks).
    #[error("permission denied")]
    PermissionDenied,
    /// The caller's token e-mail does not match the invitation's (or there is none).
    #[error("the token e-mail does not match the invitation")]
    EmailMismatch,
    /// No invitation with this name (only told to callers allowed to know).
    #[error("{0} does not exist")]
    NotFound(String),
    /// No invitation has this secret (unknown, malformed, guessed or superseded).
    #[error("no invitation has this secret")]
    SecretNotFound,
    /// A PENDING invitation for this e-mail exists in the account.
    #[error("a pending invitation for {email} exists in accounts/{account_id}")]
    AlreadyPending {
        /// The account.
        account_id: AccountId,
        /// The e-mail as requested.
        email: String,
    },
    /// A member of the account has this e-mail.
    #[error("a member of accounts/{account_id} has the e-mail {email}")]
    AlreadyMember {
        /// The account.
        account_id: AccountId,
        /// The e-mail as requested.
        email: String,
    },
    /// The invitation is not PENDING (as seen now).
    #[error("{name} is {state:?}")]
    NotPending {
        /// The invitation.
        name: String,
        /// Its state as seen now.
        state: InvitationState,
    },
    /// The invitation was accepted by another user.
    #[error("{0} was already accepted by another user")]
    AcceptedByAnother(String),
    /// The account is not ACTIVE.
    #[error("accounts/{0} is not ACTIVE")]
    AccountNotActive(AccountId),
    /// The account already has the most OWNERs it may have.
    #[error("accounts/{0} already has 2 OWNERs")]
    OwnerLimit(AccountId),
    /// The account's access policy puts an invitation with this role behind approval.
    #[error("{policy} requires approval for invitations with this role ({grant})")]
    ApprovalRequired {
        /// The policy's name.
        policy: String,
        /// The grant of the policy that gates it.
        grant: String,
    },
    /// ResendInvitation came too soon after the last e-mail.
    #[error("{name} was sent less than the resend interval ago")]
    ResendTooSoon {
        /// The invitation.
        name: String,
        /// How long until a resend is allowed.
        retry_after: std::time::Duration,
    },
    /// The caller tried too many unknown secrets recently.
    #[error("too many unknown invitation secrets")]
    TooManyGuesses {
        /// How long until the caller may try again.
        retry_after: std::time::Duration,
    },
    /// The etag the caller sent is stale.
    #[error("{0} changed since it was read")]
    StaleEtag(String),
    /// A concurrent change won a race the caller may retry.
    #[error("a concurrent change won")]
    ConcurrentChange,
    /// The request id was used for a different request.
    #[error("request_id reused for a different request")]
    RequestIdReused,
    /// Another service answered with an error, already in API form.
    #[error("{0}")]
    Upstream(ApiError),
    /// A stored value this code cannot read: a defect.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for InvitationError {
    fn from(error: sea_orm::DbErr) -> Self {
        InvitationError::Store(StoreError::from(error))
    }
}

impl From<ApiError> for InvitationError {
    fn from(error: ApiError) -> Self {
        InvitationError::Upstream(error)
    }
}

impl From<tenantry_platform::idempotency::RequestIdReused> for InvitationError {
    fn from(_: tenantry_platform::idempotency::RequestIdReused) -> Self {
        InvitationError::RequestIdReused
    }
}

/// In a consumer: a corrupt row fails the same way on every delivery (dead letters at once);
/// anything else (the database, a peer) may pass, so the event is retried.
impl tenantry_events::HandlerFailure for InvitationError {
    fn permanent(&self) -> bool {
        matches!(self, Self::Corrupt(_))
    }
}
