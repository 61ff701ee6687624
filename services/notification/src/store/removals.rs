//! Removed members and the fan-out. The worker reads a page of an account's members from
//! membership and writes its deliveries later; a `member.removed` consumed in between finds
//! none of that page's deliveries to withdraw, and nothing would withdraw them afterwards. So
//! the consumer records the removal (`removed_members`, the latest per account and user), and
//! a page leaves out every user whose listed membership began at or before a recorded removal:
//! that membership is the one removed, while a user added again since has a later start. Both
//! times come from membership's clock (the listed member's create_time, the event's time).
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

/// `member.removed`: records the removal at `remove_time` (membership's clock) and withdraws
/// the user's PENDING deliveries through `account_id`, after locking the account's open fan-out
/// jobs against pages being written (see the module). Returns how many were withdrawn.
pub async fn member_removed(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    user_id: &UserId,
    remove_time: DateTime<Utc>,
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
    record_removal(conn, account_id, user_id, remove_time).await?;
    withdraw_member(conn, outbox, account_id, user_id, now).await
}

/// Upserts the removal record, keeping the later time (removals may be consumed out of order).
async fn record_removal(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
    user_id: &UserId,
    remove_time: DateTime<Utc>,
) -> Result<(), NotificationError> {
    let column = removed_member::Column::RemoveTime;
    removed_member::Entity::insert(removed_member::ActiveModel {
        account_id: Set(account_id.as_str().to_string()),
        user_id: Set(user_id.as_str().to_string()),
        remove_time: Set(remove_time),
    })
    .on_conflict(
        OnConflict::columns([
            removed_member::Column::AccountId,
            removed_member::Column::UserId,
        ])
        .update_column(column)
        .action_and_where(
            Expr::col((removed_member::Entity, column))
                .lt(Expr::col((Alias::new("excluded"), column))),
        )
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The users of `members` to deliver to through `account_id`: all but those whose listed
/// membership a recorded removal ended (removed at or after it began), in page order. Call it
/// after the page's job row was updated (see the module).
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
            "SELECT user_id, remove_time FROM removed_members WHERE account_id = $1 \
             AND user_id IN (SELECT json_array_elements_text($2::json))"
        }
        _ => {
            "SELECT user_id, remove_time FROM removed_members WHERE account_id = ?1 \
             AND user_id IN (SELECT value FROM json_each(?2))"
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
    let mut removed = HashMap::with_capacity(rows.len());
    for row in rows {
        let user_id: String = row.try_get("", "user_id")?;
        let remove_time: DateTime<Utc> = row.try_get("", "remove_time")?;
        removed.insert(user_id, remove_time);
    }
    Ok(members
        .iter()
        .filter(|member| {
            removed
                .get(&member.user_id)
                .is_none_or(|removed| *removed < member.added_time)
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
