//! The login inbox: reading a user's pending deliveries (grouped by message, newest first,
//! served by the `deliveries_inbox` index), acknowledging, and the `inbox.changed` events of
//! deliveries that leave an inbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use tenantry_events::Outbox;
use tenantry_platform::{AccountId, UserId};

use super::entities::{delivery, message, receipt, recipient_account};
use super::{CHUNK, Store, bump, load_message, settle_all_must_read, to_message};
use crate::domain::{
    AckOutcome, DeliveryState, InboxEntry, Message, NotificationError, ReadPolicy,
};
use crate::events::{self, InboxChange};
use crate::wire::{inbox_item, message_name};

/// Where an inbox page continues: after this (message_create_time, message_id).
pub type InboxCursor = (DateTime<Utc>, String);

/// The page key of an inbox entry, as a page-token cursor.
pub fn encode_cursor(entry: &InboxEntry) -> String {
    format!(
        "{}|{}",
        entry.message.create_time.timestamp_micros(),
        entry.message.message_id
    )
}

/// The cursor in a page token (already authenticated by its HMAC).
pub fn decode_cursor(cursor: &str) -> Option<InboxCursor> {
    let (micros, message_id) = cursor.split_once('|')?;
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, message_id.to_string()))
}

fn pending() -> &'static str {
    DeliveryState::Pending.as_str()
}

fn not_expired(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(delivery::Column::MessageExpireTime.is_null())
        .add(delivery::Column::MessageExpireTime.gt(now))
}

impl Store {
    /// A page of `user_id`'s inbox: messages with a PENDING, unexpired delivery, one entry per
    /// message (with every account it is pending through), newest first, after `after`.
    pub async fn pending_inbox(
        &self,
        user_id: &UserId,
        after: Option<&InboxCursor>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<InboxEntry>, NotificationError> {
        let user_id = user_id.as_str();
        let conn = self.connection()?;
        let mut query = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::MessageCreateTime)
            .column(delivery::Column::MessageId)
            .filter(delivery::Column::UserId.eq(user_id))
            .filter(delivery::Column::State.eq(pending()))
            .filter(not_expired(now));
        if let Some((time, message_id)) = after {
            query = query.filter(
                Condition::any()
                    .add(delivery::Column::MessageCreateTime.lt(*time))
                    .add(
                        Condition::all()
                            .add(delivery::Column::MessageCreateTime.eq(*time))
                            .add(delivery::Column::MessageId.lt(message_id.as_str())),
                    ),
            );
        }
        let keys: Vec<(DateTime<Utc>, String)> = query
            .group_by(delivery::Column::MessageCreateTime)
            .group_by(delivery::Column::MessageId)
            .order_by_desc(delivery::Column::MessageCreateTime)
            .order_by_desc(delivery::Column::MessageId)
            .limit(limit)
            .into_tuple()
            .all(conn)
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = keys.into_iter().map(|(_, id)| id).collect();
        let mut accounts: HashMap<String, Vec<AccountId>> = HashMap::new();
        let rows: Vec<(String, String)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::MessageId)
            .column(delivery::Column::AccountId)
            .filter(delivery::Column::UserId.eq(user_id))
            .filter(delivery::Column::State.eq(pending()))
            .filter(delivery::Column::MessageId.is_in(ids.clone()))
            .order_by_asc(delivery::Column::AccountId)
            .into_tuple()
            .all(conn)
            .await?;
        for (message_id, account_id) in rows {
            accounts
                .entry(message_id)
                .or_default()
                .push(AccountId::trusted(account_id));
        }
        let mut messages: HashMap<String, Message> = HashMap::new();
        for row in message::Entity::find()
            .filter(message::Column::MessageId.is_in(ids.clone()))
            .all(conn)
            .await?
        {
            let message = to_message(row)?;
            messages.insert(message.message_id.clone(), message);
        }
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let message = messages.remove(&id)?;
                Some(InboxEntry {
                    accounts: accounts.remove(&id).unwrap_or_default(),
                    message,
                })
            })
            .collect())
    }

    /// Acknowledges message `message_id` of `partner_id` for `user_id`, for every account
    /// through which it is pending for the user. Idempotent. SINGLE_READ_ONLY: the first ack in
    /// an account resolves it there (a conditional update on `resolved_by IS NULL`, so exactly
    /// one user wins even under concurrent acks) and the other members' deliveries become
    /// RESOLVED. PermissionDenied if the user never received it (or only has withdrawn
    /// deliveries); Expired if it expired before the user acknowledged it.
    pub async fn acknowledge(
        &self,
        user_id: &UserId,
        partner_id: &AccountId,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, NotificationError> {
        let (user_id, partner_id) = (user_id.as_str(), partner_id.as_str());
        let outbox = self.outbox();
        let tx = outbox.begin(self.connection()?).await?;
        let txn: &DatabaseTransaction = &tx;
        let mut rows = delivery::Entity::find()
            .filter(delivery::Column::UserId.eq(user_id))
            .filter(delivery::Column::MessageId.eq(message_id))
            .order_by_asc(delivery::Column::AccountId)
            .all(txn)
            .await?;
        rows.retain(|row| row.state != DeliveryState::Withdrawn.as_str());
        let message = match load_message(txn, message_id).await? {
            Some(message) if message.partner_id == partner_id && !rows.is_empty() => message,
            _ => return Err(NotificationError::PermissionDenied),
        };
        // Receiving the message is what lets the user acknowledge it (the events below carry
        // it in their `provenance`).
        tenantry_platform::call_context::record_role(
            tenantry_platform::call_context::ActorRole::Recipient,
        );
        let mut outcome = AckOutcome::default();
        let mut first_ack: Option<DateTime<Utc>> = None;
        let mut newly = Vec::new();
        let mut had_pending = false;
        let expired = crate::domain::is_expired(message.expire_time, now);
        for row in &rows {
            match DeliveryState::parse(&row.state) {
                Some(DeliveryState::Acknowledged) => {
                    outcome
                        .acknowledged_accounts
                        .push(AccountId::trusted(row.account_id.clone()));
                    if let Some(time) = row.ack_time {
                        first_ack = Some(first_ack.map_or(time, |first| first.min(time)));
                    }
                }
                Some(DeliveryState::Resolved) => {
                    outcome
                        .already_resolved_accounts
                        .push(AccountId::trusted(row.account_id.clone()));
                }
                Some(DeliveryState::Pending) if !expired => {
                    had_pending = true;
                    let counted = match message.read_policy {
                        ReadPolicy::AllMustRead => true,
                        ReadPolicy::SingleReadOnly => {
                            claim_resolution(txn, &message, &row.account_id, user_id, now).await?
                        }
                    };
                    if counted {
                        if set_state(txn, row, DeliveryState::Acknowledged, now).await? {
                            acknowledged(txn, &message, &row.account_id, user_id, now).await?;
                            newly.push(row.account_id.clone());
                            outcome
                                .acknowledged_accounts
                                .push(AccountId::trusted(row.account_id.clone()));
                            first_ack = Some(first_ack.map_or(now, |first| first.min(now)));
                        } else if let Some(time) = own_ack_time(txn, row).await? {
                            // ALL_MUST_READ: a concurrent call of this user acknowledged it
                            // between our read and our update.
                            outcome
                                .acknowledged_accounts
                                .push(AccountId::trusted(row.account_id.clone()));
                            first_ack = Some(first_ack.map_or(time, |first| first.min(time)));
                        }
                        match message.read_policy {
                            ReadPolicy::AllMustRead => {
                                settle_all_must_read(txn, outbox, &message, &row.account_id, now)
                                    .await?;
                            }
                            ReadPolicy::SingleReadOnly => {
                                tx.append(&events::resolved(
                                    &message.partner_id,
                                    &message.message_id,
                                    &row.account_id,
                                    Some(user_id),
                                    now,
                                ))
                                .await?;
                                resolve_others(txn, outbox, &message, &row.account_id, now).await?;
                            }
                        }
                    } else if let Some(time) = own_ack_time(txn, row).await? {
                        // A concurrent call of this same user (a retry, a double click)
                        // resolved it first: that acknowledgement is the answer, as it is for
                        // a retry that comes later — not "resolved by someone else".
                        outcome
                            .acknowledged_accounts
                            .push(AccountId::trusted(row.account_id.clone()));
                        first_ack = Some(first_ack.map_or(time, |first| first.min(time)));
                    } else {
                        // Someone else resolved it first: nothing is recorded for the caller.
                        set_state(txn, row, DeliveryState::Resolved, now).await?;
                        outcome
                            .already_resolved_accounts
                            .push(AccountId::trusted(row.account_id.clone()));
                    }
                }
                _ => {}
            }
        }
        if expired && outcome.acknowledged_accounts.is_empty() {
            return Err(NotificationError::Expired(message_name(
                partner_id, message_id,
            )));
        }
        if !newly.is_empty() {
            tx.append(&events::acknowledged(&message, user_id, &newly, now))
                .await?;
        }
        if had_pending {
            announce_departures(txn, outbox, &message, &[user_id.to_string()]).await?;
        }
        tx.commit().await?;
        outcome.acknowledge_time = first_ack;
        outcome.acknowledged_accounts.sort();
        outcome.already_resolved_accounts.sort();
        Ok(outcome)
    }
}

/// SINGLE_READ_ONLY: makes `user_id` the resolver of (message, account) unless someone already
/// is. The condition `resolved_by IS NULL` makes exactly one of any number of concurrent
/// acknowledgements win.
async fn claim_resolution(
    conn: &impl ConnectionTrait,
    message: &Message,
    account_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, NotificationError> {
    let result = recipient_account::Entity::update_many()
        .col_expr(recipient_account::Column::ResolvedBy, Expr::value(user_id))
        .col_expr(recipient_account::Column::ResolveTime, Expr::value(now))
        .filter(recipient_account::Column::MessageId.eq(&message.message_id))
        .filter(recipient_account::Column::AccountId.eq(account_id))
        .filter(recipient_account::Column::ResolvedBy.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Moves one delivery from PENDING to `state`; false if it was no longer PENDING.
async fn set_state(
    conn: &impl ConnectionTrait,
    row: &delivery::Model,
    state: DeliveryState,
    now: DateTime<Utc>,
) -> Result<bool, NotificationError> {
    let mut update = delivery::Entity::update_many()
        .col_expr(delivery::Column::State, Expr::value(state.as_str()))
        .col_expr(delivery::Column::UpdateTime, Expr::value(now));
    if state == DeliveryState::Acknowledged {
        update = update.col_expr(delivery::Column::AckTime, Expr::value(now));
    }
    let result = update
        .filter(delivery::Column::MessageId.eq(&row.message_id))
        .filter(delivery::Column::AccountId.eq(&row.account_id))
        .filter(delivery::Column::UserId.eq(&row.user_id))
        .filter(delivery::Column::State.eq(pending()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// When the caller's own delivery `row` was acknowledged, if it was — read again now, so on
/// PostgreSQL it sees a concurrent acknowledgement that committed while this one waited for
/// its row lock.
async fn own_ack_time(
    conn: &impl ConnectionTrait,
    row: &delivery::Model,
) -> Result<Option<DateTime<Utc>>, NotificationError> {
    let current = delivery::Entity::find()
        .filter(delivery::Column::MessageId.eq(&row.message_id))
        .filter(delivery::Column::AccountId.eq(&row.account_id))
        .filter(delivery::Column::UserId.eq(&row.user_id))
        .one(conn)
        .await?;
    Ok(current
        .filter(|current| current.state == DeliveryState::Acknowledged.as_str())
        .and_then(|current| current.ack_time))
}

/// Records the receipt and counts the acknowledgement.
async fn acknowledged(
    conn: &impl ConnectionTrait,
    message: &Message,
    account_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    receipt::Entity::insert(receipt::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        message_id: Set(message.message_id.clone()),
        account_id: Set(account_id.to_string()),
        user_id: Set(user_id.to_string()),
        acknowledge_time: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    bump(
        conn,
        &message.message_id,
        account_id,
        recipient_account::Column::AcknowledgedCount,
        1,
    )
    .await
}

/// SINGLE_READ_ONLY, after the account was resolved: every other PENDING delivery of
/// (message, account) becomes RESOLVED and leaves its inbox, page by page.
async fn resolve_others(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    message: &Message,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    loop {
        let users: Vec<String> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::UserId)
            .filter(delivery::Column::MessageId.eq(&message.message_id))
            .filter(delivery::Column::AccountId.eq(account_id))
            .filter(delivery::Column::State.eq(pending()))
            .order_by_asc(delivery::Column::UserId)
            .limit(CHUNK as u64)
            .into_tuple()
            .all(conn)
            .await?;
        if users.is_empty() {
            return Ok(());
        }
        delivery::Entity::update_many()
            .col_expr(
                delivery::Column::State,
                Expr::value(DeliveryState::Resolved.as_str()),
            )
            .col_expr(delivery::Column::UpdateTime, Expr::value(now))
            .filter(delivery::Column::MessageId.eq(&message.message_id))
            .filter(delivery::Column::AccountId.eq(account_id))
            .filter(delivery::Column::UserId.is_in(users.clone()))
            .filter(delivery::Column::State.eq(pending()))
            .exec(conn)
            .await?;
        announce_departures(conn, outbox, message, &users).await?;
    }
}

/// `inbox.changed` for `users` whose deliveries of `message` just stopped being PENDING:
/// `removed` (one event for all of them) for those with nothing pending left, `arrived` with
/// the remaining accounts (one event each) for those who still have it through another account.
pub(crate) async fn announce_departures(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    message: &Message,
    users: &[String],
) -> Result<(), NotificationError> {
    for chunk in users.chunks(CHUNK) {
        let remaining = pending_accounts_of(conn, &message.message_id, chunk, None).await?;
        let gone: Vec<String> = chunk
            .iter()
            .filter(|user| !remaining.contains_key(*user))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let name = message_name(&message.partner_id, &message.message_id);
        if let Some(event) = events::inbox_changed(&gone, InboxChange::Removed(name)) {
            outbox.append(conn, &event).await?;
        }
        for (user, accounts) in remaining {
            let item = inbox_item(message, &accounts);
            if let Some(event) = events::inbox_changed(&[user], InboxChange::Arrived(item)) {
                outbox.append(conn, &event).await?;
            }
        }
    }
    Ok(())
}

/// The accounts through which each of `users` still has `message_id` PENDING (sorted),
/// leaving out `except_account`.
pub(crate) async fn pending_accounts_of(
    conn: &impl ConnectionTrait,
    message_id: &str,
    users: &[String],
    except_account: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, NotificationError> {
    let rows = if conn.get_database_backend() == DbBackend::Postgres {
        pending_accounts_by_user(conn, message_id, users, except_account).await?
    } else {
        let mut query = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::UserId)
            .column(delivery::Column::AccountId)
            .filter(delivery::Column::MessageId.eq(message_id))
            .filter(delivery::Column::UserId.is_in(users.to_vec()))
            .filter(delivery::Column::State.eq(pending()));
        if let Some(account) = except_account {
            query = query.filter(delivery::Column::AccountId.ne(account));
        }
        query
            .order_by_asc(delivery::Column::UserId)
            .order_by_asc(delivery::Column::AccountId)
            .into_tuple()
            .all(conn)
            .await?
    };
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, account) in rows {
        by_user.entry(user).or_default().push(account);
    }
    Ok(by_user)
}

/// [`pending_accounts_of`] on PostgreSQL: one probe of `deliveries_by_user_message` per user.
///
/// Written as a LATERAL join over the users (OFFSET 0 keeps the planner from flattening it)
/// because the plain `message_id = ? AND user_id IN (…)` was planned, while a fan-out fills a
/// table its statistics still call small, as a scan of every delivery of the message: each
/// fan-out page took longer than the one before (1.2 s per 500-user page at 100,000
/// deliveries; 0.7 ms this way).
async fn pending_accounts_by_user(
    conn: &impl ConnectionTrait,
    message_id: &str,
    users: &[String],
    except_account: Option<&str>,
) -> Result<Vec<(String, String)>, NotificationError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = (0..users.len()).map(|i| format!("(${})", i + 4)).collect();
    let sql = format!(
        "SELECT found.user_id, found.account_id \
         FROM (VALUES {}) AS wanted(user_id) \
         CROSS JOIN LATERAL ( \
             SELECT deliveries.user_id, deliveries.account_id FROM deliveries \
             WHERE deliveries.user_id = wanted.user_id AND deliveries.message_id = $1 \
               AND deliveries.state = $2 \
               AND ($3::text IS NULL OR deliveries.account_id <> $3) \
             OFFSET 0 \
         ) AS found \
         ORDER BY found.user_id, found.account_id",
        wanted.join(", ")
    );
    let mut values: Vec<sea_orm::Value> = vec![
        message_id.into(),
        pending().into(),
        except_account.map(str::to_string).into(),
    ];
    values.extend(users.iter().map(|user| user.clone().into()));
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}
