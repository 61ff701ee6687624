//! `tenantry-bench`: the cluster's hot paths measured against ceilings taken in the same run.
//!
//! ```text
//! cargo build --release --bin tenantry
//! TENANTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! TENANTRY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!   cargo run --release -p tenantry-bench -- [--quick] [--in-flight 32] [--json PATH] [--only a,b]
//! ```
//!
//! It starts the cluster in-process against PostgreSQL and RabbitMQ (fresh databases and
//! queues, removed at the end), loads data, drives each workload and its ceiling alternately
//! with a fixed number of calls in flight, prints one table and writes it as JSON. It exits
//! non-zero only when something fails (an error, or a correctness violation such as a revoked
//! member allowed after the OK), never because a goal was missed.

mod cluster;
mod load;
mod report;
mod smtp_sink;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::report::{Report, Row};
use crate::workloads::Workload;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry-bench",
    about = "Benchmarks as ratios to same-run ceilings"
)]
struct Args {
    /// Small sizes and short windows (CI: under two minutes after compilation).
    #[arg(long)]
    quick: bool,
    /// Calls kept in flight by every workload and ceiling.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Where the JSON result goes.
    #[arg(long, default_value = "target/bench/latest.json")]
    json: PathBuf,
    /// Only these workloads (comma-separated: view-memory, get-account, authorize,
    /// revocation-delay, create-customer, pending-messages, fan-out, invitation, audit-ingest,
    /// audit-list, send-message, footprint).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Workload>,
    /// The `tenantry` binary for the footprint workload (default: next to this program).
    #[arg(long)]
    tenantry_bin: Option<PathBuf>,
    /// Measured seconds per round of the timed workloads (default: 2 quick, 5 full); longer
    /// windows leave time to attach a profiler.
    #[arg(long)]
    window_seconds: Option<u64>,
    /// Alternating rounds of ceiling and workload (default: 1 quick, 2 full).
    #[arg(long)]
    rounds: Option<usize>,
}

/// The cargo profile this program was built with: only release figures mean anything.
const BUILD: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The sizes and windows of a run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Calls in flight.
    pub in_flight: usize,
    /// Alternating rounds of ceiling and workload.
    pub rounds: usize,
    /// Warm-up per round.
    pub warmup: Duration,
    /// Measured window per round.
    pub window: Duration,
    /// Deliveries stored for ListPendingMessages.
    pub stored_deliveries: usize,
    /// Fan-out recipients: customers × members.
    pub fanout_customers: usize,
    /// Members per fan-out customer.
    pub fanout_members: usize,
    /// Customers listed in each measured SendMessage.
    pub send_customers: usize,
    /// SendMessage calls measured.
    pub send_messages: usize,
    /// Invitations measured (after a warm-up of a tenth as many).
    pub invitations: u64,
    /// Removals measured by the revocation-delay workload.
    pub revocation_rounds: usize,
    /// Events consumed into the audit log per round of audit-ingest.
    pub audit_events: usize,
    /// Entries stored for ListAuditEntries.
    pub audit_entries_stored: usize,
    /// Capacity of the local view measured by view-memory (it also inserts twice as many more).
    pub view_capacity: usize,
    /// The `tenantry` binary (footprint).
    pub tenantry_bin: PathBuf,
}

impl Settings {
    fn from(args: &Args) -> anyhow::Result<Self> {
        let tenantry_bin = match &args.tenantry_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(|dir| dir.join("tenantry"))
                .ok_or_else(|| anyhow::anyhow!("cannot locate the tenantry binary"))?,
        };
        let settings = if args.quick {
            Self {
                mode: "quick",
                in_flight: args.in_flight,
                rounds: 1,
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(2),
                stored_deliveries: 50_000,
                fanout_customers: 10,
                fanout_members: 100,
                send_customers: 100,
                send_messages: 5,
                invitations: 200,
                revocation_rounds: 20,
                audit_events: 1_000,
                audit_entries_stored: 50_000,
                // The default TENANTRY_VIEW_CAPACITY: CI runs a debug build.
                view_capacity: 200_000,
                tenantry_bin,
            }
        } else {
            Self {
                mode: "full",
                in_flight: args.in_flight,
                rounds: 2,
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(5),
                stored_deliveries: 1_000_000,
                fanout_customers: 100,
                fanout_members: 1_000,
                send_customers: 1_000,
                send_messages: 30,
                invitations: 2_000,
                revocation_rounds: 200,
                audit_events: 10_000,
                audit_entries_stored: 1_000_000,
                view_capacity: 1_000_000,
                tenantry_bin,
            }
        };
        Ok(Self {
            window: args
                .window_seconds
                .map_or(settings.window, Duration::from_secs),
            rounds: args.rounds.unwrap_or(settings.rounds),
            ..settings
        })
    }
}

/// The memory set-up of the `tenantry` binary, so the in-process cluster runs as it does in
/// production (the ceilings share it).
#[global_allocator]
static ALLOCATOR: tenantry_cli::memory::Allocator = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tenantry_cli::memory::disable_transparent_huge_pages();
    let args = Args::parse();
    // The machine has few cores; the runtime uses all of them, shared by the load generator
    // and the in-process cluster alike (for the workload and its ceiling).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = Settings::from(&args)?;
    let selected: Vec<Workload> = if args.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.only.clone()
    };
    eprintln!(
        "tenantry-bench {} mode, {} build, {} in flight, on {}",
        settings.mode,
        BUILD,
        settings.in_flight,
        report::machine()
    );
    if BUILD == "debug" {
        eprintln!("  (a debug build: the figures only show that every workload runs)");
    }
    let mut rows: Vec<Row> = Vec::new();
    if selected.contains(&Workload::ViewMemory) {
        // First, alone in a fresh process: nothing else allocates while it reads the RSS.
        eprintln!("\n== ViewMemory");
        rows.push(workloads::view_memory::run(settings.view_capacity).await?);
    }
    let needs_cluster = selected.iter().any(|w| w.needs_cluster());
    if needs_cluster {
        let bench = cluster::Bench::start(&settings).await?;
        let outcome = workloads::run_in_cluster(&bench, &selected, &mut rows).await;
        bench.stop().await;
        outcome?;
    }
    if selected.contains(&Workload::Footprint) {
        eprintln!("\n== Footprint");
        rows.extend(workloads::footprint::run(&settings).await?);
    }

    println!("\n{}", report::table(&rows));
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = Report {
        mode: settings.mode,
        build: BUILD,
        in_flight: settings.in_flight,
        command,
        machine: report::machine(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_seconds: started.elapsed().as_secs_f64(),
        rows: &rows,
    };
    report::write_json(&args.json, &report)?;
    eprintln!(
        "wrote {} ({:.0} s in all)",
        args.json.display(),
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| Some(format!("{}: {}", row.workload, row.failure.as_ref()?)))
        .collect();
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
