//! The bookkeeping of the e-mails that warn a time-bound membership ends soon: which
//! memberships are due for which reminder, who gets it (the member, and the OWNERs of the
//! partner managing the account), and a lease per recipient so each e-mail is sent once across
//! restarts and replicas (as the invitation mailer does: claim, send outside any transaction,
//! record SENT under the lease; a lease that expired is claimed again).
//!
//! One row per (membership end, reminder, recipient, lower-cased); a row with recipient `*`
//! says that reminder is done for every recipient, and keeps the membership out of later runs.
//! A failed send backs off (the row's lease is held until the next try) and is given up after
//! [`MAX_ATTEMPTS`] (FAILED), as is an address the transport refuses for good, so one bad
//! address neither blocks the other reminders nor retries for ever.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Statement};
use tenantry_platform::{AccountId, UserId};

use super::entities::{account_replica, member};
use super::{Store, load_profiles, placeholders};
use crate::domain::{MembershipError, Role};

/// Which warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReminderKind {
    /// The earlier one (7 days before, by default).
    First,
    /// The last one (1 day before, by default); supersedes the first when both are due.
    Last,
}

impl ReminderKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::First => "FIRST",
            ReminderKind::Last => "LAST",
        }
    }
}

/// A membership due for a reminder, and to whom it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReminder {
    /// The account.
    pub account_id: AccountId,
    /// Its display name (the account id when the replica does not know it).
    pub account_name: String,
    /// The member.
    pub user_id: UserId,
    /// The member's e-mail, if the directory has one.
    pub member_email: Option<String>,
    /// When the membership ends.
    pub expire_time: DateTime<Utc>,
    /// Which reminder.
    pub kind: ReminderKind,
    /// Every address to warn: the member's, then the partner OWNERs' (deduplicated).
    pub recipients: Vec<String>,
}

/// The recipient of the row that marks a reminder done for all.
const ALL: &str = "*";

/// Failed sends of one e-mail before it is given up (FAILED).
pub const MAX_ATTEMPTS: i32 = 5;

/// How an attempt at one reminder e-mail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReminderOutcome {
    /// The server took it.
    Sent,
    /// It may work later: try again from `retry_at` (given up after [`MAX_ATTEMPTS`]).
    Retry {
        /// When the next attempt may claim it.
        retry_at: DateTime<Utc>,
    },
    /// It will not work (the address does not parse, the server refused it for good).
    Failed,
}

/// The row key of `recipient`: addresses differing only in case are one mailbox.
pub fn recipient_key(recipient: &str) -> String {
    recipient.trim().to_ascii_lowercase()
}

impl Store {
    /// Up to `limit` memberships for which a reminder is due at `now`: within `last` of their
    /// end, the last reminder; within `first` (and not yet within `last`), the first. Either
    /// may be off (`None`). Those whose reminder is done, or being sent or waiting to be tried
    /// again by some attempt, are left out.
    pub async fn due_reminders(
        &self,
        now: DateTime<Utc>,
        first: Option<Duration>,
        last: Option<Duration>,
        limit: u64,
    ) -> Result<Vec<DueReminder>, MembershipError> {
        let mut windows = Vec::new();
        if let Some(last) = last {
            windows.push((ReminderKind::Last, now, now + last));
        }
        if let Some(first) = first {
            let from = last.map_or(now, |last| now + last);
            if first > last.unwrap_or_default() {
                windows.push((ReminderKind::First, from, now + first));
            }
        }
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 5);
        let mut due = Vec::new();
        for (kind, after, until) in windows {
            let sql = format!(
                "SELECT m.account_id, m.user_id, m.expire_time FROM members m \
                 WHERE m.expire_time IS NOT NULL AND m.expire_time > {} AND m.expire_time <= {} \
                 AND NOT EXISTS (SELECT 1 FROM expiry_reminders r \
                   WHERE r.account_id = m.account_id AND r.user_id = m.user_id \
                   AND r.expire_time = m.expire_time AND r.kind = {2} \
                   AND (r.recipient = '{ALL}' OR (r.state = 'SENDING' AND r.lease_until > {4}))) \
                 ORDER BY m.expire_time, m.account_id, m.user_id LIMIT {3}",
                p[0], p[1], p[2], p[3], p[4]
            );
            let rows = connection
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [
                        after.into(),
                        until.into(),
                        kind.as_str().into(),
                        (limit as i64).into(),
                        now.into(),
                    ],
                ))
                .await?;
            for row in rows {
                let account_id = AccountId::trusted(row.try_get_by_index::<String>(0)?);
                let user_id = UserId::trusted(row.try_get_by_index::<String>(1)?);
                let expire_time: DateTime<Utc> = row.try_get_by_index(2)?;
                due.push(
                    self.reminder_for(connection, account_id, user_id, expire_time, kind)
                        .await?,
                );
            }
        }
        Ok(due)
    }

    /// Who gets `kind` for the membership of `user_id` in `account_id` ending at `expire_time`.
    async fn reminder_for(
        &self,
        connection: &impl ConnectionTrait,
        account_id: AccountId,
        user_id: UserId,
        expire_time: DateTime<Utc>,
        kind: ReminderKind,
    ) -> Result<DueReminder, MembershipError> {
        let account = account_replica::Entity::find_by_id(account_id.to_string())
            .one(connection)
            .await?;
        let partner_owners: Vec<UserId> = match account.as_ref().and_then(|a| a.managed_by.clone())
        {
            Some(partner) => member::Entity::find()
                .filter(member::Column::AccountId.eq(partner))
                .filter(member::Column::Role.eq(Role::Owner.as_str()))
                .order_by_asc(member::Column::UserId)
                .all(connection)
                .await?
                .into_iter()
                .map(|row| UserId::trusted(row.user_id))
                .collect(),
            None => Vec::new(),
        };
        let mut people = vec![user_id.clone()];
        people.extend(partner_owners.iter().cloned());
        let profiles = load_profiles(connection, &people).await?;
        let email_of = |user: &UserId| {
            profiles
                .get(user.as_str())
                .map(|profile| profile.email.trim().to_string())
                .filter(|email| !email.is_empty())
        };
        let member_email = email_of(&user_id);
        let mut recipients: Vec<String> = Vec::new();
        for email in people.iter().filter_map(email_of) {
            if !recipients
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&email))
            {
                recipients.push(email);
            }
        }
        Ok(DueReminder {
            account_name: account
                .map(|a| a.display_name)
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| account_id.to_string()),
            account_id,
            user_id,
            member_email,
            expire_time,
            kind,
            recipients,
        })
    }

    /// Claims the e-mail of `reminder` to `recipient` for attempt `token` until `until`: true
    /// if this attempt may send it (new, or an earlier attempt's lease expired at `now`); false
    /// if it was sent, or another attempt holds it.
    pub async fn claim_reminder(
        &self,
        reminder: &DueReminder,
        recipient: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 8);
        let sql = format!(
            "INSERT INTO expiry_reminders (account_id, user_id, expire_time, kind, recipient, \
               state, lease_token, lease_until, update_time) \
             VALUES ({}, {}, {}, {}, {}, 'SENDING', {}, {}, {}) \
             ON CONFLICT (account_id, user_id, expire_time, kind, recipient) DO UPDATE \
               SET lease_token = excluded.lease_token, lease_until = excluded.lease_until, \
                   update_time = excluded.update_time \
               WHERE expiry_reminders.state = 'SENDING' AND expiry_reminders.lease_until < {} \
             RETURNING lease_token",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[7]
        );
        let claimed = connection
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    reminder.account_id.as_str().into(),
                    reminder.user_id.as_str().into(),
                    reminder.expire_time.into(),
                    reminder.kind.as_str().into(),
                    recipient_key(recipient).into(),
                    token.into(),
                    until.into(),
                    now.into(),
                ],
            ))
            .await?;
        Ok(claimed.is_some())
    }

    /// Ends attempt `token`'s lease on the e-mail to `recipient` with `outcome`, at `now`.
    pub async fn finish_reminder(
        &self,
        reminder: &DueReminder,
        recipient: &str,
        token: &str,
        outcome: ReminderOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 8);
        let set = match outcome {
            ReminderOutcome::Sent => {
                format!("state = 'SENT', lease_token = NULL, update_time = {}", p[0])
            }
            ReminderOutcome::Failed => {
                format!(
                    "state = 'FAILED', lease_token = NULL, update_time = {}",
                    p[0]
                )
            }
            // The lease stays held until the next try, so no attempt claims it before.
            ReminderOutcome::Retry { .. } => format!(
                "attempts = attempts + 1, lease_until = {}, update_time = {}, \
                 state = CASE WHEN attempts + 1 >= {MAX_ATTEMPTS} THEN 'FAILED' ELSE state END",
                p[7], p[0]
            ),
        };
        let retry_at = match outcome {
            ReminderOutcome::Retry { retry_at } => retry_at,
            _ => now,
        };
        let sql = format!(
            "UPDATE expiry_reminders SET {set} WHERE account_id = {} AND user_id = {} \
             AND expire_time = {} AND kind = {} AND recipient = {} AND lease_token = {}",
            p[1], p[2], p[3], p[4], p[5], p[6]
        );
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    now.into(),
                    reminder.account_id.as_str().into(),
                    reminder.user_id.as_str().into(),
                    reminder.expire_time.into(),
                    reminder.kind.as_str().into(),
                    recipient_key(recipient).into(),
                    token.into(),
                    retry_at.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Marks `reminder` done for everyone if each of its current recipients' e-mails is SENT
    /// or FAILED (or there is no recipient); returns whether it is done.
    pub async fn complete_reminder(
        &self,
        reminder: &DueReminder,
        now: DateTime<Utc>,
    ) -> Result<bool, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let keys: Vec<String> = reminder
            .recipients
            .iter()
            .map(|recipient| recipient_key(recipient))
            .collect();
        let p = placeholders(backend, 5 + keys.len());
        let ended: i64 = if keys.is_empty() {
            0
        } else {
            let mut values: Vec<sea_orm::Value> = vec![
                reminder.account_id.as_str().into(),
                reminder.user_id.as_str().into(),
                reminder.expire_time.into(),
                reminder.kind.as_str().into(),
            ];
            values.extend(keys.iter().map(|key| key.as_str().into()));
            connection
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "SELECT COUNT(*) FROM expiry_reminders WHERE account_id = {} \
                         AND user_id = {} AND expire_time = {} AND kind = {} \
                         AND recipient IN ({}) AND state IN ('SENT', 'FAILED')",
                        p[0],
                        p[1],
                        p[2],
                        p[3],
                        p[4..4 + keys.len()].join(", ")
                    ),
                    values,
                ))
                .await?
                .map(|row| row.try_get_by_index::<i64>(0))
                .transpose()?
                .unwrap_or(0)
        };
        if (ended as usize) < keys.len() {
            return Ok(false);
        }
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO expiry_reminders (account_id, user_id, expire_time, kind, \
                       recipient, state, attempts, lease_token, lease_until, update_time) \
                     VALUES ({}, {}, {}, {}, '{ALL}', 'SENT', 0, NULL, {}, {}) \
                     ON CONFLICT (account_id, user_id, expire_time, kind, recipient) DO NOTHING",
                    p[0], p[1], p[2], p[3], p[4], p[4]
                ),
                [
                    reminder.account_id.as_str().into(),
                    reminder.user_id.as_str().into(),
                    reminder.expire_time.into(),
                    reminder.kind.as_str().into(),
                    now.into(),
                ],
            ))
            .await?;
        Ok(true)
    }

    /// Forgets the reminders of memberships that ended before `before`.
    pub async fn forget_reminders(&self, before: DateTime<Utc>) -> Result<u64, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 1);
        Ok(connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM expiry_reminders WHERE expire_time < {}", p[0]),
                [before.into()],
            ))
            .await?
            .rows_affected())
    }
}
