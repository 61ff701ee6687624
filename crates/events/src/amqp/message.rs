//! Events as AMQP messages: the CloudEvents AMQP binding (attributes as `cloudEvents_`-prefixed
//! application properties, i.e. AMQP 0-9-1 headers), W3C trace context headers, and the
//! delivery attempt header used by the retry path.
//!
//! The binding's prefix was `cloudEvents:` until version 1.0.1 made it `cloudEvents_` (a colon
//! is not valid in the property names of JMS and other AMQP clients). Tenantry reads both, so
//! messages from older producers (and from Tenantry builds before the change still sitting in a
//! queue) are understood, and for now writes both: replicas of the previous build, still
//! running during a rolling upgrade, read only `cloudEvents:` and would take a retried event's
//! queue name for its type (and drop it as unknown) or lose a heartbeat's source. The legacy
//! copy can go once no build older than this one runs.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use uuid::Uuid;

use crate::Event;
use crate::consumer::ATTEMPT_HEADER;

/// The content type of every event body (a `tenantry.events.v1` protobuf message).
pub(crate) const CONTENT_TYPE: &str = "application/protobuf";
/// Why a message was dead-lettered, for the operator reading `{group}.dead`.
pub(crate) const ERROR_HEADER: &str = "x-tenantry-error";

/// The attribute prefix written (CloudEvents AMQP binding 1.0.1 and later).
const PREFIX: &str = "cloudEvents_";
/// The prefix of the binding's first version, still read, and written beside the current one
/// for replicas of the previous build.
const LEGACY_PREFIX: &str = "cloudEvents:";
const SPECVERSION: &str = "specversion";
const ID: &str = "id";
const TYPE: &str = "type";
const SOURCE: &str = "source";
const TIME: &str = "time";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The properties of `event` as first published (persistent, so it survives a broker restart).
pub(crate) fn properties(event: &Event) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut attribute = |name: &str, value: &str| {
        put(&mut headers, &format!("{PREFIX}{name}"), value);
        put(&mut headers, &format!("{LEGACY_PREFIX}{name}"), value);
    };
    attribute(SPECVERSION, "1.0");
    attribute(ID, &event.id.to_string());
    attribute(TYPE, &event.event_type);
    attribute(SOURCE, &event.source);
    attribute(TIME, &event.time.to_rfc3339());
    if let Some(traceparent) = &event.traceparent {
        put(&mut headers, TRACEPARENT, traceparent);
    }
    if let Some(tracestate) = &event.tracestate {
        put(&mut headers, TRACESTATE, tracestate);
    }
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(event.id.to_string().into())
        .with_timestamp(event.time.timestamp().max(0) as u64)
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// `properties` with the attempt header (and optionally an error) set, for a republish to the
/// retry or dead-letter queue; everything else, CloudEvents and trace headers included, is kept.
pub(crate) fn republished(
    properties: &BasicProperties,
    attempt: u32,
    error: Option<&str>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
    if let Some(error) = error {
        put(&mut headers, ERROR_HEADER, error);
    }
    // Rebuilt rather than cloned, so no expiration carries over (one from an earlier build's
    // delay queue must not reach a delay or dead-letter queue).
    let mut republished = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_content_type(
            properties
                .content_type()
                .clone()
                .unwrap_or_else(|| CONTENT_TYPE.into()),
        );
    if let Some(message_id) = properties.message_id() {
        republished = republished.with_message_id(message_id.clone());
    }
    if let Some(timestamp) = properties.timestamp() {
        republished = republished.with_timestamp(*timestamp);
    }
    republished
}

/// The delivery attempt a message is on (1 when it was never retried).
pub(crate) fn attempt(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(ATTEMPT_HEADER))
        .and_then(|value| match value {
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
            _ => None,
        })
        .unwrap_or(1)
        .max(1)
}

/// Reads the event back from a delivery — what every consumer and broadcast subscription does
/// with a message taken off RabbitMQ: the CloudEvents attributes from the headers (the id may
/// come from `message_id` instead; the type falls back to `routing_key`, as it must for a
/// retried message), the body as the payload. Err names what is missing or malformed; nothing
/// a delivery carries makes it panic. Public so the event decoding can be fuzzed
/// (`fuzz/fuzz_targets/event_decode.rs`).
pub fn event(
    routing_key: &str,
    properties: &BasicProperties,
    data: &[u8],
) -> Result<Event, String> {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let id_text = attribute(headers, ID)
        .or_else(|| properties.message_id().as_ref().map(|id| id.to_string()))
        .ok_or("no cloudEvents_id")?;
    let id = Uuid::parse_str(&id_text).map_err(|_| format!("malformed event id {id_text:?}"))?;
    let time = match attribute(headers, TIME) {
        Some(time) => DateTime::parse_from_rfc3339(&time)
            .map_err(|_| format!("malformed cloudEvents_time {time:?}"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    Ok(Event {
        id,
        // A retried message arrives through the default exchange with the queue name as its
        // routing key, so the type comes from the header first.
        event_type: attribute(headers, TYPE).unwrap_or_else(|| routing_key.to_string()),
        source: attribute(headers, SOURCE).unwrap_or_default(),
        time,
        payload: data.to_vec(),
        traceparent: text(headers, TRACEPARENT),
        tracestate: text(headers, TRACESTATE),
    })
}

/// A name checked against AMQP's 255-byte limit (lapin's `From` would panic).
pub(crate) fn short(name: &str) -> Result<ShortString, String> {
    ShortString::try_new(name).map_err(|_| format!("AMQP name too long: {name:?}"))
}

fn put(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(
        key.into(),
        AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
    );
}

/// A CloudEvents attribute under the current prefix, else under the legacy one.
fn attribute(headers: &FieldTable, name: &str) -> Option<String> {
    text(headers, &format!("{PREFIX}{name}"))
        .or_else(|| text(headers, &format!("{LEGACY_PREFIX}{name}")))
}

fn text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_properties() {
        let mut original = Event {
            id: Uuid::now_v7(),
            event_type: "account.created".into(),
            source: "/tenantry/customer-registry".into(),
            time: DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
                .map(|time| time.with_timezone(&Utc))
                .unwrap_or_default(),
            payload: vec![1, 2, 3],
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        let properties = properties(&original);
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some(CONTENT_TYPE)
        );
        let retried = republished(&properties, 3, None);
        assert_eq!(attempt(&properties), 1);
        assert_eq!(attempt(&retried), 3);
        let back = event("tenantry.group.retry", &retried, &[1, 2, 3]);
        original.tracestate = None;
        assert_eq!(back, Ok(original));
    }

    /// A message as another producer would make it by hand, with the attributes under `prefix`
    /// and no `message_id`, so only the headers can carry the id.
    fn by_hand(prefix: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in [
            ("specversion", "1.0"),
            ("id", "0193a3c0-0000-7000-8000-000000000001"),
            ("type", "account.created"),
            ("source", "/elsewhere"),
            ("time", "2025-01-02T03:04:05Z"),
        ] {
            put(&mut headers, &format!("{prefix}{name}"), value);
        }
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn reads_both_prefixes_and_writes_both_for_now() {
        for prefix in ["cloudEvents_", "cloudEvents:"] {
            let read = event("ignored.key", &by_hand(prefix), b"x").expect(prefix);
            assert_eq!(read.id.to_string(), "0193a3c0-0000-7000-8000-000000000001");
            assert_eq!(read.event_type, "account.created", "{prefix}");
            assert_eq!(read.source, "/elsewhere", "{prefix}");
            assert_eq!(
                read.time.to_rfc3339(),
                "2025-01-02T03:04:05+00:00",
                "{prefix}"
            );
        }
        let written = properties(&event("k", &by_hand("cloudEvents:"), b"x").expect("legacy"));
        let headers = written.headers().clone().unwrap_or_default();
        let names: Vec<String> = headers.inner().keys().map(|key| key.to_string()).collect();
        for name in ["specversion", "id", "type", "source", "time"] {
            assert!(names.contains(&format!("cloudEvents_{name}")), "{names:?}");
            // For replicas of the previous build during a rolling upgrade.
            assert!(names.contains(&format!("cloudEvents:{name}")), "{names:?}");
        }
    }
}
