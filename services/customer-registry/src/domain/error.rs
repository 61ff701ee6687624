//! The one error enum of the registry's rules and storage.

use tenantry_platform::AccountId;
use tenantry_platform::db::StoreError;

/// Why a registry operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The account does not exist (reported only to callers allowed to know).
    #[error("accounts/{0} does not exist")]
    AccountNotFound(AccountId),
    /// The identifier is, or once was, used by another account.
    #[error("the account id `{0}` is already taken")]
    AccountIdTaken(AccountId),
    /// The caller's etag is not the current version of the account.
    #[error("accounts/{0} was changed since it was read")]
    StaleEtag(AccountId),
    /// A concurrent writer changed the account between our read and our write.
    #[error("accounts/{0} was changed concurrently")]
    ConcurrentChange(AccountId),
    /// The account is DELETED, which is final.
    #[error("accounts/{0} is deleted")]
    AccountDeleted(AccountId),
    /// The caller's access rested on membership of an account that is now DELETED (membership
    /// drops such members a moment later; the registry refuses them at once).
    #[error("access to accounts/{0} ended with its deletion")]
    AccessEnded(AccountId),
    /// The parent of a new customer is not a partner account.
    #[error("accounts/{0} is not a partner account")]
    ParentNotPartner(AccountId),
    /// The parent of a new customer is a partner but not ACTIVE.
    #[error("accounts/{0} is not active")]
    ParentNotActive(AccountId),
    /// A managed customer cannot become a partner.
    #[error("accounts/{0} is a managed customer")]
    ManagedCannotBePartner(AccountId),
    /// A partner that still manages customers that are not deleted cannot be deleted.
    #[error("accounts/{account} still manages {customers} customers that are not deleted")]
    PartnerHasCustomers {
        /// The partner.
        account: AccountId,
        /// How many of its customers are not DELETED.
        customers: u64,
    },
    /// The `request_id` was already used for a different request (or by another caller).
    #[error("request_id {0} was already used for a different request")]
    RequestIdReused(String),
    /// A stored row does not hold a value the code knows (a defect or a foreign write).
    #[error("corrupt stored account: {0}")]
    CorruptRow(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for RegistryError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::from(error))
    }
}
