//! Periodic clean-up work (expiring invitations, messages, deliveries): one loop that runs a
//! sweep every interval until shutdown, skipping while the database is not ready, and one way
//! to drain a backlog batch by batch so no transaction grows with the backlog.

use std::future::Future;
use std::time::Duration;

use crate::db::Database;
use crate::error::ErrorChain;
use crate::server::Shutdown;

/// Runs `sweep` now and then every `interval` until `shutdown`, skipping the runs in which
/// `database` is not ready (not reachable or not migrated yet: nothing to sweep there).
pub async fn run_every<F, Fut>(
    interval: Duration,
    database: Database,
    shutdown: Shutdown,
    mut sweep: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let interval = interval.max(Duration::from_secs(1));
    loop {
        if database.is_ready() {
            sweep().await;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {},
            () = shutdown.wait() => return,
        }
    }
}

/// Calls `step(batch)` until it handles fewer than `batch` rows; returns how many it handled in
/// all. A failing step ends the drain with a warning naming `what` (the next run tries again),
/// and the rows handled before it are still counted.
pub async fn drain<F, Fut, E>(what: &str, batch: u64, mut step: F) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: std::error::Error + 'static,
{
    let mut total = 0;
    loop {
        match step(batch).await {
            Ok(handled) => {
                total += handled;
                if handled < batch {
                    if total > 0 {
                        tracing::info!(what, expired = total, "expiry sweep");
                    }
                    return total;
                }
            }
            Err(error) => {
                tracing::warn!(
                    what, error = %ErrorChain(&error),
                    "expiry sweep failed; retrying at the next interval"
                );
                return total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("down")]
    struct Down;

    #[tokio::test]
    async fn drains_until_a_short_batch_or_an_error() {
        let mut left = 25u64;
        let total = drain("rows", 10, |batch| {
            let handled = left.min(batch);
            left -= handled;
            async move { Ok::<_, Down>(handled) }
        })
        .await;
        assert_eq!((total, left), (25, 0));

        let calls = AtomicU64::new(0);
        let total = drain("rows", 10, |batch| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move { if call == 0 { Ok(batch) } else { Err(Down) } }
        })
        .await;
        assert_eq!((total, calls.load(Ordering::SeqCst)), (10, 2));
    }

    #[tokio::test]
    async fn skips_while_the_database_is_not_ready_and_stops_at_shutdown() {
        let database = Database::new("sqlite::memory:");
        let shutdown = Shutdown::new();
        let runs = AtomicU64::new(0);
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stopper.trigger();
        });
        run_every(Duration::from_secs(1), database, shutdown, || async {
            runs.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "never connected, never swept"
        );
    }
}
