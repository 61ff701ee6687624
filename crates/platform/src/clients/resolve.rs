//! The resolver of a `dns:///host:port` peer: looks the name up now, then every resolve
//! interval (and soon after a replica turned out unreachable), and tells the balancer which
//! addresses appeared and which went. It ends when the balancer is gone (every handle on the
//! channel dropped).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tonic::transport::Endpoint;

use super::balance::{Census, Dial, Replica, Update};

/// The shortest time between two look-ups that a failing replica asks for.
const NUDGE_SPACING: Duration = Duration::from_millis(500);
/// How long one look-up may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One `dns:` peer: its name, and the endpoint every replica starts from (its URI names the
/// host, so `:authority` and the TLS server name are the DNS name, not an address).
pub(crate) struct DnsTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) endpoint: Endpoint,
    pub(crate) census: Arc<Census>,
    pub(crate) interval: Duration,
}

/// Resolves `target` until `updates` is closed.
pub(crate) async fn run(target: DnsTarget, updates: mpsc::Sender<Update>) {
    let unreachable = Arc::new(Notify::new());
    let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut first = true;
    loop {
        let looked_up = tokio::select! {
            () = updates.closed() => return,
            result = tokio::time::timeout(
                LOOKUP_TIMEOUT,
                tokio::net::lookup_host((target.host.as_str(), target.port)),
            ) => result,
        };
        match looked_up {
            Ok(Ok(addresses)) => {
                let found: BTreeSet<SocketAddr> = addresses.collect();
                if found.is_empty() {
                    tracing::warn!(peer = %target.host, "the peer's name resolves to no address; keeping the replicas known");
                } else if found != current {
                    for gone in current.difference(&found) {
                        if updates
                            .send(Update::Remove(gone.to_string()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    for new in found.difference(&current) {
                        let replica = Replica::new(
                            target.endpoint.clone(),
                            Dial::Address(*new),
                            target.census.clone(),
                            Some(unreachable.clone()),
                        );
                        if updates
                            .send(Update::Insert(new.to_string(), replica))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    tracing::info!(
                        peer = %target.host,
                        port = target.port,
                        replicas = ?found,
                        "peer replicas resolved"
                    );
                    current = found;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(peer = %target.host, error = %error, "cannot resolve the peer's name; keeping the replicas known");
            }
            Err(_) => {
                tracing::warn!(peer = %target.host, timeout = ?LOOKUP_TIMEOUT, "resolving the peer's name timed out; keeping the replicas known");
            }
        }
        if std::mem::take(&mut first) && updates.send(Update::Resolved).await.is_err() {
            return;
        }
        tokio::select! {
            () = updates.closed() => return,
            () = tokio::time::sleep(target.interval) => {}
            () = unreachable.notified() => {
                tokio::select! {
                    () = updates.closed() => return,
                    () = tokio::time::sleep(NUDGE_SPACING.min(target.interval)) => {}
                }
            }
        }
    }
}
