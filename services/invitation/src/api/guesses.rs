//! The guard against guessing invitation secrets: LookupInvitation and AcceptInvitation count
//! unknown secrets per caller (the token's `sub`) and, separately, per network address (the
//! peer's IP), so neither one login hammering from many addresses nor many logins from one
//! address get more than their share. Either limit answers RESOURCE_EXHAUSTED with RetryInfo.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::InvitationError;
use crate::domain::limits::GuessLimiter;

/// The two limits of one process.
#[derive(Debug)]
pub struct GuessGuard {
    by_caller: Mutex<GuessLimiter>,
    by_address: Mutex<GuessLimiter>,
}

impl GuessGuard {
    /// At most `per_caller` unknown secrets per caller and `per_address` per address, each per
    /// `window`.
    pub fn new(per_caller: usize, per_address: usize, window: Duration) -> Self {
        Self {
            by_caller: Mutex::new(GuessLimiter::new(per_caller, window)),
            by_address: Mutex::new(GuessLimiter::new(per_address, window)),
        }
    }

    /// Refuses the attempt while `caller` or `address` is over its limit: the longer wait of
    /// the two.
    pub fn check(&self, caller: &str, address: Option<IpAddr>) -> Result<(), InvitationError> {
        let now = Instant::now();
        let caller_wait = check(&self.by_caller, caller, now);
        let address_wait = address.and_then(|ip| check(&self.by_address, &ip.to_string(), now));
        match caller_wait.max(address_wait) {
            Some(retry_after) => Err(InvitationError::TooManyGuesses { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts an unknown secret against `caller` and `address`.
    pub fn record_failure(&self, caller: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        if let Ok(mut limiter) = self.by_caller.lock() {
            limiter.record_failure(caller, now);
        }
        if let (Some(ip), Ok(mut limiter)) = (address, self.by_address.lock()) {
            limiter.record_failure(&ip.to_string(), now);
        }
    }
}

fn check(limiter: &Mutex<GuessLimiter>, key: &str, now: Instant) -> Option<Duration> {
    limiter
        .lock()
        .map(|mut limiter| limiter.check(key, now))
        .unwrap_or(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const ELSEWHERE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    fn limited(guard: &GuessGuard, caller: &str, address: Option<IpAddr>) -> bool {
        matches!(
            guard.check(caller, address),
            Err(InvitationError::TooManyGuesses { .. })
        )
    }

    #[test]
    fn a_caller_is_limited_from_every_address() {
        let guard = GuessGuard::new(3, 100, Duration::from_secs(60));
        for address in [HOME, ELSEWHERE, None] {
            assert!(!limited(&guard, "mallory", address));
            guard.record_failure("mallory", address);
        }
        assert!(limited(&guard, "mallory", HOME));
        assert!(limited(&guard, "mallory", None));
        assert!(!limited(&guard, "alice", HOME), "other callers go on");
    }

    #[test]
    fn an_address_is_limited_whoever_logs_in() {
        let guard = GuessGuard::new(3, 5, Duration::from_secs(60));
        for n in 0..5 {
            let caller = format!("sock-puppet-{n}");
            assert!(!limited(&guard, &caller, HOME));
            guard.record_failure(&caller, HOME);
        }
        assert!(limited(&guard, "fresh-login", HOME));
        assert!(!limited(&guard, "fresh-login", ELSEWHERE));
        assert!(
            !limited(&guard, "fresh-login", None),
            "no address: only the caller limit applies"
        );
    }
}
