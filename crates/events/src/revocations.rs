//! Revocation stays prompt by construction (docs/local-view.md): a call that takes access away
//! answers OK only once no replica can serve the old allow from its local view.
//!
//! - **Normally**: its event is confirmed by the broker, i.e. queued on every bound view's
//!   subscription, before the call answers.
//! - **The broker does not confirm** within [`FreshnessSettings::confirm_wait`]: this replica
//!   stops sending heartbeats until the event is confirmed, and the call answers only after
//!   [`FreshnessSettings::heartbeat_timeout`] + [`FreshnessSettings::clock_skew`] more, by which
//!   time every view has stopped trusting (and dropped) its cache: none has heard this replica
//!   recently enough. Views refill only from the source of record, where the change is committed.
//! - **This replica may already be forgotten** (its heartbeats have not been confirmed for about
//!   [`FreshnessSettings::forget_after`]): silence proves nothing then, so the call waits for the
//!   confirm however long it takes (the caller's deadline ends the wait; the change stays
//!   committed and is announced once the broker is back).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
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
    /// Revocations not yet confirmed past their wait: heartbeats are skipped while > 0.
    holds: AtomicUsize,
    /// When the latest heartbeat confirmed by the broker was sent.
    last_heartbeat: Mutex<Option<DateTime<Utc>>>,
}

impl Revocations {
    /// Revocations announced under `settings`.
    pub fn new(settings: FreshnessSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings: Some(settings),
                ..Inner::default()
            }),
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
        if outbox
            .wait_published(connection, &ids, Some(deadline))
            .await
        {
            return;
        }
        // Heartbeats stop from here on; every one sent before now expires in every view within
        // the timeout (plus the clocks' difference).
        self.inner.holds.fetch_add(1, Ordering::SeqCst);
        let held_since = Utc::now();
        tracing::warn!(
            events = ids.len(),
            "a revocation is not confirmed by the broker; heartbeats stop until it is"
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
            return;
        }
        let answer_at = held_since + bound;
        if let Ok(wait) = (answer_at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}
