//! The e-mails access requests cause, as rows: queued in the transaction of the request's
//! change (`queue_mails`), then claimed under a lease by one attempt, sent outside any
//! transaction and finished (SENT, FAILED, SKIPPED when no longer needed, or back to PENDING
//! with a retry time) by the mailer (`crate::access_mail`).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use tenantry_platform::UserId;

use super::{Store, load_profiles, placeholders, replica};
use crate::domain::MembershipError;
use crate::domain::requests::AccessRequest;

/// Which e-mail a request causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// To a person asked to approve: a request waits for them.
    Waiting,
    /// To the requester: their request was approved or declined.
    Decided,
}

impl MailKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Waiting => "WAITING",
            MailKind::Decided => "DECIDED",
        }
    }

    fn parse(text: &str) -> Option<MailKind> {
        [MailKind::Waiting, MailKind::Decided]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// An e-mail about a request, due to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueMail {
    /// The request's id.
    pub request_id: String,
    /// Which e-mail.
    pub kind: MailKind,
    /// The address (lower-cased).
    pub recipient: String,
}

/// How an attempt at one request e-mail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailOutcome {
    /// The server took it.
    Sent,
    /// It may work later: try again from `retry_at` (given up after
    /// [`super::MAX_ATTEMPTS`]).
    Retry {
        /// When the next attempt may claim it.
        retry_at: DateTime<Utc>,
    },
    /// It will not work (the address does not parse, the server refused it for good).
    Failed,
    /// Not needed any more: the request was decided (or lapsed) before it went, or the
    /// approver it asks approved already.
    Skipped,
}

/// Queues `kind` about `request_id` to each of `people` who has a directory e-mail.
pub(super) async fn queue_mails(
    conn: &impl ConnectionTrait,
    request_id: &str,
    kind: MailKind,
    people: &[UserId],
    now: DateTime<Utc>,
) -> Result<(), MembershipError> {
    let profiles = load_profiles(conn, people).await?;
    let mut recipients: Vec<String> = people
        .iter()
        .filter_map(|person| profiles.get(person.as_str()))
        .map(|profile| super::recipient_key(&profile.email))
        .filter(|email| !email.is_empty())
        .collect();
    recipients.sort();
    recipients.dedup();
    let backend = conn.get_database_backend();
    let p = placeholders(backend, 4);
    for recipient in recipients {
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO access_request_mails (request_id, kind, recipient, state, attempts, \
                   lease_token, lease_until, update_time) \
                 VALUES ({}, {}, {}, 'PENDING', 0, NULL, {}, {}) \
                 ON CONFLICT (request_id, kind, recipient) DO NOTHING",
                p[0], p[1], p[2], p[3], p[3]
            ),
            [
                request_id.into(),
                kind.as_str().into(),
                recipient.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

impl Store {
    /// Whether everyone whose directory e-mail is `recipient` (lower-cased) approved `request`
    /// (a shared address is still told while one of its holders has not).
    pub async fn approved_by_address(
        &self,
        request: &AccessRequest,
        recipient: &str,
    ) -> Result<bool, MembershipError> {
        let holders = self.users_with_email(recipient, 10).await?;
        Ok(!holders.is_empty() && holders.iter().all(|user| request.approved_by(user)))
    }

    /// Up to `limit` request e-mails due at `now`: new, waiting to be tried again, or held by an
    /// attempt whose lease ran out.
    pub async fn due_request_mails(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<DueMail>, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 2);
        let rows = connection
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT request_id, kind, recipient FROM access_request_mails \
                     WHERE state IN ('PENDING', 'SENDING') AND lease_until <= {} \
                     ORDER BY lease_until LIMIT {}",
                    p[0], p[1]
                ),
                [now.into(), (limit as i64).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                let kind: String = row.try_get_by_index(1)?;
                Ok(DueMail {
                    request_id: row.try_get_by_index(0)?,
                    kind: MailKind::parse(&kind)
                        .ok_or_else(|| MembershipError::Corrupt(format!("mail kind {kind:?}")))?,
                    recipient: row.try_get_by_index(2)?,
                })
            })
            .collect()
    }

    /// Claims `mail` for attempt `token` until `until`: true if this attempt may send it (it
    /// was due at `now`), false if another attempt holds it or it was sent.
    pub async fn claim_request_mail(
        &self,
        mail: &DueMail,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 6);
        let result = connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE access_request_mails SET state = 'SENDING', lease_token = {}, \
                       lease_until = {}, update_time = {} \
                     WHERE request_id = {} AND kind = {} AND recipient = {} \
                       AND state IN ('PENDING', 'SENDING') AND lease_until <= {}",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[2]
                ),
                [
                    token.into(),
                    until.into(),
                    now.into(),
                    mail.request_id.as_str().into(),
                    mail.kind.as_str().into(),
                    mail.recipient.as_str().into(),
                ],
            ))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Ends attempt `token`'s lease on `mail` with `outcome`, at `now`.
    pub async fn finish_request_mail(
        &self,
        mail: &DueMail,
        token: &str,
        outcome: MailOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 6);
        let (set, until) = match outcome {
            MailOutcome::Sent => ("state = 'SENT', lease_token = NULL".to_string(), now),
            MailOutcome::Failed => ("state = 'FAILED', lease_token = NULL".to_string(), now),
            MailOutcome::Skipped => ("state = 'SKIPPED', lease_token = NULL".to_string(), now),
            MailOutcome::Retry { retry_at } => (
                format!(
                    "attempts = attempts + 1, lease_token = NULL, \
                     state = CASE WHEN attempts + 1 >= {} THEN 'FAILED' ELSE 'PENDING' END",
                    super::MAX_ATTEMPTS
                ),
                retry_at,
            ),
        };
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE access_request_mails SET {set}, lease_until = {}, update_time = {} \
                     WHERE request_id = {} AND kind = {} AND recipient = {} AND lease_token = {}",
                    p[0], p[1], p[2], p[3], p[4], p[5]
                ),
                [
                    until.into(),
                    now.into(),
                    mail.request_id.as_str().into(),
                    mail.kind.as_str().into(),
                    mail.recipient.as_str().into(),
                    token.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// What an e-mail about a request names: the account's display name (its id when the
    /// replica does not know it) and the requester's directory e-mail, if any.
    pub async fn request_mail_names(
        &self,
        request: &AccessRequest,
    ) -> Result<(String, Option<String>), MembershipError> {
        let connection = self.connection()?;
        let account = replica::load(connection, &request.account_id)
            .await?
            .map(|known| known.facts.display_name)
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| request.account_id.to_string());
        let requester = load_profiles(connection, std::slice::from_ref(&request.requester))
            .await?
            .remove(request.requester.as_str())
            .map(|profile| profile.email)
            .filter(|email| !email.is_empty());
        Ok((account, requester))
    }
}
