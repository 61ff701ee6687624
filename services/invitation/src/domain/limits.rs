//! Rate limits: resends per invitation, and unknown secrets per caller and per address.

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

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
/// Keys tracked at most (oldest entries are dropped beyond this, bounding memory).
const MAX_TRACKED_USERS: usize = 100_000;

/// Counts each key's (a user, an address) recent unknown secrets (per process: a brute-force
/// guard, not an accounting system; 256-bit secrets make guessing hopeless anyway, the limit
/// just stops a client from hammering the database).
#[derive(Debug)]
pub struct GuessLimiter {
    max: usize,
    window: StdDuration,
    failures: HashMap<String, Vec<Instant>>,
}

impl Default for GuessLimiter {
    fn default() -> Self {
        Self::new(MAX_UNKNOWN_SECRETS, UNKNOWN_SECRET_WINDOW)
    }
}

impl GuessLimiter {
    /// At most `max` unknown secrets per user per `window`.
    pub fn new(max: usize, window: StdDuration) -> Self {
        Self {
            max,
            window,
            failures: HashMap::new(),
        }
    }

    /// How long `user` must wait before trying a secret at `now`; `None` if they may.
    pub fn check(&mut self, user: &str, now: Instant) -> Option<StdDuration> {
        let window = self.window;
        let entry = self.failures.get_mut(user)?;
        entry.retain(|time| now.saturating_duration_since(*time) < window);
        if entry.len() < self.max {
            if entry.is_empty() {
                self.failures.remove(user);
            }
            return None;
        }
        let oldest = entry.iter().min().copied()?;
        let wait = window.saturating_sub(now.saturating_duration_since(oldest));
        Some(wait.max(StdDuration::from_secs(1)))
    }

    /// Records that `user` tried an unknown secret at `now`.
    pub fn record_failure(&mut self, user: &str, now: Instant) {
        if self.failures.len() >= MAX_TRACKED_USERS && !self.failures.contains_key(user) {
            let window = self.window;
            self.failures.retain(|_, times| {
                times.retain(|time| now.saturating_duration_since(*time) < window);
                !times.is_empty()
            });
            if self.failures.len() >= MAX_TRACKED_USERS {
                self.failures.clear();
            }
        }
        self.failures.entry(user.to_string()).or_default().push(now);
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

    #[test]
    fn unknown_secrets_are_limited_per_user_and_window() {
        let mut limiter = GuessLimiter::new(3, StdDuration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("users/mallory", start), None);
            limiter.record_failure("users/mallory", start);
        }
        let wait = limiter
            .check("users/mallory", start + StdDuration::from_secs(10))
            .expect("limited");
        assert_eq!(wait, StdDuration::from_secs(50));
        // Other users are not affected.
        assert_eq!(limiter.check("users/alice", start), None);
        // After the window the user may try again.
        assert_eq!(
            limiter.check("users/mallory", start + StdDuration::from_secs(61)),
            None
        );
    }
}
