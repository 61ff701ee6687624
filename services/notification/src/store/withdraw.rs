//! Deliveries that leave inboxes without an acknowledgement: withdrawn when a member is
//! removed or an account deleted or disabled (consumer transactions), and expired by the
//! sweep. Large sets go page by page so memory stays bounded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tenantry_events::Outbox;
use tenantry_platform::{AccountId, UserId};

use super::entities::{delivery, fanout_job, message, recipient_account};
use super::fanout::stop_jobs;
use super::inbox::announce_departures;
use super::{CHUNK, Store, bump, load_message, settle_all_must_read, to_message};
use crate::domain::{DeliveryState, MessageState, NotificationError};
use crate::events::{self, InboxChange};
use crate::wire::message_name;

fn pending() -> &'static str {
    DeliveryState::Pending.as_str()
}

/// `member.removed`: the user's PENDING deliveries through `account_id` become WITHDRAWN.
/// Returns how many.
pub async fn withdraw_member(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    user_id: &UserId,
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    let message_ids: Vec<String> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::MessageId)
        .filter(delivery::Column::UserId.eq(user_id.as_str()))
        .filter(delivery::Column::AccountId.eq(account_id.as_str()))
        .filter(delivery::Column::State.eq(pending()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut withdrawn = 0;
    for message_id in message_ids {
        withdrawn += withdraw_users(
            conn,
            outbox,
            &message_id,
            account_id,
            &[user_id.as_str().to_string()],
            now,
        )
        .await?;
    }
    Ok(withdrawn)
}

/// `account.deleted` / `account.disabled`: the account's open fan-out jobs stop and all its
/// PENDING deliveries become WITHDRAWN, page by page. Returns how many.
pub async fn withdraw_account(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    stop_jobs(
        conn,
        Condition::all().add(fanout_job::Column::AccountId.eq(account_id.as_str())),
        now,
    )
    .await?;
    let mut withdrawn = 0;
    loop {
        let rows: Vec<(String, String)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::MessageId)
            .column(delivery::Column::UserId)
            .filter(delivery::Column::AccountId.eq(account_id.as_str()))
            .filter(delivery::Column::State.eq(pending()))
            .order_by_asc(delivery::Column::MessageId)
            .order_by_asc(delivery::Column::UserId)
            .limit(CHUNK as u64)
            .into_tuple()
            .all(conn)
            .await?;
        if rows.is_empty() {
            return Ok(withdrawn);
        }
        let mut by_message: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (message_id, user_id) in rows {
            by_message.entry(message_id).or_default().push(user_id);
        }
        for (message_id, users) in by_message {
            withdrawn += withdraw_users(conn, outbox, &message_id, account_id, &users, now).await?;
        }
    }
}

/// WITHDRAWN for the PENDING deliveries of (message, account) of `users`, with counters,
/// ALL_MUST_READ settlement and inbox events.
async fn withdraw_users(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    message_id: &str,
    account_id: &str,
    users: &[String],
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    let Some(message) = load_message(conn, message_id).await? else {
        return Ok(0);
    };
    let result = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::State,
            Expr::value(DeliveryState::Withdrawn.as_str()),
        )
        .col_expr(delivery::Column::UpdateTime, Expr::value(now))
        .filter(delivery::Column::MessageId.eq(message_id))
        .filter(delivery::Column::AccountId.eq(account_id))
        .filter(delivery::Column::UserId.is_in(users.to_vec()))
        .filter(delivery::Column::State.eq(pending()))
        .exec(conn)
        .await?;
    bump(
        conn,
        message_id,
        account_id,
        recipient_account::Column::WithdrawnCount,
        result.rows_affected,
    )
    .await?;
    settle_all_must_read(conn, outbox, &message, account_id, now).await?;
    announce_departures(conn, outbox, &message, users).await?;
    Ok(result.rows_affected)
}

impl Store {
    /// Marks up to `limit` messages past their expiry EXPIRED (stopping their fan-out), each
    /// with `message.expired`. Returns how many.
    pub async fn expire_due_messages(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, NotificationError> {
        let outbox = self.outbox();
        let tx = outbox.begin(self.connection()?).await?;
        let txn: &DatabaseTransaction = &tx;
        let due = message::Entity::find()
            .filter(message::Column::State.ne(MessageState::Expired.as_str()))
            .filter(message::Column::ExpireTime.lte(now))
            .order_by_asc(message::Column::ExpireTime)
            .limit(limit)
            .all(txn)
            .await?;
        let mut expired = 0;
        for row in due {
            let message = to_message(row)?;
            let result = message::Entity::update_many()
                .col_expr(
                    message::Column::State,
                    Expr::value(MessageState::Expired.as_str()),
                )
                .col_expr(message::Column::UpdateTime, Expr::value(now))
                .col_expr(
                    message::Column::Version,
                    Expr::col(message::Column::Version).add(1),
                )
                .filter(message::Column::MessageId.eq(&message.message_id))
                .filter(message::Column::State.ne(MessageState::Expired.as_str()))
                .exec(txn)
                .await?;
            if result.rows_affected == 0 {
                continue;
            }
            stop_jobs(
                txn,
                Condition::all().add(fanout_job::Column::MessageId.eq(&message.message_id)),
                now,
            )
            .await?;
            // stop_jobs may have marked it DELIVERED; it is EXPIRED.
            message::Entity::update_many()
                .col_expr(
                    message::Column::State,
                    Expr::value(MessageState::Expired.as_str()),
                )
                .filter(message::Column::MessageId.eq(&message.message_id))
                .exec(txn)
                .await?;
            tx.append(&events::expired(&message)).await?;
            expired += 1;
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Moves up to `limit` PENDING deliveries of expired messages to EXPIRED, with one
    /// `inbox.changed` removal per message for their users. Returns how many.
    pub async fn expire_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, NotificationError> {
        let outbox = self.outbox();
        let tx = outbox.begin(self.connection()?).await?;
        let txn: &DatabaseTransaction = &tx;
        let rows: Vec<(String, String, String)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::MessageId)
            .column(delivery::Column::AccountId)
            .column(delivery::Column::UserId)
            .filter(delivery::Column::State.eq(pending()))
            .filter(delivery::Column::MessageExpireTime.lte(now))
            .order_by_asc(delivery::Column::MessageId)
            .order_by_asc(delivery::Column::UserId)
            .limit(limit)
            .into_tuple()
            .all(txn)
            .await?;
        let mut by_message: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (message_id, account_id, user_id) in rows {
            by_message
                .entry(message_id)
                .or_default()
                .entry(account_id)
                .or_default()
                .push(user_id);
        }
        let mut expired = 0;
        for (message_id, accounts) in by_message {
            let Some(message) = load_message(txn, &message_id).await? else {
                continue;
            };
            let mut users = BTreeSet::new();
            for (account_id, account_users) in accounts {
                let result = delivery::Entity::update_many()
                    .col_expr(
                        delivery::Column::State,
                        Expr::value(DeliveryState::Expired.as_str()),
                    )
                    .col_expr(delivery::Column::UpdateTime, Expr::value(now))
                    .filter(delivery::Column::MessageId.eq(&message_id))
                    .filter(delivery::Column::AccountId.eq(&account_id))
                    .filter(delivery::Column::UserId.is_in(account_users.clone()))
                    .filter(delivery::Column::State.eq(pending()))
                    .exec(txn)
                    .await?;
                expired += result.rows_affected;
                users.extend(account_users);
            }
            let users: Vec<String> = users.into_iter().collect();
            let name = message_name(&message.partner_id, &message.message_id);
            if let Some(event) = events::inbox_changed(&users, InboxChange::Removed(name)) {
                tx.append(&event).await?;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }
}
