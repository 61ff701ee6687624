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
use sha2::{Digest, Sha256};
use tenantry_mail::MailTransport;

use crate::domain::MembershipError;
use crate::store::{DueReminder, ReminderKind, Store};

/// Memberships looked at per run.
const BATCH: u64 = 100;

/// How long one attempt may take to send one reminder before another may try.
const LEASE: Duration = Duration::minutes(2);

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

    /// Sends what is due at `now`; returns how many e-mails went out. A failed send leaves its
    /// e-mail to the next run.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<u64, MembershipError> {
        if self.first.is_none() && self.last.is_none() {
            return Ok(0);
        }
        let mut sent = 0;
        for reminder in self
            .store
            .due_reminders(now, self.first, self.last, BATCH)
            .await?
        {
            for recipient in &reminder.recipients {
                let token = uuid::Uuid::new_v4().to_string();
                if !self
                    .store
                    .claim_reminder(&reminder, recipient, &token, now, now + LEASE)
                    .await?
                {
                    continue;
                }
                let outcome = match self.message(&reminder, recipient) {
                    Ok(message) => self.mail.send(message).await.map_err(|e| e.reason),
                    Err(reason) => Err(reason),
                };
                if let Err(reason) = &outcome {
                    tracing::warn!(
                        account_id = %reminder.account_id, user_id = %reminder.user_id,
                        reason, "an access-expiry reminder could not be sent; retried next run"
                    );
                } else {
                    sent += 1;
                }
                self.store
                    .finish_reminder(&reminder, recipient, &token, outcome.is_ok(), now)
                    .await?;
            }
            self.store.complete_reminder(&reminder, now).await?;
        }
        // Nobody asks about reminders of memberships that ended a month ago.
        self.store
            .forget_reminders(now - Duration::days(30))
            .await?;
        Ok(sent)
    }

    /// The e-mail of `reminder` to `recipient`; Err is why it cannot be built (a bad address).
    fn message(&self, reminder: &DueReminder, recipient: &str) -> Result<Message, String> {
        let to: Mailbox = recipient
            .parse()
            .map_err(|error| format!("the address does not parse: {error}"))?;
        let (subject, body) = render(reminder, recipient);
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
        let digest = Sha256::digest(key.as_bytes());
        let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<access-expiry-{id}@{}>",
                self.sender.email.domain()
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| format!("the e-mail could not be built: {error}"))
    }
}

/// Subject and text of the reminder to `recipient`: the member reads about their own access,
/// a partner OWNER about their colleague's.
pub fn render(reminder: &DueReminder, recipient: &str) -> (String, String) {
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
    let when = match reminder.kind {
        ReminderKind::First => "in about a week",
        ReminderKind::Last => "soon",
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

/// `text` on one line (a display name must not add header lines or paragraphs).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}
