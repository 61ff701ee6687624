//! The `message.*` and `inbox.changed` events (tenantry.events.v1) and the routing keys this
//! service consumes.

use chrono::{DateTime, Utc};
use tenantry_events::Event;
use tenantry_platform::names::{account_name, user_name};
use tenantry_platform::time::to_timestamp;
use tenantry_proto::events::v1 as events;
use tenantry_proto::notification::v1::InboxItem;

use crate::api::convert::{message_name, sent_message_to_wire};
use crate::domain::Message;

/// The CloudEvents source of every event this service publishes.
pub const SOURCE: &str = "/tenantry/notification";
/// The actor of changes the service makes on its own.
pub const SYSTEM_ACTOR: &str = "services/notification";

/// Routing key of [`events::MessageSent`].
pub const MESSAGE_SENT: &str = "message.sent";
/// Routing key of [`events::MessageAcknowledged`].
pub const MESSAGE_ACKNOWLEDGED: &str = "message.acknowledged";
/// Routing key of [`events::MessageResolved`].
pub const MESSAGE_RESOLVED: &str = "message.resolved";
/// Routing key of [`events::MessageExpired`].
pub const MESSAGE_EXPIRED: &str = "message.expired";
/// Routing key of [`events::InboxChanged`].
pub const INBOX_CHANGED: &str = "inbox.changed";
/// Routing key of membership's `MemberRemoved`.
pub const MEMBER_REMOVED: &str = "member.removed";
/// Routing key of the registry's `AccountDeleted`.
pub const ACCOUNT_DELETED: &str = "account.deleted";
/// Routing key of the registry's `AccountDisabled`.
pub const ACCOUNT_DISABLED: &str = "account.disabled";

/// `message.sent`: the message with its resolved recipients (account ids).
pub fn sent(message: &Message, recipients: &[String]) -> Event {
    let payload = events::MessageSent {
        message: Some(sent_message_to_wire(message, recipients)),
        actor: message.sender.clone(),
    };
    Event::new(MESSAGE_SENT, SOURCE, &payload)
}

/// `message.acknowledged` by `user_id`, counting for `accounts`.
pub fn acknowledged(
    message: &Message,
    user_id: &str,
    accounts: &[String],
    time: DateTime<Utc>,
) -> Event {
    let payload = events::MessageAcknowledged {
        message: message_name(&message.partner_id, &message.message_id),
        user: user_name(user_id),
        accounts: accounts.iter().map(|id| account_name(id)).collect(),
        acknowledge_time: Some(to_timestamp(time)),
    };
    Event::new(MESSAGE_ACKNOWLEDGED, SOURCE, &payload)
}

/// `message.resolved` for one recipient account.
pub fn resolved(
    partner_id: &str,
    message_id: &str,
    account_id: &str,
    resolved_by: Option<&str>,
    time: DateTime<Utc>,
) -> Event {
    let payload = events::MessageResolved {
        message: message_name(partner_id, message_id),
        account: account_name(account_id),
        resolved_by: resolved_by.map(user_name).unwrap_or_default(),
        resolve_time: Some(to_timestamp(time)),
    };
    Event::new(MESSAGE_RESOLVED, SOURCE, &payload)
}

/// `message.expired`.
pub fn expired(message: &Message) -> Event {
    let payload = events::MessageExpired {
        message: message_name(&message.partner_id, &message.message_id),
        expire_time: message.expire_time.map(to_timestamp),
    };
    Event::new(MESSAGE_EXPIRED, SOURCE, &payload)
}

/// What happened to an inbox item.
#[derive(Clone, Debug, PartialEq)]
pub enum InboxChange {
    /// The item entered the inbox or changed (insert or replace).
    Arrived(InboxItem),
    /// The message left the inbox (its name).
    Removed(String),
}

/// `inbox.changed` for `users` (user ids; the first is `user`, the rest `also_users`).
/// `None` for an empty list.
pub fn inbox_changed(users: &[String], change: InboxChange) -> Option<Event> {
    let (first, rest) = users.split_first()?;
    let change = match change {
        InboxChange::Arrived(item) => events::inbox_changed::Change::Arrived(item),
        InboxChange::Removed(name) => events::inbox_changed::Change::Removed(name),
    };
    let payload = events::InboxChanged {
        user: user_name(first),
        change: Some(change),
        also_users: rest.iter().map(|id| user_name(id)).collect(),
    };
    Some(Event::new(INBOX_CHANGED, SOURCE, &payload))
}
