//! How a service starts: every service exports `start(config, &ServiceContext) -> Started`, and
//! the node (`tenantry up`, `tenantry serve …`) runs the enabled services through that one
//! function, in one loop. The context carries what every service gets from its node — its
//! database and outbox, the event bus, shutdown, metrics, page tokens, its peers — so a service
//! wires its own handlers, consumers and background work, and the node knows nothing of them.
//!
//! It lives in this crate because a service's start needs the event bus; everything else in it
//! comes from the platform crate.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};

use sea_orm_migration::MigratorTrait;
use tenantry_platform::clients::{InvalidServiceUrl, ServiceChannel};
use tenantry_platform::db::Database;
use tenantry_platform::metrics::Metrics;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::retention::{PruneTarget, Pruner};
use tenantry_platform::server::{self, Readiness, Shutdown};
use tenantry_platform::view::LocalView;
use tenantry_proto::EventType;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::{ConsumerSpec, EventBus, Outbox, Subscription};

/// A service another service calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The customer registry.
    Registry,
    /// Membership (`Authorize` and the member directory).
    Membership,
}

/// Opens an authenticated channel to a peer, as this service's identity.
pub type PeerConnector =
    Arc<dyn Fn(Peer, &'static str) -> Result<ServiceChannel, StartError> + Send + Sync>;

/// What a service gets from the node that runs it.
#[derive(Clone)]
pub struct ServiceContext {
    /// The service's name (`invitation`, …): its identity towards peers and in file names.
    pub service: &'static str,
    /// The service's own database; migrated and followed by [`ServiceContext::follow_database`].
    pub database: Database,
    /// The service's outbox (the node runs its relay).
    pub outbox: Outbox,
    /// The event transport of the node.
    pub bus: EventBus,
    /// The node's shutdown: background work ends when it triggers.
    pub shutdown: Shutdown,
    /// The node's metrics.
    pub metrics: Metrics,
    /// The node's health reporting.
    pub readiness: Readiness,
    /// Signs and checks page tokens (one key per cluster).
    pub page_tokens: PageTokens,
    /// The largest request a handler accepts, in bytes.
    pub max_request_bytes: usize,
    /// Where e-mails are written as `.eml` files when no SMTP server is configured.
    pub mail_dir: PathBuf,
    /// The process's local view (shared by its services): authorization decisions and account
    /// facts kept in memory while the node's event feed says they are current.
    pub view: LocalView,
    peers: PeerConnector,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext")
            .field("service", &self.service)
            .field("database", &self.database)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("mail_dir", &self.mail_dir)
            .finish_non_exhaustive()
    }
}

/// What the node knows of a service before starting it: its names, the event types it
/// consumes, the peers it calls, and how to migrate its database. Each service exports one as
/// `SERVICE`.
#[derive(Clone, Copy)]
pub struct ServiceInfo {
    /// The name on the command line, in file names and in service tokens (`invitation`).
    pub name: &'static str,
    /// The fully qualified gRPC service name (also its health-check name).
    pub grpc_name: &'static str,
    /// Every event type its consumer groups and broadcast subscriptions bind.
    pub consumes: &'static [EventType],
    /// Its consumer groups (= durable queue names, before any queue prefix).
    pub consumer_groups: &'static [&'static str],
    /// The services it calls.
    pub calls: &'static [Peer],
    /// Applies its migrations (`tenantry migrate`).
    pub migrate: Migrate,
}

/// Applies one service's migrations to a connection.
pub type Migrate = for<'c> fn(
    &'c DatabaseConnection,
) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + 'c>>;

/// [`ServiceInfo::migrate`] for a service migrated by `M`.
pub fn migrate_with<M: MigratorTrait + 'static>(
    connection: &DatabaseConnection,
) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + '_>> {
    Box::pin(M::up(connection, None))
}

impl std::fmt::Debug for ServiceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceInfo")
            .field("name", &self.name)
            .field("grpc_name", &self.grpc_name)
            .field("consumes", &self.consumes)
            .field("consumer_groups", &self.consumer_groups)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

/// What one service's start produced: its gRPC routes and its background tasks (consumers,
/// workers, sweeps, database follower), which the node awaits at shutdown.
#[derive(Debug, Default)]
pub struct Started {
    /// The service's gRPC handlers.
    pub routes: Routes,
    /// Work that runs until shutdown.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A peer's URL is malformed.
    #[error(transparent)]
    PeerUrl(#[from] InvalidServiceUrl),
    /// The node has no service identity for this service, so it cannot call its peers.
    #[error("{0} has no service identity in this node")]
    NoIdentity(&'static str),
    /// The service's own set-up failed (e.g. an invalid SMTP URL).
    #[error("{service} cannot start")]
    Setup {
        /// The service.
        service: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ServiceContext {
    /// A context for `service`; `peers` opens channels to the other services.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: &'static str,
        database: Database,
        outbox: Outbox,
        bus: EventBus,
        shutdown: Shutdown,
        metrics: Metrics,
        readiness: Readiness,
        page_tokens: PageTokens,
        max_request_bytes: usize,
        mail_dir: PathBuf,
        view: LocalView,
        peers: PeerConnector,
    ) -> Self {
        Self {
            service,
            database,
            outbox,
            bus,
            shutdown,
            metrics,
            readiness,
            page_tokens,
            max_request_bytes,
            mail_dir,
            view,
            peers,
        }
    }

    /// A channel to `peer`, authenticated as this service.
    pub fn peer(&self, peer: Peer) -> Result<ServiceChannel, StartError> {
        (self.peers)(peer, self.service)
    }

    /// The error for a failed set-up step of this service.
    pub fn setup_error(
        &self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StartError {
        StartError::Setup {
            service: self.service,
            source: Box::new(source),
        }
    }

    /// Keeps the health of `grpc_name` in step with the service's database, migrating it
    /// with `M` (NOT_SERVING until it is reachable and migrated, and again while it is not).
    pub fn follow_database<M: MigratorTrait + 'static>(
        &self,
        grpc_name: &'static str,
    ) -> JoinHandle<()> {
        tokio::spawn(server::follow_database::<M>(
            self.database.clone(),
            self.readiness.clone(),
            grpc_name,
            self.shutdown.clone(),
        ))
    }

    /// Runs `spec`'s consumer group until shutdown; events the handler appends are relayed as
    /// soon as each delivery commits.
    pub fn consume(&self, mut spec: ConsumerSpec) -> JoinHandle<()> {
        spec.outbox.get_or_insert_with(|| self.outbox.clone());
        self.bus.spawn_consumer(spec, self.shutdown.clone())
    }

    /// A per-replica broadcast subscription (see [`EventBus::subscribe`]).
    pub fn subscribe(&self, name: &str, bindings: Vec<String>) -> Subscription {
        self.bus.subscribe(name, bindings, self.shutdown.clone())
    }

    /// Runs `work` until it ends (it should end at shutdown).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        tokio::spawn(work)
    }

    /// Runs the service's pruner until shutdown: every `TENANTRY_PRUNE_INTERVAL_SECONDS` it
    /// deletes the rows of `targets` older than their retention, in small batches, counting
    /// them in `tenantry_pruned_rows_total` (see [`tenantry_platform::retention`]).
    pub fn prune(&self, targets: Vec<PruneTarget>) -> JoinHandle<()> {
        let pruner =
            Pruner::new(self.service, self.database.clone(), targets).metrics(self.metrics.clone());
        tokio::spawn(pruner.run(self.shutdown.clone()))
    }
}

impl Started {
    /// A service serving `routes`, with no background work yet.
    pub fn serving(routes: Routes) -> Self {
        Self {
            routes,
            tasks: Vec::new(),
        }
    }

    /// Adds background work.
    pub fn with_tasks(mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) -> Self {
        self.tasks.extend(tasks);
        self
    }
}

/// The routes of `a` and `b` together (no two services share a path). Both carry tonic's
/// fallback (UNIMPLEMENTED for unknown paths); `a`'s stays, as axum refuses two.
pub fn merge_routes(a: Routes, b: Routes) -> Routes {
    Routes::from(
        a.into_axum_router()
            .merge(b.into_axum_router().reset_fallback()),
    )
}
