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
//! The metric names:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `tenantry_grpc_requests_total` | counter | `service`, `method`, `code` |
//! | `tenantry_grpc_request_duration_seconds` | histogram | `service`, `method` |
//! | `tenantry_outbox_backlog` | gauge | `service` |
//! | `tenantry_relay_lag_seconds` | gauge | `service` |
//! | `tenantry_events_published_total` | counter | `service` |
//! | `tenantry_consumer_deliveries_total` | counter | `group`, `outcome` (`handled`, `duplicate`, `failed`, `unknown_type`) |
//! | `tenantry_consumer_retries_total` | counter | `group` |
//! | `tenantry_consumer_dead_letters_total` | counter | `group` |
//! | `tenantry_emails_sent_total`, `tenantry_emails_failed_total` | counter | — |
//! | `tenantry_deliveries_written_total` | counter | — |
//! | `tenantry_pruned_rows_total` | counter | `service`, `table` |

use std::collections::HashSet;
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
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
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
        let grpc_requests = counter_vec(
            "tenantry_grpc_requests_total",
            "gRPC calls handled, by final status code",
            &["service", "method", "code"],
        );
        let grpc_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "tenantry_grpc_request_duration_seconds",
                    "Time from receiving a gRPC call to sending its response headers",
                ),
                &["service", "method"],
            )
            .expect("valid metric"),
        );
        let outbox_backlog = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tenantry_outbox_backlog",
                    "Outbox rows waiting to be published (sampled by the relay each cycle)",
                ),
                &["service"],
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
                &["service"],
            )
            .expect("valid metric"),
        );
        let events_published = counter_vec(
            "tenantry_events_published_total",
            "Events published by the relay and confirmed by the transport",
            &["service"],
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
            &["service", "table"],
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                grpc_requests,
                grpc_duration,
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

    /// One finished gRPC call.
    pub fn record_rpc(&self, service: &str, method: &str, code: tonic::Code) {
        self.inner
            .grpc_requests
            .with_label_values(&[service, method, code_name(code)])
            .inc();
    }

    /// The latency of one gRPC call (to its response headers).
    pub fn observe_rpc_duration(&self, service: &str, method: &str, elapsed: Duration) {
        self.inner
            .grpc_duration
            .with_label_values(&[service, method])
            .observe(elapsed.as_secs_f64());
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

/// Every `(service, method)` this server can answer, from the descriptor sets it serves; other
/// paths are labelled `unknown` so that random paths cannot blow up the label cardinality.
static KNOWN_METHODS: LazyLock<HashSet<(String, String)>> = LazyLock::new(|| {
    let mut known = HashSet::new();
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
                    known.insert((service_name.clone(), method.name().to_string()));
                }
            }
        }
    }
    known
});

/// The `service` and `method` labels of a request path `/{service}/{method}`.
pub fn rpc_labels(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    if let (Some(service), Some(method)) = (parts.next(), parts.next()) {
        let key = (service.to_string(), method.to_string());
        if KNOWN_METHODS.contains(&key) {
            return key;
        }
    }
    ("unknown".to_string(), "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_and_counts() {
        let metrics = Metrics::new();
        metrics.record_rpc(
            "tenantry.registry.v1.CustomerRegistryService",
            "CreateAccount",
            tonic::Code::PermissionDenied,
        );
        metrics.email_sent();
        metrics.deliveries_written(3);
        metrics.consumer_delivery("g", DeliveryOutcome::Handled);
        metrics.rows_pruned("invitation", "processed_events", 2500);
        let text = metrics.render();
        assert!(text.contains(
            "tenantry_grpc_requests_total{code=\"PERMISSION_DENIED\",method=\"CreateAccount\",service=\"tenantry.registry.v1.CustomerRegistryService\"} 1"
        ), "{text}");
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
                "tenantry_pruned_rows_total{service=\"invitation\",table=\"processed_events\"} 2500"
            ),
            "{text}"
        );
    }

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            rpc_labels("/tenantry.registry.v1.CustomerRegistryService/CreateAccount"),
            (
                "tenantry.registry.v1.CustomerRegistryService".to_string(),
                "CreateAccount".to_string()
            )
        );
        assert_eq!(
            rpc_labels("/grpc.health.v1.Health/Check").1,
            "Check".to_string()
        );
        assert_eq!(
            rpc_labels("/tenantry.registry.v1.CustomerRegistryService/Nope"),
            ("unknown".to_string(), "unknown".to_string())
        );
        assert_eq!(rpc_labels("/x"), ("unknown".into(), "unknown".into()));
    }
}
