//! The event types of `tenantry.events.v1`, declared once beside their payloads: the routing
//! key of each payload message, used by publishers (to name what they append), consumers (to
//! bind their queues and to dispatch) and tests. A type is spelled nowhere else.

use crate::events::v1 as pb;

/// Every event type Tenantry publishes (= AMQP routing key = CloudEvents `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `account.created`: [`pb::AccountCreated`].
    AccountCreated,
    /// `account.updated`: [`pb::AccountUpdated`].
    AccountUpdated,
    /// `account.promoted_to_partner`: [`pb::AccountPromotedToPartner`].
    AccountPromotedToPartner,
    /// `account.disabled`: [`pb::AccountDisabled`].
    AccountDisabled,
    /// `account.enabled`: [`pb::AccountEnabled`].
    AccountEnabled,
    /// `account.deleted`: [`pb::AccountDeleted`].
    AccountDeleted,
    /// `member.added`: [`pb::MemberAdded`].
    MemberAdded,
    /// `member.updated`: [`pb::MemberUpdated`].
    MemberUpdated,
    /// `member.removed`: [`pb::MemberRemoved`].
    MemberRemoved,
    /// `invitation.created`: [`pb::InvitationCreated`].
    InvitationCreated,
    /// `invitation.resent`: [`pb::InvitationResent`].
    InvitationResent,
    /// `invitation.accepted`: [`pb::InvitationAccepted`].
    InvitationAccepted,
    /// `invitation.revoked`: [`pb::InvitationRevoked`].
    InvitationRevoked,
    /// `invitation.expired`: [`pb::InvitationExpired`].
    InvitationExpired,
    /// `message.sent`: [`pb::MessageSent`].
    MessageSent,
    /// `message.acknowledged`: [`pb::MessageAcknowledged`].
    MessageAcknowledged,
    /// `message.resolved`: [`pb::MessageResolved`].
    MessageResolved,
    /// `message.expired`: [`pb::MessageExpired`].
    MessageExpired,
    /// `inbox.changed`: [`pb::InboxChanged`].
    InboxChanged,
}

impl EventType {
    /// Every type, in the order of `events.proto`.
    pub const ALL: [EventType; 19] = [
        EventType::AccountCreated,
        EventType::AccountUpdated,
        EventType::AccountPromotedToPartner,
        EventType::AccountDisabled,
        EventType::AccountEnabled,
        EventType::AccountDeleted,
        EventType::MemberAdded,
        EventType::MemberUpdated,
        EventType::MemberRemoved,
        EventType::InvitationCreated,
        EventType::InvitationResent,
        EventType::InvitationAccepted,
        EventType::InvitationRevoked,
        EventType::InvitationExpired,
        EventType::MessageSent,
        EventType::MessageAcknowledged,
        EventType::MessageResolved,
        EventType::MessageExpired,
        EventType::InboxChanged,
    ];

    /// The routing key.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::AccountCreated => "account.created",
            EventType::AccountUpdated => "account.updated",
            EventType::AccountPromotedToPartner => "account.promoted_to_partner",
            EventType::AccountDisabled => "account.disabled",
            EventType::AccountEnabled => "account.enabled",
            EventType::AccountDeleted => "account.deleted",
            EventType::MemberAdded => "member.added",
            EventType::MemberUpdated => "member.updated",
            EventType::MemberRemoved => "member.removed",
            EventType::InvitationCreated => "invitation.created",
            EventType::InvitationResent => "invitation.resent",
            EventType::InvitationAccepted => "invitation.accepted",
            EventType::InvitationRevoked => "invitation.revoked",
            EventType::InvitationExpired => "invitation.expired",
            EventType::MessageSent => "message.sent",
            EventType::MessageAcknowledged => "message.acknowledged",
            EventType::MessageResolved => "message.resolved",
            EventType::MessageExpired => "message.expired",
            EventType::InboxChanged => "inbox.changed",
        }
    }

    /// The type whose routing key is `text`; `None` for a type this build does not know.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == text)
    }

    /// Whether the type is published for subscribers outside Tenantry only (integrations, an
    /// audit trail): no Tenantry consumer binds it. Every other type has at least one consumer;
    /// a test over all services' bindings checks both directions.
    pub const fn outside_subscribers_only(self) -> bool {
        matches!(
            self,
            EventType::MemberUpdated
                | EventType::InvitationAccepted
                | EventType::InvitationRevoked
                | EventType::InvitationExpired
                | EventType::MessageAcknowledged
                | EventType::MessageResolved
                | EventType::MessageExpired
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `tenantry.events.v1` payload and the one event type it is published under.
pub trait EventPayload: prost::Message + Default {
    /// The type (routing key) of events carrying this payload.
    const TYPE: EventType;
}

macro_rules! payloads {
    ($($payload:ident),* $(,)?) => {$(
        impl EventPayload for pb::$payload {
            const TYPE: EventType = EventType::$payload;
        }
    )*};
}

payloads!(
    AccountCreated,
    AccountUpdated,
    AccountPromotedToPartner,
    AccountDisabled,
    AccountEnabled,
    AccountDeleted,
    MemberAdded,
    MemberUpdated,
    MemberRemoved,
    InvitationCreated,
    InvitationResent,
    InvitationAccepted,
    InvitationRevoked,
    InvitationExpired,
    MessageSent,
    MessageAcknowledged,
    MessageResolved,
    MessageExpired,
    InboxChanged,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_matches_the_proto_comments() {
        let proto = include_str!("../../../proto/tenantry/events/v1/events.proto");
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            assert!(
                proto.contains(&format!("// Routing key `{}`", event_type.as_str())),
                "events.proto documents {event_type}"
            );
        }
        assert_eq!(
            proto.matches("// Routing key `").count(),
            EventType::ALL.len(),
            "every routing key in events.proto is an EventType"
        );
        assert_eq!(EventType::parse("account.renamed"), None);
        assert_eq!(
            <pb::AccountDeleted as EventPayload>::TYPE,
            EventType::AccountDeleted
        );
    }
}
