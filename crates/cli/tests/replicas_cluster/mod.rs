//! The helpers of `replicas.rs`: eight `tenantry serve` processes (two replicas of each
//! service), the test client's own spreading of calls over a service's two replicas, the admin
//! port read over plain HTTP/1.0, and SQL counts.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::support::{ServeProcess, http_get};

pub mod verify;

/// (the `serve` argument, the gRPC service name) of the four services, in this order.
pub const SERVICES: [(&str, &str); 4] = [
    ("customer-registry", tenantry_registry::SERVICE_NAME),
    ("membership", tenantry_membership::SERVICE_NAME),
    ("invitation", tenantry_invitation::SERVICE_NAME),
    ("notification", tenantry_notification::SERVICE_NAME),
];
pub const REGISTRY: usize = 0;
pub const MEMBERSHIP: usize = 1;
pub const INVITATION: usize = 2;
pub const NOTIFICATION: usize = 3;

/// One `tenantry serve` process: replica `index` (0 or 1) of `SERVICES[service]`.
pub struct Replica {
    pub service: usize,
    pub index: usize,
    pub grpc_port: u16,
    pub admin_port: u16,
    /// `None` once killed.
    pub process: Option<ServeProcess>,
}

impl Replica {
    pub fn label(&self) -> String {
        format!("{}#{}", SERVICES[self.service].0, self.index + 1)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// This process's `/metrics` (panics if the admin port does not answer).
    pub async fn metrics(&self) -> String {
        match http_get(self.admin_port, "/metrics").await {
            Some((200, body)) => body,
            other => panic!("{}: GET /metrics answered {other:?}", self.label()),
        }
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to a surviving replica")
    }
}

/// `count` distinct free ports: all bound at once, then released, so that the peers can be
/// told each other's addresses before they start.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("address").port())
        .collect()
}

/// Starts the eight processes together (each pair racing for its database's migration lock)
/// and waits until each is SERVING (gRPC health) and `/readyz` answers 200 on its admin port.
/// `settings(n, admin_port)` is replica `n`'s environment besides `TENANTRY_LISTEN`.
/// Replica `n` (`SERVICES[n / 2]`) listens on `ports[2 * n]`, its admin port on `ports[2 * n + 1]`.
pub async fn start_cluster(
    dir: &Path,
    ports: &[u16],
    settings: impl Fn(usize, u16) -> Vec<(&'static str, String)>,
) -> Vec<Replica> {
    let environments: Vec<Vec<(&'static str, String)>> =
        (0..8).map(|n| settings(n, ports[2 * n + 1])).collect();
    let processes = futures::future::join_all((0..8).map(|n| {
        let (service, grpc_name) = SERVICES[n / 2];
        let log_name = format!("{service}-{}", n % 2 + 1);
        let environment = &environments[n];
        async move {
            ServeProcess::start(
                service,
                grpc_name,
                ports[2 * n],
                dir,
                &log_name,
                environment,
            )
            .await
        }
    }))
    .await;
    let replicas: Vec<Replica> = processes
        .into_iter()
        .enumerate()
        .map(|(n, process)| Replica {
            service: n / 2,
            index: n % 2,
            grpc_port: ports[2 * n],
            admin_port: ports[2 * n + 1],
            process: Some(process),
        })
        .collect();
    for replica in &replicas {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = http_get(replica.admin_port, "/readyz").await;
            if matches!(answer, Some((200, _))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: /readyz did not answer 200 within 60 s: {answer:?}",
                replica.label()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    replicas
}

/// `grpc_server_handled_total` of gRPC service `grpc_name`, summed per method (all codes).
pub fn calls_by_method(metrics: &str, grpc_name: &str) -> BTreeMap<String, f64> {
    let mut calls = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("grpc_server_handled_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| value.trim_matches('"').to_string())
            })
        };
        if label("grpc_service").as_deref() != Some(grpc_name) {
            continue;
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *calls
            .entry(label("grpc_method").unwrap_or_default())
            .or_insert(0.0) += value;
    }
    calls
}

/// Each service's calls (both replicas, all methods) between two scrapes of all eight.
pub fn calls_per_service(before: &[String], after: &[String]) -> [f64; 4] {
    let mut calls = [0.0; 4];
    for (n, (before, after)) in before.iter().zip(after).enumerate() {
        let grpc_name = SERVICES[n / 2].1;
        let total = |metrics: &String| {
            calls_by_method(metrics, grpc_name)
                .values()
                .fold(0.0, |sum, calls| sum + calls)
        };
        calls[n / 2] += total(after) - total(before);
    }
    calls
}

/// The sum of every sample of `family` whose labels contain `label` (e.g.
/// `outcome="duplicate"`).
pub fn sum_samples(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// The test client's view of one service: a connection to each replica, calls in flight on
/// each, and which replicas it stopped calling. Each call goes to the replica with fewer calls
/// in flight (a coin decides a tie); a call that failed at the transport (the connection broke
/// or was refused: a status tonic made, not one the server sent) takes its replica out for
/// good. The failed call is not retried: it is reported as failed.
pub struct Pool {
    channels: [Channel; 2],
    dead: [AtomicBool; 2],
    in_flight: [AtomicUsize; 2],
}

impl Pool {
    pub fn new(urls: [String; 2]) -> Self {
        let channel = |url: &String| {
            Endpoint::from_shared(url.clone())
                .expect("url")
                .connect_timeout(Duration::from_secs(3))
                .tcp_nodelay(true)
                .connect_lazy()
        };
        Self {
            channels: [channel(&urls[0]), channel(&urls[1])],
            dead: [AtomicBool::new(false), AtomicBool::new(false)],
            in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    fn pick(&self) -> Option<usize> {
        let live = |index: usize| !self.dead[index].load(Ordering::Acquire);
        match (live(0), live(1)) {
            (false, false) => None,
            (true, false) => Some(0),
            (false, true) => Some(1),
            (true, true) => {
                let load = |index: usize| self.in_flight[index].load(Ordering::Acquire);
                Some(match load(0).cmp(&load(1)) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Greater => 1,
                    std::cmp::Ordering::Equal => usize::from(rand::random::<bool>()),
                })
            }
        }
    }

    /// One call on a replica `call` is given the channel of; returns which replica it went
    /// to. A call without an answer within 60 s fails with DEADLINE_EXCEEDED.
    pub async fn call<T, F, Fut>(&self, call: F) -> (Option<usize>, Result<T, Status>)
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let Some(index) = self.pick() else {
            return (
                None,
                Err(Status::unavailable("the test client has no live replica")),
            );
        };
        self.in_flight[index].fetch_add(1, Ordering::AcqRel);
        let result =
            tokio::time::timeout(Duration::from_secs(60), call(self.channels[index].clone()))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer within 60 s")));
        self.in_flight[index].fetch_sub(1, Ordering::AcqRel);
        if let Err(status) = &result
            && transport_failure(status)
        {
            self.dead[index].store(true, Ordering::Release);
        }
        (Some(index), result)
    }
}

/// A status tonic made from a broken or refused connection (it carries the transport error as
/// its source), not one a server sent.
pub fn transport_failure(status: &Status) -> bool {
    use std::error::Error;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && status.source().is_some()
}

/// The first column of every row of `sql`, as text.
pub async fn strings(database: &DatabaseConnection, sql: &str) -> Vec<String> {
    database
        .query_all_raw(Statement::from_string(
            database.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("text"))
        .collect()
}

/// The single number `sql` selects.
pub async fn count(database: &DatabaseConnection, sql: &str) -> i64 {
    database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a number")
}

/// Polls `condition` every 200 ms until it holds; panics with `what` and the last `detail`
/// after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match condition().await {
            Ok(()) => return,
            Err(detail) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}: {detail}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ERROR lines of the processes' logs (`{dir}/*.log`).
pub fn error_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("test dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            lines.extend(
                text.lines()
                    .filter(|line| line.contains("ERROR"))
                    .map(|line| format!("{name}: {line}")),
            );
        }
    }
    lines
}

/// Every process's `/metrics`, in `replicas` order (all are running).
pub async fn scrape(replicas: &[Replica]) -> Vec<String> {
    futures::future::join_all(replicas.iter().map(Replica::metrics)).await
}

pub fn signed_millis(at: Instant, origin: Instant) -> i128 {
    if at >= origin {
        (at - origin).as_millis() as i128
    } else {
        -((origin - at).as_millis() as i128)
    }
}
