//! A node: one gRPC listener serving a set of enabled services plus health and reflection, and
//! optionally an admin HTTP port with the node's Prometheus metrics and HTTP probes.
//!
//! Every service gets its own database and its own health status, which follows that database
//! (NOT_SERVING until it is reachable and migrated). Services find each other through
//! [`PeerUrls`]; a peer that runs in this very node is called through the node's own address,
//! so the code path is the same in one process and in many.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tenantry_events::kernel::{PeerConnector, merge_routes};
use tenantry_events::view_feed::replica_source;
use tenantry_events::{
    AmqpConfig, EventBus, FreshnessSettings, Outbox, Peer, Relay, RetryPolicy, Revocations,
    ServiceContext, ServiceInfo, StartError, Started, spawn_heartbeats, spawn_view_feed,
};
use tenantry_platform::auth::{AuthSetupError, Authenticator, ServiceTokenMinter};
use tenantry_platform::clients::{self, InvalidServiceUrl};
use tenantry_platform::config::AuthConfig;
use tenantry_platform::db::Database;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::server::{self, Probes, Shutdown};
use tenantry_platform::tls::{NodeTls, OWN_SERVER_NAME};
use tenantry_platform::view::{LocalView, ViewSettings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A service the binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ServiceKind {
    /// Accounts, partners and managed customers.
    CustomerRegistry,
    /// Members, the user directory and `Authorize`.
    Membership,
    /// Invitations by e-mail, and their mailer.
    Invitation,
    /// Partner messages, their fan-out and the login inbox.
    Notification,
    /// The append-only, hash-chained audit log of every change.
    Audit,
}

impl ServiceKind {
    /// Every service, in start order.
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::CustomerRegistry,
        ServiceKind::Membership,
        ServiceKind::Invitation,
        ServiceKind::Notification,
        ServiceKind::Audit,
    ];

    /// What the node knows of the service: names, consumed events, peers, migrations.
    pub fn info(self) -> &'static ServiceInfo {
        match self {
            ServiceKind::CustomerRegistry => &tenantry_registry::SERVICE,
            ServiceKind::Membership => &tenantry_membership::SERVICE,
            ServiceKind::Invitation => &tenantry_invitation::SERVICE,
            ServiceKind::Notification => &tenantry_notification::SERVICE,
            ServiceKind::Audit => &tenantry_audit::SERVICE,
        }
    }

    /// Starts the service in `context`, with its settings from `spec`.
    fn start(self, spec: &NodeSpec, context: &ServiceContext) -> Result<Started, StartError> {
        match self {
            ServiceKind::CustomerRegistry => {
                tenantry_registry::start(spec.registry.clone(), context)
            }
            ServiceKind::Membership => {
                tenantry_membership::start(spec.membership.clone(), &spec.mail, context)
            }
            ServiceKind::Invitation => {
                let mut config = spec.invitation.clone();
                // The development sign-in stands in for an identity provider only where every
                // token is signed with the public development secret anyway (`serve` refuses
                // that secret).
                // Tests may also switch it on in code; no setting can.
                config.development_sign_in |= spec.auth.jwt_secret.as_deref()
                    == Some(tenantry_platform::config::DEV_JWT_SECRET);
                // With an identity provider, the page must sign people in at the same one.
                if spec.auth.jwks_url.is_some() {
                    config.api_token_issuer = Some(spec.auth.issuer.clone());
                }
                let secrets = tenantry_invitation::CookieSecrets {
                    current: spec
                        .auth
                        .internal_secret
                        .clone()
                        .unwrap_or_default()
                        .into_bytes(),
                    previous: spec
                        .auth
                        .internal_secret_previous
                        .clone()
                        .map(String::into_bytes),
                };
                tenantry_invitation::start(config, &spec.mail, &secrets, context)
            }
            ServiceKind::Notification => {
                tenantry_notification::start(spec.notification.clone(), context)
            }
            ServiceKind::Audit => {
                let derived = |secret: &str| derived_key(b"tenantry audit tombstones\0", secret);
                let keys = match &spec.audit.tombstone_key {
                    Some(key) => tenantry_audit::TombstoneKeys {
                        current: key.clone().into_bytes(),
                        previous: spec
                            .audit
                            .tombstone_key_previous
                            .clone()
                            .map(String::into_bytes),
                    },
                    None => tenantry_audit::TombstoneKeys {
                        current: derived(spec.auth.internal_secret.as_deref().unwrap_or_default()),
                        previous: spec.auth.internal_secret_previous.as_deref().map(derived),
                    },
                };
                tenantry_audit::start(keys, context)
            }
        }
    }

    /// The name used on the command line, in file names and in service tokens.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The fully qualified gRPC service name (also its health-check name).
    pub fn grpc_name(self) -> &'static str {
        self.info().grpc_name
    }
}

/// Where this node's services reach their peers; `None` means "in this node".
#[derive(Clone, Debug, Default)]
pub struct PeerUrls {
    /// The customer registry, e.g. `http://customer-registry:50051`.
    pub registry: Option<String>,
    /// Membership, e.g. `http://membership:50051`.
    pub membership: Option<String>,
}

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeSpec {
    /// The services to run, each with its database URL.
    pub services: Vec<(ServiceKind, String)>,
    /// How callers are authenticated; `internal_secret` must be set.
    pub auth: AuthConfig,
    /// Where peers run.
    pub peers: PeerUrls,
    /// Largest accepted request, in bytes.
    pub max_request_bytes: usize,
    /// How long in-flight calls may drain after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Customer registry settings.
    pub registry: tenantry_registry::Config,
    /// Membership settings.
    pub membership: tenantry_membership::Config,
    /// Invitation settings (lifetime, public URL, …).
    pub invitation: tenantry_invitation::Config,
    /// The e-mail settings every sending service shares (SMTP server, sender).
    pub mail: tenantry_mail::MailConfig,
    /// Notification settings (fan-out batch, expiry sweep, inbox snapshot).
    pub notification: tenantry_notification::Config,
    /// Audit settings (the purge tombstones' key).
    pub audit: tenantry_audit::Config,
    /// How events travel between services.
    pub events: EventsSpec,
    /// Where e-mails are written as `.eml` files when no SMTP URL is configured.
    pub mail_dir: std::path::PathBuf,
    /// The admin HTTP port (`/metrics`, `/livez`, `/readyz`), if any.
    pub admin_listen: Option<SocketAddr>,
}

/// The databases' URLs without their passwords, so a spec can be logged.
impl std::fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services: Vec<(ServiceKind, String)> = self
            .services
            .iter()
            .map(|(kind, url)| (*kind, tenantry_platform::db::redact(url)))
            .collect();
        f.debug_struct("NodeSpec")
            .field("services", &services)
            .field("auth", &self.auth)
            .field("peers", &self.peers)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("registry", &self.registry)
            .field("membership", &self.membership)
            .field("invitation", &self.invitation)
            .field("mail", &self.mail)
            .field("notification", &self.notification)
            .field("audit", &self.audit)
            .field("events", &self.events)
            .field("mail_dir", &self.mail_dir)
            .field("admin_listen", &self.admin_listen)
            .finish()
    }
}

/// The event transport: RabbitMQ when `amqp` is set, otherwise an in-process bus (which only
/// connects the services of this one process: the embedded default).
#[derive(Clone, Debug)]
pub struct EventsSpec {
    /// The broker, if any.
    pub amqp: Option<AmqpConfig>,
    /// Retries of failed handlers on the in-process bus (the broker's are in `amqp`).
    pub retry: RetryPolicy,
    /// The size and age bounds of the local view.
    pub view: ViewSettings,
    /// When the local view may be trusted, and how revocations are announced.
    pub freshness: FreshnessSettings,
}

impl EventsSpec {
    /// `amqp` (or the in-process bus) with `retry`, and the default view settings.
    pub fn new(amqp: Option<AmqpConfig>, retry: RetryPolicy) -> Self {
        Self {
            amqp,
            retry,
            view: ViewSettings::default(),
            freshness: FreshnessSettings::default(),
        }
    }
}

/// The name of the node's broker connection: `base` (`tenantry` unless configured), the
/// services it runs, the host (a pod's name in Kubernetes) and the process id, e.g.
/// `tenantry membership on membership-7f9c (pid 1)`.
fn broker_connection_name(base: &str, services: &[(ServiceKind, String)]) -> String {
    let names: Vec<&str> = services.iter().map(|(kind, _)| kind.name()).collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!(
        "{base} {} on {host} (pid {})",
        names.join(","),
        std::process::id()
    )
}

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Token verification cannot be set up.
    #[error("authentication is not configured")]
    Auth(#[from] AuthSetupError),
    /// Service-to-service calls need a shared internal secret.
    #[error("TENANTRY_INTERNAL_SECRET is not set: services cannot authenticate to each other")]
    NoInternalSecret,
    /// A peer URL is malformed.
    #[error(transparent)]
    PeerUrl(#[from] InvalidServiceUrl),
    /// Reflection could not be built from the descriptor sets.
    #[error("cannot build gRPC reflection")]
    Reflection(#[from] server::ReflectionError),
    /// The listener's address is unknown.
    #[error("cannot read the listening address")]
    Listener(#[source] std::io::Error),
    /// The admin port cannot be opened.
    #[error("cannot listen on the admin port {0}")]
    AdminListener(SocketAddr, #[source] std::io::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Server(#[from] tonic::transport::Error),
    /// A service cannot start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] tenantry_platform::tls::TlsSetupError),
    /// The server task panicked or was cancelled.
    #[error("the server task ended abnormally")]
    Join(#[from] tokio::task::JoinError),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    metrics: Metrics,
    bus: EventBus,
    /// How the node reaches its own port (health checks): URL and client TLS.
    own_url: String,
    own_tls: Option<tonic::transport::ClientTlsConfig>,
    shutdown: Shutdown,
    /// Triggered once the server has drained: the relays, the view's feed and heartbeats.
    drained: Shutdown,
    shutdown_grace: Duration,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    background: Vec<JoinHandle<()>>,
}

/// The key that signs page tokens, derived from the internal secret so every replica of a
/// cluster accepts the others' tokens without another setting.
fn page_token_key(internal_secret: &str) -> Vec<u8> {
    derived_key(b"tenantry page tokens\0", internal_secret)
}

/// A key for one purpose, derived from the internal secret (see [`page_token_key`]).
fn derived_key(purpose: &[u8], internal_secret: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(purpose);
    hasher.update(internal_secret.as_bytes());
    hasher.finalize().to_vec()
}

impl Node {
    /// Starts serving `spec` on `listener`. Returns as soon as the port accepts calls; each
    /// service turns SERVING once its database is ready (see [`Node::wait_ready`]).
    pub async fn start(spec: NodeSpec, listener: TcpListener) -> Result<Node, NodeError> {
        Self::start_with_tls(spec, listener, NodeTls::default()).await
    }

    /// [`Node::start`] with TLS as `tls` says: the port accepts TLS only when `tls.server` is
    /// set, and the node then calls its own services at `https://` expecting the certificate to
    /// name [`OWN_SERVER_NAME`]; `https://` peer URLs are verified against `tls.ca`.
    pub async fn start_with_tls(
        spec: NodeSpec,
        listener: TcpListener,
        tls: NodeTls,
    ) -> Result<Node, NodeError> {
        let local_addr = listener.local_addr().map_err(NodeError::Listener)?;
        let internal_secret = spec
            .auth
            .internal_secret
            .clone()
            .ok_or(NodeError::NoInternalSecret)?;
        let authenticator = Arc::new(Authenticator::new(spec.auth.clone())?);
        let page_tokens = PageTokens::new(&page_token_key(&internal_secret)).accepting_previous(
            spec.auth
                .internal_secret_previous
                .as_deref()
                .map(page_token_key)
                .as_deref(),
        );
        let shutdown = Shutdown::new();
        let probes = Probes::new().await?;
        let mut routes = probes.routes();
        let mut background = Vec::new();

        let scheme = if tls.serves_tls() { "https" } else { "http" };
        let own_url = format!("{scheme}://{}", reachable(local_addr));
        let own_tls = tls.client_for(&own_url, Some(OWN_SERVER_NAME));

        // One registry per node, handed down to everything that records.
        let metrics = Metrics::new();
        let admin = match spec.admin_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|error| NodeError::AdminListener(addr, error))?;
                let bound = listener
                    .local_addr()
                    .map_err(|error| NodeError::AdminListener(addr, error))?;
                Some((listener, bound))
            }
            None => None,
        };
        let bus = match &spec.events.amqp {
            Some(amqp) => EventBus::amqp(AmqpConfig {
                connection_name: broker_connection_name(&amqp.connection_name, &spec.services),
                ..amqp.clone()
            }),
            None => EventBus::in_process(spec.events.retry.clone()),
        }
        .with_metrics(metrics.clone());

        // Each service calls its peers under its own identity.
        let mut minters = HashMap::new();
        for (kind, _) in &spec.services {
            minters.insert(
                kind.name(),
                ServiceTokenMinter::new(kind.name(), &internal_secret)?,
            );
        }
        let peers: PeerConnector = {
            let (peers, tls, own_url, own_tls) = (
                spec.peers.clone(),
                tls.clone(),
                own_url.clone(),
                own_tls.clone(),
            );
            Arc::new(move |peer: Peer, caller: &'static str| {
                let minter = minters
                    .get(caller)
                    .cloned()
                    .ok_or(StartError::NoIdentity(caller))?;
                let configured = match peer {
                    Peer::Registry => &peers.registry,
                    Peer::Membership => &peers.membership,
                };
                Ok(match configured {
                    Some(url) => clients::channel_with_tls(url, minter, tls.client_for(url, None))?,
                    None => clients::channel_with_tls(&own_url, minter, own_tls.clone())?,
                })
            })
        };
        // One local view per process, kept current by one feed. Every replica sends
        // heartbeats (revoking calls wait for the acknowledgements of those heard from); those
        // that can take access away (membership, the registry) also hold views' trust.
        let view = LocalView::new(spec.events.view);
        view.record_into(&metrics);
        let freshness = spec.events.freshness;
        let revocations = Revocations::new(freshness, replica_source());
        revocations.record_into(&metrics);
        let revoking = spec.services.iter().any(|(kind, _)| {
            matches!(
                kind,
                ServiceKind::Membership | ServiceKind::CustomerRegistry
            )
        });
        // The feed, the heartbeats and the relays stop only once the server has drained: a
        // revoking call still in flight needs its event relayed and acknowledged, and the
        // goodbye must not go out before it answered.
        let drained = Shutdown::new();
        background.push(spawn_view_feed(
            &bus,
            view.clone(),
            freshness,
            revocations.clone(),
            probes.readiness.clone(),
            drained.clone(),
        ));
        background.push(spawn_heartbeats(
            &bus,
            revocations.clone(),
            revoking,
            freshness,
            drained.clone(),
        ));
        for (kind, database_url) in &spec.services {
            let database = Database::new(database_url);
            // Every service publishes through its own outbox and relay.
            let outbox = Outbox::new()
                .with_revocations(revocations.clone())
                .with_view(view.clone());
            background.push(tokio::spawn(
                Relay::new(
                    kind.name(),
                    database.clone(),
                    outbox.clone(),
                    bus.publisher(),
                )
                .metrics(metrics.clone())
                .run(drained.clone()),
            ));
            let context = ServiceContext::new(
                kind.name(),
                database,
                outbox,
                bus.clone(),
                shutdown.clone(),
                metrics.clone(),
                probes.readiness.clone(),
                page_tokens.clone(),
                spec.max_request_bytes,
                spec.mail_dir.clone(),
                view.clone(),
                peers.clone(),
            );
            let started = kind.start(&spec, &context)?;
            routes = merge_routes(routes, started.routes);
            background.extend(started.tasks);
        }

        let admin_addr = match admin {
            Some((admin_listener, bound)) => {
                let readiness = probes.readiness.clone();
                let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
                background.push(tokio::spawn(async move {
                    tracing::info!(address = %bound, "admin port serving /metrics, /livez, /readyz");
                    if let Err(error) =
                        tenantry_platform::admin::serve_admin(admin_listener, metrics, readiness, shutdown).await
                    {
                        tracing::error!(error = %error, "the admin port failed");
                    }
                }));
                Some(bound)
            }
            None => None,
        };
        let server = tokio::spawn(server::serve_with_tls(
            listener,
            routes,
            authenticator,
            shutdown.clone(),
            spec.shutdown_grace,
            metrics.clone(),
            tls.server.clone(),
        ));
        Ok(Node {
            local_addr,
            admin_addr,
            metrics,
            bus,
            own_url,
            own_tls,
            shutdown,
            drained,
            shutdown_grace: spec.shutdown_grace,
            server,
            background,
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin port (`/metrics`, `/livez`, `/readyz`), if it serves one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The node's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A copy of every event published from now on whose type matches `bindings`, through the
    /// node's own transport (see [`EventBus::subscribe`]); it ends when the node stops. For
    /// tests and tools that watch what the services announce.
    pub fn subscribe_events(
        &self,
        name: &str,
        bindings: Vec<String>,
    ) -> tenantry_events::Subscription {
        self.bus.subscribe(name, bindings, self.shutdown.clone())
    }

    /// A handle that stops the node when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until every service of the node reports SERVING, or `timeout` passes, or shutdown
    /// is triggered (a SIGTERM during start-up must not wait out the timeout).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if overall_serving(&self.own_url, self.own_tls.clone()).await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.shutdown.is_triggered() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs until shutdown is triggered and in-flight calls and event handlers have drained,
    /// or the grace period (counted from the trigger) is over: background work still running
    /// then is aborted. An aborted handler's transaction rolls back and its message was never
    /// acknowledged, so the broker delivers it again to the next process.
    pub async fn wait(self) -> Result<(), NodeError> {
        let result = self.server.await;
        self.shutdown.trigger();
        self.drained.trigger();
        let deadline = self
            .shutdown
            .triggered_at()
            .unwrap_or_else(tokio::time::Instant::now)
            + self.shutdown_grace;
        for mut task in self.background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    grace = ?self.shutdown_grace,
                    "background work still running after the grace period; aborting it \
                     (unacknowledged events are delivered again)"
                );
                task.abort();
                let _ = task.await;
            }
        }
        result??;
        Ok(())
    }

    /// Triggers shutdown and waits for the node to stop.
    pub async fn stop(self) -> Result<(), NodeError> {
        self.shutdown.trigger();
        self.wait().await
    }
}

/// An address peers can dial: a wildcard listen address is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

async fn overall_serving(url: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> bool {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let Ok(mut channel) = tonic::transport::Endpoint::from_shared(url.to_string()) else {
        return false;
    };
    if let Some(tls) = tls {
        let Ok(with_tls) = channel.tls_config(tls) else {
            return false;
        };
        channel = with_tls;
    }
    let Ok(channel) = channel.connect().await else {
        return false;
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    matches!(response, Ok(response) if response.get_ref().status == ServingStatus::Serving as i32)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tenantry_proto::EventType;

    use super::*;

    /// Every event type Tenantry publishes is consumed by some service besides the audit log,
    /// or is declared as published for outside subscribers (and the audit log) only — and no
    /// such type is consumed after all. A type added on the publishing side alone fails here,
    /// not silently in production. The audit log records every type but `inbox.changed`.
    #[test]
    fn every_published_event_type_has_a_consumer_or_is_for_outside_subscribers() {
        let consumed: BTreeSet<EventType> = ServiceKind::ALL
            .into_iter()
            .filter(|kind| *kind != ServiceKind::Audit)
            .flat_map(|kind| kind.info().consumes.iter().copied())
            .collect();
        let audited: BTreeSet<EventType> =
            ServiceKind::Audit.info().consumes.iter().copied().collect();
        assert_eq!(
            EventType::ALL.len() - audited.len(),
            1,
            "the audit log records every type but one"
        );
        assert!(!audited.contains(&EventType::InboxChanged));
        for event_type in EventType::ALL {
            assert!(
                consumed.contains(&event_type) != event_type.outside_subscribers_only(),
                "{event_type}: consumed by a service = {}, marked for outside subscribers only = {}",
                consumed.contains(&event_type),
                event_type.outside_subscribers_only()
            );
        }
    }

    /// Names are file names, token identities, health keys and queue names: two services must
    /// never share one, and the command-line name must be what the service calls itself.
    #[test]
    fn services_have_distinct_names() {
        use clap::ValueEnum;
        let names: BTreeSet<_> = ServiceKind::ALL
            .into_iter()
            .map(ServiceKind::name)
            .collect();
        let grpc: BTreeSet<_> = ServiceKind::ALL
            .into_iter()
            .map(ServiceKind::grpc_name)
            .collect();
        assert_eq!((names.len(), grpc.len()), (5, 5));
        // A consumer group is a durable queue: two services sharing one would steal each
        // other's events.
        let groups: Vec<_> = ServiceKind::ALL
            .into_iter()
            .flat_map(|kind| kind.info().consumer_groups.iter().copied())
            .collect();
        let distinct: BTreeSet<_> = groups.iter().collect();
        assert_eq!(distinct.len(), groups.len(), "{groups:?}");
        assert!(groups.iter().all(|group| group.starts_with("tenantry.")));
        for kind in ServiceKind::ALL {
            let flag = kind.to_possible_value().expect("a value");
            assert_eq!(flag.get_name(), kind.name());
        }
    }
}
