//! Rate limits: resends per invitation, and unknown secrets per caller and per address. The
//! rules only: the store keeps the counts (in the service's database, shared by its replicas).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

/// How long until a resend is allowed, or `None` if it is allowed now: one e-mail per
/// `interval` since the last one was requested.
pub fn resend_wait(
    last_sent_time: DateTime<Utc>,
    interval: Duration,
    now: DateTime<Utc>,
) -> Option<StdDuration> {
    let next = last_sent_time + interval;
    if now >= next {
        return None;
    }
    // Round up to whole seconds so "retry in 0s" never happens.
    let wait = (next - now).to_std().unwrap_or_default();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(StdDuration::from_secs(seconds.max(1)))
}

/// Unknown secrets a user may try per window before LookupInvitation and AcceptInvitation
/// answer RESOURCE_EXHAUSTED.
pub const MAX_UNKNOWN_SECRETS: usize = 20;
/// Unknown secrets one network address may try per window, whoever it logs in as (a guesser
/// with many accounts is still one address).
pub const MAX_UNKNOWN_SECRETS_PER_ADDRESS: usize = 100;
/// The window of [`MAX_UNKNOWN_SECRETS`].
pub const UNKNOWN_SECRET_WINDOW: StdDuration = StdDuration::from_secs(600);

/// What an unknown-secret count is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuessScope {
    /// A caller: the token's `sub`.
    Caller,
    /// A network address: the peer's IP.
    Address,
}

impl GuessScope {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            GuessScope::Caller => "caller",
            GuessScope::Address => "address",
        }
    }
}

/// One key's unknown secrets in the window before the current one and in the current one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// In the previous window.
    pub previous: u64,
    /// In the current window.
    pub current: u64,
}

/// At most `max` unknown secrets per key in any `window`: a sliding window estimated from two
/// fixed ones (the counter of the current window plus the previous window's, weighted by how
/// much of it still overlaps the sliding window and rounded up), so the counting is one row
/// per key and window, shared by every replica, and a burst across a window boundary cannot
/// double the limit. Rounding up keeps the limit exact for bursts: `max` unknown secrets in
/// quick succession, in one window or across a boundary, are the last ones tried; the price is
/// a wait that may be longer than an exact log of every attempt would give.
///
/// Windows are aligned to the Unix epoch and named by their start in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuessLimit {
    max: u64,
    window_seconds: i64,
}

impl GuessLimit {
    /// At most `max` unknown secrets per key per `window` (whole seconds, at least one).
    pub fn new(max: usize, window: StdDuration) -> Self {
        Self {
            max: u64::try_from(max).unwrap_or(u64::MAX),
            window_seconds: i64::try_from(window.as_secs())
                .unwrap_or(i64::MAX / 2_000)
                .clamp(1, i64::MAX / 2_000),
        }
    }

    /// The start (Unix seconds) of the window `now` falls in.
    pub fn window_start(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp().div_euclid(self.window_seconds) * self.window_seconds
    }

    /// The start of the window before the one `now` falls in; counts of windows older than
    /// this are never read again.
    pub fn previous_window_start(&self, now: DateTime<Utc>) -> i64 {
        self.window_start(now) - self.window_seconds
    }

    /// How long a key with `counts` must wait before trying a secret at `now`; `None` if it may
    /// (assuming it fails no more meanwhile). Whole seconds, at least one.
    pub fn wait(&self, counts: WindowCounts, now: DateTime<Utc>) -> Option<StdDuration> {
        let window = i128::from(self.window_seconds) * 1000;
        let elapsed =
            i128::from(now.timestamp_millis()) - i128::from(self.window_start(now)) * 1000;
        let (previous, current, max) = (
            i128::from(counts.previous),
            i128::from(counts.current),
            i128::from(self.max),
        );
        // Refused while ⌈previous × (window − elapsed) / window⌉ + current ≥ max, i.e. while
        // previous × (window − elapsed) > (max − current − 1) × window.
        let room = max - current;
        if room > 0 && previous * (window - elapsed) <= (room - 1) * window {
            return None;
        }
        let wait_ms = if max == 0 {
            window - elapsed
        } else if room > 0 {
            // Later in this window the previous one weighs less: free from the first millisecond
            // t with previous × (window − t) ≤ (room − 1) × window.
            (window - (room - 1) * window / previous) - elapsed
        } else {
            // Only in the next window, once this one's count weighs less than max.
            (window - elapsed) + (window - (max - 1) * window / current)
        };
        let wait_ms = u64::try_from(wait_ms.max(1)).unwrap_or(u64::MAX);
        Some(StdDuration::from_secs(wait_ms.div_ceil(1000).max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_wait_for_the_interval() {
        let sent = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let minute = Duration::seconds(60);
        assert_eq!(
            resend_wait(sent, minute, sent),
            Some(StdDuration::from_secs(60))
        );
        assert_eq!(
            resend_wait(sent, minute, sent + Duration::milliseconds(59_500)),
            Some(StdDuration::from_secs(1))
        );
        assert_eq!(
            resend_wait(sent, minute, sent + Duration::seconds(20)),
            Some(StdDuration::from_secs(40))
        );
        assert_eq!(resend_wait(sent, minute, sent + minute), None);
        assert_eq!(resend_wait(sent, Duration::zero(), sent), None);
    }

    fn at_ms(milliseconds: i64) -> DateTime<Utc> {
        // 1_800_000_000 is a multiple of 60: the start of a one-minute window.
        DateTime::from_timestamp_millis(1_800_000_000_000 + milliseconds).unwrap()
    }

    fn counts(previous: u64, current: u64) -> WindowCounts {
        WindowCounts { previous, current }
    }

    #[test]
    fn windows_are_aligned() {
        let limit = GuessLimit::new(3, StdDuration::from_secs(60));
        assert_eq!(limit.window_start(at_ms(0)), 1_800_000_000);
        assert_eq!(limit.window_start(at_ms(59_999)), 1_800_000_000);
        assert_eq!(limit.window_start(at_ms(60_000)), 1_800_000_060);
        assert_eq!(limit.previous_window_start(at_ms(60_000)), 1_800_000_000);
        let zero = GuessLimit::new(3, StdDuration::ZERO);
        assert_eq!(
            zero.window_start(at_ms(1_500)),
            1_800_000_001,
            "at least a second"
        );
    }

    #[test]
    fn the_limit_is_exact_within_a_fresh_window() {
        let limit = GuessLimit::new(3, StdDuration::from_secs(60));
        for current in 0..3 {
            assert_eq!(limit.wait(counts(0, current), at_ms(10_000)), None);
        }
        // The third unknown secret was the last: wait for the window to end (50 s), and a
        // third of the next, until the three weigh less than three.
        assert_eq!(
            limit.wait(counts(0, 3), at_ms(10_000)),
            Some(StdDuration::from_secs(50 + 20))
        );
        assert_eq!(
            limit.wait(counts(0, 7), at_ms(10_000)),
            Some(StdDuration::from_secs(50 + 43)),
            "far over the limit: until the 7 weigh less than 3"
        );
    }

    #[test]
    fn the_previous_window_weighs_what_still_overlaps() {
        let limit = GuessLimit::new(4, StdDuration::from_secs(60));
        // 4 in the last window: 15 s in, they still weigh 3; one more is allowed.
        assert_eq!(limit.wait(counts(4, 0), at_ms(15_000)), None);
        // With that one the estimate is 4 until the 4 weigh 2, 30 s in.
        assert_eq!(
            limit.wait(counts(4, 1), at_ms(15_000)),
            Some(StdDuration::from_secs(15))
        );
        assert_eq!(
            limit.wait(counts(4, 1), at_ms(5_000)),
            Some(StdDuration::from_secs(25))
        );
        assert_eq!(limit.wait(counts(4, 1), at_ms(30_000)), None);
        // A part of a count still weighs a whole one.
        assert_eq!(
            limit.wait(counts(4, 3), at_ms(59_999)),
            Some(StdDuration::from_secs(1))
        );
    }

    #[test]
    fn a_burst_across_a_boundary_counts_in_full() {
        let limit = GuessLimit::new(4, StdDuration::from_secs(60));
        // Two just before the boundary, two just after: the fourth was the last.
        assert!(limit.wait(counts(2, 2), at_ms(1_000)).is_some());
        assert_eq!(limit.wait(counts(2, 1), at_ms(1_000)), None);
    }

    #[test]
    fn waits_end_where_the_estimate_drops_below_the_limit() {
        let limit = GuessLimit::new(5, StdDuration::from_secs(600));
        for previous in 0..12 {
            for current in 0..12 {
                for elapsed in [0, 1, 999, 1_000, 299_999, 300_000, 599_999] {
                    let now = at_ms(elapsed);
                    let counts = counts(previous, current);
                    let Some(wait) = limit.wait(counts, now) else {
                        continue;
                    };
                    let later = now + Duration::from_std(wait).unwrap();
                    let then = if limit.window_start(later) == limit.window_start(now) {
                        counts
                    } else if limit.previous_window_start(later) == limit.window_start(now) {
                        WindowCounts {
                            previous: current,
                            current: 0,
                        }
                    } else {
                        WindowCounts::default()
                    };
                    assert_eq!(limit.wait(then, later), None, "{counts:?} at {elapsed} ms");
                    let earlier = later - Duration::seconds(1);
                    if earlier > now && limit.window_start(earlier) == limit.window_start(now) {
                        assert!(
                            limit.wait(counts, earlier).is_some(),
                            "{counts:?} at {elapsed} ms: a second less is too early"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let limit = GuessLimit::new(0, StdDuration::from_secs(60));
        assert_eq!(
            limit.wait(counts(0, 0), at_ms(59_500)),
            Some(StdDuration::from_secs(1))
        );
    }
}
