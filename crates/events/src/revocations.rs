//! Revocation stays prompt by construction (docs/local-view.md): a call that takes access away
//! answers OK only once no replica can serve the old allow from its local view.
//!
//! - **Normally**: its event is confirmed by the broker (queued on every bound view's
//!   subscription), and then every other replica heard from recently has acknowledged that its
//!   view applied it (`tenantry.applied`), before the call answers — queued is not applied, and
//!   a call can reach a replica in between.
//! - **An acknowledgement is missing** within [`FreshnessSettings::confirm_wait`] (a replica
//!   killed, slow or cut off): as below.
//! - **The broker does not confirm** within [`FreshnessSettings::confirm_wait`]: this replica
//!   stops sending heartbeats until the event is confirmed, and the call answers only after
//!   [`FreshnessSettings::heartbeat_timeout`] + [`FreshnessSettings::clock_skew`] more, by which
//!   time every view has stopped trusting (and dropped) its cache: none has heard this replica
//!   recently enough. Views refill only from the source of record, where the change is committed.
//! - **This replica may already be forgotten** (its heartbeats have not been confirmed for about
//!   [`FreshnessSettings::forget_after`]): silence proves nothing then, so the call waits for the
//!   confirm however long it takes (the caller's deadline ends the wait; the change stays
//!   committed and is announced once the broker is back).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::view_feed::{FreshnessSettings, INVALIDATE};
use crate::{Event, Outbox};

/// The revoking calls of one process, and the heartbeats they may hold back. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None`: revocations are not announced (no local views in this deployment, unit tests).
    settings: Option<FreshnessSettings>,
    /// This replica's heartbeat source (`/tenantry/replicas/{uuid}`).
    replica: String,
    /// Revocations not yet confirmed past their wait: heartbeats are skipped while > 0.
    holds: AtomicUsize,
    /// When the latest heartbeat confirmed by the broker was sent.
    last_heartbeat: Mutex<Option<DateTime<Utc>>>,
    /// The other replicas heard from, and when: whose acknowledgements a revocation awaits.
    views: Mutex<HashMap<String, Instant>>,
    /// Revocations awaiting acknowledgements: event id → (since when, who applied it).
    acks: Mutex<HashMap<Uuid, (Instant, HashSet<String>)>>,
    /// Woken by every acknowledgement.
    acked: Notify,
    /// Publishes `tenantry.invalidate` for [`Revocations::reannounce`].
    publisher: std::sync::OnceLock<Arc<dyn crate::Publisher>>,
    /// Since when this replica's own feed is bound without a break (`None`: not bound).
    feed_bound_since: Mutex<Option<Instant>>,
    /// `tenantry_revocations_total{outcome}`, if recorded.
    outcomes: std::sync::OnceLock<prometheus::IntCounterVec>,
}

/// Unanswered revocations' acknowledgements are forgotten after this (a rolled-back write).
const PENDING_LIMIT: Duration = Duration::from_secs(120);

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Revocations {
    /// Revocations announced under `settings` by the replica whose heartbeats come from
    /// `replica`.
    pub fn new(settings: FreshnessSettings, replica: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings: Some(settings),
                replica,
                ..Inner::default()
            }),
        }
    }

    /// Records `tenantry_revocations_total{outcome="applied"|"held"|"confirmed_late"}` in
    /// `metrics`: announced by every replica's acknowledgement, by silencing this replica's
    /// heartbeats, or (when this replica may be forgotten) by waiting for the broker.
    pub fn record_into(&self, metrics: &tenantry_platform::metrics::Metrics) {
        let outcomes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tenantry_revocations_total",
                "Calls that took access away, by how they were announced before answering \
                 (applied: every replica acknowledged; held: heartbeats silenced for the bound; \
                 confirmed_late: waited for the broker)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        if metrics
            .registry()
            .register(Box::new(outcomes.clone()))
            .is_ok()
        {
            let _ = self.inner.outcomes.set(outcomes);
        }
    }

    fn count(&self, outcome: &str) {
        if let Some(outcomes) = self.inner.outcomes.get() {
            outcomes.with_label_values(&[outcome]).inc();
        }
    }

    /// The publisher of this replica's control messages (heartbeats, acknowledgements,
    /// announcements): one channel for them all.
    pub(crate) fn control_publisher(&self, bus: &crate::EventBus) -> Arc<dyn crate::Publisher> {
        self.inner.publisher.get_or_init(|| bus.publisher()).clone()
    }

    /// This replica's heartbeat source.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// The feed reports since when it is bound without a break.
    pub(crate) fn feed_bound_since(&self, since: Option<Instant>) {
        *locked(&self.inner.feed_bound_since) = since;
    }

    /// How long this replica's last confirmed heartbeat stays younger than `timeout`.
    pub(crate) fn own_heartbeat_left(&self, timeout: Duration) -> Option<Duration> {
        let last = self.last_heartbeat()?;
        let age = (Utc::now() - last).to_std().unwrap_or(Duration::ZERO);
        timeout.checked_sub(age).filter(|left| !left.is_zero())
    }

    /// Whether this replica has heard every live replica: its feed has been bound without a
    /// break for two heartbeat timeouts (every replica heartbeats four times per timeout).
    fn hears_everyone(&self, settings: &FreshnessSettings) -> bool {
        locked(&self.inner.feed_bound_since)
            .is_some_and(|since| since.elapsed() >= settings.heartbeat_timeout * 2)
    }

    /// Another replica's heartbeat arrived.
    pub(crate) fn view_heard(&self, replica: &str) {
        let mut views = locked(&self.inner.views);
        if !views.contains_key(replica)
            && let Some(settings) = self.inner.settings
        {
            // A new replica: forget the ones silent past the bound (killed without a goodbye).
            views.retain(|_, heard| heard.elapsed() <= settings.forget_after);
        }
        views.insert(replica.to_string(), Instant::now());
    }

    /// Another replica said goodbye: no acknowledgement is awaited from it any more.
    pub(crate) fn view_gone(&self, replica: &str) {
        locked(&self.inner.views).remove(replica);
        self.inner.acked.notify_waiters();
    }

    /// `replica` applied the revocation `id` to its view.
    pub(crate) fn applied(&self, id: Uuid, replica: &str) {
        if let Some((_, applied)) = locked(&self.inner.acks).get_mut(&id) {
            applied.insert(replica.to_string());
            self.inner.acked.notify_waiters();
        }
    }

    /// Starts collecting acknowledgements of `id` (before its transaction commits, so that
    /// none is missed).
    pub(crate) fn expect(&self, id: Uuid) {
        if self.inner.settings.is_none() {
            return;
        }
        let mut acks = locked(&self.inner.acks);
        acks.retain(|_, (since, _)| since.elapsed() < PENDING_LIMIT);
        acks.insert(id, (Instant::now(), HashSet::new()));
    }

    /// Whether every replica heard from within `forget_after` has applied every one of `ids`.
    fn all_applied(&self, ids: &[Uuid], forget_after: Duration) -> bool {
        let views: Vec<String> = locked(&self.inner.views)
            .iter()
            .filter(|(_, heard)| heard.elapsed() <= forget_after)
            .map(|(replica, _)| replica.clone())
            .collect();
        let acks = locked(&self.inner.acks);
        ids.iter().all(|id| {
            acks.get(id)
                .is_some_and(|(_, applied)| views.iter().all(|view| applied.contains(view)))
        })
    }

    /// Waits until every replica heard from has applied `ids`, or `deadline`; true if they did.
    async fn wait_applied(&self, ids: &[Uuid], deadline: tokio::time::Instant) -> bool {
        let Some(settings) = self.inner.settings else {
            return true;
        };
        loop {
            let acked = self.inner.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if self.all_applied(ids, settings.forget_after) {
                return true;
            }
            tokio::select! {
                () = &mut acked => {},
                () = tokio::time::sleep_until(deadline) => {
                    return self.all_applied(ids, settings.forget_after);
                }
            }
        }
    }

    fn forget(&self, ids: &[Uuid]) {
        let mut acks = locked(&self.inner.acks);
        for id in ids {
            acks.remove(id);
        }
    }

    /// Whether a revocation is holding this replica's heartbeats back.
    pub fn holding(&self) -> bool {
        self.inner.holds.load(Ordering::SeqCst) > 0
    }

    /// Records a heartbeat sent at `sent` that the broker confirmed.
    pub(crate) fn heartbeat_confirmed(&self, sent: DateTime<Utc>) {
        let mut last = self
            .inner
            .last_heartbeat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|last| sent > last) {
            *last = Some(sent);
        }
    }

    fn last_heartbeat(&self) -> Option<DateTime<Utc>> {
        *self
            .inner
            .last_heartbeat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns once the events `ids`, committed just now through `outbox`, can no longer be
    /// contradicted by any replica's local view (see the module documentation).
    pub(crate) async fn announce(
        &self,
        outbox: &Outbox,
        connection: &DatabaseConnection,
        ids: Vec<Uuid>,
    ) {
        let Some(settings) = self.inner.settings else {
            return;
        };
        let committed = Utc::now();
        let deadline = tokio::time::Instant::now() + settings.confirm_wait;
        // Acknowledgements prove something only if this replica hears every replica (its own
        // feed steadily bound); otherwise the heartbeat bound below does the work.
        let announced = outbox
            .wait_published(connection, &ids, Some(deadline))
            .await
            && self.hears_everyone(&settings)
            && self.wait_applied(&ids, deadline).await;
        self.forget(&ids);
        if announced {
            self.count("applied");
            return;
        }
        let confirmed = {
            let (outbox, connection, ids) = (outbox.clone(), connection.clone(), ids.clone());
            async move {
                outbox.wait_published(&connection, &ids, None).await;
            }
        };
        self.hold(settings, committed, &ids, confirmed).await;
    }

    /// Announces again a revocation that changed nothing now (the account is disabled already,
    /// the member has that role already): a concurrent call may have made the change and still
    /// be waiting for it to be applied, and this call must not answer OK before it is. A
    /// control message (`tenantry.invalidate`) voids `revoked` in every view, which
    /// acknowledges it like an event.
    pub async fn reannounce(&self, revoked: Revoked) {
        let (Some(settings), Some(publisher)) = (self.inner.settings, self.inner.publisher.get())
        else {
            return;
        };
        let committed = Utc::now();
        let event = Event {
            id: Uuid::now_v7(),
            event_type: INVALIDATE.to_string(),
            source: self.inner.replica.clone(),
            time: committed,
            payload: revoked.payload(),
            traceparent: None,
            tracestate: None,
        };
        let ids = [event.id];
        self.expect(event.id);
        let deadline = tokio::time::Instant::now() + settings.confirm_wait;
        let published = matches!(
            tokio::time::timeout_at(deadline, publisher.publish(std::slice::from_ref(&event)))
                .await,
            Ok(Ok(()))
        );
        let announced =
            published && self.hears_everyone(&settings) && self.wait_applied(&ids, deadline).await;
        self.forget(&ids);
        if announced {
            self.count("applied");
            return;
        }
        let confirmed = {
            let publisher = publisher.clone();
            async move {
                // Published once the broker is back: until then this replica's heartbeats stay
                // silent, and afterwards every view has it queued.
                while !published
                    && publisher
                        .publish(std::slice::from_ref(&event))
                        .await
                        .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        self.hold(settings, committed, &ids, confirmed).await;
    }

    /// The fallback of an announcement that could not be completed: this replica's heartbeats
    /// stop until `confirmed` completes, and the call answers once every view has stopped
    /// trusting its cache — or, if views may have forgotten this replica, once `confirmed`
    /// completed and every replica applied `ids` (see the module documentation).
    async fn hold(
        &self,
        settings: FreshnessSettings,
        committed: DateTime<Utc>,
        ids: &[Uuid],
        confirmed: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        // Heartbeats stop from here on; every one stamped before now expires in every view
        // within the timeout (plus the clocks' difference).
        self.inner.holds.fetch_add(1, Ordering::SeqCst);
        let held_since = Utc::now();
        tracing::warn!(
            events = ids.len(),
            "a revocation is not confirmed by the broker, or not applied by every replica in \
             time; heartbeats stop until the broker confirms it"
        );
        let (done, mut is_done) = tokio::sync::watch::channel(false);
        let revocations = self.clone();
        tokio::spawn(async move {
            confirmed.await;
            revocations.inner.holds.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(true);
            tracing::info!("the revocation is confirmed; heartbeats resume");
        });
        // Views stop trusting strictly before sent + timeout (their clock); a few milliseconds
        // on top make "no sooner" strict.
        let bound =
            to_chrono(settings.heartbeat_timeout + settings.clock_skew + Duration::from_millis(10));
        let forgotten_at = self
            .last_heartbeat()
            .map(|last| last + to_chrono(settings.forget_after) - to_chrono(settings.clock_skew));
        if forgotten_at.is_none_or(|forgotten_at| committed >= forgotten_at) {
            tracing::warn!(
                "this replica's heartbeats have not reached the broker for a long time; \
                 the revocation answers only once the broker confirms it and every replica \
                 applied it"
            );
            let _ = is_done.wait_for(|done| *done).await;
            for id in ids {
                self.expect(*id);
            }
            let _ = self
                .wait_applied(ids, tokio::time::Instant::now() + settings.forget_after)
                .await;
            self.forget(ids);
            self.count("confirmed_late");
            return;
        }
        self.count("held");
        let answer_at = held_since + bound;
        if let Ok(wait) = (answer_at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a revoking call that changed nothing announces again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Everything about a user (`users/{sub}` or the bare sub).
    User(String),
    /// Everything about an account (`accounts/{id}` or the bare id).
    Account(String),
}

impl Revoked {
    fn payload(&self) -> Vec<u8> {
        let (kind, name) = match self {
            Revoked::User(user) => (b'u', user),
            Revoked::Account(account) => (b'a', account),
        };
        let mut payload = vec![kind];
        payload.extend_from_slice(name.as_bytes());
        payload
    }

    /// Reads a `tenantry.invalidate` payload back.
    pub(crate) fn from_payload(payload: &[u8]) -> Option<Self> {
        let (kind, name) = payload.split_first()?;
        let name = std::str::from_utf8(name).ok()?.to_string();
        match kind {
            b'u' => Some(Revoked::User(name)),
            b'a' => Some(Revoked::Account(name)),
            _ => None,
        }
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}
