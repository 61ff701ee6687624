//! The workloads, each with its ceiling measured in the same run.

pub mod audit_ingest;
pub mod audit_list;
pub mod authorize;
pub mod create_customer;
pub mod echo;
pub mod fanout;
pub mod footprint;
pub mod get_account;
pub mod invitation;
pub mod pending_messages;
pub mod revocation_delay;
pub mod send_message;
pub mod view_memory;

use crate::cluster::Bench;
use crate::report::Row;

/// A workload of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The local view's decisions cache filled to its capacity: memory, lookup cost, bound
    /// (in-process, before the cluster starts).
    ViewMemory,
    /// `GetAccount` with authorization, against a bare tonic service.
    GetAccount,
    /// Membership's `Authorize` from its view (and with `bypass_view`), against a bare tonic
    /// service.
    Authorize,
    /// Two replicas: from RemoveMember's OK until the removed member is refused on both.
    RevocationDelay,
    /// `CreateManagedCustomer`, against a raw transaction doing the same inserts.
    CreateCustomer,
    /// `ListPendingMessages` over many stored deliveries, against the same SQL issued directly.
    PendingMessages,
    /// One message to many members, against a bulk insert of the same deliveries.
    FanOut,
    /// Events consumed into the audit log, against raw inserts of the same rows.
    AuditIngest,
    /// `ListAuditEntries` over many stored entries at one call in flight, against the same
    /// SQL issued directly.
    AuditList,
    /// `SendMessage` to many listed customers: latency and registry calls per message.
    SendMessage,
    /// Invitation to e-mail received, against publish-with-confirm + consume + SMTP.
    Invitation,
    /// Idle memory and start-up time of each service as its own process.
    Footprint,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 12] = [
        Workload::ViewMemory,
        Workload::GetAccount,
        Workload::Authorize,
        Workload::RevocationDelay,
        Workload::CreateCustomer,
        Workload::Invitation,
        Workload::FanOut,
        Workload::PendingMessages,
        Workload::AuditIngest,
        Workload::AuditList,
        // Last of the cluster's: its messages leave fan-out jobs for the background.
        Workload::SendMessage,
        Workload::Footprint,
    ];

    /// Whether it runs against the in-process cluster (the others run on their own).
    pub fn needs_cluster(self) -> bool {
        !matches!(self, Workload::ViewMemory | Workload::Footprint)
    }
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
        if !workload.needs_cluster() {
            continue;
        }
        eprintln!("\n== {workload:?}");
        bench.settle().await?;
        match workload {
            Workload::GetAccount => rows.push(get_account::run(bench).await?),
            Workload::Authorize => rows.extend(authorize::run(bench).await?),
            Workload::RevocationDelay => rows.extend(revocation_delay::run(bench).await?),
            Workload::CreateCustomer => rows.push(create_customer::run(bench).await?),
            Workload::PendingMessages => rows.push(pending_messages::run(bench).await?),
            Workload::FanOut => rows.push(fanout::run(bench).await?),
            Workload::AuditIngest => rows.push(audit_ingest::run(bench).await?),
            Workload::AuditList => rows.push(audit_list::run(bench).await?),
            Workload::SendMessage => rows.push(send_message::run(bench).await?),
            Workload::Invitation => rows.push(invitation::run(bench).await?),
            Workload::ViewMemory | Workload::Footprint => {}
        }
    }
    Ok(())
}
