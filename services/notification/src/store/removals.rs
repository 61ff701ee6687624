//! Removed members and the fan-out. The worker reads a page of an account's members from
//! membership and writes its deliveries later; a `member.removed` consumed in between finds
//! none of that page's deliveries to withdraw, and nothing would withdraw them afterwards. So
//! the consumer records the removal (`removed_members`, the latest per account and user, with
//! the start of the membership it ended), and a page leaves out every user whose listed
//! membership began at or before the start of a removed one: that membership is the one
//! removed (or an older one), while a user added again since has a later start. Both times are
//! the same column of membership's row (the listed member's `create_time`, and the removed
//! member's in the event), so no two replicas' clocks are compared: a user removed on one
//! membership replica and re-added on another whose clock is behind still gets the message.
//! Records written before `member_since` existed compare with the removal's time instead.
//!
//! On PostgreSQL (READ COMMITTED) the consumer's and the page's transactions write different
//! rows, so they are made to meet on the account's open fan-out job rows: the consumer locks
//! them before it records the removal and withdraws; a page updates its job row before it
//! reads the removals. Consumer first: the page's update waits for the consumer's commit, and
//! its read of the removals, a later statement, sees the record. Page first: the consumer's
//! lock waits for the page's commit, and its withdrawal, a later statement, sees and withdraws
//! the page's deliveries. SQLite runs one transaction at a time, so there the check in the page
//! is enough.
//!
//! A record matters only while a page read before the removal may still be written (seconds),
//! so records are pruned after the processed-events retention (at least a day).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use tenantry_events::Outbox;
use tenantry_platform::retention::PruneTarget;
use tenantry_platform::{AccountId, UserId};

use super::entities::{fanout_job, removed_member};
use super::withdraw::withdraw_member;
use crate::domain::{ListedMember, NotificationError};

/// The removal a `member.removed` or `member.expired` event reports (an expiry is the sweep's
/// removal), in membership's times.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    /// When the removed membership began (the removed member's `create_time`).
    pub member_since: DateTime<Utc>,
    /// When it was removed (the event's time); kept for pruning.
    pub remove_time: DateTime<Utc>,
}

/// `member.removed` / `member.expired`: records `removal` and withdraws the user's PENDING
/// deliveries through `account_id`, after locking the account's open fan-out jobs against pages
/// being written (see the module). Returns how many were withdrawn.
pub async fn member_removed(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    user_id: &UserId,
    removal: Removal,
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        // In one order, so two removals from one account queue instead of deadlocking.
        fanout_job::Entity::find()
            .select_only()
            .column(fanout_job::Column::MessageId)
            .filter(fanout_job::Column::AccountId.eq(account_id.as_str()))
            .filter(fanout_job::Column::Done.eq(false))
            .order_by_asc(fanout_job::Column::MessageId)
            .lock(LockType::Update)
            .into_tuple::<String>()
            .all(conn)
            .await?;
    }
    record_removal(conn, account_id, user_id, removal).await?;
    withdraw_member(conn, outbox, account_id, user_id, now).await
}

/// Upserts the removal record, keeping the latest removed membership (removals may be consumed
/// out of order). A record without `member_since` (written by an older build) is replaced.
async fn record_removal(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
    user_id: &UserId,
    removal: Removal,
) -> Result<(), NotificationError> {
    let since = removed_member::Column::MemberSince;
    removed_member::Entity::insert(removed_member::ActiveModel {
        account_id: Set(account_id.as_str().to_string()),
        user_id: Set(user_id.as_str().to_string()),
        remove_time: Set(removal.remove_time),
        member_since: Set(Some(removal.member_since)),
    })
    .on_conflict(
        OnConflict::columns([
            removed_member::Column::AccountId,
            removed_member::Column::UserId,
        ])
        .update_columns([removed_member::Column::RemoveTime, since])
        .action_and_where(
            Expr::col((removed_member::Entity, since))
                .is_null()
                .or(Expr::col((removed_member::Entity, since))
                    .lt(Expr::col((Alias::new("excluded"), since)))),
        )
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The users of `members` to deliver to through `account_id`: all but those whose listed
/// membership a recorded removal ended (it began no later than the removed one), in page
/// order. Call it after the page's job row was updated (see the module).
pub(crate) async fn still_members(
    conn: &impl ConnectionTrait,
    account_id: &str,
    members: &[ListedMember],
) -> Result<Vec<String>, NotificationError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    // The users travel as one JSON array, as in `fanout::insert_deliveries`: two parameters
    // whatever the page size.
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT user_id, COALESCE(member_since, remove_time) AS ended FROM removed_members \
             WHERE account_id = $1 AND user_id IN (SELECT json_array_elements_text($2::json))"
        }
        _ => {
            "SELECT user_id, COALESCE(member_since, remove_time) AS ended FROM removed_members \
             WHERE account_id = ?1 AND user_id IN (SELECT value FROM json_each(?2))"
        }
    };
    let users: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    let users = serde_json::to_string(&users)
        .map_err(|error| NotificationError::Corrupt(format!("user ids as JSON: {error}")))?;
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [account_id.into(), users.into()],
        ))
        .await?;
    // Per user: the start of the latest removed membership (or, for an old record, the
    // removal's time); a listed membership that began no later is that one or an older one.
    let mut ended = HashMap::with_capacity(rows.len());
    for row in rows {
        let user_id: String = row.try_get("", "user_id")?;
        let began: DateTime<Utc> = row.try_get("", "ended")?;
        ended.insert(user_id, began);
    }
    Ok(members
        .iter()
        .filter(|member| {
            ended
                .get(&member.user_id)
                .is_none_or(|began| *began < member.added_time)
        })
        .map(|member| member.user_id.clone())
        .collect())
}

/// Removal records older than `retention` (the processed-events retention), for the pruner.
/// `remove_time` is membership's clock against this service's: seconds of skew do not matter
/// next to a retention of a day or more.
pub fn prune_target(retention: Duration) -> PruneTarget {
    PruneTarget::new(
        "removed_members",
        &["account_id", "user_id"],
        "remove_time",
        retention,
    )
}
