//! The whole wire ↔ domain mapping of the registry: accounts and states as the API and the
//! `account.*` events carry them, and the API's state filter.

use tenantry_platform::ApiError;
use tenantry_platform::time::{to_optional_timestamp, to_timestamp};
use tenantry_proto::registry::v1 as pb;

use crate::domain::{Account, AccountId, AccountState, StateFilter};

/// Most names one BatchGetAccounts may carry: a message's 1,000 recipients and its partner,
/// with room to spare, in well under the default request size limit.
pub const MAX_BATCH_NAMES: usize = 1024;

/// BatchGetAccounts' `names`: 1 to [`MAX_BATCH_NAMES`] account names, each parsed, duplicates
/// dropped (first occurrence kept).
pub fn batch_names(names: &[String]) -> Result<Vec<AccountId>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid_field(
            "names",
            "at least one account name is required",
        ));
    }
    if names.len() > MAX_BATCH_NAMES {
        return Err(ApiError::invalid_field(
            "names",
            format!(
                "at most {MAX_BATCH_NAMES} names per call (got {})",
                names.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    let mut ids = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let id = AccountId::from_name(&format!("names[{index}]"), name)?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The wire form of an account.
pub fn account_to_proto(account: Account) -> pb::Account {
    pb::Account {
        name: account.id.name(),
        etag: account.etag(),
        account_id: account.id.into(),
        display_name: account.display_name.to_string(),
        partner: account.partner,
        managed_by: account
            .managed_by
            .map(|parent| parent.name())
            .unwrap_or_default(),
        state: account.state.to_wire(),
        create_time: Some(to_timestamp(account.create_time)),
        update_time: Some(to_timestamp(account.update_time)),
        delete_time: to_optional_timestamp(account.delete_time),
        creator: account.creator,
    }
}

/// The list filter of a request's `state` field (UNSPECIFIED = everything not deleted).
pub fn state_filter(field: &str, value: i32) -> Result<StateFilter, ApiError> {
    match pb::AccountState::try_from(value) {
        Ok(pb::AccountState::Unspecified) => Ok(StateFilter::NotDeleted),
        Ok(pb::AccountState::Active) => Ok(StateFilter::Only(AccountState::Active)),
        Ok(pb::AccountState::Disabled) => Ok(StateFilter::Only(AccountState::Disabled)),
        Ok(pb::AccountState::Deleted) => Ok(StateFilter::Only(AccountState::Deleted)),
        Err(_) => Err(ApiError::invalid_field(
            field,
            format!("unknown account state {value}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{AccountId, DisplayName};

    #[test]
    fn maps_accounts_and_filters() {
        let now = tenantry_platform::time::now();
        let wire = account_to_proto(Account {
            id: AccountId::trusted("cust"),
            display_name: DisplayName::trusted("Customer".into()),
            partner: false,
            managed_by: Some(AccountId::trusted("part")),
            state: AccountState::Disabled,
            creator: "users/u1".into(),
            version: 4,
            create_time: now,
            update_time: Utc::now(),
            delete_time: None,
        });
        assert_eq!(wire.name, "accounts/cust");
        assert_eq!(wire.managed_by, "accounts/part");
        assert_eq!(wire.etag, "4");
        assert_eq!(wire.state, pb::AccountState::Disabled as i32);
        assert!(wire.delete_time.is_none());
        assert_eq!(state_filter("state", 0).unwrap(), StateFilter::NotDeleted);
        assert_eq!(
            state_filter("state", 3).unwrap(),
            StateFilter::Only(AccountState::Deleted)
        );
        assert!(state_filter("state", 9).is_err());
    }
}
