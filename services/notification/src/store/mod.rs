//! The notification service's persistence. Every state change is one transaction that also
//! appends its events (`message.*`, `inbox.changed`) to the outbox: through [`Outbox::begin`],
//! whose commit wakes the relay, or in a consumer's transaction, which the runtime commits.
//! Counters on `recipient_accounts` are bumped by the number of rows a statement actually
//! changed, so retries and races keep them exact.

pub mod entities;
pub mod fanout;
pub mod inbox;
pub mod migrations;
#[cfg(test)]
mod removal_tests;
pub mod removals;
#[cfg(test)]
mod tests;
pub mod withdraw;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tenantry_events::Outbox;
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::idempotency::{ReplayError, RequestIds, RequestKey};
use tenantry_platform::{AccountId, Role, UserId};

use crate::domain::{
    Message, MessageState, MessageView, NewMessage, NotificationError, ReadPolicy, Receipt,
    RecipientStats,
};
use crate::events;
use entities::{message, receipt, recipient_account};

/// Rows per multi-row statement (keeps every statement far below SQLite's variable limit).
pub(crate) const CHUNK: usize = 500;

/// SendMessage's request ids (`notification_request_ids`).
const REQUEST_IDS: RequestIds = RequestIds::new("notification_request_ids");

/// The tables the service's pruner keeps bounded (see [`tenantry_platform::retention`]): the
/// request ids of creates (kept for `retention.request_ids`), the consumer groups' records
/// of handled events and the records of removed members (both kept for
/// `retention.processed_events`).
pub fn prune_targets(
    retention: &tenantry_platform::retention::RetentionSettings,
) -> Vec<tenantry_platform::retention::PruneTarget> {
    vec![
        REQUEST_IDS.prune_target(retention.request_ids),
        tenantry_events::retention::processed_events_target(retention.processed_events),
        removals::prune_target(retention.processed_events),
    ]
}

/// The notification service's tables.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
    outbox: Outbox,
}

impl Store {
    /// A store over `database` (migrated with [`migrations::Migrator`]), publishing through
    /// `outbox`.
    pub fn new(database: Database, outbox: Outbox) -> Self {
        Self { database, outbox }
    }

    pub(crate) fn connection(&self) -> Result<&DatabaseConnection, NotificationError> {
        Ok(self.database.connection()?)
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stores a new message QUEUED with its recipient accounts (counters at zero), the request
    /// record and `message.sent`, in one transaction.
    pub async fn send(
        &self,
        new: &NewMessage,
        request: Option<&RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<MessageView, NotificationError> {
        let message_id = uuid::Uuid::now_v7().to_string();
        let tx = self.outbox.begin(self.connection()?).await?;
        let txn: &DatabaseTransaction = &tx;
        let row = message::ActiveModel {
            message_id: Set(message_id.clone()),
            partner_id: Set(new.partner_id.as_str().to_string()),
            partner_display_name: Set(new.partner_display_name.clone()),
            sender: Set(new.sender.clone()),
            title: Set(new.title.clone()),
            body: Set(new.body.clone()),
            read_policy: Set(new.read_policy.as_str().to_string()),
            all_customers: Set(new.all_customers),
            roles: Set(roles_to_column(&new.roles)),
            create_time: Set(now),
            expire_time: Set(new.expire_time),
            state: Set(MessageState::Queued.as_str().to_string()),
            update_time: Set(now),
            version: Set(1),
        };
        message::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        let recipients: Vec<_> = new
            .recipients
            .iter()
            .enumerate()
            .map(|(position, account_id)| recipient_account::ActiveModel {
                message_id: Set(message_id.clone()),
                account_id: Set(account_id.as_str().to_string()),
                position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
                recipient_count: Set(0),
                acknowledged_count: Set(0),
                withdrawn_count: Set(0),
                resolved_by: Set(None),
                resolve_time: Set(None),
            })
            .collect();
        for chunk in recipients.chunks(CHUNK) {
            recipient_account::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(txn)
                .await?;
        }
        if let Some(request) = request {
            REQUEST_IDS
                .record(txn, request, &message_id)
                .await
                .map_err(|error| match StoreError::from(error) {
                    // A concurrent call with the same request id won: a retry replays it.
                    StoreError::Conflict(_) => NotificationError::ConcurrentChange,
                    other => NotificationError::Store(other),
                })?;
        }
        let sent = load_message(txn, &message_id)
            .await?
            .ok_or(NotificationError::ConcurrentChange)?;
        tx.append(&events::sent(&sent, &new.recipients)).await?;
        let view = load_view(txn, sent).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// The message an earlier SendMessage under `key`'s request id sent, if that call was this
    /// same request (a retry); RequestIdReused if it was another; `None` if the id is new.
    pub async fn replay(&self, key: &RequestKey) -> Result<Option<MessageView>, NotificationError> {
        match REQUEST_IDS.replay(self.connection()?, key).await {
            Ok(Some(message_id)) => self.view(&message_id).await,
            Ok(None) => Ok(None),
            Err(ReplayError::Reused(_)) => Err(NotificationError::RequestIdReused),
            Err(ReplayError::Database(error)) => Err(error.into()),
        }
    }

    /// One message by id.
    pub async fn message(&self, message_id: &str) -> Result<Option<Message>, NotificationError> {
        load_message(self.connection()?, message_id).await
    }

    /// One message with its statistics.
    pub async fn view(&self, message_id: &str) -> Result<Option<MessageView>, NotificationError> {
        let conn = self.connection()?;
        match load_message(conn, message_id).await? {
            Some(message) => Ok(Some(load_view(conn, message).await?)),
            None => Ok(None),
        }
    }

    /// A page of the partner's messages, newest (highest id) first, below `before`.
    pub async fn list_views(
        &self,
        partner_id: &AccountId,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<MessageView>, NotificationError> {
        let conn = self.connection()?;
        let mut query =
            message::Entity::find().filter(message::Column::PartnerId.eq(partner_id.as_str()));
        if let Some(before) = before {
            query = query.filter(message::Column::MessageId.lt(before));
        }
        let messages = query
            .order_by_desc(message::Column::MessageId)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(to_message)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
        let mut stats: HashMap<String, Vec<RecipientStats>> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = recipient_account::Entity::find()
                .filter(recipient_account::Column::MessageId.is_in(chunk.to_vec()))
                .order_by_asc(recipient_account::Column::MessageId)
                .order_by_asc(recipient_account::Column::Position)
                .all(conn)
                .await?;
            for row in rows {
                stats
                    .entry(row.message_id.clone())
                    .or_default()
                    .push(to_stats(row));
            }
        }
        Ok(messages
            .into_iter()
            .map(|message| MessageView {
                stats: stats.remove(&message.message_id).unwrap_or_default(),
                message,
            })
            .collect())
    }

    /// A page of a message's receipts in acknowledgement order, after receipt `after_seq`.
    /// Returns the receipts with their sequence numbers (the page key).
    pub async fn receipts(
        &self,
        message_id: &str,
        after_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<(i64, Receipt)>, NotificationError> {
        let mut query = receipt::Entity::find().filter(receipt::Column::MessageId.eq(message_id));
        if let Some(after) = after_seq {
            query = query.filter(receipt::Column::Seq.gt(after));
        }
        Ok(query
            .order_by_asc(receipt::Column::Seq)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(|row| {
                (
                    row.seq,
                    Receipt {
                        user_id: UserId::trusted(row.user_id),
                        account_id: AccountId::trusted(row.account_id),
                        acknowledge_time: row.acknowledge_time,
                    },
                )
            })
            .collect())
    }
}

/// One message by id, on any connection or transaction.
pub async fn load_message(
    conn: &impl ConnectionTrait,
    message_id: &str,
) -> Result<Option<Message>, NotificationError> {
    message::Entity::find_by_id(message_id.to_string())
        .one(conn)
        .await?
        .map(to_message)
        .transpose()
}

/// The message with its per-account statistics in recipient order.
pub async fn load_view(
    conn: &impl ConnectionTrait,
    message: Message,
) -> Result<MessageView, NotificationError> {
    let stats = recipient_account::Entity::find()
        .filter(recipient_account::Column::MessageId.eq(&message.message_id))
        .order_by_asc(recipient_account::Column::Position)
        .all(conn)
        .await?
        .into_iter()
        .map(to_stats)
        .collect();
    Ok(MessageView { message, stats })
}

/// Adds `by` to a counter of one recipient account.
pub(crate) async fn bump(
    conn: &impl ConnectionTrait,
    message_id: &str,
    account_id: &str,
    column: recipient_account::Column,
    by: u64,
) -> Result<(), NotificationError> {
    if by == 0 {
        return Ok(());
    }
    let by = i64::try_from(by).unwrap_or(i64::MAX);
    recipient_account::Entity::update_many()
        .col_expr(column, Expr::col(column).add(by))
        .filter(recipient_account::Column::MessageId.eq(message_id))
        .filter(recipient_account::Column::AccountId.eq(account_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// ALL_MUST_READ: marks the recipient account resolved once its fan-out is done and nobody
/// there still has the message pending (everyone acknowledged or was withdrawn), with
/// `message.resolved`. Uses the counters, so it costs one row read whatever the size.
pub(crate) async fn settle_all_must_read(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    message: &Message,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    if message.read_policy != ReadPolicy::AllMustRead {
        return Ok(());
    }
    let Some(row) =
        recipient_account::Entity::find_by_id((message.message_id.clone(), account_id.to_string()))
            .one(conn)
            .await?
    else {
        return Ok(());
    };
    if row.resolve_time.is_some() {
        return Ok(());
    }
    let fanout_done = fanout::job_done(conn, &message.message_id, account_id).await?;
    let pending = row.recipient_count - row.acknowledged_count - row.withdrawn_count;
    if !crate::domain::all_must_read_resolved(
        fanout_done,
        row.recipient_count,
        u64::try_from(pending).unwrap_or(1),
    ) {
        return Ok(());
    }
    let updated = recipient_account::Entity::update_many()
        .col_expr(recipient_account::Column::ResolveTime, Expr::value(now))
        .filter(recipient_account::Column::MessageId.eq(&message.message_id))
        .filter(recipient_account::Column::AccountId.eq(account_id))
        .filter(recipient_account::Column::ResolveTime.is_null())
        .exec(conn)
        .await?;
    if updated.rows_affected > 0 {
        outbox
            .append(
                conn,
                &events::resolved(
                    &message.partner_id,
                    &message.message_id,
                    account_id,
                    None,
                    now,
                ),
            )
            .await?;
    }
    Ok(())
}

fn roles_to_column(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn corrupt(what: &str, value: &str) -> NotificationError {
    NotificationError::Corrupt(format!("{what} {value:?}"))
}

pub(crate) fn to_message(row: message::Model) -> Result<Message, NotificationError> {
    let roles = row
        .roles
        .split(',')
        .filter(|role| !role.is_empty())
        .map(|role| Role::parse(role).ok_or_else(|| corrupt("role", role)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Message {
        read_policy: ReadPolicy::parse(&row.read_policy)
            .ok_or_else(|| corrupt("read policy", &row.read_policy))?,
        state: MessageState::parse(&row.state).ok_or_else(|| corrupt("state", &row.state))?,
        roles,
        message_id: row.message_id,
        partner_id: AccountId::trusted(row.partner_id),
        partner_display_name: row.partner_display_name,
        sender: row.sender,
        title: row.title,
        body: row.body,
        all_customers: row.all_customers,
        create_time: row.create_time,
        expire_time: row.expire_time,
    })
}

fn to_stats(row: recipient_account::Model) -> RecipientStats {
    RecipientStats {
        account_id: AccountId::trusted(row.account_id),
        recipient_count: row.recipient_count,
        acknowledged_count: row.acknowledged_count,
        withdrawn_count: row.withdrawn_count,
        resolved_by: row.resolved_by,
        resolve_time: row.resolve_time,
    }
}
