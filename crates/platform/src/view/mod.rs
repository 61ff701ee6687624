//! The local view (DESIGN.md §9): membership's and the registry's answers kept in memory in the
//! process that needs them, dropped by the `member.*` / `account.*` events that announce a
//! change, and trusted only while this process is provably hearing those events.
//!
//! The rules, in one place:
//! - **Fresh or bypassed.** [`LocalView::is_fresh`] is false until the event feed (see
//!   `tenantry_events::view_feed`) has a bound subscription and recent heartbeats from every
//!   replica that can revoke access; while it is false no cached answer is served and none is
//!   kept. Losing freshness and regaining it both drop everything ([`LocalView::set_fresh`]).
//! - **Tickets, not TTLs.** A reader takes a [`Ticket`] *before* it asks the source of record,
//!   and the answer is kept with it. An event bumps the generation of its user's and account's
//!   stripe; an answer whose ticket's generations moved is never served, so an answer read before
//!   a revocation cannot outlive the revocation's event, even if it arrives after it.
//! - **Bounded.** Each [`ViewCache`] holds at most its capacity (random eviction); entries older
//!   than the maximum age are a miss (the last backstop).

mod cache;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use crate::metrics::Metrics;

pub use cache::{CacheKey, ViewCache};

/// Generation stripes per dimension: events bump a stripe, so two keys sharing one only cost
/// each other a miss. 16,384 × 8 bytes × 2 = 256 KiB per process (an idle process's memory
/// counts: see the footprint in docs/benchmarks.md).
const STRIPES: usize = 1 << 14;

/// How a view is sized and bounded (settings of the node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewSettings {
    /// Most entries per cache (decisions, accounts); 0 turns caching off.
    pub capacity: usize,
    /// The oldest entry ever served, whatever the events say.
    pub max_age: Duration,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            capacity: 200_000,
            max_age: Duration::from_secs(300),
        }
    }
}

/// The state every cache of a process shares: whether it is fresh, and the generations events
/// bump. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalView {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ViewSettings,
    fresh: AtomicBool,
    /// Until when the view may be trusted without its feed saying so again (nanoseconds after
    /// `created`): freshness expires by itself if the feed stalls.
    fresh_until: AtomicU64,
    created: Instant,
    /// Bumped by [`LocalView::drop_all`]: every ticket taken before is void.
    epoch: AtomicU64,
    users: Box<[AtomicU64]>,
    accounts: Box<[AtomicU64]>,
    stripe_hasher: RandomState,
    metrics: OnceLock<ViewMetrics>,
}

/// `tenantry_view_fresh` and `tenantry_view_lookups_total{cache, outcome}`.
#[derive(Debug)]
struct ViewMetrics {
    fresh: IntGauge,
    lookups: IntCounterVec,
}

/// What a reader saw before asking the source of record; the answer is kept with it and served
/// only while nothing it depends on has changed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    user: Option<(u32, u64)>,
    account: Option<(u32, u64)>,
}

impl LocalView {
    /// A view that is not fresh until its feed says so.
    pub fn new(settings: ViewSettings) -> Self {
        let stripes = || (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                settings,
                fresh: AtomicBool::new(false),
                fresh_until: AtomicU64::new(u64::MAX),
                created: Instant::now(),
                epoch: AtomicU64::new(0),
                users: stripes(),
                accounts: stripes(),
                stripe_hasher: RandomState::new(),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Records `tenantry_view_fresh` (1 while cached answers are served) and
    /// `tenantry_view_lookups_total{cache, outcome="hit"|"miss"}` in `metrics`. Call before the
    /// caches are made (each takes its counters once).
    pub fn record_into(&self, metrics: &Metrics) {
        let fresh = IntGauge::new(
            "tenantry_view_fresh",
            "1 while the local view serves cached answers (its event feed is bound and every \
             revoking replica's heartbeat is recent), 0 otherwise",
        )
        .expect("valid metric");
        let lookups = IntCounterVec::new(
            Opts::new(
                "tenantry_view_lookups_total",
                "Lookups in the local view's caches, by cache and outcome (hit, miss)",
            ),
            &["cache", "outcome"],
        )
        .expect("valid metric");
        let registry = metrics.registry();
        if registry.register(Box::new(fresh.clone())).is_err()
            || registry.register(Box::new(lookups.clone())).is_err()
        {
            tracing::warn!("the local view's metrics are registered already");
            return;
        }
        fresh.set(i64::from(self.is_fresh()));
        let _ = self.inner.metrics.set(ViewMetrics { fresh, lookups });
    }

    /// The hit and miss counters of the cache named `cache`, if metrics are recorded.
    pub(crate) fn lookup_counters(&self, cache: &str) -> Option<(IntCounter, IntCounter)> {
        let metrics = self.inner.metrics.get()?;
        Some((
            metrics.lookups.with_label_values(&[cache, "hit"]),
            metrics.lookups.with_label_values(&[cache, "miss"]),
        ))
    }

    /// The view's settings.
    pub fn settings(&self) -> ViewSettings {
        self.inner.settings
    }

    /// Whether cached answers may be served now.
    pub fn is_fresh(&self) -> bool {
        let inner = &self.inner;
        inner.settings.capacity > 0
            && inner.fresh.load(Ordering::SeqCst)
            && (inner.created.elapsed().as_nanos() as u64)
                < inner.fresh_until.load(Ordering::SeqCst)
    }

    /// Marks the view fresh until `until` (and no longer, unless told again), or not fresh.
    /// The feed calls it on every change and tick; see [`LocalView::set_fresh`].
    pub fn set_fresh_until(&self, until: Option<Instant>) {
        let inner = &self.inner;
        // A deadline that expired before this call counts as a loss: whatever was kept is
        // dropped on the way back (checked before the new deadline is stored).
        if inner.fresh.load(Ordering::SeqCst) && !self.is_fresh() {
            self.set_fresh(false);
        }
        if let Some(until) = until {
            let nanos = until.saturating_duration_since(inner.created).as_nanos() as u64;
            inner.fresh_until.store(nanos, Ordering::SeqCst);
        }
        self.set_fresh(until.is_some_and(|until| until > Instant::now()));
    }

    /// Marks the view fresh or not. Any change drops every cached answer: on the way down
    /// because events may be missed from now on, on the way up because some were.
    pub fn set_fresh(&self, fresh: bool) {
        if self.inner.fresh.swap(fresh, Ordering::SeqCst) != fresh {
            self.drop_all();
            if let Some(metrics) = self.inner.metrics.get() {
                metrics.fresh.set(i64::from(fresh));
            }
            tracing::info!(
                fresh,
                "local view freshness changed; cached answers dropped"
            );
        }
    }

    /// A ticket for an answer about `user` (a token `sub`) and/or `account` (an account id),
    /// or `None` when the view is not fresh (the answer must then not be kept).
    pub fn ticket(&self, user: Option<&str>, account: Option<&str>) -> Option<Ticket> {
        if !self.is_fresh() {
            return None;
        }
        let ticket = Ticket {
            epoch: self.inner.epoch.load(Ordering::SeqCst),
            user: user.map(|user| self.generation(&self.inner.users, user)),
            account: account.map(|account| self.generation(&self.inner.accounts, account)),
        };
        // Freshness lost while the ticket was taken bumps the epoch; checking again closes that
        // interleaving.
        self.is_current(&ticket).then_some(ticket)
    }

    /// Whether an answer kept with `ticket` may still be served.
    pub fn is_current(&self, ticket: &Ticket) -> bool {
        let inner = &self.inner;
        self.is_fresh()
            && inner.epoch.load(Ordering::SeqCst) == ticket.epoch
            && ticket.user.is_none_or(|(stripe, generation)| {
                inner.users[stripe as usize].load(Ordering::SeqCst) == generation
            })
            && ticket.account.is_none_or(|(stripe, generation)| {
                inner.accounts[stripe as usize].load(Ordering::SeqCst) == generation
            })
    }

    /// Voids every answer about `user` (a token `sub`; `users/` is stripped).
    pub fn drop_user(&self, user: &str) {
        let user = user.strip_prefix("users/").unwrap_or(user);
        let stripe = self.stripe(user);
        self.inner.users[stripe].fetch_add(1, Ordering::SeqCst);
    }

    /// Voids every answer about `account` (an id; `accounts/` is stripped).
    pub fn drop_account(&self, account: &str) {
        let account = account.strip_prefix("accounts/").unwrap_or(account);
        let stripe = self.stripe(account);
        self.inner.accounts[stripe].fetch_add(1, Ordering::SeqCst);
    }

    /// Voids every answer.
    pub fn drop_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn stripe(&self, key: &str) -> usize {
        (self.inner.stripe_hasher.hash_one(key) as usize) & (STRIPES - 1)
    }

    fn generation(&self, stripes: &[AtomicU64], key: &str) -> (u32, u64) {
        let stripe = self.stripe(key);
        (stripe as u32, stripes[stripe].load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_view() -> LocalView {
        let view = LocalView::new(ViewSettings::default());
        view.set_fresh(true);
        view
    }

    #[test]
    fn a_view_that_is_not_fresh_hands_out_no_tickets() {
        let view = LocalView::new(ViewSettings::default());
        assert!(view.ticket(Some("u"), Some("a")).is_none());
        view.set_fresh(true);
        assert!(view.ticket(Some("u"), Some("a")).is_some());
        let off = LocalView::new(ViewSettings {
            capacity: 0,
            ..ViewSettings::default()
        });
        off.set_fresh(true);
        assert!(
            off.ticket(Some("u"), None).is_none(),
            "capacity 0 turns it off"
        );
    }

    #[test]
    fn events_void_the_tickets_of_their_user_and_account_only() {
        let view = fresh_view();
        let alice = view.ticket(Some("alice"), Some("acme")).unwrap();
        let bob = view.ticket(Some("bob"), Some("globex")).unwrap();
        view.drop_user("users/alice");
        assert!(!view.is_current(&alice));
        assert!(view.is_current(&bob) || view.stripe("bob") == view.stripe("alice"));
        let bob = view.ticket(Some("bob"), Some("globex")).unwrap();
        view.drop_account("accounts/globex");
        assert!(!view.is_current(&bob));
    }

    #[test]
    fn freshness_expires_by_itself_when_the_feed_stalls() {
        let view = LocalView::new(ViewSettings::default());
        view.set_fresh_until(Some(Instant::now() + Duration::from_millis(30)));
        let ticket = view.ticket(Some("alice"), None).unwrap();
        assert!(view.is_current(&ticket));
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !view.is_fresh(),
            "no word from the feed: not fresh any more"
        );
        assert!(!view.is_current(&ticket));
        view.set_fresh_until(Some(Instant::now() + Duration::from_secs(5)));
        assert!(view.is_fresh());
        assert!(
            !view.is_current(&ticket),
            "what was kept before the lapse stays void"
        );
        view.set_fresh_until(None);
        assert!(!view.is_fresh());
    }

    #[test]
    fn losing_or_regaining_freshness_voids_everything() {
        let view = fresh_view();
        let ticket = view.ticket(Some("alice"), Some("acme")).unwrap();
        view.set_fresh(false);
        assert!(!view.is_current(&ticket));
        view.set_fresh(true);
        assert!(
            !view.is_current(&ticket),
            "a ticket from before the gap stays void"
        );
        let ticket = view.ticket(Some("alice"), Some("acme")).unwrap();
        view.set_fresh(true); // no change, nothing dropped
        assert!(view.is_current(&ticket));
    }
}
