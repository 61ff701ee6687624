//! The gRPC server bootstrap shared by every process: one listener serving the enabled services
//! plus gRPC health and reflection (v1 and v1alpha), an edge layer that authenticates every call (health and
//! reflection stay open for probes and tooling) and records per-call metrics, a request size
//! limit, readiness that follows the database, and graceful shutdown on SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::Authenticator;
use crate::db::Database;
use crate::edge::EdgeLayer;
use crate::error::ErrorChain;
use crate::metrics::Metrics;

/// Why reflection could not be built.
pub use tonic_reflection::server::Error as ReflectionError;

/// A shutdown signal that many tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
    /// When it was first triggered: the grace period counts from there.
    triggered_at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self {
            sender: Arc::new(sender),
            receiver,
            triggered_at: Arc::default(),
        }
    }

    /// Tells every waiter to stop.
    pub fn trigger(&self) {
        self.triggered_at.get_or_init(tokio::time::Instant::now);
        let _ = self.sender.send(true);
    }

    /// When the signal was first triggered, if it was.
    pub fn triggered_at(&self) -> Option<tokio::time::Instant> {
        self.triggered_at.get().copied()
    }

    /// Whether the signal was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once the signal is triggered.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }

    /// Triggers the signal on SIGTERM or Ctrl-C.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            termination_signal().await;
            tracing::info!("shutdown requested; draining in-flight calls");
            this.trigger();
        });
    }
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C (a terminal).
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The health statuses of a process: one per service, following its database, and the overall
/// status "" that is SERVING only while every registered service is.
#[derive(Clone)]
pub struct Readiness {
    health: HealthReporter,
    services: Arc<tokio::sync::Mutex<HashMap<&'static str, bool>>>,
    /// What the node runs without, and why (a peer unreachable, the local view not fresh):
    /// calls still answered, some of them UNAVAILABLE; shown by `/readyz`.
    degraded: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness")
    }
}

impl Readiness {
    /// Notes that the node runs without `what` (`why`), or no longer (`None`). Degradations do
    /// not make the node unready: it still answers what it can (cached decisions, its own
    /// data), and the rest UNAVAILABLE.
    pub fn set_degraded(&self, what: &'static str, why: Option<String>) {
        let mut degraded = self
            .degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = match why {
            Some(why) => degraded.insert(what, why.clone()).as_ref() != Some(&why),
            None => degraded.remove(what).is_some(),
        };
        if changed {
            match degraded.get(what) {
                Some(why) => tracing::warn!(what, why = %why, "degraded"),
                None => tracing::info!(what, "no longer degraded"),
            }
        }
    }

    /// Every current degradation, as `what: why`.
    pub fn degradations(&self) -> Vec<String> {
        self.degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(what, why)| format!("{what}: {why}"))
            .collect()
    }

    /// Registers a service as NOT_SERVING.
    pub async fn register(&self, service_name: &'static str) {
        self.set(service_name, false).await;
    }

    /// Sets one service's status and recomputes the overall one.
    pub async fn set(&self, service_name: &'static str, serving: bool) {
        let mut services = self.services.lock().await;
        services.insert(service_name, serving);
        let status = |serving: bool| {
            if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        self.health
            .set_service_status(service_name, status(serving))
            .await;
        let all = services.values().all(|serving| *serving);
        self.health.set_service_status("", status(all)).await;
    }

    /// Whether the node is ready: at least one service is registered and every one is SERVING
    /// (the admin port's `/readyz`).
    pub async fn is_ready(&self) -> bool {
        let services = self.services.lock().await;
        !services.is_empty() && services.values().all(|serving| *serving)
    }

    /// Marks every service NOT_SERVING (shutdown: load balancers stop sending calls).
    pub async fn not_serving_any_more(&self) {
        let names: Vec<&'static str> = self.services.lock().await.keys().copied().collect();
        for name in names {
            self.set(name, false).await;
        }
    }
}

/// Health and reflection for a process: every status starts NOT_SERVING.
pub struct Probes {
    /// The health statuses.
    pub readiness: Readiness,
    routes: Routes,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probes")
    }
}

impl Probes {
    /// Health (overall status NOT_SERVING until every registered service is SERVING) and
    /// reflection over the whole Tenantry API, in both versions of the reflection protocol:
    /// v1, and v1alpha for the clients that speak only it (grpcui, Evans, Python's
    /// grpcio-reflection, older Postman). The `google.rpc` error details (BadRequest,
    /// ErrorInfo, PreconditionFailure, RetryInfo, …) are served too, so a client decodes the
    /// details of a refusal by reflection instead of showing base64.
    pub async fn new() -> Result<Self, ReflectionError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let error_details = error_detail_descriptors();
        // Both reflection services registered in each, so each lists both.
        let configure = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tenantry_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_file_descriptor_set(error_details.clone())
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false)
        };
        let routes = Routes::new(health_service)
            .add_service(configure().build_v1()?)
            .add_service(configure().build_v1alpha()?);
        Ok(Self {
            readiness: Readiness {
                health,
                services: Arc::default(),
                degraded: Arc::default(),
            },
            routes,
        })
    }

    /// The routes of health and reflection, to which the services are added.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }
}

/// The `google.rpc` error-detail and status types under the file names googleapis gives them
/// (`google/rpc/error_details.proto`, `google/rpc/status.proto`): `tonic-types` ships them as
/// bare `error_details.proto` and `status.proto`, and a client that already holds the
/// googleapis files (Python's googleapis-common-protos, a tool given googleapis imports) would
/// see a second definition of every type under another file name and refuse the pair.
fn error_detail_descriptors() -> prost_types::FileDescriptorSet {
    use prost::Message as _;
    let mut set = prost_types::FileDescriptorSet::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    let googleapis_name = |name: &str| match name {
        "error_details.proto" | "status.proto" => format!("google/rpc/{name}"),
        other => other.to_string(),
    };
    for file in &mut set.file {
        file.name = file.name.as_deref().map(googleapis_name);
        for dependency in &mut file.dependency {
            *dependency = googleapis_name(dependency);
        }
    }
    set
}

/// How often a serving service pings its database: an outage shows as NOT_SERVING within
/// this plus the ping's own time limit (a `SELECT 1` a second costs nothing).
const DATABASE_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps a service's health in step with its database: NOT_SERVING until the database is
/// reached and migrated (retrying with back-off), then SERVING while it answers pings, and
/// NOT_SERVING again whenever it does not.
pub async fn follow_database<M: MigratorTrait>(
    database: Database,
    readiness: Readiness,
    service_name: &'static str,
    shutdown: Shutdown,
) {
    readiness.register(service_name).await;
    let mut delay = Duration::from_millis(200);
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let attempt = tokio::select! {
            result = database.connect_and_migrate::<M>() => result,
            () = shutdown.wait() => return,
        };
        match attempt {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(
                    service = service_name,
                    database = %database.display_url(),
                    error = %ErrorChain(&error),
                    retry_in = ?delay,
                    "database not ready"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {},
                    () = shutdown.wait() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracing::info!(service = service_name, database = %database.display_url(), "database ready");
    readiness.set(service_name, true).await;
    let mut serving = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(DATABASE_PING_INTERVAL) => {},
            () = shutdown.wait() => {
                readiness.set(service_name, false).await;
                return;
            }
        }
        let healthy = database.ping().await;
        if healthy != serving {
            serving = healthy;
            if healthy {
                tracing::info!(service = service_name, "database reachable again");
            } else {
                tracing::warn!(service = service_name, "database unreachable");
            }
            readiness.set(service_name, healthy).await;
        }
    }
}

/// Serves `routes` on `listener` until `shutdown`, then stops accepting and drains in-flight
/// calls for at most `grace`. Per-call metrics go to a registry nobody scrapes; see
/// [`serve_with_metrics`].
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    authenticator: Arc<Authenticator>,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    serve_with_metrics(
        listener,
        routes,
        authenticator,
        shutdown,
        grace,
        Metrics::default(),
    )
    .await
}

/// [`serve`], recording `grpc_server_started_total`, `grpc_server_handled_total` and
/// `grpc_server_handling_seconds` in `metrics`.
pub async fn serve_with_metrics(
    listener: TcpListener,
    routes: Routes,
    authenticator: Arc<Authenticator>,
    shutdown: Shutdown,
    grace: Duration,
    metrics: Metrics,
) -> Result<(), tonic::transport::Error> {
    serve_with_tls(
        listener,
        routes,
        authenticator,
        shutdown,
        grace,
        metrics,
        None,
    )
    .await
}

/// The default of [`max_connection_age`], in seconds; see [`set_max_connection_age`].
static MAX_CONNECTION_AGE_SECONDS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_CONNECTION_AGE.as_secs());

/// How long a client connection lives unless [`set_max_connection_age`] says otherwise.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// Sets how long client connections of servers started from now on may live (the process's
/// `TENANTRY_MAX_CONNECTION_AGE_SECONDS`). Zero is taken as one second.
pub fn set_max_connection_age(age: Duration) {
    MAX_CONNECTION_AGE_SECONDS.store(age.as_secs().max(1), std::sync::atomic::Ordering::Relaxed);
}

/// How long a client connection lives before the server asks the client to go (HTTP/2
/// GOAWAY): calls in flight finish on it, later ones open a new connection — to whichever pod
/// a plain L4 load balancer (a ClusterIP Service) then picks, so new pods get their share.
/// Long-lived streams (`WatchInbox`) are not cut.
pub fn max_connection_age() -> Duration {
    Duration::from_secs(MAX_CONNECTION_AGE_SECONDS.load(std::sync::atomic::Ordering::Relaxed))
}

/// The default of [`max_metadata_bytes`]: what hyper allowed before the limits were explicit,
/// so no client that worked stops working.
pub const DEFAULT_MAX_METADATA_BYTES: u32 = 16 * 1024;

static MAX_METADATA_BYTES: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(DEFAULT_MAX_METADATA_BYTES);

/// Sets the largest request metadata servers started from now on accept (the process's
/// `TENANTRY_MAX_METADATA_BYTES`).
pub fn set_max_metadata_bytes(bytes: u32) {
    MAX_METADATA_BYTES.store(bytes.max(1024), std::sync::atomic::Ordering::Relaxed);
}

/// The largest request metadata (its HTTP/2 header list size: every name and value plus 32
/// bytes each) a call may carry; the edge answers a larger one RESOURCE_EXHAUSTED.
pub fn max_metadata_bytes() -> u32 {
    MAX_METADATA_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The HTTP/2 limits of the gRPC port, explicit rather than the libraries' defaults.
///
/// Oversized metadata must cost the caller its own call only. The HTTP/2 library answers a
/// header block past the advertised list size with 431 on its stream (a client shows UNKNOWN),
/// but closes the whole connection (GOAWAY, cutting every other call on it, e.g. other users'
/// `WatchInbox` behind a gateway that multiplexes them) when a block exceeds four times that size
/// or needs more CONTINUATION frames than the size allows (1.25 × size / 16 KiB). So the
/// advertised size is 1 MiB + 64 KiB (or twice [`max_metadata_bytes`] when that is larger):
/// metadata up to 1 MiB reaches the edge, which refuses anything over [`max_metadata_bytes`]
/// with a clear RESOURCE_EXHAUSTED before reading it; a block a little larger is 431; from about
/// 1.3 MiB of header block the library closes the connection, its guard against abuse.
pub mod http2 {
    use std::time::Duration;

    /// Most calls open at once on one connection: far more than a client needs (a gateway's many
    /// `WatchInbox` streams fit; calls beyond wait in the client), bounded against abuse.
    pub const MAX_CONCURRENT_STREAMS: u32 = 1000;
    /// The largest HTTP/2 frame a client may send (the protocol's default, stated).
    pub const MAX_FRAME_SIZE: u32 = 16 * 1024;
    /// Keep-alive pings on an idle connection, and how long the answer may take before the
    /// connection is considered dead (a vanished client frees its streams).
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
    /// See [`KEEPALIVE_INTERVAL`].
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
    /// Streams a client may open and reset before being accepted (rapid-reset attacks).
    pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 50;

    /// The header list size advertised for `max_metadata_bytes`.
    pub fn header_list_size(max_metadata_bytes: u32) -> u32 {
        (1024 * 1024 + 64 * 1024).max(max_metadata_bytes.saturating_mul(2))
    }
}

/// [`serve_with_metrics`], accepting only TLS connections (rustls) when `tls` is set. A client
/// that fails the handshake (e.g. plaintext) is dropped; the server goes on. Client
/// connections are closed gracefully after [`max_connection_age`].
pub async fn serve_with_tls(
    listener: TcpListener,
    routes: Routes,
    authenticator: Arc<Authenticator>,
    shutdown: Shutdown,
    grace: Duration,
    metrics: Metrics,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<(), tonic::transport::Error> {
    // The builder's `tcp_nodelay` only reaches sockets tonic binds itself; accepted ones need
    // it here, or small responses wait for the peer's delayed ACK (Nagle): ~40 ms per call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = shutdown.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let max_metadata = max_metadata_bytes();
    let server = builder
        .http2_keepalive_interval(Some(http2::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(http2::KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(http2::header_list_size(max_metadata))
        .max_concurrent_streams(http2::MAX_CONCURRENT_STREAMS)
        .max_frame_size(http2::MAX_FRAME_SIZE)
        .http2_max_pending_accept_reset_streams(Some(http2::MAX_PENDING_ACCEPT_RESET_STREAMS))
        .tcp_nodelay(true)
        .max_connection_age(max_connection_age())
        .layer(EdgeLayer::new(authenticator, metrics, max_metadata))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move { stop.wait().await });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async {
            shutdown.wait().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "calls still running after the grace period; exiting anyway");
            Ok(())
        }
    }
}
