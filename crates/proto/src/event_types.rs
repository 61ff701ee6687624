//! The event types of `tenantry.events.v1`, declared once beside their payloads: the routing
//! key of each payload message, used by publishers (to name what they append), consumers (to
//! bind their queues and to dispatch) and tests. A type is spelled nowhere else.

use crate::events::v1 as pb;

/// Declares [`EventType`] (one variant per payload message, named after it), its routing keys,
/// [`EventType::ALL`] and the [`EventPayload`] impls from one list, so they cannot drift apart.
macro_rules! event_types {
    ($($payload:ident => $routing_key:literal,)*) => {
        /// Every event type Tenantry publishes (= AMQP routing key = CloudEvents `type`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $(
                #[doc = concat!("`", $routing_key, "`: [`pb::", stringify!($payload), "`].")]
                $payload,
            )*
        }

        impl EventType {
            /// Every type, in the order of `events.proto`.
            pub const ALL: [EventType; [$(EventType::$payload),*].len()] = [$(EventType::$payload),*];

            /// The routing key.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$payload => $routing_key,)*
                }
            }
        }

        $(
            impl EventPayload for pb::$payload {
                const TYPE: EventType = EventType::$payload;

                fn provenance(&self) -> Option<&pb::Provenance> {
                    self.provenance.as_ref()
                }

                fn set_provenance(&mut self, provenance: pb::Provenance) {
                    self.provenance = Some(provenance);
                }
            }
        )*
    };
}

event_types! {
    AccountCreated => "account.created",
    AccountUpdated => "account.updated",
    AccountPromotedToPartner => "account.promoted_to_partner",
    AccountDisabled => "account.disabled",
    AccountEnabled => "account.enabled",
    AccountDeleted => "account.deleted",
    MemberAdded => "member.added",
    MemberUpdated => "member.updated",
    MemberRemoved => "member.removed",
    MemberExpired => "member.expired",
    AccessPolicyUpdated => "access_policy.updated",
    AccessRequestCreated => "access_request.created",
    AccessRequestApproved => "access_request.approved",
    AccessRequestDeclined => "access_request.declined",
    AccessRequestCancelled => "access_request.cancelled",
    InvitationCreated => "invitation.created",
    InvitationResent => "invitation.resent",
    InvitationAccepted => "invitation.accepted",
    InvitationRevoked => "invitation.revoked",
    InvitationExpired => "invitation.expired",
    InvitationDeclined => "invitation.declined",
    MessageSent => "message.sent",
    MessageAcknowledged => "message.acknowledged",
    MessageResolved => "message.resolved",
    MessageExpired => "message.expired",
    InboxChanged => "inbox.changed",
}

impl EventType {
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
                | EventType::AccessPolicyUpdated
                | EventType::AccessRequestCreated
                | EventType::AccessRequestApproved
                | EventType::AccessRequestDeclined
                | EventType::AccessRequestCancelled
                | EventType::InvitationAccepted
                | EventType::InvitationRevoked
                | EventType::InvitationExpired
                | EventType::InvitationDeclined
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
pub trait EventPayload: prost::Message + Default + Clone {
    /// The type (routing key) of events carrying this payload.
    const TYPE: EventType;

    /// How the change was made (every payload carries it as field 15).
    fn provenance(&self) -> Option<&pb::Provenance>;

    /// Sets how the change was made.
    fn set_provenance(&mut self, provenance: pb::Provenance);
}

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
