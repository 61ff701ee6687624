use tenantry_platform::db::StoreError;

/// Everything a membership operation can refuse or fail with. `api::errors` maps it to the
/// status a caller sees.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The caller may not do this (or may not know whether the resource exists).
    #[error("permission denied")]
    PermissionDenied,
    /// The account does not exist (only reported to callers allowed to know).
    #[error("accounts/{0} does not exist")]
    AccountNotFound(String),
    /// The user is not a member of the account.
    #[error("accounts/{account_id}/members/{user_id} does not exist")]
    MemberNotFound {
        /// The account.
        account_id: String,
        /// The user.
        user_id: String,
    },
    /// No user in the directory has this e-mail address.
    #[error("no known user has the e-mail address {0}")]
    UserNotFound(String),
    /// Several users in the directory have this e-mail address.
    #[error("several users have the e-mail address {0}")]
    AmbiguousEmail(String),
    /// The user is already a member.
    #[error("accounts/{account_id}/members/{user_id} already exists")]
    AlreadyMember {
        /// The account.
        account_id: String,
        /// The user.
        user_id: String,
    },
    /// The account already has the maximum number of OWNERs.
    #[error("accounts/{0} already has the maximum number of OWNERs")]
    OwnerLimit(String),
    /// The change would leave the account without an OWNER.
    #[error("the last OWNER of accounts/{0} cannot be removed or demoted")]
    LastOwner(String),
    /// The account is deleted.
    #[error("accounts/{0} is deleted")]
    AccountDeleted(String),
    /// The account is not ACTIVE.
    #[error("accounts/{0} is not active")]
    AccountNotActive(String),
    /// ExtendMemberAccess on a membership without an end.
    #[error("{0} has no expiry to extend")]
    NotTimeBound(String),
    /// ExtendMemberAccess asked for an end no later than the current one.
    #[error("{member} already lasts until {expire_time}")]
    ExpiryNotLater {
        /// The member's name.
        member: String,
        /// Its current end.
        expire_time: chrono::DateTime<chrono::Utc>,
    },
    /// ExtendMemberAccess on a membership whose end has passed (not swept yet).
    #[error("{member} ended at {expire_time}")]
    AccessEnded {
        /// The member's name.
        member: String,
        /// When it ended.
        expire_time: chrono::DateTime<chrono::Utc>,
    },
    /// An expiry asked for a membership that would be the account's only OWNER.
    #[error("the last OWNER of accounts/{0} cannot be time-bound")]
    LastOwnerExpiry(String),
    /// The access policy puts the grant behind approval.
    #[error("{policy} requires approval for {}", grant.as_str())]
    ApprovalRequired {
        /// The name of the policy that gates it.
        policy: String,
        /// The grant.
        grant: super::policy::GatedGrant,
    },
    /// A value the access policy does not allow (INVALID_ARGUMENT naming `field`).
    #[error("{field}: {description}")]
    PolicyRefused {
        /// The request field.
        field: &'static str,
        /// Why.
        description: String,
    },
    /// The access request does not exist.
    #[error("{0} does not exist")]
    RequestNotFound(String),
    /// The access request is no longer PENDING.
    #[error("{request} is {}", state.as_str())]
    NotPending {
        /// Its name.
        request: String,
        /// Its state.
        state: super::requests::RequestState,
    },
    /// The caller already approved the request.
    #[error("{0} already has your approval")]
    AlreadyApproved(String),
    /// The subject already has what a request asks for, or it cannot be granted by request.
    #[error("{member} {why}")]
    AlreadyGranted {
        /// The membership's (or request's) name.
        member: String,
        /// Why.
        why: String,
    },
    /// Fewer people may approve than the policy requires.
    #[error("accounts/{account_id} has {eligible} people who may approve, {needed} are needed")]
    NotEnoughApprovers {
        /// The account.
        account_id: String,
        /// Who may approve besides the requester and the subject.
        eligible: usize,
        /// Approvals needed besides the requester's.
        needed: usize,
    },
    /// The requester could no longer make the request (left the account, lost the role).
    #[error("the requester of {0} may no longer ask for this grant")]
    RequesterNotEntitled(String),
    /// A PENDING request for the same subject exists.
    #[error("{0} is already pending for this subject")]
    RequestPending(String),
    /// The etag the caller sent is not current.
    #[error("{0} was changed since it was read")]
    StaleEtag(String),
    /// A concurrent change won; retrying may succeed.
    #[error("a concurrent change won")]
    ConcurrentChange,
    /// The request id was already used for a different request.
    #[error("request_id was already used for a different request")]
    RequestIdReused,
    /// A stored value this version does not understand.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for MembershipError {
    fn from(error: sea_orm::DbErr) -> Self {
        MembershipError::Store(StoreError::from(error))
    }
}
