//! The cluster under test and what every workload shares: the in-process cluster (testkit's,
//! on fresh PostgreSQL databases and a fresh RabbitMQ exchange), the SMTP sink it mails to, a
//! partner with its OWNER, channels, tokens and scratch databases for the ceilings.

use std::sync::Mutex;

use anyhow::Context;
use sea_orm::sqlx::AssertSqlSafe;
use sea_orm::sqlx::postgres::{PgPool, PgPoolOptions};
use sea_orm_migration::MigratorTrait;
use tenantry_proto::membership::v1::{AddMemberRequest, Role, add_member_request};
use tenantry_proto::registry::v1::{
    CreateAccountRequest, CreateManagedCustomerRequest, PromoteToPartnerRequest,
};
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::Settings;
use crate::smtp_sink::SmtpSink;

/// PostgreSQL connections of a service's pool (crates/platform/src/db.rs) — the ceilings use
/// as many.
pub const SERVICE_POOL_SIZE: u32 = 16;

/// Everything the workloads share.
#[derive(Debug)]
pub struct Bench {
    /// Sizes and windows.
    pub settings: Settings,
    /// The cluster.
    pub cluster: TestCluster,
    /// Where invitation e-mails go.
    pub sink: SmtpSink,
    /// The OWNER of the partner.
    pub owner: TestUser,
    /// The partner's account id.
    pub partner: String,
    /// A short tag that makes this run's names unique.
    pub tag: String,
    admin_url: String,
    scratch: Mutex<Vec<String>>,
}

/// `authorization: Bearer <token>` as a metadata value.
pub fn bearer(user: &TestUser) -> anyhow::Result<MetadataValue<Ascii>> {
    Ok(format!("Bearer {}", user.token()).parse()?)
}

/// A request carrying `token`.
pub fn with_token<T>(message: T, token: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

/// A new client channel to `addr`, with the settings every workload and ceiling uses.
pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// A pool of `size` connections to `url`.
pub async fn pool(url: &str, size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .context("connecting a pool")
}

impl Bench {
    /// Starts the cluster (PostgreSQL + RabbitMQ, e-mail to a fresh SMTP sink) and creates a
    /// partner with an OWNER.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let admin_url = tenantry_testkit::postgres_url().ok_or_else(|| {
            anyhow::anyhow!(
                "set {} (a PostgreSQL server the benchmark may create databases on) and {}",
                tenantry_testkit::POSTGRES_URL_VAR,
                tenantry_testkit::AMQP_URL_VAR
            )
        })?;
        tenantry_testkit::amqp_url()
            .ok_or_else(|| anyhow::anyhow!("set {}", tenantry_testkit::AMQP_URL_VAR))?;
        let sink = SmtpSink::start().await?;
        let mut options = ClusterOptions::new(Backend::Postgres);
        options.amqp = true;
        // The shipped configuration: two batches of deliveries per consumer, so the next batch
        // is there when one commits.
        options.amqp_prefetch = tenantry_events::AmqpConfig::default().prefetch;
        options.mail.smtp_url = Some(sink.url());
        eprintln!("starting the cluster (PostgreSQL + RabbitMQ, in-process)…");
        let started = std::time::Instant::now();
        let cluster = TestCluster::start_with(options).await;
        eprintln!(
            "  cluster SERVING after {:.2} s at {} (metrics: http://{}/metrics)",
            started.elapsed().as_secs_f64(),
            cluster.addr(),
            cluster.admin_addr()
        );
        // Every workload measures the steady state: until the local view trusts its events
        // (the start-up warm-up, 10 s in a test node), every authorized call asks membership,
        // which is a start-up cost, not the hot path's.
        wait_fresh("cluster", || cluster.metrics()).await?;
        eprintln!(
            "  local view fresh after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        let operator = TestUser::operator("bench-ops");
        let owner = TestUser::new("bench-owner");
        let partner = format!("bp-{tag}");
        let mut registry = cluster.registry_as(&operator);
        let account = registry
            .create_account(CreateAccountRequest {
                account_id: partner.clone(),
                display_name: "Bench Partner".into(),
                request_id: String::new(),
            })
            .await?
            .into_inner()
            .account
            .context("CreateAccount returned no account")?;
        registry
            .promote_to_partner(PromoteToPartnerRequest {
                name: account.name.clone(),
                etag: account.etag.clone(),
            })
            .await?;
        cluster
            .membership_as(&operator)
            .add_member(AddMemberRequest {
                parent: account.name.clone(),
                principal: Some(add_member_request::Principal::User(owner.resource_name())),
                role: Role::Owner as i32,
                source: 0,
                request_id: String::new(),
                invitee_profile: None,
            })
            .await?;
        Ok(Self {
            settings: settings.clone(),
            cluster,
            sink,
            owner,
            partner,
            tag,
            admin_url,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// `accounts/{partner}`.
    pub fn partner_name(&self) -> String {
        format!("accounts/{}", self.partner)
    }

    /// The OWNER creates a customer of the partner (through the API).
    pub async fn create_customer(&self, customer_id: &str) -> anyhow::Result<String> {
        let account = self
            .cluster
            .registry_as(&self.owner)
            .create_managed_customer(CreateManagedCustomerRequest {
                parent: self.partner_name(),
                customer_id: customer_id.to_string(),
                display_name: format!("Customer {customer_id}"),
                request_id: String::new(),
            })
            .await?
            .into_inner()
            .account
            .context("CreateManagedCustomer returned no account")?;
        Ok(account.name)
    }

    /// A fresh client channel to the cluster.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        connect(self.cluster.addr()).await
    }

    /// A pool on one service's own database.
    pub async fn service_pool(
        &self,
        kind: tenantry_testkit::ServiceKind,
    ) -> anyhow::Result<PgPool> {
        pool(self.cluster.database_url(kind), SERVICE_POOL_SIZE).await
    }

    /// A fresh database with `M`'s schema (dropped at the end), for a ceiling that must not
    /// write into a service's own tables (its relay would publish ceiling rows).
    pub async fn scratch_database<M: MigratorTrait>(
        &self,
        purpose: &str,
    ) -> anyhow::Result<String> {
        let name = format!("bench_{purpose}_{}", self.tag);
        let admin = pool(&self.admin_url, 1).await?;
        sea_orm::sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await?;
        admin.close().await;
        self.scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(name.clone());
        let url = with_database(&self.admin_url, &name);
        let connection = sea_orm::Database::connect(&url).await?;
        M::up(&connection, None).await?;
        connection.close().await?;
        Ok(url)
    }

    /// Stops the cluster and drops its databases, queues and the scratch databases.
    pub async fn stop(self) {
        self.cluster.stop().await;
        let names = self
            .scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Ok(admin) = pool(&self.admin_url, 1).await {
            for name in names {
                let _ = sea_orm::sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&admin)
                .await;
            }
            admin.close().await;
        }
    }
}

pub use tenantry_testkit::metric_sample as sample;

/// `tenantry_view_lookups_total` of one process: (cache, outcome, count), in the order
/// rendered.
pub fn lookups(metrics: &str) -> Vec<(String, String, f64)> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tenantry_view_lookups_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
                    .map(|value| value.trim_end_matches('"').to_string())
            };
            Some((
                label("cache")?,
                label("outcome")?,
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The hits and misses of each view cache between two [`lookups`] readings, as text.
pub fn describe_lookups(
    before: &[(String, String, f64)],
    after: &[(String, String, f64)],
) -> String {
    let count = |readings: &[(String, String, f64)], cache: &str, outcome: &str| {
        readings
            .iter()
            .find(|(c, o, _)| c == cache && o == outcome)
            .map_or(0.0, |(_, _, value)| *value)
    };
    let mut caches: Vec<&str> = after.iter().map(|(cache, _, _)| cache.as_str()).collect();
    caches.sort_unstable();
    caches.dedup();
    if caches.is_empty() {
        return "no lookups recorded".to_string();
    }
    caches
        .iter()
        .map(|cache| {
            let hits = count(after, cache, "hit") - count(before, cache, "hit");
            let misses = count(after, cache, "miss") - count(before, cache, "miss");
            format!("{cache} {hits:.0} hits / {misses:.0} misses")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Bench {
    /// Waits (up to 120 s) until no event waits in any consumer group's queue (ready messages,
    /// twice in a row 200 ms apart), so a workload does not measure the previous one's backlog
    /// (CreateManagedCustomer leaves thousands of `account.created` events for membership and
    /// notification to catch up on). Deliveries being handled, retry queues and outbox rows
    /// not yet relayed are not counted: those are moments of work, not the backlog.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let Some(amqp) = self.cluster.amqp() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let connection =
            lapin::Connection::connect(&amqp.url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let queues: Vec<String> = tenantry_testkit::consumer_groups()
            .map(|group| format!("{}{group}", amqp.queue_prefix))
            .collect();
        let mut quiet_in_a_row = 0;
        while quiet_in_a_row < 2 {
            let mut waiting = 0;
            for queue in &queues {
                waiting += tenantry_testkit::ready_messages(&channel, queue).await?;
            }
            quiet_in_a_row = if waiting == 0 { quiet_in_a_row + 1 } else { 0 };
            anyhow::ensure!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "the consumers did not catch up within 120 s ({waiting} events waiting)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        if started.elapsed() > std::time::Duration::from_millis(500) {
            eprintln!(
                "  consumers caught up with the previous workload after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let _ = connection.close(0, "settled".into()).await;
        Ok(())
    }
}

/// Waits (up to 30 s) until a process's `tenantry_view_fresh` is 1.
pub async fn wait_fresh(who: &str, metrics: impl Fn() -> String) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sample(&metrics(), "tenantry_view_fresh ") != 1.0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the {who}'s local view did not become fresh within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
    }
}
