//! The `message.*` and `inbox.changed` events (tenantry.events.v1) this service publishes, each
//! under the one type its payload declares (`tenantry_proto::EventType`).

use chrono::{DateTime, Utc};
use tenantry_events::Event;
use tenantry_platform::AccountId;
use tenantry_platform::names::{account_name, user_name};
use tenantry_platform::time::to_timestamp;
use tenantry_proto::events::v1 as events;
use tenantry_proto::notification::v1::InboxItem;

use crate::domain::Message;
use crate::wire::{message_name, sent_message_to_wire};

/// The CloudEvents source of every event this service publishes.
pub const SOURCE: &str = "/tenantry/notification";
/// The actor of changes the service makes on its own.
pub const SYSTEM_ACTOR: &str = "services/notification";

/// `message.sent`: the message with its resolved recipients (account ids).
pub fn sent(message: &Message, recipients: &[AccountId]) -> Event {
    let payload = events::MessageSent {
        message: Some(sent_message_to_wire(message, recipients)),
        actor: message.sender.clone(),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
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
        provenance: None,
    };
    Event::of(SOURCE, &payload)
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
        provenance: None,
    };
    Event::of(SOURCE, &payload)
}

/// `message.expired`.
pub fn expired(message: &Message) -> Event {
    let payload = events::MessageExpired {
        message: message_name(&message.partner_id, &message.message_id),
        expire_time: message.expire_time.map(to_timestamp),
        provenance: None,
    };
    Event::of(SOURCE, &payload)
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
        provenance: None,
    };
    Some(Event::of(SOURCE, &payload))
}
