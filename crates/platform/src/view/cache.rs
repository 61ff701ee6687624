//! A bounded map of answers kept with their [`Ticket`]s.
//!
//! Keys are 128-bit keyed hashes of what the answer depends on (two SipHash-1-3 with random
//! per-process keys), so an entry costs the same whatever the length of user and account ids, and
//! no caller can pick ids that collide with someone else's entry.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::IntCounter;

use super::{LocalView, Ticket};

/// Shards of the map; each has its own lock, so concurrent calls rarely wait on each other.
const SHARDS: usize = 64;

/// One shard of a cache: its entries behind one lock.
type Shard<V> = Mutex<HashMap<CacheKey, Slot<V>>>;

/// The key of a cached answer: a keyed 128-bit hash of its parts (see [`ViewCache::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

/// Answers of type `V`, at most the view's capacity of them, served only while their ticket is
/// current and they are younger than the view's maximum age.
#[derive(Debug)]
pub struct ViewCache<V> {
    view: LocalView,
    shards: Box<[Shard<V>]>,
    per_shard: usize,
    hashers: (RandomState, RandomState),
    /// Hit and miss counters, if the view records metrics.
    counters: Option<(IntCounter, IntCounter)>,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    ticket: Ticket,
    inserted: Instant,
}

impl<V: Clone> ViewCache<V> {
    /// An empty cache following `view`; `name` labels its metrics (`decisions`, `accounts`, …).
    pub fn new(view: &LocalView, name: &str) -> Self {
        let capacity = view.settings().capacity;
        Self {
            view: view.clone(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hashers: (RandomState::new(), RandomState::new()),
            counters: view.lookup_counters(name),
        }
    }

    /// The view this cache follows.
    pub fn view(&self) -> &LocalView {
        &self.view
    }

    /// The key of an answer that depends on `parts` (each part is length-prefixed, so
    /// `["ab", "c"]` and `["a", "bc"]` differ).
    pub fn key(&self, parts: &[&[u8]]) -> CacheKey {
        let hash = |state: &RandomState| {
            let mut hasher = state.build_hasher();
            for part in parts {
                hasher.write_usize(part.len());
                hasher.write(part);
            }
            hasher.finish()
        };
        CacheKey((u128::from(hash(&self.hashers.0)) << 64) | u128::from(hash(&self.hashers.1)))
    }

    /// The answer kept for `key`, if its ticket is still current and it is not too old.
    pub fn get(&self, key: CacheKey) -> Option<V> {
        let found = self.lookup(key);
        if let Some((hits, misses)) = &self.counters {
            match found {
                Some(_) => hits.inc(),
                None => misses.inc(),
            }
        }
        found
    }

    fn lookup(&self, key: CacheKey) -> Option<V> {
        if !self.view.is_fresh() {
            return None;
        }
        let mut shard = self.shard(key);
        let slot = shard.get(&key)?;
        if self.usable(slot) {
            return Some(slot.value.clone());
        }
        shard.remove(&key);
        None
    }

    /// Keeps `value` for `key`, read from the source of record after `ticket` was taken. An
    /// answer whose ticket is already void is not kept.
    pub fn insert(&self, key: CacheKey, value: V, ticket: Ticket) {
        if self.per_shard == 0 || !self.view.is_current(&ticket) {
            return;
        }
        let mut shard = self.shard(key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            self.evict_one(&mut shard);
        }
        shard.insert(
            key,
            Slot {
                value,
                ticket,
                inserted: Instant::now(),
            },
        );
    }

    /// Forgets `key` (the writing replica, right after its commit, before any event).
    pub fn remove(&self, key: CacheKey) {
        self.shard(key).remove(&key);
    }

    /// Entries held now, current or not (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn usable(&self, slot: &Slot<V>) -> bool {
        slot.inserted.elapsed() < self.view.settings().max_age && self.view.is_current(&slot.ticket)
    }

    /// Makes room: a void entry among the first few if there is one, otherwise an arbitrary
    /// one (the map's order is its hash order, so "first" is random).
    fn evict_one(&self, shard: &mut HashMap<CacheKey, Slot<V>>) {
        let victim = shard
            .iter()
            .take(8)
            .find(|(_, slot)| !self.usable(slot))
            .or_else(|| shard.iter().next())
            .map(|(key, _)| *key);
        if let Some(key) = victim {
            shard.remove(&key);
        }
    }

    fn shard(&self, key: CacheKey) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Slot<V>>> {
        self.shards[(key.0 as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ViewSettings;
    use super::*;

    fn view(capacity: usize, max_age: Duration) -> LocalView {
        let view = LocalView::new(ViewSettings { capacity, max_age });
        view.set_fresh(true);
        view
    }

    #[test]
    fn answers_are_served_until_an_event_voids_them() {
        let view = view(1000, Duration::from_secs(60));
        let cache = ViewCache::new(&view, "test");
        let key = cache.key(&[b"alice", b"acme", b"ACCOUNT_READ"]);
        let ticket = view.ticket(Some("alice"), Some("acme")).unwrap();
        cache.insert(key, 7u8, ticket);
        assert_eq!(cache.get(key), Some(7));
        view.drop_user("alice");
        assert_eq!(cache.get(key), None);
        assert_eq!(cache.len(), 0, "a void entry is removed when met");
    }

    #[test]
    fn an_answer_read_before_an_event_is_never_kept() {
        let view = view(1000, Duration::from_secs(60));
        let cache = ViewCache::new(&view, "test");
        let key = cache.key(&[b"alice", b"acme"]);
        let ticket = view.ticket(Some("alice"), Some("acme")).unwrap();
        view.drop_account("acme"); // the revocation's event arrives while the answer is read
        cache.insert(key, 1u8, ticket);
        assert_eq!(cache.get(key), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn nothing_is_served_while_the_view_is_not_fresh() {
        let view = view(1000, Duration::from_secs(60));
        let cache = ViewCache::new(&view, "test");
        let key = cache.key(&[b"alice"]);
        cache.insert(key, 1u8, view.ticket(Some("alice"), None).unwrap());
        view.set_fresh(false);
        assert_eq!(cache.get(key), None);
        view.set_fresh(true);
        assert_eq!(
            cache.get(key),
            None,
            "regaining freshness does not revive it"
        );
    }

    #[test]
    fn entries_older_than_the_maximum_age_are_a_miss() {
        let view = view(1000, Duration::from_millis(20));
        let cache = ViewCache::new(&view, "test");
        let key = cache.key(&[b"alice"]);
        cache.insert(key, 1u8, view.ticket(Some("alice"), None).unwrap());
        assert_eq!(cache.get(key), Some(1));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(key), None);
    }

    #[test]
    fn the_capacity_bounds_the_entries() {
        let view = view(640, Duration::from_secs(60));
        let cache = ViewCache::new(&view, "test");
        for user in 0..10_000u32 {
            let user = user.to_string();
            let key = cache.key(&[user.as_bytes()]);
            cache.insert(key, 1u8, view.ticket(Some(&user), None).unwrap());
        }
        assert!(cache.len() <= 640, "{} entries", cache.len());
        assert!(cache.len() >= 600, "{} entries", cache.len());
    }

    #[test]
    fn keys_depend_on_every_part_and_its_boundaries() {
        let view = view(10, Duration::from_secs(60));
        let cache: ViewCache<u8> = ViewCache::new(&view, "test");
        assert_ne!(cache.key(&[b"ab", b"c"]), cache.key(&[b"a", b"bc"]));
        assert_eq!(cache.key(&[b"ab", b"c"]), cache.key(&[b"ab", b"c"]));
    }
}
