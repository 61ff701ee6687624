//! Time-bound memberships: moving an expiry later (ExtendMemberAccess), ending the memberships
//! whose time is up (the expiry sweep, with `member.expired`), and the warning list of a
//! partner's expiring memberships. Every write is conditioned on the member's version, so an
//! extension racing the sweep has exactly one outcome: extended (the sweep's delete then
//! matches nothing) or expired (the extension then finds no member).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tenantry_platform::AccountId;

use super::entities::{account_member_count as counts, account_replica, member};
use super::{
    Store, as_read, change_counts, load_member, load_profiles, to_member, update_as_read,
    with_profiles,
};
use crate::domain::owners::{self, OwnerDelta};
use crate::domain::{Member, MembershipError, Role};
use crate::events::{MemberChange, member_event};

/// Where a page of [`Store::list_expiring`] continues: after this (expiry, account, user).
pub type ExpiringKey = (DateTime<Utc>, String, String);

/// The actor of the sweep's `member.expired` events.
pub const SWEEP_ACTOR: &str = "services/membership";

impl Store {
    /// Moves `current`'s expiry (as read and authorized by the caller) to `expire_time` and
    /// publishes `member.updated` by `actor`. Fails as [`lost_race`] says if the member changed
    /// or expired since it was read.
    pub async fn extend_access(
        &self,
        current: &Member,
        expire_time: DateTime<Utc>,
        etag_sent: bool,
        actor: &str,
    ) -> Result<Member, MembershipError> {
        let tx = self.begin().await?;
        update_as_read(
            &*tx,
            current,
            member::Column::ExpireTime,
            Some(expire_time),
            etag_sent,
        )
        .await?;
        let member = load_member(&*tx, &current.account_id, &current.user_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        let change = MemberChange::Updated {
            previous_role: current.role,
            previous_expire_time: current.expire_time,
        };
        tx.append(&member_event(change, &member, actor)).await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Ends up to `limit` memberships whose expiry is at or before `now`, soonest first, each
    /// in its own transaction with a `member.expired` event that takes the access away exactly
    /// as RemoveMember does (answering once no replica's view serves it). The last OWNER of an
    /// account is left in place. Returns how many candidates were looked at (a full batch
    /// means: call again; each candidate either expired or changed since, so the next batch
    /// moves on), and how many of them expired.
    pub async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<(u64, u64), MembershipError> {
        // Without the accounts' only OWNERs, who never expire: left among the candidates,
        // enough of them would fill every batch and hold back the memberships behind them.
        let single_owner_accounts = Query::select()
            .column(counts::Column::AccountId)
            .from(counts::Entity)
            .and_where(counts::Column::Owners.lte(1))
            .to_owned();
        let candidates = member::Entity::find()
            .filter(member::Column::ExpireTime.is_not_null())
            .filter(member::Column::ExpireTime.lte(now))
            .filter(
                Condition::any()
                    .add(member::Column::Role.ne(Role::Owner.as_str()))
                    .add(member::Column::AccountId.not_in_subquery(single_owner_accounts)),
            )
            .order_by_asc(member::Column::ExpireTime)
            .order_by_asc(member::Column::AccountId)
            .order_by_asc(member::Column::UserId)
            .limit(limit)
            .all(self.connection()?)
            .await?;
        let looked_at = candidates.len() as u64;
        let mut expired = 0;
        for row in candidates {
            let current = to_member(row, Default::default())?;
            match self.expire(&current, now).await {
                Ok(true) => expired += 1,
                Ok(false) => {}
                // Lost a race with a concurrent change of the same account's counters: the
                // next run sees the row again; the others of this batch need not wait for it.
                Err(MembershipError::ConcurrentChange) => {}
                Err(error) => return Err(error),
            }
        }
        Ok((looked_at, expired))
    }

    /// Ends `current` if it is still as read and still due at `now`; false if it changed, was
    /// removed, or is its account's last OWNER.
    async fn expire(&self, current: &Member, now: DateTime<Utc>) -> Result<bool, MembershipError> {
        let tx = self.begin().await?;
        let result = member::Entity::delete_many()
            .filter(as_read(current))
            .filter(member::Column::ExpireTime.lte(now))
            .exec(&*tx)
            .await?;
        if result.rows_affected == 0 {
            // Extended, changed or removed since it was read: not (or not yet) due.
            return Ok(false);
        }
        let delta = owners::owner_delta(Some(current.role), None);
        match change_counts(&*tx, &current.account_id, delta, -1, owners::MAX_OWNERS).await {
            Ok(()) => {}
            Err(MembershipError::LastOwner(_)) => {
                // The account's only OWNER stays until someone else is OWNER (dropping the
                // transaction rolls the delete back).
                debug_assert!(current.role == Role::Owner && delta == OwnerDelta::Lost);
                tracing::info!(
                    account_id = %current.account_id, user_id = %current.user_id,
                    "the last OWNER's access is past its expiry; kept until another OWNER exists"
                );
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
        let mut ended = current.clone();
        ended.profile = load_profiles(&*tx, std::slice::from_ref(&current.user_id))
            .await?
            .remove(current.user_id.as_str())
            .unwrap_or_default();
        tx.append_revocation(&member_event(MemberChange::Expired, &ended, SWEEP_ACTOR))
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` memberships of `partner` and of the accounts it manages whose expiry is
    /// before `before`, ordered by (expiry, account, user), after `after`.
    pub async fn list_expiring(
        &self,
        partner: &AccountId,
        before: DateTime<Utc>,
        after: Option<&ExpiringKey>,
        limit: u64,
    ) -> Result<Vec<Member>, MembershipError> {
        let connection = self.connection()?;
        let customers = Query::select()
            .column(account_replica::Column::AccountId)
            .from(account_replica::Entity)
            .and_where(account_replica::Column::ManagedBy.eq(partner.as_str()))
            .to_owned();
        let mut query = member::Entity::find()
            .filter(member::Column::ExpireTime.is_not_null())
            .filter(member::Column::ExpireTime.lt(before))
            .filter(
                Condition::any()
                    .add(member::Column::AccountId.eq(partner.as_str()))
                    .add(member::Column::AccountId.in_subquery(customers)),
            );
        if let Some((time, account_id, user_id)) = after {
            query = query.filter(
                Condition::any()
                    .add(member::Column::ExpireTime.gt(*time))
                    .add(
                        Condition::all()
                            .add(member::Column::ExpireTime.eq(*time))
                            .add(member::Column::AccountId.gt(account_id.as_str())),
                    )
                    .add(
                        Condition::all()
                            .add(member::Column::ExpireTime.eq(*time))
                            .add(member::Column::AccountId.eq(account_id.as_str()))
                            .add(member::Column::UserId.gt(user_id.as_str())),
                    ),
            );
        }
        let rows = query
            .order_by_asc(member::Column::ExpireTime)
            .order_by_asc(member::Column::AccountId)
            .order_by_asc(member::Column::UserId)
            .limit(limit)
            .all(connection)
            .await?;
        with_profiles(connection, rows).await
    }
}

/// Clears `current`'s expiry inside `tx` (an accepted invitation for a time-bound member) and
/// appends `member.updated` by `actor`; the caller commits.
pub(super) async fn make_permanent(
    tx: &tenantry_events::OutboxTransaction,
    current: &Member,
    actor: &str,
) -> Result<Member, MembershipError> {
    update_as_read(
        &**tx,
        current,
        member::Column::ExpireTime,
        Option::<DateTime<Utc>>::None,
        false,
    )
    .await?;
    let member = load_member(&**tx, &current.account_id, &current.user_id)
        .await?
        .ok_or(MembershipError::ConcurrentChange)?;
    let change = MemberChange::Updated {
        previous_role: current.role,
        previous_expire_time: current.expire_time,
    };
    tx.append(&member_event(change, &member, actor)).await?;
    Ok(member)
}

/// The key a page of [`Store::list_expiring`] ending with `member` continues after.
pub fn expiring_key(member: &Member) -> Option<ExpiringKey> {
    Some((
        member.expire_time?,
        member.account_id.to_string(),
        member.user_id.to_string(),
    ))
}
