//! Footprint: each service as its own `tenantry serve` process (the production shape) on a
//! fresh, already migrated PostgreSQL database (`tenantry migrate` first, as the Kubernetes
//! Job does) with RabbitMQ: the time from spawning the process to its gRPC health reporting
//! SERVING, and its resident memory (VmRSS) after a few idle seconds.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::sqlx::AssertSqlSafe;
use tenantry_testkit::ServiceKind;
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Settings;
use crate::cluster::{pool, with_database};
use crate::report::Row;

/// Largest acceptable idle RSS per process.
const RSS_GOAL_MIB: f64 = 30.0;
/// Longest acceptable start to SERVING.
const START_GOAL: Duration = Duration::from_secs(1);
/// How long the processes idle before their memory is read.
const IDLE: Duration = Duration::from_secs(3);

struct Process {
    kind: ServiceKind,
    child: Child,
    port: u16,
    spawned: Instant,
    serving_after: Option<Duration>,
}

/// Starts the four services as processes and measures them.
pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let binary = &settings.tenantry_bin;
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it first with `cargo build --release --bin tenantry` (or pass --tenantry-bin)",
        binary.display()
    );
    let admin_url = tenantry_testkit::postgres_url().context("PostgreSQL URL")?;
    let amqp_url = tenantry_testkit::amqp_url().context("RabbitMQ URL")?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let admin = pool(&admin_url, 1).await?;
    let mut databases = Vec::new();
    for kind in ServiceKind::ALL {
        let name = format!("bench_fp_{}_{tag}", kind.name().replace('-', "_"));
        sea_orm::sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await?;
        databases.push((kind, name));
    }
    let outcome = measure(binary, &admin_url, &amqp_url, &tag, &databases).await;
    for (_, name) in &databases {
        let _ = sea_orm::sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
    admin.close().await;
    delete_queues(&amqp_url, &format!("bench-fp-{tag}.")).await;
    outcome
}

async fn measure(
    binary: &Path,
    admin_url: &str,
    amqp_url: &str,
    tag: &str,
    databases: &[(ServiceKind, String)],
) -> anyhow::Result<Vec<Row>> {
    for (kind, name) in databases {
        let status = Command::new(binary)
            .args(["migrate", kind.name(), "--database-url"])
            .arg(with_database(admin_url, name))
            .env("TENANTRY_LOG", "warn")
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "tenantry migrate {} failed", kind.name());
    }
    let ports: Vec<u16> = (0..databases.len())
        .map(|_| free_port())
        .collect::<anyhow::Result<_>>()?;
    let url_of = |kind: ServiceKind| {
        let index = databases.iter().position(|(k, _)| *k == kind).unwrap_or(0);
        format!("http://127.0.0.1:{}", ports[index])
    };
    let mail_dir = std::env::temp_dir().join(format!("tenantry-bench-mail-{tag}"));
    let mut processes = Vec::new();
    for ((kind, name), port) in databases.iter().zip(&ports) {
        let child = Command::new(binary)
            .args(["serve", kind.name()])
            .env("TENANTRY_DATABASE_URL", with_database(admin_url, name))
            .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANTRY_JWT_SECRET", tenantry_testkit::TEST_JWT_SECRET)
            .env("TENANTRY_INTERNAL_SECRET", "bench-internal-secret")
            .env("TENANTRY_AMQP_URL", amqp_url)
            .env("TENANTRY_AMQP_PREFIX", format!("bench-fp-{tag}."))
            .env(
                "TENANTRY_REGISTRY_URL",
                url_of(ServiceKind::CustomerRegistry),
            )
            .env("TENANTRY_MEMBERSHIP_URL", url_of(ServiceKind::Membership))
            .env("TENANTRY_MAIL_DIR", &mail_dir)
            .env("TENANTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning tenantry serve {}", kind.name()))?;
        processes.push(Process {
            kind: *kind,
            child,
            port: *port,
            spawned: Instant::now(),
            serving_after: None,
        });
    }
    let result = wait_and_sample(&mut processes).await;
    for process in &mut processes {
        terminate(&mut process.child).await;
    }
    let _ = std::fs::remove_dir_all(&mail_dir);
    result
}

async fn wait_and_sample(processes: &mut [Process]) -> anyhow::Result<Vec<Row>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes.iter().any(|p| p.serving_after.is_none()) {
        for process in processes.iter_mut().filter(|p| p.serving_after.is_none()) {
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!("tenantry serve {} exited: {status}", process.kind.name());
            }
            if serving(process.port, process.kind.grpc_name()).await {
                let after = process.spawned.elapsed();
                process.serving_after = Some(after);
                eprintln!(
                    "  {} SERVING after {:.3} s",
                    process.kind.name(),
                    after.as_secs_f64()
                );
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the services did not report SERVING within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("  idling {} s before reading memory…", IDLE.as_secs());
    tokio::time::sleep(IDLE).await;
    let mut rows = Vec::new();
    for process in processes.iter() {
        let pid = process.child.id().context("process id")?;
        let rss = rss_mib(pid)?;
        let start = process.serving_after.unwrap_or_default();
        let met = rss <= RSS_GOAL_MIB && start <= START_GOAL;
        eprintln!(
            "  {}: idle RSS {rss:.1} MiB, start to SERVING {:.3} s",
            process.kind.name(),
            start.as_secs_f64()
        );
        rows.push(Row {
            workload: format!("footprint: {} process", process.kind.name()),
            ops_per_sec: None,
            p50_ms: None,
            p99_ms: None,
            ceiling_ops_per_sec: None,
            ratio: None,
            goal: format!(
                "RSS {rss:.1} MiB ≤ {RSS_GOAL_MIB:.0} MiB; start {:.2} s ≤ {} s",
                start.as_secs_f64(),
                START_GOAL.as_secs()
            ),
            met: Some(met),
            notes: String::new(),
            failure: None,
        });
    }
    Ok(rows)
}

/// Whether the service's health check says SERVING.
async fn serving(port: u16, service: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
    else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await;
    matches!(response, Ok(response) if response.get_ref().status == ServingStatus::Serving as i32)
}

/// Resident memory of a process, MiB (Linux /proc).
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// SIGTERM (graceful shutdown), then SIGKILL if the process has not exited after 10 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Deletes the queues and exchange the processes declared under `prefix`.
async fn delete_queues(amqp_url: &str, prefix: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        // The retry policy `tenantry serve` configures by default, which names the delay
        // queues.
        let retry = tenantry_events::RetryPolicy {
            max_attempts: 5,
            base_delay: std::time::Duration::from_millis(1000),
            max_delay: std::time::Duration::from_secs(60),
        };
        for group in tenantry_testkit::consumer_groups() {
            for name in tenantry_events::group_queues(prefix, group, &retry) {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        let exchange = format!("{prefix}tenantry.events");
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(0, "bench done".into()).await;
}
