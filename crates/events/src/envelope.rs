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
    pub fn of<P: tenantry_proto::EventPayload>(source: &str, payload: &P) -> Self {
        Self::new(P::TYPE.as_str(), source, payload)
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
