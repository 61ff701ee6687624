//! The fan-out worker.
//!
//! The worker claims an open fan-out job, reads one page of the recipient account's members
//! (at most `batch` users) and writes it in one transaction, until the job is done; memory is
//! bounded by the batch whatever the number of recipients. It is woken by the `message.sent`
//! consumer of its own service instance once the jobs are committed, and polls briefly when
//! idle (the fallback for jobs left by another replica or a crash).

use std::sync::Arc;
use std::time::Duration;

use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;
use tokio::sync::watch;
use tracing::Instrument;

use crate::domain::NotificationError;
use crate::peers::{MemberPageError, MemberSource};
use crate::store::Store;
use crate::store::fanout::{Job, PageOutcome};

/// How long an idle worker waits before looking again without being woken.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The wait after a failure (database or membership unavailable).
const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// Wakes the fan-out workers of one service instance. `start` makes one and gives it to the
/// workers and to the `message.sent` consumer, so several instances in one process (a test
/// cluster) never wake each other's workers. A wake while a worker is busy is kept: the worker
/// looks again as soon as it is done.
#[derive(Clone, Debug)]
pub struct FanoutWake(Arc<watch::Sender<u64>>);

impl Default for FanoutWake {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl FanoutWake {
    /// A waker nobody listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the workers of this instance now (call after the jobs are committed).
    pub fn wake(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// What a worker waits on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Runs fan-out jobs until `shutdown`, counting the deliveries written in `metrics`.
pub async fn run_fanout(
    store: Store,
    members: Arc<dyn MemberSource>,
    batch: u32,
    waker: FanoutWake,
    shutdown: Shutdown,
    metrics: Metrics,
) {
    // `waker` is held for the whole run: with a sender alive, `changed` only completes on a
    // wake, never because the consumer holding the other sender went away.
    let mut wake = waker.subscribe();
    let batch = i32::try_from(batch.clamp(1, 1000)).unwrap_or(1000);
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let worked = match store.claim_job(tenantry_platform::time::now()).await {
            Ok(Some(job)) => {
                let result = run_job_counted(
                    &store,
                    members.as_ref(),
                    job,
                    batch,
                    &shutdown,
                    Some(&metrics),
                )
                .await;
                if let Err(error) = result {
                    tracing::warn!(%error, "fan-out page failed; retrying");
                    pause(FAILURE_PAUSE, &shutdown).await;
                }
                true
            }
            Ok(None) => false,
            Err(NotificationError::Store(tenantry_platform::db::StoreError::NotReady)) => false,
            Err(error) => {
                tracing::warn!(%error, "claiming a fan-out job failed");
                pause(FAILURE_PAUSE, &shutdown).await;
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = wake.changed() => {},
                () = tokio::time::sleep(IDLE_POLL) => {},
                () = shutdown.wait() => return,
            }
        }
    }
}

async fn pause(duration: Duration, shutdown: &Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {},
        () = shutdown.wait() => {},
    }
}

/// Writes pages of `job` until it is done, it moved on elsewhere, or shutdown.
pub async fn run_job(
    store: &Store,
    members: &dyn MemberSource,
    job: Job,
    batch: i32,
    shutdown: &Shutdown,
) -> Result<(), NotificationError> {
    run_job_counted(store, members, job, batch, shutdown, None).await
}

/// [`run_job`], counting the deliveries written in `metrics`, in a `fanout.job` span that
/// continues the trace of the SendMessage that caused the job.
async fn run_job_counted(
    store: &Store,
    members: &dyn MemberSource,
    job: Job,
    batch: i32,
    shutdown: &Shutdown,
    metrics: Option<&Metrics>,
) -> Result<(), NotificationError> {
    let span = tracing::info_span!(
        parent: None,
        "fanout.job",
        message = %job.message_id,
        account = %job.account_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    tenantry_platform::telemetry::continue_trace(
        &span,
        job.trace.traceparent.as_deref(),
        job.trace.tracestate.as_deref(),
    );
    write_pages(store, members, job, batch, shutdown, metrics)
        .instrument(span)
        .await
}

async fn write_pages(
    store: &Store,
    members: &dyn MemberSource,
    mut job: Job,
    batch: i32,
    shutdown: &Shutdown,
    metrics: Option<&Metrics>,
) -> Result<(), NotificationError> {
    let Some(message) = store.message(&job.message_id).await? else {
        return Ok(());
    };
    let fetch = |token: String| {
        let (account_id, roles) = (job.account_id.clone(), message.roles.clone());
        async move { fetch_page(members, &account_id, &roles, batch, &token).await }
    };
    let mut page = match fetch(job.page_token.clone()).await {
        Ok(page) => page,
        Err(error) => {
            store.release_job(&job).await?;
            return Err(error);
        }
    };
    loop {
        if shutdown.is_triggered() {
            // Give the job back so a restart (or another replica) resumes from its cursor.
            store.release_job(&job).await?;
            return Ok(());
        }
        let next = page.next_page_token.clone();
        // The next page is read from membership while this one is written: the two round
        // trips overlap instead of taking turns (a page write waits on PostgreSQL's commit, a
        // page read on membership's query). Should the write fail or turn out stale, the page
        // read ahead is dropped.
        let read_ahead = async {
            if next.is_empty() {
                None
            } else {
                Some(fetch(next.clone()).await)
            }
        };
        let apply = store.apply_page(&job, &page.members, &next, tenantry_platform::time::now());
        let (applied, read_ahead) = tokio::join!(apply, read_ahead);
        if let (Ok(PageOutcome::Applied { inserted, .. }), Some(metrics)) = (&applied, metrics) {
            metrics.deliveries_written(*inserted);
        }
        match applied {
            Ok(PageOutcome::Applied { done: true, .. }) | Ok(PageOutcome::Stale) => return Ok(()),
            Ok(PageOutcome::Applied { done: false, .. }) => job.page_token = next,
            Err(error) => {
                store.release_job(&job).await.ok();
                return Err(error);
            }
        }
        page = match read_ahead {
            Some(Ok(page)) => page,
            Some(Err(error)) => {
                store.release_job(&job).await?;
                return Err(error);
            }
            // Not done with an empty cursor cannot happen: `apply_page` marks it done.
            None => return Ok(()),
        };
    }
}

/// One page of the recipient account's members. An account that is gone has no more members
/// (the fan-out ends); membership being unavailable is an error, and the job is given back.
async fn fetch_page(
    members: &dyn MemberSource,
    account_id: &str,
    roles: &[tenantry_platform::Role],
    batch: i32,
    page_token: &str,
) -> Result<crate::peers::MemberPage, NotificationError> {
    match members.page(account_id, roles, batch, page_token).await {
        Ok(page) => Ok(page),
        Err(MemberPageError::Gone(why)) => {
            tracing::info!(account = %account_id, %why, "recipient account gone; fan-out ends");
            Ok(crate::peers::MemberPage {
                members: Vec::new(),
                next_page_token: String::new(),
            })
        }
        Err(MemberPageError::Unavailable(why)) => Err(NotificationError::Upstream(
            tenantry_platform::ApiError::unavailable(why),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_reaches_its_own_instance_only() {
        let (mine, other) = (FanoutWake::new(), FanoutWake::new());
        let (mut worker, other_worker) = (mine.subscribe(), other.subscribe());
        mine.wake();
        assert!(worker.has_changed().unwrap());
        assert!(!other_worker.has_changed().unwrap());
        worker.borrow_and_update();
        // A wake while the worker was busy is still there when it next waits.
        mine.clone().wake();
        assert!(worker.has_changed().unwrap());
        assert!(!other_worker.has_changed().unwrap());
    }
}
