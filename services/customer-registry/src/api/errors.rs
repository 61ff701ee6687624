//! The one mapping from [`RegistryError`] to the API's errors.

use tenantry_platform::ApiError;
use tenantry_platform::idempotency::RequestIdReused;

use crate::domain::RegistryError;

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::AccountNotFound(id) => {
                ApiError::not_found("ACCOUNT_NOT_FOUND", format!("{} does not exist", id.name()))
            }
            RegistryError::AccountIdTaken(id) => ApiError::already_exists(
                "ACCOUNT_ID_TAKEN",
                format!(
                    "the account id `{id}` is taken: it is or was in use (ids of deleted accounts \
                     are never reused); choose another"
                ),
            ),
            RegistryError::StaleEtag(id) => ApiError::stale_etag(&id.name()),
            RegistryError::ConcurrentChange(id) => ApiError::concurrent_change(format!(
                "{} was changed concurrently; retry the call",
                id.name()
            )),
            RegistryError::AccountDeleted(id) => {
                let name = id.name();
                ApiError::failed_precondition(
                    "ACCOUNT_DELETED",
                    name.clone(),
                    format!("{name} is deleted, which is final; it can no longer be changed"),
                )
            }
            // The same answer membership gives once it dropped the members: nothing about the
            // account leaks to someone who no longer belongs to it.
            RegistryError::AccessEnded(_) => ApiError::permission_denied(),
            RegistryError::ParentNotPartner(id) => {
                let name = id.name();
                ApiError::failed_precondition(
                    "PARENT_NOT_PARTNER",
                    name.clone(),
                    format!(
                        "{name} is not a partner account; only partners manage customers \
                         (a platform operator can promote it)"
                    ),
                )
            }
            RegistryError::ParentNotActive(id) => {
                let name = id.name();
                ApiError::failed_precondition(
                    "PARENT_NOT_ACTIVE",
                    name.clone(),
                    format!("{name} is not active; only an ACTIVE partner can create customers"),
                )
            }
            RegistryError::ManagedCannotBePartner(id) => {
                let name = id.name();
                ApiError::failed_precondition(
                    "MANAGED_ACCOUNT",
                    name.clone(),
                    format!("{name} is a managed customer; a managed account cannot be a partner"),
                )
            }
            RegistryError::PartnerHasCustomers { account, customers } => {
                let name = account.name();
                ApiError::failed_precondition(
                    "PARTNER_HAS_CUSTOMERS",
                    name.clone(),
                    format!(
                        "{name} still manages {customers} customer account(s) that are not \
                         deleted; delete them first"
                    ),
                )
            }
            RegistryError::RequestIdReused(_) => RequestIdReused.into(),
            error @ RegistryError::CorruptRow(_) => ApiError::internal(&error),
            RegistryError::Store(error) => ApiError::from(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::domain::AccountId;

    #[test]
    fn codes() {
        let a = || AccountId::trusted("a");
        let cases = [
            (RegistryError::AccountNotFound(a()), Code::NotFound),
            (RegistryError::AccountIdTaken(a()), Code::AlreadyExists),
            (RegistryError::StaleEtag(a()), Code::Aborted),
            (RegistryError::ConcurrentChange(a()), Code::Aborted),
            (RegistryError::AccountDeleted(a()), Code::FailedPrecondition),
            (
                RegistryError::ParentNotPartner(a()),
                Code::FailedPrecondition,
            ),
            (
                RegistryError::ParentNotActive(a()),
                Code::FailedPrecondition,
            ),
            (
                RegistryError::ManagedCannotBePartner(a()),
                Code::FailedPrecondition,
            ),
            (
                RegistryError::PartnerHasCustomers {
                    account: a(),
                    customers: 1,
                },
                Code::FailedPrecondition,
            ),
            (
                RegistryError::RequestIdReused("r".into()),
                Code::InvalidArgument,
            ),
            (
                RegistryError::Store(tenantry_platform::db::StoreError::NotReady),
                Code::Unavailable,
            ),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            assert_eq!(ApiError::from(error).code(), code, "{text}");
        }
        assert_eq!(
            ApiError::from(RegistryError::AccountIdTaken(a())).reason(),
            "ACCOUNT_ID_TAKEN"
        );
    }
}
