//! Prometheus metrics and the admin HTTP port of a process.
//!
//! Every process (node) owns ONE [`Metrics`]: an explicit `prometheus::Registry` with Tenantry's
//! metric families, handed down to the gRPC server, the relays, the event bus and the services
//! (no global registry, so several nodes in one test binary never mix their numbers). The
//! admin port ([`crate::admin::serve_admin`]) serves:
//!
//! - `GET /metrics`: the text exposition format;
//! - `GET /livez`: 200 while the process runs;
//! - `GET /readyz`: 200 only while every service of the node is SERVING, else 503;
//! - anything else: 404.
//!
//! The metric names: gRPC calls as the grpc-ecosystem middlewares (go-grpc-prometheus,
//! go-grpc-middleware) name them, so their dashboards and alerts work unchanged; no label is
//! called `service`, `job`, `instance`, `pod` or `namespace`, which Prometheus' Kubernetes
//! discovery sets itself (a collision would rename ours to `exported_service`).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `grpc_server_started_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_handled_total` | counter | `grpc_type`, `grpc_service`, `grpc_method`, `grpc_code` |
//! | `grpc_server_handling_seconds` | histogram | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `tenantry_health_checks_total` | counter | `grpc_method`, `grpc_code` (probes, kept out of the `grpc_server_*` series) |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, `process_threads` | counter/gauge | — (Linux) |
//! | `tenantry_outbox_backlog` | gauge | `tenantry_service` |
//! | `tenantry_relay_lag_seconds` | gauge | `tenantry_service` |
//! | `tenantry_events_published_total` | counter | `tenantry_service` |
//! | `tenantry_consumer_deliveries_total` | counter | `group`, `outcome` (`handled`, `duplicate`, `failed`, `unknown_type`) |
//! | `tenantry_consumer_retries_total` | counter | `group` |
//! | `tenantry_consumer_dead_letters_total` | counter | `group` |
//! | `tenantry_emails_sent_total`, `tenantry_emails_failed_total` | counter | — |
//! | `tenantry_deliveries_written_total` | counter | — |
//! | `tenantry_pruned_rows_total` | counter | `tenantry_service`, `table` |
//!
//! `grpc_type` is `unary`, `client_stream`, `server_stream` or `bidi_stream`; `grpc_code` the
//! status code's name as gRPC's Go implementation spells it (`OK`, `InvalidArgument`,
//! `PermissionDenied`, …); a path no served method has is labelled `unknown` throughout.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use prost::Message as _;

/// The metrics of one process: a registry and Tenantry's metric families in it. Cheap to
/// clone (shared). [`Metrics::default`] is a fresh registry nobody scrapes (for tests and
/// callers that do not serve metrics).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    grpc_started: IntCounterVec,
    grpc_handled: IntCounterVec,
    grpc_duration: HistogramVec,
    health_checks: IntCounterVec,
    outbox_backlog: IntGaugeVec,
    relay_lag: prometheus::GaugeVec,
    events_published: IntCounterVec,
    consumer_deliveries: IntCounterVec,
    consumer_retries: IntCounterVec,
    consumer_dead_letters: IntCounterVec,
    emails_sent: IntCounter,
    emails_failed: IntCounter,
    deliveries_written: IntCounter,
    pruned_rows: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a consumer group's delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The handler's work was committed.
    Handled,
    /// The event had been handled before; acknowledged without handling.
    Duplicate,
    /// Nothing was committed (retried or dead-lettered).
    Failed,
    /// The group has no handling for the event's type: recorded as handled and acknowledged,
    /// and logged at WARN (a publisher/consumer mismatch, e.g. a type added on one side only).
    UnknownType,
}

impl DeliveryOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::UnknownType => "unknown_type",
            Self::Duplicate => "duplicate",
            Self::Failed => "failed",
        }
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique within a fresh registry");
    metric
}

impl Metrics {
    /// A fresh registry with every Tenantry metric family registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let grpc_started = counter_vec(
            "grpc_server_started_total",
            "RPCs started on the server",
            &["grpc_type", "grpc_service", "grpc_method"],
        );
        let grpc_handled = counter_vec(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let grpc_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Time from receiving an RPC to sending its response headers (a unary call's \
                     whole handling; for a stream, the time to open it)",
                ),
                &["grpc_type", "grpc_service", "grpc_method"],
            )
            .expect("valid metric"),
        );
        let health_checks = counter_vec(
            "tenantry_health_checks_total",
            "gRPC health checks answered (probes), by status code",
            &["grpc_method", "grpc_code"],
        );
        register_process_collector(&registry);
        let outbox_backlog = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tenantry_outbox_backlog",
                    "Outbox rows waiting to be published (sampled by the relay each cycle)",
                ),
                &["tenantry_service"],
            )
            .expect("valid metric"),
        );
        let relay_lag = register(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "tenantry_relay_lag_seconds",
                    "Age of the oldest unpublished outbox row (0 when the outbox is empty)",
                ),
                &["tenantry_service"],
            )
            .expect("valid metric"),
        );
        let events_published = counter_vec(
            "tenantry_events_published_total",
            "Events published by the relay and confirmed by the transport",
            &["tenantry_service"],
        );
        let consumer_deliveries = counter_vec(
            "tenantry_consumer_deliveries_total",
            "Deliveries to a consumer group, by outcome (handled, duplicate, failed)",
            &["group", "outcome"],
        );
        let consumer_retries = counter_vec(
            "tenantry_consumer_retries_total",
            "Failed deliveries scheduled for another try",
            &["group"],
        );
        let consumer_dead_letters = counter_vec(
            "tenantry_consumer_dead_letters_total",
            "Deliveries given up on (dead-lettered)",
            &["group"],
        );
        let emails_sent = counter("tenantry_emails_sent_total", "Invitation e-mails sent");
        let emails_failed = counter(
            "tenantry_emails_failed_total",
            "Invitation e-mail sends that failed",
        );
        let deliveries_written = counter(
            "tenantry_deliveries_written_total",
            "Message deliveries written by the fan-out",
        );
        let pruned_rows = counter_vec(
            "tenantry_pruned_rows_total",
            "Rows deleted by the pruner once older than their retention period",
            &["tenantry_service", "table"],
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                grpc_started,
                grpc_handled,
                grpc_duration,
                health_checks,
                outbox_backlog,
                relay_lag,
                events_published,
                consumer_deliveries,
                consumer_retries,
                consumer_dead_letters,
                emails_sent,
                emails_failed,
                deliveries_written,
                pruned_rows,
            }),
        }
    }

    /// The registry (to add more collectors).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Everything in the text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// One gRPC call received (health checks are counted apart, when they finish).
    pub fn rpc_started(&self, rpc: &RpcLabels) {
        if !rpc.is_health_check() {
            self.inner
                .grpc_started
                .with_label_values(&[rpc.kind, &rpc.service, &rpc.method])
                .inc();
        }
    }

    /// One finished gRPC call.
    pub fn record_rpc(&self, rpc: &RpcLabels, code: tonic::Code) {
        if rpc.is_health_check() {
            self.inner
                .health_checks
                .with_label_values(&[&rpc.method, go_code_name(code)])
                .inc();
            return;
        }
        self.inner
            .grpc_handled
            .with_label_values(&[rpc.kind, &rpc.service, &rpc.method, go_code_name(code)])
            .inc();
    }

    /// The latency of one gRPC call (to its response headers).
    pub fn observe_rpc_duration(&self, rpc: &RpcLabels, elapsed: Duration) {
        if !rpc.is_health_check() {
            self.inner
                .grpc_duration
                .with_label_values(&[rpc.kind, &rpc.service, &rpc.method])
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The relay's sample of its outbox: rows waiting and the age of the oldest.
    pub fn set_outbox(&self, service: &str, backlog: u64, lag: Duration) {
        self.inner
            .outbox_backlog
            .with_label_values(&[service])
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.inner
            .relay_lag
            .with_label_values(&[service])
            .set(lag.as_secs_f64());
    }

    /// `count` events of `service` were published and confirmed.
    pub fn events_published(&self, service: &str, count: u64) {
        self.inner
            .events_published
            .with_label_values(&[service])
            .inc_by(count);
    }

    /// A consumer of `group` started: its series are exported at 0 from now on (so that rates
    /// and alerts see them before the first failure).
    pub fn consumer_started(&self, group: &str) {
        for outcome in [
            DeliveryOutcome::Handled,
            DeliveryOutcome::Duplicate,
            DeliveryOutcome::Failed,
        ] {
            self.inner
                .consumer_deliveries
                .with_label_values(&[group, outcome.label()]);
        }
        self.inner.consumer_retries.with_label_values(&[group]);
        self.inner.consumer_dead_letters.with_label_values(&[group]);
    }

    /// One delivery to `group` ended with `outcome`.
    pub fn consumer_delivery(&self, group: &str, outcome: DeliveryOutcome) {
        self.inner
            .consumer_deliveries
            .with_label_values(&[group, outcome.label()])
            .inc();
    }

    /// A failed delivery to `group` will be tried again.
    pub fn consumer_retry(&self, group: &str) {
        self.inner
            .consumer_retries
            .with_label_values(&[group])
            .inc();
    }

    /// A delivery to `group` was dead-lettered.
    pub fn consumer_dead_letter(&self, group: &str) {
        self.inner
            .consumer_dead_letters
            .with_label_values(&[group])
            .inc();
    }

    /// An invitation e-mail was sent.
    pub fn email_sent(&self) {
        self.inner.emails_sent.inc();
    }

    /// Sending an invitation e-mail failed.
    pub fn email_failed(&self) {
        self.inner.emails_failed.inc();
    }

    /// The fan-out wrote `count` deliveries.
    pub fn deliveries_written(&self, count: u64) {
        self.inner.deliveries_written.inc_by(count);
    }

    /// The pruner of `service` deleted `count` old rows of `table` (0 exports the series).
    pub fn rows_pruned(&self, service: &str, table: &str, count: u64) {
        self.inner
            .pruned_rows
            .with_label_values(&[service, table])
            .inc_by(count);
    }
}

/// The process's own CPU, memory, file descriptors and start time (Linux; elsewhere nothing).
fn register_process_collector(registry: &Registry) {
    #[cfg(target_os = "linux")]
    {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(error) = registry.register(Box::new(collector)) {
            tracing::warn!(%error, "process metrics are not exported");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// The gRPC code as gRPC's Go implementation names it (`OK`, `NotFound`, `Canceled`, …): the
/// `grpc_code` label values of the grpc-ecosystem middlewares.
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The gRPC code as in the status code guide (`OK`, `NOT_FOUND`, …).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Every `(service, method)` this server can answer, with its `grpc_type`, from the descriptor
/// sets it serves; other paths are labelled `unknown` so that random paths cannot blow up the
/// label cardinality.
static KNOWN_METHODS: LazyLock<HashMap<(String, String), &'static str>> = LazyLock::new(|| {
    let mut known = HashMap::new();
    for set in [
        tenantry_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = match (package.as_str(), service.name()) {
                    ("", name) => name.to_string(),
                    (package, name) => format!("{package}.{name}"),
                };
                for method in service.method {
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    known.insert((service_name.clone(), method.name().to_string()), kind);
                }
            }
        }
    }
    known
});

/// The gRPC health service, whose checks (probes) are counted apart.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The labels of one call: its served method, or `unknown` throughout for any other path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcLabels {
    /// `grpc_service`, e.g. `tenantry.registry.v1.CustomerRegistryService`.
    pub service: String,
    /// `grpc_method`, e.g. `CreateAccount`.
    pub method: String,
    /// `grpc_type`: `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
}

impl RpcLabels {
    fn is_health_check(&self) -> bool {
        self.service == HEALTH_SERVICE
    }
}

/// The labels of a request path `/{service}/{method}`.
pub fn rpc_labels(path: &str) -> RpcLabels {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    if let (Some(service), Some(method)) = (parts.next(), parts.next()) {
        let key = (service.to_string(), method.to_string());
        if let Some(kind) = KNOWN_METHODS.get(&key) {
            return RpcLabels {
                service: key.0,
                method: key.1,
                kind,
            };
        }
    }
    RpcLabels {
        service: "unknown".to_string(),
        method: "unknown".to_string(),
        kind: "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_and_counts() {
        let metrics = Metrics::new();
        let create = rpc_labels("/tenantry.registry.v1.CustomerRegistryService/CreateAccount");
        metrics.rpc_started(&create);
        metrics.record_rpc(&create, tonic::Code::PermissionDenied);
        metrics.observe_rpc_duration(&create, Duration::from_millis(3));
        let health = rpc_labels("/grpc.health.v1.Health/Check");
        metrics.rpc_started(&health);
        metrics.record_rpc(&health, tonic::Code::Ok);
        metrics.observe_rpc_duration(&health, Duration::from_millis(1));
        metrics.email_sent();
        metrics.deliveries_written(3);
        metrics.consumer_delivery("g", DeliveryOutcome::Handled);
        metrics.rows_pruned("invitation", "processed_events", 2500);
        let text = metrics.render();
        let labels = "grpc_method=\"CreateAccount\",grpc_service=\"tenantry.registry.v1.CustomerRegistryService\",grpc_type=\"unary\"";
        assert!(
            text.contains(&format!("grpc_server_started_total{{{labels}}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "grpc_server_handled_total{{grpc_code=\"PermissionDenied\",{labels}}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("grpc_server_handling_seconds_count{{{labels}}} 1")),
            "{text}"
        );
        // Probes are counted apart, never in the RPC series.
        assert!(
            !text.contains("grpc_service=\"grpc.health.v1.Health\""),
            "{text}"
        );
        assert!(
            text.contains("tenantry_health_checks_total{grpc_code=\"OK\",grpc_method=\"Check\"} 1"),
            "{text}"
        );
        assert!(text.contains("tenantry_emails_sent_total 1"), "{text}");
        assert!(
            text.contains("tenantry_deliveries_written_total 3"),
            "{text}"
        );
        assert!(
            text.contains("tenantry_consumer_deliveries_total{group=\"g\",outcome=\"handled\"} 1")
        );
        assert!(
            text.contains(
                "tenantry_pruned_rows_total{table=\"processed_events\",tenantry_service=\"invitation\"} 2500"
            ),
            "{text}"
        );
        // No label that Kubernetes service discovery sets itself.
        assert!(!text.contains("{service="), "{text}");
        assert!(!text.contains(",service="), "{text}");
        #[cfg(target_os = "linux")]
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing: {text}"
            );
        }
    }

    #[test]
    fn unknown_paths_share_one_label_and_streams_have_their_type() {
        assert_eq!(
            rpc_labels("/tenantry.registry.v1.CustomerRegistryService/CreateAccount"),
            RpcLabels {
                service: "tenantry.registry.v1.CustomerRegistryService".to_string(),
                method: "CreateAccount".to_string(),
                kind: "unary",
            }
        );
        assert_eq!(
            rpc_labels("/grpc.health.v1.Health/Watch").kind,
            "server_stream"
        );
        assert_eq!(
            rpc_labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").kind,
            "bidi_stream"
        );
        assert_eq!(
            rpc_labels("/tenantry.notification.v1.NotificationService/WatchInbox").kind,
            "server_stream"
        );
        let unknown = RpcLabels {
            service: "unknown".into(),
            method: "unknown".into(),
            kind: "unknown",
        };
        assert_eq!(
            rpc_labels("/tenantry.registry.v1.CustomerRegistryService/Nope"),
            unknown
        );
        assert_eq!(rpc_labels("/x"), unknown);
    }
}
