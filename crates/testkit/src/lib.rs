//! Test support for end-to-end tests: a real cluster (the same [`Node`] as `tenantry up`) on
//! port 0, with fresh databases per cluster — temporary SQLite files, or brand-new PostgreSQL
//! databases when `TENANTRY_TEST_POSTGRES_URL` is set — plus tokens and ready-made clients.
//!
//! Under `CI=true` a missing PostgreSQL is a failure, not a skip: [`Backend::Postgres`] panics
//! when its URL is not configured.

mod backends;
pub mod browser;
mod identities;
pub mod proxy;
pub mod smtp;

pub use backends::*;
pub use identities::*;
/// The one temporary-database fixture (migrated SQLite file), also used by the services' own
/// unit tests, which cannot depend on this crate.
pub use tenantry_platform::testing::TempDatabase;

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::ConnectionTrait;
pub use tenantry_cli::ServiceKind;
use tenantry_cli::{EventsSpec, Node, NodeSpec, PeerUrls};
use tenantry_events::{AmqpConfig, RetryPolicy};
pub use tenantry_events::{Event, Subscription};
use tenantry_platform::auth::ServiceTokenMinter;
use tenantry_platform::config::AuthConfig;
use tenantry_proto::audit::v1::audit_service_client::AuditServiceClient;
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::transport::Channel;

/// The HS256 secret test clusters trust for user tokens.
pub const TEST_JWT_SECRET: &str = "tenantry-test-user-secret";
const TEST_INTERNAL_SECRET: &str = "tenantry-test-internal-secret";

/// The consumer groups of the cluster (their queues are deleted when a test cluster stops).
pub fn consumer_groups() -> impl Iterator<Item = &'static str> {
    ServiceKind::ALL
        .into_iter()
        .flat_map(|kind| kind.info().consumer_groups.iter().copied())
}

/// How a test cluster is put together.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Where the services keep their data.
    pub backend: Backend,
    /// Events through the real RabbitMQ (a fresh exchange and queues per cluster) instead of the
    /// in-process bus.
    pub amqp: bool,
    /// Overrides the broker URL (e.g. a proxy in front of RabbitMQ that a test cuts).
    pub amqp_url: Option<String>,
    /// Overrides the PostgreSQL server of [`Backend::Postgres`] (e.g. a proxy in front of it
    /// that a test cuts); the databases are created and dropped through it.
    pub postgres_url: Option<String>,
    /// Membership settings.
    pub membership: tenantry_membership::Config,
    /// Invitation settings.
    pub invitation: tenantry_invitation::Config,
    /// E-mail settings; `smtp_url` None writes `.eml` files into the cluster's mail dir.
    pub mail: tenantry_mail::MailConfig,
    /// Handler retries (short, so tests of retries are fast).
    pub retry: RetryPolicy,
    /// Unacknowledged deliveries per consumer with `amqp`: one batch (16) for tests; the
    /// benchmark runs the shipped default (`AmqpConfig::default().prefetch`, two batches).
    pub amqp_prefetch: u16,
}

impl ClusterOptions {
    /// Defaults for `backend`: in-process bus, e-mails as files, fast retries.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            amqp: false,
            amqp_url: None,
            postgres_url: None,
            membership: tenantry_membership::Config::default(),
            invitation: tenantry_invitation::Config::default(),
            mail: tenantry_mail::MailConfig::default(),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
            },
            amqp_prefetch: 16,
        }
    }
}

/// A running cluster for one test.
#[derive(Debug)]
pub struct TestCluster {
    node: Option<Node>,
    addr: std::net::SocketAddr,
    channel: Channel,
    cleanup: Cleanup,
    mail_dir: PathBuf,
    amqp: Option<AmqpConfig>,
    spec: NodeSpec,
}

#[derive(Debug)]
enum Cleanup {
    Nothing,
    Files(PathBuf),
    Databases {
        admin_url: String,
        names: Vec<String>,
    },
}

impl TestCluster {
    /// Starts every service in one process on port 0 with fresh databases on `backend`.
    /// Returns once every service reports SERVING.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(ClusterOptions::new(backend)).await
    }

    /// Starts a cluster as `options` say, with fresh databases (and a fresh exchange and queues
    /// when it uses RabbitMQ). Returns once every service reports SERVING.
    pub async fn start_with(options: ClusterOptions) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let backend = options.backend;
        let (services, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tenantry-test-{tag}"));
                std::fs::create_dir_all(&dir).expect("create temp dir");
                let services = ServiceKind::ALL
                    .iter()
                    .map(|kind| {
                        let file = dir.join(format!("{}.db", kind.name()));
                        (*kind, format!("sqlite://{}?mode=rwc", file.display()))
                    })
                    .collect();
                (services, Cleanup::Files(dir))
            }
            Backend::Postgres => {
                let admin_url = options
                    .postgres_url
                    .clone()
                    .or_else(postgres_url)
                    .expect("PostgreSQL URL");
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                let mut services = Vec::new();
                let mut names = Vec::new();
                for kind in ServiceKind::ALL {
                    let name = format!("t_{}_{}", kind.name().replace('-', "_"), &tag[..12]);
                    admin
                        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                        .await
                        .expect("create test database");
                    services.push((kind, with_database(&admin_url, &name)));
                    names.push(name);
                }
                let _ = admin.close().await;
                (services, Cleanup::Databases { admin_url, names })
            }
        };
        let amqp = options.amqp.then(|| AmqpConfig {
            url: options
                .amqp_url
                .clone()
                .or_else(amqp_url)
                .expect("RabbitMQ URL (set TENANTRY_TEST_AMQP_URL)"),
            exchange: "tenantry.events".to_string(),
            queue_prefix: format!("test-{}.", &tag[..12]),
            prefetch: options.amqp_prefetch,
            retry: options.retry.clone(),
            ..AmqpConfig::default()
        });
        let mail_dir = std::env::temp_dir().join(format!("tenantry-test-mail-{tag}"));
        Self::launch(services, cleanup, true, &options, amqp, mail_dir).await
    }

    /// Starts a node whose services use the given database URLs and does not wait for them to
    /// become ready — for tests of what happens while a database cannot be reached.
    pub async fn start_with_databases(services: Vec<(ServiceKind, String)>) -> Self {
        let options = ClusterOptions::new(Backend::Sqlite);
        let mail_dir = std::env::temp_dir().join("tenantry-test-mail-unused");
        Self::launch(services, Cleanup::Nothing, false, &options, None, mail_dir).await
    }

    async fn launch(
        services: Vec<(ServiceKind, String)>,
        cleanup: Cleanup,
        wait_ready: bool,
        options: &ClusterOptions,
        amqp: Option<AmqpConfig>,
        mail_dir: PathBuf,
    ) -> Self {
        let spec = NodeSpec {
            services,
            auth: AuthConfig::with_secrets(TEST_JWT_SECRET, TEST_INTERNAL_SECRET),
            peers: PeerUrls::default(),
            max_request_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            registry: tenantry_registry::Config::default(),
            membership: options.membership.clone(),
            invitation: options.invitation.clone(),
            mail: options.mail.clone(),
            notification: tenantry_notification::Config::default(),
            audit: tenantry_audit::Config::default(),
            events: test_events(amqp.clone(), options.retry.clone()),
            mail_dir: mail_dir.clone(),
            admin_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let node = Node::start(spec.clone(), listener)
            .await
            .expect("start node");
        if wait_ready {
            assert!(
                node.wait_ready(Duration::from_secs(60)).await,
                "cluster did not become ready"
            );
        }
        let addr = node.local_addr();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        Self {
            node: Some(node),
            addr,
            channel,
            cleanup,
            mail_dir,
            amqp,
            spec,
        }
    }

    /// The database URL of one service (for tests that load fixtures or count rows).
    pub fn database_url(&self, kind: ServiceKind) -> &str {
        self.spec
            .services
            .iter()
            .find(|(service, _)| *service == kind)
            .map(|(_, url)| url.as_str())
            .expect("the cluster runs this service")
    }

    /// Stops every service (as a crash or a deployment would, with the same databases and
    /// queues left behind) and starts them again on a new port; waits until they are ready.
    pub async fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.stop().await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let node = Node::start(self.spec.clone(), listener)
            .await
            .expect("restart node");
        assert!(
            node.wait_ready(Duration::from_secs(60)).await,
            "cluster did not become ready again"
        );
        self.addr = node.local_addr();
        self.channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        self.node = Some(node);
    }

    /// Starts another replica of every service on a new port, sharing this cluster's
    /// databases and broker (the production shape with two pods per service). Stop it with
    /// [`Replica::stop`] before the cluster.
    pub async fn start_replica(&self) -> Replica {
        self.start_replica_with(self.spec.clone()).await
    }

    /// Like [`TestCluster::start_replica`], but the replica reaches RabbitMQ at `amqp_url`
    /// (e.g. through a [`proxy::TcpProxy`], to cut only this replica's connections).
    pub async fn start_replica_via_broker(&self, amqp_url: &str) -> Replica {
        let mut spec = self.spec.clone();
        if let Some(amqp) = spec.events.amqp.as_mut() {
            amqp.url = amqp_url.to_string();
        }
        self.start_replica_with(spec).await
    }

    async fn start_replica_with(&self, spec: NodeSpec) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let node = Node::start(spec, listener).await.expect("start replica");
        assert!(
            node.wait_ready(Duration::from_secs(60)).await,
            "replica did not become ready"
        );
        let channel = Channel::from_shared(format!("http://{}", node.local_addr()))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        Replica { node, channel }
    }

    /// The cluster's metrics, as its admin port renders them.
    pub fn metrics(&self) -> String {
        self.node
            .as_ref()
            .map(|node| node.metrics().render())
            .unwrap_or_default()
    }

    /// The cluster's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The address of the cluster's admin HTTP port (`/metrics`, `/livez`, `/readyz`); it
    /// changes on [`TestCluster::restart`].
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.node
            .as_ref()
            .and_then(Node::admin_addr)
            .expect("the test node serves an admin port")
    }

    /// A raw channel to the cluster (for health, reflection, or custom metadata).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn bearer(token: Option<&str>) -> Bearer {
        Bearer::new(token)
    }

    /// A registry client presenting `token` (`None`: no token at all).
    pub fn registry(&self, token: Option<&str>) -> RegistryClient {
        CustomerRegistryServiceClient::with_interceptor(self.channel(), Self::bearer(token))
    }

    /// A membership client presenting `token` (`None`: no token at all).
    pub fn membership(&self, token: Option<&str>) -> MembershipClient {
        MembershipServiceClient::with_interceptor(self.channel(), Self::bearer(token))
    }

    /// An invitation client presenting `token` (`None`: no token at all).
    pub fn invitation(&self, token: Option<&str>) -> InvitationClient {
        InvitationServiceClient::with_interceptor(self.channel(), Self::bearer(token))
    }

    /// An invitation client acting as `user`.
    pub fn invitation_as(&self, user: &TestUser) -> InvitationClient {
        self.invitation(Some(&user.token()))
    }

    /// A notification client presenting `token` (`None`: no token at all).
    pub fn notification(&self, token: Option<&str>) -> NotificationClient {
        NotificationServiceClient::with_interceptor(self.channel(), Self::bearer(token))
    }

    /// A notification client acting as `user`.
    pub fn notification_as(&self, user: &TestUser) -> NotificationClient {
        self.notification(Some(&user.token()))
    }

    /// An audit client presenting `token` (`None`: no token at all).
    pub fn audit(&self, token: Option<&str>) -> AuditClient {
        AuditServiceClient::with_interceptor(self.channel(), Self::bearer(token))
    }

    /// An audit client acting as `user`.
    pub fn audit_as(&self, user: &TestUser) -> AuditClient {
        self.audit(Some(&user.token()))
    }

    /// A token of the cluster's own service identity `service` (e.g. `invitation`), minted
    /// with the internal secret the way the services present themselves to each other.
    pub fn service_token(&self, service: &str) -> String {
        ServiceTokenMinter::new(service, TEST_INTERNAL_SECRET)
            .expect("service token minter")
            .token()
            .expect("mint service token")
    }

    /// Where the cluster writes `.eml` files when it has no SMTP server.
    pub fn mail_dir(&self) -> &std::path::Path {
        &self.mail_dir
    }

    /// The `.eml` files written so far, decoded, oldest first.
    pub fn mail_files(&self) -> Vec<smtp::ReceivedMail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mail_dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        files.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        files
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .filter_map(|raw| smtp::parse(&raw))
            .collect()
    }

    /// Waits (30 s at most, else panics) until at least `count` `.eml` files to `to` were
    /// written; returns them, oldest first.
    pub async fn wait_for_mail_files(&self, to: &str, count: usize) -> Vec<smtp::ReceivedMail> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mails: Vec<smtp::ReceivedMail> = self
                .mail_files()
                .into_iter()
                .filter(|mail| mail.to.contains(to))
                .collect();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} .eml file(s) to {to}, got {}",
                mails.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Every event the cluster publishes from now on whose type matches one of `bindings`
    /// (routing keys, `#` for all), through the cluster's own bus (in-process or RabbitMQ);
    /// returns once the subscription is bound. It ends when the cluster stops or restarts.
    pub async fn subscribe_events(&self, bindings: &[&str]) -> tenantry_events::Subscription {
        let node = self.node.as_ref().expect("the cluster is running");
        let mut subscription = node.subscribe_events(
            "tenantry.test.observer",
            bindings.iter().map(|binding| binding.to_string()).collect(),
        );
        assert!(
            subscription.ready().await,
            "the event subscription is bound"
        );
        subscription
    }

    /// The broker settings of the cluster, when it uses RabbitMQ.
    pub fn amqp(&self) -> Option<&AmqpConfig> {
        self.amqp.as_ref()
    }

    /// A registry client acting as `user`.
    pub fn registry_as(&self, user: &TestUser) -> RegistryClient {
        self.registry(Some(&user.token()))
    }

    /// A membership client acting as `user`.
    pub fn membership_as(&self, user: &TestUser) -> MembershipClient {
        self.membership(Some(&user.token()))
    }

    /// Stops the cluster and removes its databases, mail and broker queues.
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.mail_dir);
        if let Some(amqp) = &self.amqp {
            delete_broker_topology(amqp).await;
        }
        match &self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Files(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Databases { admin_url, names } => {
                if let Ok(admin) = sea_orm::Database::connect(admin_url).await {
                    for name in names {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                    let _ = admin.close().await;
                }
            }
        }
    }
}

/// A second process of the same cluster (see [`TestCluster::start_replica`]).
#[derive(Debug)]
pub struct Replica {
    node: Node,
    channel: Channel,
}

impl Replica {
    /// A registry client acting as `user`, talking to this replica.
    pub fn registry_as(&self, user: &TestUser) -> RegistryClient {
        CustomerRegistryServiceClient::with_interceptor(
            self.channel.clone(),
            TestCluster::bearer(Some(&user.token())),
        )
    }

    /// A membership client acting as `user`, talking to this replica.
    pub fn membership_as(&self, user: &TestUser) -> MembershipClient {
        MembershipServiceClient::with_interceptor(
            self.channel.clone(),
            TestCluster::bearer(Some(&user.token())),
        )
    }

    /// An invitation client acting as `user`, talking to this replica.
    pub fn invitation_as(&self, user: &TestUser) -> InvitationClient {
        InvitationServiceClient::with_interceptor(
            self.channel.clone(),
            TestCluster::bearer(Some(&user.token())),
        )
    }

    /// The replica's metrics, as its admin port renders them.
    pub fn metrics(&self) -> String {
        self.node.metrics().render()
    }

    /// A notification client acting as `user`, talking to this replica.
    pub fn notification_as(&self, user: &TestUser) -> NotificationClient {
        NotificationServiceClient::with_interceptor(
            self.channel.clone(),
            TestCluster::bearer(Some(&user.token())),
        )
    }

    /// Stops the replica.
    pub async fn stop(self) {
        let _ = self.node.stop().await;
    }
}

/// The value of one sample in a Prometheus text rendering (`series` is the exact series text
/// with its labels and the space after it, e.g. `tenantry_view_fresh `), 0 if absent.
pub fn metric_sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How many messages wait (ready, not yet delivered) in the existing queue `queue`; an error if
/// it does not exist (which also closes `channel`, as any failed passive declare does).
pub async fn ready_messages(channel: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}

/// The events of a test node: a warm-up of 10 s (the shortest the bounds allow: ten heartbeat
/// timeouts) instead of 30, so tests that need a trusted view wait less.
fn test_events(amqp: Option<AmqpConfig>, retry: tenantry_events::RetryPolicy) -> EventsSpec {
    let mut events = EventsSpec::new(amqp, retry);
    events.freshness.forget_after = Duration::from_secs(10);
    events
}

/// `admin_url` with its database replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Declares one test body to run on SQLite and on PostgreSQL: expands to a module with a
/// `sqlite` and a `postgres` test. Without `TENANTRY_TEST_POSTGRES_URL` the PostgreSQL test
/// returns early, and the test binary says once that its PostgreSQL suite did not run (see
/// [`postgres_or_skip`]) — unless `CI=true`, where it fails.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let cluster = $crate::TestCluster::start($crate::Backend::Sqlite).await;
                $body(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::postgres_or_skip().is_none() {
                    eprintln!(
                        "skipped: set {} to run the PostgreSQL suite",
                        $crate::POSTGRES_URL_VAR
                    );
                    return;
                }
                let cluster = $crate::TestCluster::start($crate::Backend::Postgres).await;
                $body(&cluster).await;
                cluster.stop().await;
            }
        }
    };
}

/// Deletes the exchange and queues a test cluster declared on the broker.
async fn delete_broker_topology(amqp: &AmqpConfig) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) =
        lapin::Connection::connect(&amqp.url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for group in consumer_groups() {
            for name in tenantry_events::group_queues(&amqp.queue_prefix, group, &amqp.retry) {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        // The events' exchange and the control messages' (heartbeats).
        for suffix in ["", ".control"] {
            let exchange = format!("{}{}{suffix}", amqp.queue_prefix, amqp.exchange);
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(0, "test done".into()).await;
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t_1"),
            "postgres://u:p@h/t_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t"),
            "postgres://h:5432/t"
        );
    }
}
