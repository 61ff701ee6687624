//! AMQP deliveries as a consumer takes them off RabbitMQ — anyone who can publish to the
//! exchange controls them. The input is a routing-key selector, then an AMQP content-header
//! property list in its wire form (parsed by lapin's own parser, as the broker connection does),
//! then the body. `tenantry_events::event_from_amqp` reads the CloudEvents attributes; the body
//! is then decoded as the `tenantry.events.v1` payload of its event type, and as every other
//! payload type too. Nothing panics; a refusal says why; a decoded payload re-encodes to a value
//! that decodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tenantry_events::{Event, event_from_amqp};
use tenantry_proto::events::v1 as events;

/// The routing keys of `proto/tenantry/events/v1/events.proto`, and two no consumer knows.
const EVENT_TYPES: [&str; 23] = [
    "account.created",
    "account.updated",
    "account.promoted_to_partner",
    "account.disabled",
    "account.enabled",
    "account.deleted",
    "member.added",
    "member.updated",
    "member.removed",
    "member.expired",
    "invitation.created",
    "invitation.resent",
    "invitation.accepted",
    "invitation.revoked",
    "invitation.expired",
    "invitation.declined",
    "message.sent",
    "message.acknowledged",
    "message.resolved",
    "message.expired",
    "inbox.changed",
    "tenantry.invitation.mailer.retry",
    "",
];

/// Decodes `event`'s payload as `M` the way consumers do; what decodes must survive a round
/// trip.
fn payload<M: Message + Default + PartialEq + std::fmt::Debug>(event: &Event) {
    match event.decode::<M>() {
        Ok(message) => {
            let again = M::decode(message.encode_to_vec().as_slice()).expect("re-encoded payload");
            assert_eq!(again, message);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// Every payload type, the one named by the event type first.
fn payloads(event: &Event) {
    let all: [fn(&Event); 21] = [
        payload::<events::AccountCreated>,
        payload::<events::AccountUpdated>,
        payload::<events::AccountPromotedToPartner>,
        payload::<events::AccountDisabled>,
        payload::<events::AccountEnabled>,
        payload::<events::AccountDeleted>,
        payload::<events::MemberAdded>,
        payload::<events::MemberUpdated>,
        payload::<events::MemberRemoved>,
        payload::<events::MemberExpired>,
        payload::<events::InvitationCreated>,
        payload::<events::InvitationResent>,
        payload::<events::InvitationAccepted>,
        payload::<events::InvitationRevoked>,
        payload::<events::InvitationExpired>,
        payload::<events::InvitationDeclined>,
        payload::<events::MessageSent>,
        payload::<events::MessageAcknowledged>,
        payload::<events::MessageResolved>,
        payload::<events::MessageExpired>,
        payload::<events::InboxChanged>,
    ];
    let named = EVENT_TYPES[..21]
        .iter()
        .position(|event_type| *event_type == event.event_type);
    if let Some(index) = named {
        all[index](event);
    }
    for decode in all {
        decode(event);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let routing_key = EVENT_TYPES[usize::from(selector) % EVENT_TYPES.len()];
    let (properties, body) = match lapin::protocol::basic::parse_properties(rest) {
        Ok((body, properties)) => (properties, body),
        Err(_) => (lapin::BasicProperties::default(), rest),
    };
    match event_from_amqp(routing_key, &properties, body) {
        Ok(event) => {
            assert_eq!(event.payload, body);
            payloads(&event);
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
