//! Fan-out jobs: one per (message, recipient account). The `message.sent` consumer records
//! them; the worker claims one, reads a page of the account's members and writes that page's
//! deliveries, counters, `inbox.changed` event and the job's next cursor in ONE transaction.
//! Re-applying a page adds nothing (unique (message, account, user), counters bumped by what
//! was inserted), so a crash anywhere resumes from the cursor with exact counts.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tenantry_events::Outbox;
use tenantry_platform::AccountId;
use tenantry_platform::telemetry::TraceHeaders;

use super::entities::{fanout_job, message, recipient_account};
use super::inbox::pending_accounts_of;
use super::removals::still_members;
use super::{CHUNK, Store, bump, load_message, settle_all_must_read};
use crate::domain::{DeliveryState, ListedMember, Message, MessageState, NotificationError};
use crate::events::{self, InboxChange};
use crate::wire::inbox_item;

/// How long a claimed job stays with its worker without progress before another may take it.
/// Each page renews it. It is what a crashed worker's job waits before another process takes
/// it over (a worker that stops cleanly releases its job at once), so it is short: a page
/// takes well under a second, and a worker that outlives its lease only loses a race, since a
/// page is written only if the job's cursor is still where the worker read it.
pub const LEASE: Duration = Duration::seconds(15);

/// A claimed fan-out job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The message.
    pub message_id: String,
    /// The recipient account.
    pub account_id: String,
    /// ListMembers token of the next page; empty = first page.
    pub page_token: String,
    /// The trace of the SendMessage that caused the job, continued by the worker.
    pub trace: TraceHeaders,
}

/// What applying a page did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// The page was written: `inserted` new deliveries; `done` = it was the last page.
    Applied {
        /// Deliveries that did not exist yet.
        inserted: u64,
        /// No further page.
        done: bool,
    },
    /// The job moved on meanwhile (another worker, or it was stopped): nothing written.
    Stale,
}

/// Records one job per recipient account of a sent message (idempotent), in the consumer's
/// transaction.
pub async fn record_jobs(
    conn: &impl ConnectionTrait,
    message_id: &str,
    account_ids: &[AccountId],
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    let trace = tenantry_platform::telemetry::trace_headers(&tracing::Span::current());
    let rows: Vec<_> = account_ids
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|account_id| fanout_job::ActiveModel {
            message_id: Set(message_id.to_string()),
            account_id: Set(account_id.as_str().to_string()),
            page_token: Set(String::new()),
            done: Set(false),
            pages: Set(0),
            lease_until: Set(None),
            update_time: Set(now),
            traceparent: Set(trace.traceparent.clone()),
            tracestate: Set(trace.tracestate.clone()),
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        fanout_job::Entity::insert_many(chunk.to_vec())
            .on_conflict_do_nothing_on([
                fanout_job::Column::MessageId,
                fanout_job::Column::AccountId,
            ])
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Whether the job of (message, account) is done (a missing job counts as done).
pub(crate) async fn job_done(
    conn: &impl ConnectionTrait,
    message_id: &str,
    account_id: &str,
) -> Result<bool, NotificationError> {
    Ok(
        fanout_job::Entity::find_by_id((message_id.to_string(), account_id.to_string()))
            .one(conn)
            .await?
            .is_none_or(|job| job.done),
    )
}

/// Ends the open jobs matching `condition` (account withdrawn, message expired) and marks their
/// messages DELIVERED where nothing else is open.
pub(crate) async fn stop_jobs(
    conn: &impl ConnectionTrait,
    condition: Condition,
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    let open: Vec<String> = fanout_job::Entity::find()
        .select_only()
        .column(fanout_job::Column::MessageId)
        .filter(condition.clone())
        .filter(fanout_job::Column::Done.eq(false))
        .into_tuple()
        .all(conn)
        .await?;
    if open.is_empty() {
        return Ok(());
    }
    fanout_job::Entity::update_many()
        .col_expr(fanout_job::Column::Done, Expr::value(true))
        .col_expr(fanout_job::Column::UpdateTime, Expr::value(now))
        .filter(condition)
        .filter(fanout_job::Column::Done.eq(false))
        .exec(conn)
        .await?;
    for message_id in open.into_iter().collect::<BTreeSet<_>>() {
        mark_delivered_if_complete(conn, &message_id, now).await?;
    }
    Ok(())
}

/// QUEUED → DELIVERED once no job of the message is open.
///
/// On PostgreSQL the message row is locked first: two workers finishing the last two jobs of
/// a message at once would otherwise each count the other's job as still open (neither has
/// committed) and neither would mark it. With the lock the second waits for the first to
/// commit and then sees its job done.
async fn mark_delivered_if_complete(
    conn: &impl ConnectionTrait,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<(), NotificationError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        message::Entity::find_by_id(message_id.to_string())
            .select_only()
            .column(message::Column::MessageId)
            .lock(LockType::Update)
            .into_tuple::<String>()
            .one(conn)
            .await?;
    }
    let open = fanout_job::Entity::find()
        .filter(fanout_job::Column::MessageId.eq(message_id))
        .filter(fanout_job::Column::Done.eq(false))
        .count(conn)
        .await?;
    if open == 0 {
        message::Entity::update_many()
            .col_expr(
                message::Column::State,
                Expr::value(MessageState::Delivered.as_str()),
            )
            .col_expr(message::Column::UpdateTime, Expr::value(now))
            .col_expr(
                message::Column::Version,
                Expr::col(message::Column::Version).add(1),
            )
            .filter(message::Column::MessageId.eq(message_id))
            .filter(message::Column::State.eq(MessageState::Queued.as_str()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Claims an open job nobody holds (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas
    /// never take the same job; SQLite: one process, one writer), leasing it for [`LEASE`].
    pub async fn claim_job(&self, now: DateTime<Utc>) -> Result<Option<Job>, NotificationError> {
        let conn = self.connection()?;
        let txn = conn.begin().await?;
        let mut query = fanout_job::Entity::find()
            .filter(fanout_job::Column::Done.eq(false))
            .filter(
                Condition::any()
                    .add(fanout_job::Column::LeaseUntil.is_null())
                    .add(fanout_job::Column::LeaseUntil.lt(now)),
            )
            .order_by_asc(fanout_job::Column::UpdateTime)
            .limit(1);
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let Some(job) = query.one(&txn).await? else {
            txn.commit().await?;
            return Ok(None);
        };
        fanout_job::Entity::update_many()
            .col_expr(fanout_job::Column::LeaseUntil, Expr::value(now + LEASE))
            .filter(fanout_job::Column::MessageId.eq(&job.message_id))
            .filter(fanout_job::Column::AccountId.eq(&job.account_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(Job {
            message_id: job.message_id,
            account_id: job.account_id,
            page_token: job.page_token,
            trace: TraceHeaders {
                traceparent: job.traceparent,
                tracestate: job.tracestate,
            },
        }))
    }

    /// Gives a claimed job back at once (its page failed; another attempt may take it).
    pub async fn release_job(&self, job: &Job) -> Result<(), NotificationError> {
        fanout_job::Entity::update_many()
            .col_expr(
                fanout_job::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(fanout_job::Column::MessageId.eq(&job.message_id))
            .filter(fanout_job::Column::AccountId.eq(&job.account_id))
            .exec(self.connection()?)
            .await?;
        Ok(())
    }

    /// Writes one page of `job` in one transaction: advances the cursor from `job.page_token`
    /// to `next_page_token` (done when empty) only if it is still there, inserts the
    /// deliveries of `members` that do not exist yet, leaving out those removed since the page
    /// was read ([`super::removals`]), bumps `recipient_count` by that number, and appends
    /// `inbox.changed` (one event for the page; a separate one for each user who already has
    /// the message through another account, with all their accounts). Nothing is inserted for
    /// a message that has expired.
    pub async fn apply_page(
        &self,
        job: &Job,
        members: &[ListedMember],
        next_page_token: &str,
        now: DateTime<Utc>,
    ) -> Result<PageOutcome, NotificationError> {
        let outbox = self.outbox();
        let tx = outbox.begin(self.connection()?).await?;
        let txn: &DatabaseTransaction = &tx;
        let Some(message) = load_message(txn, &job.message_id).await? else {
            return Err(NotificationError::Corrupt(format!(
                "fan-out job of missing message {}",
                job.message_id
            )));
        };
        let expired = message.state_at(now) == MessageState::Expired;
        let done = next_page_token.is_empty() || expired;
        let advanced = fanout_job::Entity::update_many()
            .col_expr(fanout_job::Column::PageToken, Expr::value(next_page_token))
            .col_expr(fanout_job::Column::Done, Expr::value(done))
            .col_expr(
                fanout_job::Column::Pages,
                Expr::col(fanout_job::Column::Pages).add(1),
            )
            .col_expr(fanout_job::Column::LeaseUntil, Expr::value(now + LEASE))
            .col_expr(fanout_job::Column::UpdateTime, Expr::value(now))
            .filter(fanout_job::Column::MessageId.eq(&job.message_id))
            .filter(fanout_job::Column::AccountId.eq(&job.account_id))
            .filter(fanout_job::Column::PageToken.eq(&job.page_token))
            .filter(fanout_job::Column::Done.eq(false))
            .exec(txn)
            .await?;
        if advanced.rows_affected == 0 {
            return Ok(PageOutcome::Stale);
        }
        let inserted = if expired {
            0
        } else {
            // Only now, with the job row updated (locked on PostgreSQL): see `removals`.
            let users = still_members(txn, &job.account_id, members).await?;
            insert_page(txn, outbox, &message, &job.account_id, &users, now).await?
        };
        if done {
            settle_all_must_read(txn, outbox, &message, &job.account_id, now).await?;
            mark_delivered_if_complete(txn, &job.message_id, now).await?;
        }
        tx.commit().await?;
        Ok(PageOutcome::Applied { inserted, done })
    }
}

/// Inserts a delivery of `message` through `account_id` for each of `users` that has none yet;
/// returns how many were inserted.
///
/// Only the user differs between the rows, so the users travel as one JSON array expanded by
/// the database, and everything else as single values: 8 parameters whatever the page size.
/// A multi-row `VALUES` list took 9 parameters a row (4,500 for a 500-user page), which the
/// service spent more time building and encoding, and PostgreSQL parsing, than inserting
/// (docs/benchmarks.md, fan-out).
async fn insert_deliveries(
    conn: &impl ConnectionTrait,
    message: &Message,
    account_id: &str,
    users: &[String],
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    let backend = conn.get_database_backend();
    let users_of = match backend {
        DbBackend::Postgres => "json_array_elements_text($8::json) AS users(user_id)",
        _ => "(SELECT value AS user_id FROM json_each($8)) AS users",
    };
    let mut sql = format!(
        "INSERT INTO deliveries (message_id, account_id, user_id, state, message_create_time, \
         message_expire_time, create_time, ack_time, update_time) \
         SELECT $1, $2, users.user_id, $3, $4, $5, $6, $7, $6 FROM {users_of} WHERE true \
         ON CONFLICT (message_id, account_id, user_id) DO NOTHING"
    );
    if backend != DbBackend::Postgres {
        // SQLite's numbered parameters are ?N; `WHERE true` above is SQLite's way of telling
        // an upsert's ON from a join's.
        sql = sql.replace('$', "?");
    }
    let users = serde_json::to_string(users)
        .map_err(|error| NotificationError::Corrupt(format!("user ids as JSON: {error}")))?;
    let statement = sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [
            message.message_id.clone().into(),
            account_id.into(),
            DeliveryState::Pending.as_str().into(),
            message.create_time.into(),
            message.expire_time.into(),
            now.into(),
            Option::<DateTime<Utc>>::None.into(),
            users.into(),
        ],
    );
    Ok(conn.execute_raw(statement).await?.rows_affected())
}

/// Inserts the deliveries of `users` through `account_id` that do not exist yet and announces
/// them; returns how many were inserted.
async fn insert_page(
    conn: &impl ConnectionTrait,
    outbox: &Outbox,
    message: &Message,
    account_id: &str,
    users: &[String],
    now: DateTime<Utc>,
) -> Result<u64, NotificationError> {
    let mut inserted_total = 0u64;
    let unique: Vec<String> = users
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in unique.chunks(CHUNK) {
        // Insert-or-ignore rather than look up first: one statement that the unique key
        // serves directly. (A look-up with a long IN list was planned as a scan of the account's
        // deliveries on PostgreSQL, making a 100,000-recipient fan-out quadratic.)
        let inserted = insert_deliveries(conn, message, account_id, chunk, now).await?;
        if inserted == 0 {
            continue;
        }
        // Announcing a user who already had the delivery (a replayed page) is harmless:
        // `arrived` is an upsert for the client.
        let fresh: Vec<String> = chunk.to_vec();
        let count = inserted;
        bump(
            conn,
            &message.message_id,
            account_id,
            recipient_account::Column::RecipientCount,
            count,
        )
        .await?;
        inserted_total += count;
        // Users who already have the message through another account get their full item.
        let elsewhere =
            pending_accounts_of(conn, &message.message_id, &fresh, Some(account_id)).await?;
        let plain: Vec<String> = fresh
            .iter()
            .filter(|user| !elsewhere.contains_key(*user))
            .cloned()
            .collect();
        let item = inbox_item(message, &[account_id.to_string()]);
        if let Some(event) = events::inbox_changed(&plain, InboxChange::Arrived(item)) {
            outbox.append(conn, &event).await?;
        }
        for (user, mut accounts) in elsewhere {
            accounts.push(account_id.to_string());
            accounts.sort();
            let item = inbox_item(message, &accounts);
            if let Some(event) = events::inbox_changed(&[user], InboxChange::Arrived(item)) {
                outbox.append(conn, &event).await?;
            }
        }
    }
    Ok(inserted_total)
}
