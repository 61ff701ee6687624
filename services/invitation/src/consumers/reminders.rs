//! The reminder e-mail: a sweep sends each due reminder once (see `store::reminders` for the
//! claim, the lease and why a closing change never lets one out after it). The reminder has a
//! link of its own — the secret is minted here and only its hash stored — and the first
//! e-mail's link keeps working.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use sea_orm::DatabaseConnection;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::time::now;

use super::mailer::email_for;
use crate::domain::secret::{Secret, accept_link};
use crate::domain::{Invitation, InvitationError};
use crate::peers::{AccountDirectory, AccountState};
use crate::render;
use crate::store::reminders;
use tenantry_mail::MailTransport;

/// Reminders claimed per sweep round.
const BATCH: u64 = 50;
/// Rounds per sweep at most; the next sweep continues.
const ROUNDS: usize = 20;

/// Sends due reminder e-mails.
#[derive(Debug)]
pub struct Reminders {
    accounts: Arc<dyn AccountDirectory>,
    mail: Arc<dyn MailTransport>,
    public_url: String,
    from: Mailbox,
    metrics: Metrics,
    lease: Duration,
}

/// What became of one due reminder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent and recorded.
    Sent,
    /// Not sent: another attempt holds it, or it moved on (closed, resent).
    Skipped,
    /// Not sent now, tried again later: its account is disabled or cannot be read, or the
    /// send failed transiently (an address refused for good is not tried again).
    Postponed,
}

impl Reminders {
    /// A sender through `mail`, from `from`, with links under `public_url`, holding each
    /// reminder it sends for `lease`.
    pub fn new(
        accounts: Arc<dyn AccountDirectory>,
        mail: Arc<dyn MailTransport>,
        public_url: &str,
        from: Mailbox,
        metrics: Metrics,
        lease: Duration,
    ) -> Self {
        Self {
            accounts,
            mail,
            public_url: public_url.to_string(),
            from,
            metrics,
            lease,
        }
    }

    /// Sends the reminders due at `now`, a batch at a time, until none is left (at most
    /// [`ROUNDS`] batches per sweep); returns how many were sent. Each reminder leaves the due
    /// set whatever becomes of it (sent, postponed, or held by another attempt), so those that
    /// cannot go out never hold up the ones behind them.
    pub async fn send_due(
        &self,
        database: &DatabaseConnection,
        now: DateTime<Utc>,
    ) -> Result<usize, InvitationError> {
        let mut sent = 0;
        for _ in 0..ROUNDS {
            let due = reminders::due(database, now, BATCH).await?;
            for invitation in &due {
                if self.send(database, invitation).await? == Outcome::Sent {
                    sent += 1;
                }
            }
            if (due.len() as u64) < BATCH {
                break;
            }
        }
        Ok(sent)
    }

    /// Claims, sends and records one reminder.
    pub async fn send(
        &self,
        database: &DatabaseConnection,
        candidate: &Invitation,
    ) -> Result<Outcome, InvitationError> {
        // An account that is gone or disabled cannot be joined now: no reminder (a disabled
        // one is reminded if it is enabled again before the expiry).
        let account = match self.accounts.account(&candidate.account_id).await {
            Ok(Some(account)) if account.state == AccountState::Active => account,
            Ok(_) => {
                reminders::postpone(database, &candidate.invitation_id, now()).await?;
                return Ok(Outcome::Postponed);
            }
            Err(error) => {
                tracing::warn!(invitation = %candidate.name(), error = %error.message(), "cannot read the account; the reminder waits");
                reminders::postpone(database, &candidate.invitation_id, now()).await?;
                return Ok(Outcome::Postponed);
            }
        };
        let secret = Secret::mint();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let claimed_at = now();
        let until = claimed_at
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(2));
        let Some(invitation) = reminders::claim(
            database,
            candidate,
            &token,
            &secret.hash(),
            until,
            claimed_at,
        )
        .await?
        else {
            return Ok(Outcome::Skipped);
        };
        let email = email_for(
            &invitation,
            account.display_name,
            accept_link(&self.public_url, secret.token()),
            render::reminder_message_id(
                invitation.invitation_id.as_str(),
                invitation.resend_count,
                &self.from,
            ),
            true,
        );
        let sent = match render::render(&email, &self.from) {
            Ok(message) => {
                drop(email);
                self.mail
                    .send(message)
                    .await
                    .map_err(|error| error.permanent)
            }
            Err(_) => Err(true),
        };
        if let Err(permanent) = sent {
            self.metrics.email_failed();
            tracing::warn!(invitation = %invitation.name(), permanent, "reminder e-mail not sent");
            reminders::release(
                database,
                &invitation.invitation_id,
                &token,
                permanent,
                now(),
            )
            .await?;
            return Ok(Outcome::Postponed);
        }
        self.metrics.email_sent();
        if reminders::record_sent(database, &invitation.invitation_id, &token, now()).await? {
            tracing::info!(invitation = %invitation.name(), "reminder e-mail sent");
        } else {
            tracing::warn!(invitation = %invitation.name(), "the reminder's lease ended before it was recorded; it may be sent again (same Message-ID)");
        }
        Ok(Outcome::Sent)
    }
}
