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
    stored_precision(Utc::now())
}

/// `time` truncated to microseconds, as both databases store it.
pub fn stored_precision(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// The first second a `google.protobuf.Timestamp` may hold: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// The last second a `google.protobuf.Timestamp` may hold: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// The time a request's timestamp in `field` names. Values outside what a
/// `google.protobuf.Timestamp` may hold (0001-01-01 to 9999-12-31, nanos 0 to 999,999,999) are
/// INVALID_ARGUMENT naming `field`.
pub fn from_timestamp(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, crate::ApiError> {
    let in_range = (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds);
    u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| in_range && *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .ok_or_else(|| {
            crate::ApiError::invalid_field(
                field,
                "not a valid timestamp (0001-01-01 to 9999-12-31, nanos below one second)",
            )
        })
}

/// The longest a `google.protobuf.Duration` may be: 10,000 years, in seconds.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

/// The span a request's duration in `field` names. A value a `google.protobuf.Duration` may not
/// hold (beyond ±10,000 years, nanos of a second or more, or nanos of the other sign than the
/// seconds) is INVALID_ARGUMENT naming `field`.
pub fn from_duration(
    field: &str,
    duration: &prost_types::Duration,
) -> Result<chrono::Duration, crate::ApiError> {
    let (seconds, nanos) = (duration.seconds, duration.nanos);
    let valid = (-MAX_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&seconds)
        && (-999_999_999..=999_999_999).contains(&nanos)
        && !(seconds > 0 && nanos < 0 || seconds < 0 && nanos > 0);
    if !valid {
        return Err(crate::ApiError::invalid_field(
            field,
            "not a valid duration (at most 10,000 years; nanos below one second, with the sign \
             of the seconds)",
        ));
    }
    Ok(chrono::Duration::seconds(seconds) + chrono::Duration::nanoseconds(i64::from(nanos)))
}

/// A uniformly random number in [0, 1), for jitter: the low 62 bits of a v4 UUID (its version
/// and variant bits sit above them, so they are all random).
pub(crate) fn random_fraction() -> f64 {
    const RANDOM_BITS: u32 = 62;
    let bits = uuid::Uuid::new_v4().as_u128() as u64 & ((1u64 << RANDOM_BITS) - 1);
    bits as f64 / (1u64 << RANDOM_BITS) as f64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations_within_the_protobuf_range() {
        let at = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(
            from_duration("d", &at(90, 500_000_000)).unwrap(),
            chrono::Duration::milliseconds(90_500)
        );
        assert_eq!(
            from_duration("d", &at(-1, -1)).unwrap(),
            -chrono::Duration::nanoseconds(1_000_000_001)
        );
        for bad in [
            at(1, -1),
            at(-1, 1),
            at(0, 1_000_000_000),
            at(MAX_DURATION_SECONDS + 1, 0),
            at(i64::MIN, 0),
            at(0, i32::MIN),
        ] {
            let error = from_duration("access_duration", &bad).unwrap_err();
            assert_eq!(error.field_violations()[0].0, "access_duration", "{bad:?}");
        }
    }

    #[test]
    fn timestamps_within_the_protobuf_range() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(
            from_timestamp("t", &at(1_700_000_000, 5))
                .unwrap()
                .timestamp(),
            1_700_000_000
        );
        for (seconds, nanos) in [
            (MIN_TIMESTAMP_SECONDS, 0),
            (MAX_TIMESTAMP_SECONDS, 999_999_999),
        ] {
            assert!(from_timestamp("t", &at(seconds, nanos)).is_ok());
        }
        for (seconds, nanos) in [
            (0, -1),
            (0, 1_000_000_000),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (i64::MAX, 0),
            (i64::MIN, 0),
        ] {
            let error = from_timestamp("t", &at(seconds, nanos)).unwrap_err();
            assert!(error.message().starts_with("t:"), "{seconds} {nanos}");
        }
    }

    proptest! {
        /// Every value is either refused naming the field or converts back to itself.
        #[test]
        fn timestamps_round_trip_or_are_refused(seconds in any::<i64>(), nanos in any::<i32>()) {
            let timestamp = prost_types::Timestamp { seconds, nanos };
            match from_timestamp("t", &timestamp) {
                Ok(time) => prop_assert_eq!(to_timestamp(time), timestamp),
                Err(error) => prop_assert_eq!(error.code(), tonic::Code::InvalidArgument),
            }
        }
    }
}
