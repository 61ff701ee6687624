//! What the fault tests watch while a backend is away: every service's gRPC health over time,
//! and the status codes callers got.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// One health answer: when (since the watch began), which service, what status.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Duration,
    pub service: &'static str,
    pub serving: bool,
}

/// Polls grpc.health.v1 `Check` for each service every `every`, recording each answer.
pub struct HealthWatch {
    began: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthWatch {
    pub fn start(channel: Channel, services: &[&'static str], every: Duration) -> Self {
        let began = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let services = services.to_vec();
        let recorded = samples.clone();
        let task = tokio::spawn(async move {
            let mut client = HealthClient::new(channel);
            loop {
                for service in &services {
                    let answer = client
                        .check(HealthCheckRequest {
                            service: service.to_string(),
                        })
                        .await
                        .map(tonic::Response::into_inner);
                    let serving = matches!(
                        answer,
                        Ok(HealthCheckResponse { status }) if status == ServingStatus::Serving as i32
                    );
                    recorded.lock().expect("samples").push(Sample {
                        at: began.elapsed(),
                        service,
                        serving,
                    });
                }
                tokio::time::sleep(every).await;
            }
        });
        Self {
            began,
            samples,
            task,
        }
    }

    /// Time since the watch began (to relate samples to the test's own events).
    pub fn now(&self) -> Duration {
        self.began.elapsed()
    }

    /// `service`'s status changes: the first answer and every change after it.
    pub fn transitions(&self, service: &str) -> Vec<(Duration, bool)> {
        let samples = self.samples.lock().expect("samples");
        let mut changes: Vec<(Duration, bool)> = Vec::new();
        for sample in samples.iter().filter(|sample| sample.service == service) {
            if changes
                .last()
                .is_none_or(|(_, serving)| *serving != sample.serving)
            {
                changes.push((sample.at, sample.serving));
            }
        }
        changes
    }

    /// Whether the latest answer of every one of `services` was SERVING.
    pub fn all_serving(&self, services: &[&str]) -> bool {
        services.iter().all(|service| {
            self.transitions(service)
                .last()
                .is_some_and(|(_, serving)| *serving)
        })
    }

    /// Stops polling; what was recorded stays readable.
    pub fn stop_polling(&self) {
        self.task.abort();
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Formats transitions as `SERVING@0.0s → NOT_SERVING@4.2s → SERVING@9.9s`.
pub fn describe(transitions: &[(Duration, bool)]) -> String {
    transitions
        .iter()
        .map(|(at, serving)| {
            let status = if *serving { "SERVING" } else { "NOT_SERVING" };
            format!("{status}@{:.1}s", at.as_secs_f64())
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Status codes seen by callers, with an example message for each failure code.
#[derive(Clone, Default)]
pub struct Tally {
    inner: Arc<Mutex<TallyInner>>,
}

#[derive(Default)]
struct TallyInner {
    ok: u64,
    failures: BTreeMap<String, (u64, String)>,
    slowest: Duration,
}

impl Tally {
    pub fn record<T>(&self, result: &Result<T, tonic::Status>) {
        let mut inner = self.inner.lock().expect("tally");
        match result {
            Ok(_) => inner.ok += 1,
            Err(status) => {
                let entry = inner
                    .failures
                    .entry(format!("{:?}", status.code()))
                    .or_insert_with(|| (0, status.message().to_string()));
                entry.0 += 1;
            }
        }
    }

    /// Records how long one call took (see [`Tally::slowest`]).
    pub fn took(&self, elapsed: Duration) {
        let mut inner = self.inner.lock().expect("tally");
        inner.slowest = inner.slowest.max(elapsed);
    }

    /// The longest call recorded with [`Tally::took`].
    pub fn slowest(&self) -> Duration {
        self.inner.lock().expect("tally").slowest
    }

    pub fn ok(&self) -> u64 {
        self.inner.lock().expect("tally").ok
    }

    /// Failures by code name, each with the first message seen.
    pub fn failures(&self) -> BTreeMap<String, (u64, String)> {
        self.inner.lock().expect("tally").failures.clone()
    }

    pub fn failed(&self) -> u64 {
        self.failures().values().map(|(count, _)| count).sum()
    }
}

/// The cluster's Prometheus exposition (a plain HTTP/1.1 GET of the admin port's `/metrics`).
pub async fn scrape(admin: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect to the admin port");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The sum of every sample of `name` whose labels include `label` (`key="value"`, or "" for
/// all).
pub fn metric(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.contains(label))
                .then(|| sample.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
