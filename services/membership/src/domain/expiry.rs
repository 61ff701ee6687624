//! Time-bound memberships: how long AddMyself may grant access, who may move an expiry later
//! and to when, and which memberships the expiry sweep may end. An account must keep someone
//! who can manage it: AddMyself gives no expiry to what would be an account's only OWNER, and
//! the sweep never ends the last OWNER (one who became the only OWNER later, time-bound, stays
//! past its end until another OWNER exists, and is then ended by the next sweep).

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
/// etag `sent` (if any) is current, the membership is time-bound, has not ended yet (an OWNER
/// kept past its end as the last one excepted) and the new end is later.
pub fn check_extension(
    access: &Access,
    account: &AccountFacts,
    current: &Member,
    expire_time: DateTime<Utc>,
    now: DateTime<Utc>,
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
        // Ended, and only not swept yet: extending would revive it depending on the sweep's
        // timing.
        Some(ended) if ended <= now && current.role != Role::Owner => {
            Err(MembershipError::AccessEnded {
                member: name.to_string(),
                expire_time: ended,
            })
        }
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
    use tenantry_platform::{AccountId, UserId};

    use super::*;
    use crate::domain::{MemberSource, UserProfile};

    fn admin_of_acme(user: &str) -> Access {
        Access {
            caller: Caller::User {
                user_id: UserId::trusted(user),
                operator: false,
            },
            facts: Some(acme()),
            role: Some(Role::Admin),
            partner_role: None,
            has_owner: true,
        }
    }

    fn acme() -> AccountFacts {
        AccountFacts {
            account_id: AccountId::trusted("acme"),
            display_name: "Acme".into(),
            partner: false,
            managed_by: None,
            state: AccountState::Active,
        }
    }

    fn time_bound(user: &str, role: Role, ends: DateTime<Utc>) -> Member {
        Member {
            account_id: AccountId::trusted("acme"),
            user_id: UserId::trusted(user),
            role,
            source: MemberSource::SelfAssigned,
            added_by: format!("users/{user}"),
            create_time: ends - Duration::hours(1),
            update_time: ends - Duration::hours(1),
            version: 1,
            expire_time: Some(ends),
            profile: UserProfile::default(),
        }
    }

    /// Who may extend, and which ends: never the holder, an OWNER only with OWNER authority,
    /// never a membership whose end has passed (unless an OWNER kept as the last one), and
    /// only to a later end.
    #[test]
    fn extensions_follow_the_rules() {
        let now = Utc::now();
        let later = now + Duration::days(1);
        let check = |access: &Access, member: &Member, to: DateTime<Utc>| {
            check_extension(access, &acme(), member, to, now, "", "m")
        };
        let pat = time_bound("pat", Role::Admin, now + Duration::hours(1));
        assert!(check(&admin_of_acme("ann"), &pat, later).is_ok());
        assert!(matches!(
            check(&admin_of_acme("pat"), &pat, later),
            Err(MembershipError::PermissionDenied)
        ));
        let owner = time_bound("olga", Role::Owner, now + Duration::hours(1));
        assert!(matches!(
            check(&admin_of_acme("ann"), &owner, later),
            Err(MembershipError::PermissionDenied)
        ));
        let ended = time_bound("pat", Role::Admin, now - Duration::seconds(1));
        assert!(matches!(
            check(&admin_of_acme("ann"), &ended, later),
            Err(MembershipError::AccessEnded { .. })
        ));
        assert!(matches!(
            check(&admin_of_acme("ann"), &pat, now + Duration::minutes(30)),
            Err(MembershipError::ExpiryNotLater { .. })
        ));
        let mut forever = pat.clone();
        forever.expire_time = None;
        assert!(matches!(
            check(&admin_of_acme("ann"), &forever, later),
            Err(MembershipError::NotTimeBound(_))
        ));
    }

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
