//! The e-mails that warn a time-bound membership ends soon, sent to the member and to the
//! OWNERs of the partner managing the account: 7 days and 1 day before the end by default
//! (`TENANTRY_MEMBERSHIP_FIRST_REMINDER_HOURS`, `…_LAST_REMINDER_HOURS`), each once across
//! restarts and replicas (the leases of `store/reminders.rs`). Sent from the sweep's task,
//! never inside an RPC, through the shared transport (`tenantry-mail`); the template is this
//! service's own.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lettre::Message;
use lettre::message::{Mailbox, header::ContentType};
use tenantry_mail::{MailTransport, one_line, stable_message_id};

use crate::domain::MembershipError;
use crate::store::{DueReminder, ReminderOutcome, Store};

/// Memberships looked at per run.
const BATCH: u64 = 100;

/// How long one attempt may take to send one reminder before another may try: well above the
/// transport's 20 s for one e-mail.
const LEASE: Duration = Duration::minutes(2);

/// How long one run sends before leaving the rest to the next: each claim takes its lease from
/// the clock when it is made, and a run this short cannot outlast the leases it took.
const RUN_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// The wait before the next try of an e-mail whose send failed (given up after
/// `store::MAX_ATTEMPTS` tries: a server down for longer than that gets the next reminder, or
/// none).
const RETRY_AFTER: Duration = Duration::minutes(2);

/// Sends the due reminders.
#[derive(Clone)]
pub struct ExpiryReminders {
    store: Store,
    mail: Arc<dyn MailTransport>,
    sender: Mailbox,
    first: Option<Duration>,
    last: Option<Duration>,
}

impl std::fmt::Debug for ExpiryReminders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiryReminders")
            .field("first", &self.first)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl ExpiryReminders {
    /// Reminders `first_hours` and `last_hours` before the end (0: that one is off).
    pub fn new(
        store: Store,
        mail: Arc<dyn MailTransport>,
        sender: Mailbox,
        first_hours: u32,
        last_hours: u32,
    ) -> Self {
        let hours = |hours: u32| (hours > 0).then(|| Duration::hours(i64::from(hours)));
        Self {
            store,
            mail,
            sender,
            first: hours(first_hours),
            last: hours(last_hours),
        }
    }

    /// Sends what is due at `now` (the reminders are chosen by `now`; each claim and its
    /// outcome are timed by the clock when they happen); returns how many e-mails went out.
    /// Stops after [`RUN_BUDGET`], leaving the rest to the next run.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<u64, MembershipError> {
        if self.first.is_none() && self.last.is_none() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut sent = 0;
        for reminder in self
            .store
            .due_reminders(now, self.first, self.last, BATCH)
            .await?
        {
            if started.elapsed() > RUN_BUDGET {
                break;
            }
            for recipient in &reminder.recipients {
                let token = uuid::Uuid::new_v4().to_string();
                let claimed_at = tenantry_platform::time::now();
                if !self
                    .store
                    .claim_reminder(&reminder, recipient, &token, claimed_at, claimed_at + LEASE)
                    .await?
                {
                    continue;
                }
                let outcome = self.send(&reminder, recipient, now).await;
                if outcome == ReminderOutcome::Sent {
                    sent += 1;
                }
                self.store
                    .finish_reminder(
                        &reminder,
                        recipient,
                        &token,
                        outcome,
                        tenantry_platform::time::now(),
                    )
                    .await?;
            }
            self.store
                .complete_reminder(&reminder, tenantry_platform::time::now())
                .await?;
        }
        // Nobody asks about reminders of memberships that ended a month ago.
        self.store
            .forget_reminders(now - Duration::days(30))
            .await?;
        Ok(sent)
    }

    /// Sends the e-mail of `reminder` to `recipient`: what came of it.
    async fn send(
        &self,
        reminder: &DueReminder,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> ReminderOutcome {
        let message = match self.message(reminder, recipient, now) {
            Ok(message) => message,
            Err(reason) => {
                tracing::warn!(
                    account_id = %reminder.account_id, user_id = %reminder.user_id,
                    reason, "an access-expiry reminder cannot be sent to this address; given up"
                );
                return ReminderOutcome::Failed;
            }
        };
        match self.mail.send(message).await {
            Ok(()) => ReminderOutcome::Sent,
            Err(error) if error.permanent => {
                tracing::warn!(
                    account_id = %reminder.account_id, user_id = %reminder.user_id,
                    reason = %error.reason, "the server refused an access-expiry reminder for good"
                );
                ReminderOutcome::Failed
            }
            Err(error) => {
                tracing::warn!(
                    account_id = %reminder.account_id, user_id = %reminder.user_id,
                    reason = %error.reason, "an access-expiry reminder could not be sent; tried again later"
                );
                ReminderOutcome::Retry {
                    retry_at: tenantry_platform::time::now() + RETRY_AFTER,
                }
            }
        }
    }

    /// The e-mail of `reminder` to `recipient`; Err is why it cannot be built (a bad address).
    fn message(
        &self,
        reminder: &DueReminder,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<Message, String> {
        let to: Mailbox = recipient
            .parse()
            .map_err(|error| format!("the address does not parse: {error}"))?;
        let (subject, body) = render(reminder, recipient, now);
        // The same e-mail has the same id however often it is attempted, so a copy sent again
        // after a crash between the server's answer and SENT can be recognised.
        let key = format!(
            "{}|{}|{}|{}|{}",
            reminder.account_id,
            reminder.user_id,
            reminder.expire_time.timestamp_micros(),
            reminder.kind.as_str(),
            recipient.to_ascii_lowercase()
        );
        Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(stable_message_id("access-expiry", &key, &self.sender)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| format!("the e-mail could not be built: {error}"))
    }
}

/// Subject and text of the reminder to `recipient`: the member reads about their own access,
/// a partner OWNER about their colleague's.
pub fn render(reminder: &DueReminder, recipient: &str, now: DateTime<Utc>) -> (String, String) {
    let ends = reminder
        .expire_time
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    let account = one_line(&reminder.account_name);
    let own = reminder
        .member_email
        .as_deref()
        .is_some_and(|email| email.eq_ignore_ascii_case(recipient));
    let whose = if own {
        "Your access".to_string()
    } else {
        let who = reminder
            .member_email
            .clone()
            .unwrap_or_else(|| reminder.user_id.name());
        format!("The access of {who}")
    };
    let left = reminder.expire_time - now;
    let when = if left >= Duration::hours(48) {
        format!("in {} days", left.num_days())
    } else if left >= Duration::hours(2) {
        format!("in {} hours", left.num_hours())
    } else {
        format!("in {} minutes", left.num_minutes().max(1))
    };
    let subject = format!("{whose} to {account} ends {when}");
    let body = format!(
        "{whose} to the account {account} ({}) ends on {ends}.\n\n\
         After that, the membership is removed. An OWNER or ADMIN of the account can extend it \
         before it ends (ExtendMemberAccess); the member can also be added again later.\n",
        reminder.account_id
    );
    (subject, body)
}
