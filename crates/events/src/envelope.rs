//! The event envelope: what the outbox stores and consumers receive.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::HandlerError;

/// One event as appended to the outbox and delivered to consumers.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// UUID v7 (time-ordered); the idempotency key for consumers.
    pub id: Uuid,
    /// The CloudEvents type, also the AMQP routing key, e.g. `account.created`.
    pub event_type: String,
    /// The CloudEvents source, e.g. `/tenantry/customer-registry`.
    pub source: String,
    /// When the event happened.
    pub time: DateTime<Utc>,
    /// The protobuf encoding of the `tenantry.events.v1` message.
    pub payload: Vec<u8>,
    /// W3C trace context, carried end to end.
    pub traceparent: Option<String>,
    /// W3C trace state, carried end to end.
    pub tracestate: Option<String>,
}

impl Event {
    /// A new event with a fresh v7 id and the current time, carrying the trace context of the
    /// current span (the call or event handler that caused it), so its consumers join that
    /// trace.
    pub fn new(event_type: &str, source: &str, payload: &impl prost::Message) -> Self {
        let trace = tenantry_platform::telemetry::trace_headers(&tracing::Span::current());
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.to_string(),
            source: source.to_string(),
            time: Utc::now(),
            payload: payload.encode_to_vec(),
            traceparent: trace.traceparent,
            tracestate: trace.tracestate,
        }
    }

    /// A new event carrying `payload`, under the one type declared for it (see
    /// [`tenantry_proto::EventType`]).
    /// Its `provenance` is filled from the current call (see
    /// [`tenantry_platform::call_context`]) unless the payload already has one.
    pub fn of<P: tenantry_proto::EventPayload>(source: &str, payload: &P) -> Self {
        if payload.provenance().is_some() {
            return Self::new(P::TYPE.as_str(), source, payload);
        }
        let mut event = Self::new(P::TYPE.as_str(), source, payload);
        let mut attributed = payload.clone();
        attributed.set_provenance(provenance_of_call(event.traceparent.as_deref()));
        event.payload = attributed.encode_to_vec();
        event
    }

    /// The declared type of this event, `None` for a type this build does not know.
    pub fn known_type(&self) -> Option<tenantry_proto::EventType> {
        tenantry_proto::EventType::parse(&self.event_type)
    }

    /// Decodes the payload (a decode failure is a permanent handler error).
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, HandlerError> {
        M::decode(self.payload.as_slice()).map_err(|error| {
            HandlerError::Permanent(format!(
                "cannot decode the payload of {} event {}: {error}",
                self.event_type, self.id
            ))
        })
    }
}

/// The provenance of a change made now: from the call being handled, or a service's own
/// change outside any call.
fn provenance_of_call(traceparent: Option<&str>) -> tenantry_proto::events::v1::Provenance {
    use tenantry_platform::call_context::{self, ActorRole};
    use tenantry_proto::events::v1::{ActorKind, Provenance};
    let call = call_context::current();
    // The span's trace when this process traces, else the caller's.
    let trace_id = traceparent
        .and_then(call_context::trace_id_of)
        .or_else(|| call.as_ref().and_then(|call| call.trace_id()))
        .unwrap_or_default()
        .to_string();
    let Some(call) = call else {
        return Provenance {
            actor_kind: ActorKind::Service as i32,
            actor_role: ActorRole::Service.as_str().to_string(),
            trace_id,
            ..Provenance::default()
        };
    };
    let (actor_kind, via) = match (call.via(), call.service_on_its_own()) {
        (Some(via), _) => (ActorKind::ServiceForPerson, via.to_string()),
        (None, true) => (ActorKind::Service, String::new()),
        (None, false) => (ActorKind::Person, String::new()),
    };
    Provenance {
        actor_kind: actor_kind as i32,
        via,
        actor_role: call.role().unwrap_or_else(|| {
            if actor_kind == ActorKind::Service {
                ActorRole::Service.as_str().to_string()
            } else {
                String::new()
            }
        }),
        request_id: call.request_id().to_string(),
        trace_id,
        person: call.person().unwrap_or_default().to_string(),
    }
}
