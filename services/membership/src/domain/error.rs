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
