//! Conversions between stored UTC times and `google.protobuf.Timestamp`.

use chrono::{DateTime, Utc};

/// A protobuf timestamp for a stored time.
pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// An optional protobuf timestamp for an optional stored time.
pub fn to_optional_timestamp(time: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    time.map(to_timestamp)
}

/// The current time truncated to microseconds, the precision both SQLite and PostgreSQL keep,
/// so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
