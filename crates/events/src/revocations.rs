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

use crate::Outbox;
use crate::view_feed::FreshnessSettings;

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

    /// This replica's heartbeat source.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Another replica's heartbeat arrived.
    pub(crate) fn view_heard(&self, replica: &str) {
        locked(&self.inner.views).insert(replica.to_string(), Instant::now());
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
        let announced = outbox
            .wait_published(connection, &ids, Some(deadline))
            .await
            && self.wait_applied(&ids, deadline).await;
        self.forget(&ids);
        if announced {
            self.count("applied");
            return;
        }
        // Heartbeats stop from here on; every one sent before now expires in every view within
        // the timeout (plus the clocks' difference).
        self.inner.holds.fetch_add(1, Ordering::SeqCst);
        let held_since = Utc::now();
        tracing::warn!(
            events = ids.len(),
            "a revocation is not confirmed by the broker, or not applied by every replica in \
             time; heartbeats stop until the broker confirms it"
        );
        let release = {
            let (revocations, outbox, connection, ids) = (
                self.clone(),
                outbox.clone(),
                connection.clone(),
                ids.clone(),
            );
            async move {
                outbox.wait_published(&connection, &ids, None).await;
                revocations.inner.holds.fetch_sub(1, Ordering::SeqCst);
                tracing::info!("the revocation is confirmed; heartbeats resume");
            }
        };
        tokio::spawn(release);
        let bound = to_chrono(settings.heartbeat_timeout + settings.clock_skew);
        let forgotten_at = self
            .last_heartbeat()
            .map(|last| last + to_chrono(settings.forget_after) - to_chrono(settings.clock_skew));
        if forgotten_at.is_none_or(|forgotten_at| committed >= forgotten_at) {
            tracing::warn!(
                "this replica's heartbeats have not reached the broker for a long time; \
                 the revocation answers only once the broker confirms it"
            );
            outbox.wait_published(connection, &ids, None).await;
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

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}
