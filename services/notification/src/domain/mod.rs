//! The rules of messages and deliveries, without I/O: validation of what a partner sends,
//! read policies, lifecycle states, and the value types the store and the API share.

mod error;
mod send;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use tenantry_platform::{AccountId, Role, UserId};

pub use error::NotificationError;
pub use send::{
    AccountFacts, AccountState, NOT_A_MANAGED_CUSTOMER, Recipients, SEND_MESSAGE, SendDraft,
    SendInput, all_active_customers, check_send, listed_recipients, sending_partner,
};

/// Longest title, in Unicode characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest body, in Unicode characters.
pub const MAX_BODY_CHARS: usize = 2000;
/// Most recipient accounts a request may list.
pub const MAX_RECIPIENTS: usize = 1000;

/// Who must acknowledge a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// Every recipient user acknowledges it themself.
    AllMustRead,
    /// The first acknowledgement in a recipient account resolves it for that account.
    SingleReadOnly,
}

impl ReadPolicy {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllMustRead => "ALL_MUST_READ",
            Self::SingleReadOnly => "SINGLE_READ_ONLY",
        }
    }

    /// From the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ALL_MUST_READ" => Some(Self::AllMustRead),
            "SINGLE_READ_ONLY" => Some(Self::SingleReadOnly),
            _ => None,
        }
    }
}

/// Lifecycle of a sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Fan-out still running.
    Queued,
    /// Every recipient account's fan-out is done.
    Delivered,
    /// Past its expire_time; it left every inbox.
    Expired,
}

impl MessageState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Delivered => "DELIVERED",
            Self::Expired => "EXPIRED",
        }
    }

    /// From the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "QUEUED" => Some(Self::Queued),
            "DELIVERED" => Some(Self::Delivered),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// State of one delivery (a message for one user through one recipient account).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// In the user's inbox.
    Pending,
    /// The user acknowledged it.
    Acknowledged,
    /// SINGLE_READ_ONLY: someone else in the account acknowledged it.
    Resolved,
    /// The member was removed, or the account deleted or disabled, before acknowledging.
    Withdrawn,
    /// The message expired before the user acknowledged it.
    Expired,
}

impl DeliveryState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Acknowledged => "ACKNOWLEDGED",
            Self::Resolved => "RESOLVED",
            Self::Withdrawn => "WITHDRAWN",
            Self::Expired => "EXPIRED",
        }
    }

    /// From the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PENDING" => Some(Self::Pending),
            "ACKNOWLEDGED" => Some(Self::Acknowledged),
            "RESOLVED" => Some(Self::Resolved),
            "WITHDRAWN" => Some(Self::Withdrawn),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A message as stored (without its per-account statistics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// UUID v7.
    pub message_id: String,
    /// The sending partner's id.
    pub partner_id: AccountId,
    /// The partner's display name at send time.
    pub partner_display_name: String,
    /// `users/{sub}` (or `services/{name}`) who sent it.
    pub sender: String,
    /// Trimmed title.
    pub title: String,
    /// Body as given.
    pub body: String,
    /// Who must acknowledge it.
    pub read_policy: ReadPolicy,
    /// Sent to all ACTIVE customers at send time.
    pub all_customers: bool,
    /// Role filter; empty = every role.
    pub roles: Vec<Role>,
    /// When it was sent.
    pub create_time: DateTime<Utc>,
    /// When it leaves every inbox.
    pub expire_time: Option<DateTime<Utc>>,
    /// Stored lifecycle state (see [`Message::state_at`]).
    pub state: MessageState,
}

impl Message {
    /// The state as seen at `now`: past its expiry it is EXPIRED even before the sweep ran.
    pub fn state_at(&self, now: DateTime<Utc>) -> MessageState {
        if is_expired(self.expire_time, now) {
            MessageState::Expired
        } else {
            self.state
        }
    }
}

/// Whether something with `expire_time` has expired at `now`.
pub fn is_expired(expire_time: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expire_time.is_some_and(|expiry| expiry <= now)
}

/// Per-recipient-account statistics of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientStats {
    /// The recipient account id.
    pub account_id: AccountId,
    /// Deliveries made through this account.
    pub recipient_count: i64,
    /// Of those, acknowledged by their user.
    pub acknowledged_count: i64,
    /// Of those, withdrawn before acknowledgement.
    pub withdrawn_count: i64,
    /// SINGLE_READ_ONLY: who resolved it.
    pub resolved_by: Option<String>,
    /// When it was resolved (both policies).
    pub resolve_time: Option<DateTime<Utc>>,
}

/// A message with its statistics, in recipient order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// The message.
    pub message: Message,
    /// One entry per recipient account, in the order of the request.
    pub stats: Vec<RecipientStats>,
}

/// A message as one user's inbox shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    /// The message.
    pub message: Message,
    /// Accounts through which it is still pending for the user, sorted.
    pub accounts: Vec<AccountId>,
}

/// What a validated SendMessage asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Sending partner id.
    pub partner_id: AccountId,
    /// Its display name now.
    pub partner_display_name: String,
    /// Who sends it.
    pub sender: String,
    /// Trimmed title.
    pub title: String,
    /// Body as given.
    pub body: String,
    /// Policy.
    pub read_policy: ReadPolicy,
    /// Recipient account ids, deduplicated, in request order.
    pub recipients: Vec<AccountId>,
    /// Whether `recipients` is "every ACTIVE customer".
    pub all_customers: bool,
    /// Role filter.
    pub roles: Vec<Role>,
    /// Optional expiry.
    pub expire_time: Option<DateTime<Utc>>,
}

/// A member of a recipient account as a fan-out page read it from membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMember {
    /// The user (`sub`).
    pub user_id: String,
    /// When this membership began (membership's clock). A removal at or after it ended this
    /// membership; a user added again after a removal has a later one.
    pub added_time: DateTime<Utc>,
}

/// One acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Who acknowledged (user id).
    pub user_id: UserId,
    /// The account it counts for.
    pub account_id: AccountId,
    /// When.
    pub acknowledge_time: DateTime<Utc>,
}

/// The outcome of an acknowledgement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// The caller's first acknowledgement time, unset if nothing was recorded.
    pub acknowledge_time: Option<DateTime<Utc>>,
    /// Accounts the caller's acknowledgement counts for, sorted.
    pub acknowledged_accounts: Vec<AccountId>,
    /// SINGLE_READ_ONLY accounts someone else had resolved, sorted.
    pub already_resolved_accounts: Vec<AccountId>,
}

/// The trimmed title (1 to 120 characters, in any script, without control characters, line
/// separators, bidirectional controls or invisible characters), or why it is refused.
pub fn validate_title(title: &str) -> Result<String, String> {
    let title = title.trim();
    let chars = title.chars().count();
    if chars == 0 {
        return Err("required: 1 to 120 characters".into());
    }
    if chars > MAX_TITLE_CHARS {
        return Err(format!(
            "must be at most {MAX_TITLE_CHARS} characters (has {chars})"
        ));
    }
    if title
        .chars()
        .any(tenantry_platform::text::is_forbidden_in_line)
    {
        return Err(
            "must not contain control characters, bidirectional controls or invisible characters"
                .into(),
        );
    }
    Ok(title.to_string())
}

/// The body as given (1 to 2000 characters, line breaks and tabs kept, no other control
/// characters, bidirectional controls or invisible characters), or why it is refused.
pub fn validate_body(body: &str) -> Result<String, String> {
    let chars = body.chars().count();
    if body.trim().is_empty() {
        return Err("required: 1 to 2000 characters of text".into());
    }
    if chars > MAX_BODY_CHARS {
        return Err(format!(
            "must be at most {MAX_BODY_CHARS} characters (has {chars})"
        ));
    }
    if body
        .chars()
        .any(tenantry_platform::text::is_forbidden_in_text)
    {
        return Err(
            "must not contain control characters other than line breaks and tabs, \
             bidirectional controls or invisible characters"
                .into(),
        );
    }
    Ok(body.to_string())
}

/// The expiry, if given, must lie in the future.
pub fn validate_expiry(
    expire_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    match expire_time {
        Some(expiry) if expiry <= now => Err("must be in the future".into()),
        other => Ok(other),
    }
}

/// Whether an ALL_MUST_READ recipient account is resolved: its fan-out is done, it reached
/// somebody, and nobody there still has it pending.
pub fn all_must_read_resolved(fanout_done: bool, recipient_count: i64, pending: u64) -> bool {
    fanout_done && recipient_count > 0 && pending == 0
}
