//! The wire codec: the whole mapping between `tenantry.notification.v1` (and the message
//! names in events) and the domain types. The API, the events, the consumers and the store all
//! map through here.

use chrono::{DateTime, Utc};
use tenantry_platform::names::{account_name, user_name};
use tenantry_platform::time::{to_optional_timestamp, to_timestamp};
use tenantry_platform::{AccountId, ApiError, Role};
use tenantry_proto::notification::v1 as wire;

use crate::domain::{
    InboxEntry, Message, MessageState, MessageView, ReadPolicy, Receipt, RecipientStats,
};

/// `accounts/{partner_id}/messages/{message_id}`.
pub fn message_name(partner_id: &str, message_id: &str) -> String {
    format!("accounts/{partner_id}/messages/{message_id}")
}

/// `(partner_id, message_id)` of a message name; the id must be a UUID in the form this service
/// assigns (lower-case, hyphenated). INVALID_ARGUMENT naming `field` otherwise.
pub fn parse_message_name(field: &str, name: &str) -> Result<(AccountId, String), ApiError> {
    tenantry_platform::names::parse_account_child(field, name, "messages")
        .map(|(partner_id, message_id)| (AccountId::trusted(partner_id), message_id))
}

/// A required read policy; UNSPECIFIED or unknown values are refused.
pub fn read_policy_from_wire(value: i32) -> Result<ReadPolicy, String> {
    match wire::ReadPolicy::try_from(value) {
        Ok(wire::ReadPolicy::AllMustRead) => Ok(ReadPolicy::AllMustRead),
        Ok(wire::ReadPolicy::SingleReadOnly) => Ok(ReadPolicy::SingleReadOnly),
        _ => Err("required: READ_POLICY_ALL_MUST_READ or READ_POLICY_SINGLE_READ_ONLY".into()),
    }
}

/// A read policy on the wire.
pub fn read_policy_to_wire(policy: ReadPolicy) -> i32 {
    match policy {
        ReadPolicy::AllMustRead => wire::ReadPolicy::AllMustRead as i32,
        ReadPolicy::SingleReadOnly => wire::ReadPolicy::SingleReadOnly as i32,
    }
}

/// The role filter: sorted, deduplicated; UNSPECIFIED or unknown values are refused.
pub fn roles_from_wire(values: &[i32]) -> Result<Vec<Role>, String> {
    let mut roles = values
        .iter()
        .map(|value| {
            Role::from_wire(*value).ok_or_else(|| {
                "each role must be ROLE_OWNER, ROLE_ADMIN or ROLE_EMPLOYEE".to_string()
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// A message state on the wire.
pub fn state_to_wire(state: MessageState) -> i32 {
    match state {
        MessageState::Queued => wire::MessageState::Queued as i32,
        MessageState::Delivered => wire::MessageState::Delivered as i32,
        MessageState::Expired => wire::MessageState::Expired as i32,
    }
}

/// A timestamp from the wire; values no `google.protobuf.Timestamp` may hold are
/// INVALID_ARGUMENT naming `field`.
pub fn time_from_wire(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, ApiError> {
    tenantry_platform::time::from_timestamp(field, timestamp)
}

/// Statistics of one recipient account on the wire.
pub fn stats_to_wire(stats: &RecipientStats) -> wire::RecipientAccountStats {
    let clamp = |value: i64| i32::try_from(value.max(0)).unwrap_or(i32::MAX);
    wire::RecipientAccountStats {
        account: account_name(&stats.account_id),
        recipient_count: clamp(stats.recipient_count),
        acknowledged_count: clamp(stats.acknowledged_count),
        resolved: stats.resolve_time.is_some(),
        resolved_by: stats
            .resolved_by
            .as_deref()
            .map(user_name)
            .unwrap_or_default(),
        resolve_time: to_optional_timestamp(stats.resolve_time),
        withdrawn_count: clamp(stats.withdrawn_count),
    }
}

/// A message as its sender sees it, with statistics; the state as seen at `now`.
pub fn message_to_wire(view: &MessageView, now: DateTime<Utc>) -> wire::Message {
    let message = &view.message;
    wire::Message {
        name: message_name(&message.partner_id, &message.message_id),
        message_id: message.message_id.clone(),
        sender: message.sender.clone(),
        title: message.title.clone(),
        body: message.body.clone(),
        read_policy: read_policy_to_wire(message.read_policy),
        recipients: view
            .stats
            .iter()
            .map(|stats| account_name(&stats.account_id))
            .collect(),
        all_customers: message.all_customers,
        roles: message.roles.iter().copied().map(Role::to_wire).collect(),
        create_time: Some(to_timestamp(message.create_time)),
        expire_time: to_optional_timestamp(message.expire_time),
        state: state_to_wire(message.state_at(now)),
        stats: view.stats.iter().map(stats_to_wire).collect(),
    }
}

/// The message of `message.sent`: recipients resolved, no statistics.
pub fn sent_message_to_wire(message: &Message, recipients: &[AccountId]) -> wire::Message {
    wire::Message {
        name: message_name(&message.partner_id, &message.message_id),
        message_id: message.message_id.clone(),
        sender: message.sender.clone(),
        title: message.title.clone(),
        body: message.body.clone(),
        read_policy: read_policy_to_wire(message.read_policy),
        recipients: recipients.iter().map(AccountId::name).collect(),
        all_customers: message.all_customers,
        roles: message.roles.iter().copied().map(Role::to_wire).collect(),
        create_time: Some(to_timestamp(message.create_time)),
        expire_time: to_optional_timestamp(message.expire_time),
        state: state_to_wire(message.state),
        stats: Vec::new(),
    }
}

/// An inbox item for a message reaching a user through `accounts` (account ids).
pub fn inbox_item(message: &Message, accounts: &[impl AsRef<str>]) -> wire::InboxItem {
    wire::InboxItem {
        message: message_name(&message.partner_id, &message.message_id),
        title: message.title.clone(),
        body: message.body.clone(),
        read_policy: read_policy_to_wire(message.read_policy),
        sender_account: account_name(&message.partner_id),
        sender_account_display_name: message.partner_display_name.clone(),
        accounts: accounts
            .iter()
            .map(|id| account_name(id.as_ref()))
            .collect(),
        create_time: Some(to_timestamp(message.create_time)),
        expire_time: to_optional_timestamp(message.expire_time),
    }
}

/// An inbox entry on the wire.
pub fn inbox_entry_to_wire(entry: &InboxEntry) -> wire::InboxItem {
    inbox_item(&entry.message, &entry.accounts)
}

/// A receipt on the wire.
pub fn receipt_to_wire(receipt: &Receipt) -> wire::Receipt {
    wire::Receipt {
        user: user_name(&receipt.user_id),
        account: account_name(&receipt.account_id),
        acknowledge_time: Some(to_timestamp(receipt.acknowledge_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names() {
        let id = "0190a6a8-7c2b-7d3e-8f40-1234567890ab";
        let name = message_name("acme", id);
        assert_eq!(
            parse_message_name("name", &name).unwrap(),
            (AccountId::trusted("acme"), id.to_string())
        );
        for bad in [
            "",
            "accounts/acme",
            "accounts/acme/messages/",
            "accounts/acme/messages/not-a-uuid",
            "accounts/ACME/messages/0190a6a8-7c2b-7d3e-8f40-1234567890ab",
            "messages/0190a6a8-7c2b-7d3e-8f40-1234567890ab",
            "accounts/acme/messages/{0190a6a8-7c2b-7d3e-8f40-1234567890ab}",
            "accounts/acme/messages/0190a6a87c2b7d3e8f401234567890ab",
        ] {
            assert!(parse_message_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn policies_and_roles() {
        assert!(read_policy_from_wire(0).is_err());
        assert!(read_policy_from_wire(99).is_err());
        assert_eq!(read_policy_from_wire(2), Ok(ReadPolicy::SingleReadOnly));
        assert_eq!(
            roles_from_wire(&[3, 1, 3]),
            Ok(vec![Role::Owner, Role::Employee])
        );
        assert!(roles_from_wire(&[0]).is_err());
        assert!(roles_from_wire(&[7]).is_err());
    }
}
