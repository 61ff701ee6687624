//! The load driver: a fixed number of operations in flight (a closed loop), a warm-up whose
//! operations are not counted, then a measured window; a progress line every second.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;

/// One phase to run: a warm-up whose operations are not measured, then the measured window,
/// both either timed or counted.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    /// Operations kept in flight.
    pub in_flight: usize,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Timed { warmup: Duration, measure: Duration },
    Counted { warmup: u64, measure: u64 },
}

impl Phase {
    /// Warm up for `warmup`, then measure for `measure`.
    pub fn timed(in_flight: usize, warmup: Duration, measure: Duration) -> Self {
        Self {
            in_flight,
            kind: Kind::Timed { warmup, measure },
        }
    }

    /// Run `warmup` operations unmeasured, then measure the next `measure` ones.
    pub fn counted(in_flight: usize, warmup: u64, measure: u64) -> Self {
        Self {
            in_flight,
            kind: Kind::Counted { warmup, measure },
        }
    }
}

/// What a measured window produced.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Completed operations in the window.
    pub ops: u64,
    /// Length of the window.
    pub elapsed: Duration,
    /// Latency of every measured operation.
    pub latencies: Vec<Duration>,
}

impl Measured {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        quantile_of_sorted(&sorted, q)
    }

    /// Adds another window (alternating rounds of the same workload).
    pub fn merge(&mut self, other: Measured) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
}

/// The value at quantile `q` of sorted samples (nearest rank).
pub fn quantile_of_sorted(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What one worker measured.
#[derive(Default)]
struct WorkerWindow {
    latencies: Vec<Duration>,
    first_start: Option<Instant>,
    last_done: Option<Instant>,
}

/// Runs `op(n)` (n = 0, 1, 2, … across warm-up and window) with `phase.in_flight` operations
/// in flight; returns the measured window. The first failing operation stops the run.
///
/// Timed: an operation is measured if it started and ended inside the window, and the window
/// is its wall-clock length. Counted: operations `warmup..warmup+measure` are measured, and
/// the window runs from the first of them starting to the last of them ending.
pub async fn run<F, Fut>(label: &str, phase: Phase, op: F) -> anyhow::Result<Measured>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
    });
    let op = Arc::new(op);
    let kind = phase.kind;
    let mut workers = Vec::with_capacity(phase.in_flight);
    for _ in 0..phase.in_flight.max(1) {
        let shared = shared.clone();
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            let mut window = WorkerWindow::default();
            while !shared.stop.load(Ordering::Relaxed) {
                let n = shared.next.fetch_add(1, Ordering::Relaxed);
                let measured_start = match kind {
                    Kind::Counted { warmup, measure } => {
                        if n >= warmup + measure {
                            break;
                        }
                        n >= warmup
                    }
                    Kind::Timed { .. } => shared.measuring.load(Ordering::Relaxed),
                };
                let started = Instant::now();
                if let Err(error) = op(n).await {
                    let mut slot = shared.error.lock().await;
                    if slot.is_none() {
                        *slot = Some(error.context(format!("operation {n}")));
                    }
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
                let done = Instant::now();
                let keep = match kind {
                    Kind::Counted { .. } => measured_start,
                    Kind::Timed { .. } => {
                        measured_start && shared.measuring.load(Ordering::Relaxed)
                    }
                };
                if keep {
                    window.latencies.push(done - started);
                    window.first_start = Some(
                        window
                            .first_start
                            .map_or(started, |first| first.min(started)),
                    );
                    window.last_done = Some(done);
                }
                shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            window
        }));
    }

    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (warmup_over, window_over): (Box<dyn Fn(u64, Duration) -> bool + Send>, _) = match kind {
        Kind::Timed { warmup, measure } => (
            Box::new(move |_, elapsed| elapsed >= warmup),
            Box::new(move |_, elapsed| elapsed >= measure)
                as Box<dyn Fn(u64, Duration) -> bool + Send>,
        ),
        Kind::Counted { warmup, measure } => (
            Box::new(move |done, _| done >= warmup),
            Box::new(move |done, _| done >= warmup + measure)
                as Box<dyn Fn(u64, Duration) -> bool + Send>,
        ),
    };
    loop {
        let done = shared.completed.load(Ordering::Relaxed);
        if warmup_over(done, started.elapsed()) || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => progress(label, "warm-up", done, started.elapsed()),
            () = tokio::time::sleep(Duration::from_millis(2)) => {},
        }
    }
    let window_start = Instant::now();
    let at_window_start = shared.completed.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    loop {
        let done = shared.completed.load(Ordering::Relaxed);
        if window_over(done, window_start.elapsed()) || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => progress(label, "measuring", done - at_window_start, window_start.elapsed()),
            () = tokio::time::sleep(Duration::from_millis(2)) => {},
        }
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let window_end = Instant::now();
    shared.stop.store(true, Ordering::Relaxed);
    let mut measured = Measured::default();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for worker in workers {
        let window = worker.await.context("a load worker panicked")?;
        measured.latencies.extend(window.latencies);
        first = match (first, window.first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, window.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(error) = shared.error.lock().await.take() {
        return Err(error.context(format!("{label} failed")));
    }
    measured.ops = measured.latencies.len() as u64;
    measured.elapsed = match (kind, first, last) {
        (Kind::Timed { .. }, _, _) => window_end - window_start,
        (Kind::Counted { .. }, Some(first), Some(last)) => last - first,
        (Kind::Counted { .. }, _, _) => Duration::ZERO,
    };
    eprintln!(
        "  {label}: {} ops in {:.2} s = {:.0} ops/s",
        measured.ops,
        measured.elapsed.as_secs_f64(),
        measured.ops_per_sec()
    );
    Ok(measured)
}

struct Shared {
    next: AtomicU64,
    completed: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
}

fn progress(label: &str, phase: &str, done: u64, elapsed: Duration) {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    eprintln!(
        "  {label}: {phase} {done} ops, {rate:.0} ops/s ({:.0} s)",
        elapsed.as_secs_f64()
    );
}

/// Runs the ceiling and the workload alternately, `rounds` times each, and merges each
/// side's windows: both see the same (noisy, shared) machine at nearly the same moments.
pub async fn alternate<C, W, CF, WF>(
    label: &str,
    rounds: usize,
    phase: Phase,
    ceiling: C,
    workload: W,
) -> anyhow::Result<(Measured, Measured)>
where
    C: Fn(u64) -> CF + Send + Sync + Clone + 'static,
    CF: Future<Output = anyhow::Result<()>> + Send + 'static,
    W: Fn(u64) -> WF + Send + Sync + Clone + 'static,
    WF: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut ceiling_total = Measured::default();
    let mut workload_total = Measured::default();
    for round in 1..=rounds.max(1) {
        let ceiling_label = format!("{label} ceiling (round {round}/{rounds})");
        ceiling_total.merge(run(&ceiling_label, phase, ceiling.clone()).await?);
        let workload_label = format!("{label} (round {round}/{rounds})");
        workload_total.merge(run(&workload_label, phase, workload.clone()).await?);
    }
    Ok((ceiling_total, workload_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            quantile_of_sorted(&samples, 0.5),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            quantile_of_sorted(&samples, 0.99),
            Some(Duration::from_millis(99))
        );
        assert_eq!(
            quantile_of_sorted(&samples, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(quantile_of_sorted(&[], 0.5), None);
    }

    #[tokio::test]
    async fn counted_windows_measure_exactly_their_operations() {
        let phase = Phase::counted(4, 10, 50);
        let measured = run("test", phase, |_| async { Ok(()) }).await.unwrap();
        assert_eq!(measured.ops, 50);
    }

    #[tokio::test]
    async fn a_failing_operation_fails_the_run() {
        let phase = Phase::counted(2, 0, 10);
        let result = run("test", phase, |n| async move {
            if n == 3 {
                anyhow::bail!("boom")
            }
            Ok(())
        })
        .await;
        assert!(result.is_err());
    }
}
