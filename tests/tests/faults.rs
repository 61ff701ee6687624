//! A test binary of its own, apart from the end-to-end suite in `e2e/` (one binary for every
//! other end-to-end test): these tests stop this machine's PostgreSQL and RabbitMQ, which every
//! PostgreSQL and RabbitMQ test of that suite uses. The tests of one binary run at the same
//! time; cargo runs test binaries one after another, so only as a binary of its own is an
//! outage here never seen by another test.
//!
//! Faults, with nothing lost: RabbitMQ stopped and started again while 1,000 invitations are
//! created (exactly one e-mail each); PostgreSQL restarted under load (health follows it,
//! callers see UNAVAILABLE and nothing worse, no process restart needed); poison messages end
//! in the dead-letter queue without holding up the events behind them; a member removed while
//! RabbitMQ is stopped is refused by both replicas despite their warm caches. (The notification
//! process killed with SIGKILL in the middle of a fan-out is `crates/cli/tests/kill_notification.rs`:
//! it needs the `tenantry` binary.)
//!
//! The outages are real: `rabbitmqctl stop_app`/`start_app` and `pg_ctlcluster stop`/`start`
//! on this machine's servers (see `faults/system.rs`; a guard starts them again whatever
//! happens). The tests of this binary never overlap, and cargo runs test binaries one after
//! another, so no other test of the suite sees the outage. With `TENANTRY_TEST_FAULTS=proxy`
//! the same scenarios cut a TCP proxy between the cluster and the server instead, for machines
//! where the servers cannot be restarted.
//!
//! Needs TENANTRY_TEST_POSTGRES_URL, TENANTRY_TEST_AMQP_URL and aiosmtpd; under CI=true a
//! missing one, or servers this machine cannot restart, is a failure.

#[path = "faults/observe.rs"]
mod observe;
#[path = "faults/poison.rs"]
mod poison;
#[path = "faults/postgres.rs"]
mod postgres;
#[path = "faults/rabbitmq.rs"]
mod rabbitmq;
#[path = "faults/revocation.rs"]
mod revocation;
#[path = "faults/system.rs"]
mod system;

use std::time::{Duration, Instant};

use observe::Tally;
use tenantry_e2e::{server_addr, through};
use tonic::Code;

/// One fault test at a time: each takes a shared server away.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether outages are made with a TCP proxy instead of by stopping the servers.
fn via_proxy() -> bool {
    std::env::var("TENANTRY_TEST_FAULTS").is_ok_and(|mode| mode == "proxy")
}

/// Runs `call` until it answers something other than UNAVAILABLE (the code a caller may
/// retry), recording every answer in `tally`. The caller sends the same request each time, so
/// a create is retried with its request_id: at most one row, whatever the outage did.
pub(crate) async fn retrying<T, F, Fut>(tally: &Tally, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let began = Instant::now();
        let result = call().await;
        tally.took(began.elapsed());
        tally.record(&result);
        match result {
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
