//! The workloads, each with its ceiling measured in the same run.

pub mod create_customer;
pub mod echo;
pub mod fanout;
pub mod footprint;
pub mod get_account;
pub mod invitation;
pub mod pending_messages;

use crate::cluster::Bench;
use crate::report::Row;

/// A workload of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `GetAccount` with authorization, against a bare tonic service.
    GetAccount,
    /// `CreateManagedCustomer`, against a raw transaction doing the same inserts.
    CreateCustomer,
    /// `ListPendingMessages` over many stored deliveries, against the same SQL issued directly.
    PendingMessages,
    /// One message to many members, against a bulk insert of the same deliveries.
    FanOut,
    /// Invitation to e-mail received, against publish-with-confirm + consume + SMTP.
    Invitation,
    /// Idle memory and start-up time of each service as its own process.
    Footprint,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 6] = [
        Workload::GetAccount,
        Workload::CreateCustomer,
        Workload::Invitation,
        Workload::FanOut,
        Workload::PendingMessages,
        Workload::Footprint,
    ];
}

/// Runs the selected workloads that need the in-process cluster, in [`Workload::ALL`] order.
pub async fn run_in_cluster(
    bench: &Bench,
    selected: &[Workload],
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    for workload in Workload::ALL {
        if !selected.contains(&workload) {
            continue;
        }
        if workload != Workload::Footprint {
            eprintln!("\n== {workload:?}");
        }
        let row = match workload {
            Workload::GetAccount => get_account::run(bench).await?,
            Workload::CreateCustomer => create_customer::run(bench).await?,
            Workload::PendingMessages => pending_messages::run(bench).await?,
            Workload::FanOut => fanout::run(bench).await?,
            Workload::Invitation => invitation::run(bench).await?,
            Workload::Footprint => continue,
        };
        rows.push(row);
    }
    Ok(())
}
