//! Tokens already verified, so a caller's next call with the same token costs a hash and a map
//! look-up instead of a signature check (an ES256/RS256 verification is tens of microseconds).
//!
//! Keyed by the SHA-256 of the token's text (the token itself is never stored); the value is the
//! [`Principal`] verification produced and the token's `exp`. An entry is served only while the
//! clock is before `exp`: from `exp` on the token goes through full verification again, which
//! applies the leeway exactly as it always did, so a cached token is never accepted when the
//! uncached path would refuse it. A token refused for its `nbf` (not valid yet) is not cached, and
//! once valid it stays valid until `exp`, so the cache needs no `nbf` of its own.
//!
//! Bounded: at most `capacity` entries in up to [`MAX_SHARDS`] mutex-guarded shards. A full shard
//! drops its expired entries, then arbitrary ones (an eighth of the shard, so a full cache does not
//! rescan on every insert). A principal with more than [`MAX_CACHED_TEXT`] bytes of text is not
//! cached, so an entry takes at most about 1.2 KiB.
//!
//! [`TokenCache::clear`] empties it (the JWKS lost or changed a key). A verification that started
//! before a clear cannot put its result in afterwards: inserts carry the generation read before
//! verifying and are dropped when it has moved on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::Principal;

/// Most shards; fewer when the capacity is smaller.
const MAX_SHARDS: usize = 16;
/// Principals with more text than this (sub, e-mail and names) are not cached.
const MAX_CACHED_TEXT: usize = 1024;

/// The SHA-256 of a token's text.
pub(super) type TokenHash = [u8; 32];

/// The cache key of `token`.
pub(super) fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The outcome of verifying one token.
#[derive(Clone, Debug)]
pub(super) struct Verified {
    /// Who the token names.
    pub(super) principal: Principal,
    /// The token's `exp` (seconds since the epoch); the entry is served while the clock is before it.
    pub(super) expires_at: u64,
    /// Whether a key of the JWKS verified it: such entries are served only while the JWKS is fresh
    /// (fetched within three refresh intervals), so a replica that cannot reach the provider stops
    /// trusting them; a scheduled fetch that shows a key gone empties the cache.
    pub(super) from_jwks: bool,
}

/// Verified tokens by the hash of their text.
pub(super) struct TokenCache {
    shards: Box<[Mutex<HashMap<TokenHash, Verified>>]>,
    per_shard: usize,
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub(super) fn new(capacity: usize) -> Self {
        let shard_count = capacity.min(MAX_SHARDS);
        let per_shard = capacity.checked_div(shard_count).unwrap_or(0);
        Self {
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard,
            generation: AtomicU64::new(0),
        }
    }

    /// Whether tokens are cached at all.
    pub(super) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The current generation; pass it to [`TokenCache::insert`] after verifying.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn shard(&self, hash: &TokenHash) -> MutexGuard<'_, HashMap<TokenHash, Verified>> {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&hash[..8]);
        let index = (u64::from_le_bytes(prefix) % self.shards.len() as u64) as usize;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The principal of a token verified before, if its entry is still good at `now` (seconds since
    /// the epoch). `jwks_fresh` is asked only for entries verified with a JWKS key.
    pub(super) fn get(
        &self,
        hash: &TokenHash,
        now: u64,
        jwks_fresh: impl FnOnce() -> bool,
    ) -> Option<Principal> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shard(hash);
        let entry = shard.get(hash)?;
        if now >= entry.expires_at {
            shard.remove(hash);
            return None;
        }
        if entry.from_jwks && !jwks_fresh() {
            return None;
        }
        Some(entry.principal.clone())
    }

    /// Remembers a verified token, unless the cache was cleared since `generation` was read, the
    /// token has expired at `now`, or its principal is too large to keep.
    pub(super) fn insert(&self, hash: TokenHash, verified: Verified, generation: u64, now: u64) {
        if !self.enabled()
            || now >= verified.expires_at
            || text_len(&verified.principal) > MAX_CACHED_TEXT
        {
            return;
        }
        let mut shard = self.shard(&hash);
        // Under the shard's lock: a clear either moved the generation already (drop this result)
        // or empties this shard after us.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, entry| now < entry.expires_at);
            if shard.len() >= self.per_shard {
                let keep = self.per_shard - 1 - self.per_shard / 8;
                let evicted: Vec<TokenHash> =
                    shard.keys().take(shard.len() - keep).copied().collect();
                for key in &evicted {
                    shard.remove(key);
                }
            }
        }
        shard.insert(hash, verified);
    }

    /// Forgets every token: each is verified again on its next use.
    pub(super) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for shard in &*self.shards {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clear();
        }
    }

    /// Entries held, expired ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map(|shard| shard.len()).unwrap_or(0))
            .sum()
    }
}

/// Bytes of text a principal holds.
fn text_len(principal: &Principal) -> usize {
    match principal {
        Principal::User(user) => {
            user.sub.len()
                + user.email.as_ref().map_or(0, String::len)
                + user.given_name.as_ref().map_or(0, String::len)
                + user.family_name.as_ref().map_or(0, String::len)
        }
        Principal::Service(service) => service.name.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserIdentity;

    fn verified(sub: &str, expires_at: u64) -> Verified {
        Verified {
            principal: Principal::User(UserIdentity {
                sub: sub.into(),
                email: None,
                email_verified: false,
                given_name: None,
                family_name: None,
                operator: false,
            }),
            expires_at,
            from_jwks: false,
        }
    }

    #[test]
    fn serves_entries_until_they_expire() {
        let cache = TokenCache::new(100);
        cache.insert(hash("a"), verified("a", 1_000), cache.generation(), 900);
        assert!(cache.get(&hash("a"), 999, || true).is_some());
        assert!(cache.get(&hash("a"), 1_000, || true).is_none());
        // The expired entry is gone, not just skipped.
        assert_eq!(cache.len(), 0);
        // Already expired: not stored.
        cache.insert(hash("b"), verified("b", 1_000), cache.generation(), 1_000);
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&hash("unknown"), 0, || true).is_none());
    }

    #[test]
    fn jwks_entries_need_a_fresh_jwks() {
        let cache = TokenCache::new(100);
        let mut entry = verified("a", 1_000);
        entry.from_jwks = true;
        cache.insert(hash("a"), entry, cache.generation(), 0);
        assert!(cache.get(&hash("a"), 1, || true).is_some());
        assert!(cache.get(&hash("a"), 1, || false).is_none());
        // HS256 entries never ask.
        cache.insert(hash("b"), verified("b", 1_000), cache.generation(), 0);
        assert!(cache.get(&hash("b"), 1, || panic!("asked")).is_some());
    }

    #[test]
    fn size_stays_within_the_capacity() {
        for capacity in [1, 5, 16, 17, 100, 1_000] {
            let cache = TokenCache::new(capacity);
            for index in 0..capacity * 5 {
                let token = format!("token-{index}");
                cache.insert(
                    hash(&token),
                    verified(&token, 10_000),
                    cache.generation(),
                    0,
                );
                assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
                // The newest entry is always kept.
                assert!(cache.get(&hash(&token), 1, || true).is_some());
            }
            assert!(cache.len() >= capacity / 2, "{capacity}: {}", cache.len());
        }
    }

    #[test]
    fn a_full_shard_drops_expired_entries_first() {
        let cache = TokenCache::new(1);
        cache.insert(hash("old"), verified("old", 10), cache.generation(), 0);
        cache.insert(hash("new"), verified("new", 100), cache.generation(), 50);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&hash("new"), 51, || true).is_some());
    }

    #[test]
    fn zero_disables_and_large_principals_are_not_kept() {
        let cache = TokenCache::new(0);
        assert!(!cache.enabled());
        cache.insert(hash("a"), verified("a", 1_000), cache.generation(), 0);
        assert!(cache.get(&hash("a"), 1, || true).is_none());
        let cache = TokenCache::new(10);
        let big = "x".repeat(MAX_CACHED_TEXT + 1);
        cache.insert(hash(&big), verified(&big, 1_000), cache.generation(), 0);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn clear_empties_and_refuses_verifications_that_started_before() {
        let cache = TokenCache::new(100);
        let before = cache.generation();
        cache.insert(hash("a"), verified("a", 1_000), before, 0);
        cache.clear();
        assert_eq!(cache.len(), 0);
        // A verification that read the generation before the clear finishes afterwards.
        cache.insert(hash("b"), verified("b", 1_000), before, 0);
        assert_eq!(cache.len(), 0);
        cache.insert(hash("b"), verified("b", 1_000), cache.generation(), 0);
        assert_eq!(cache.len(), 1);
    }
}
