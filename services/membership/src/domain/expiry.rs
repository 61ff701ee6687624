//! Time-bound memberships: how long AddMyself may grant access, who may move an expiry later
//! and to when, and which memberships the expiry sweep may end. The last OWNER of an account
//! never expires (nor is given an expiry: an account must keep someone who can manage it).

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::call_context::ActorRole;

use super::access::Access;
use super::{AccountFacts, AccountState, Caller, Member, MembershipError, Permission, Role};
use tenantry_platform::etag::etag_allows;

/// The shortest time-bound access (shorter is a mistake, not a policy: the sweep runs every
/// few seconds to a minute).
pub fn min_access() -> Duration {
    Duration::minutes(1)
}

/// The longest time-bound access: 730 days, the longest relationship Microsoft's GDAP allows.
pub fn max_access() -> Duration {
    Duration::days(730)
}

/// Checks an AddMyself `access_duration`; Err is the description of the INVALID_ARGUMENT.
pub fn check_access_duration(duration: Duration) -> Result<Duration, String> {
    if duration < min_access() || duration > max_access() {
        return Err(format!(
            "must be between 1 minute and {} days",
            max_access().num_days()
        ));
    }
    Ok(duration)
}

/// Checks the new end ExtendMemberAccess asks for against the clock alone; Err is the
/// description of the INVALID_ARGUMENT.
pub fn check_expire_time(expire_time: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if expire_time <= now {
        return Err("must be in the future".into());
    }
    if expire_time > now + max_access() {
        return Err(format!(
            "must be at most {} days from now",
            max_access().num_days()
        ));
    }
    Ok(())
}

/// ExtendMemberAccess's rules for moving `current`'s expiry to `expire_time`: the caller
/// manages the account's members (an OWNER's access: OWNER authority), is not the member
/// (time-bound access is not extended by whoever holds it), the account is not DELETED, the
/// etag `sent` (if any) is current, the membership is time-bound and the new end is later.
pub fn check_extension(
    access: &Access,
    account: &AccountFacts,
    current: &Member,
    expire_time: DateTime<Utc>,
    sent: &str,
    name: &str,
) -> Result<(), MembershipError> {
    if !may_extend(access, current) {
        return Err(MembershipError::PermissionDenied);
    }
    if account.state == AccountState::Deleted {
        return Err(MembershipError::AccountDeleted(
            account.account_id.to_string(),
        ));
    }
    if !etag_allows(sent, current.version) {
        return Err(MembershipError::StaleEtag(name.to_string()));
    }
    match current.expire_time {
        None => Err(MembershipError::NotTimeBound(name.to_string())),
        Some(now_ends) if expire_time <= now_ends => Err(MembershipError::ExpiryNotLater {
            member: name.to_string(),
            expire_time: now_ends,
        }),
        Some(_) => Ok(()),
    }
}

fn may_extend(access: &Access, current: &Member) -> bool {
    let is_the_member = matches!(
        &access.caller,
        Caller::User { user_id, .. } if *user_id == current.user_id
    );
    !is_the_member
        && access.allows(Permission::MembersManage)
        && (current.role != Role::Owner || access.may_revoke_owner())
}

/// The role that let the caller pass [`check_extension`] (see [`Access::granted_by`]).
pub fn extend_granted_by(access: &Access, current: &Member) -> Option<ActorRole> {
    access.granted_by(|access| may_extend(access, current))
}

/// The end of a membership created at `now` for `duration`.
pub fn expire_time_after(now: DateTime<Utc>, duration: Option<Duration>) -> Option<DateTime<Utc>> {
    duration.map(|duration| tenantry_platform::time::stored_precision(now + duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lasts_between_a_minute_and_730_days() {
        assert!(check_access_duration(Duration::seconds(59)).is_err());
        assert!(check_access_duration(Duration::minutes(1)).is_ok());
        assert!(check_access_duration(Duration::days(730)).is_ok());
        assert!(check_access_duration(Duration::days(730) + Duration::seconds(1)).is_err());
        assert!(check_access_duration(-Duration::hours(1)).is_err());
    }

    #[test]
    fn a_new_end_is_in_the_future_and_within_730_days() {
        let now = Utc::now();
        assert!(check_expire_time(now, now).is_err());
        assert!(check_expire_time(now + Duration::seconds(1), now).is_ok());
        assert!(check_expire_time(now + Duration::days(730), now).is_ok());
        assert!(check_expire_time(now + Duration::days(731), now).is_err());
    }
}
