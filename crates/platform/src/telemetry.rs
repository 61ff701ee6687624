//! Logs and traces.
//!
//! Logs go through `tracing`: human-readable in a terminal, JSON lines when asked. Every span
//! Tenantry opens for a unit of work (a gRPC call, an event handled, an outbox row relayed, a
//! fan-out page) also becomes an OpenTelemetry span, and records its `trace_id` and `span_id`
//! as fields, so every log line written inside it carries them.
//!
//! Traces are exported over OTLP (gRPC or HTTP/protobuf) when the standard `OTEL_*` variables
//! ask for it (see [`OtlpSettings`]); otherwise spans still get ids (so logs can be correlated
//! with a caller's `traceparent`) but nothing is recorded or exported. The context travels with
//! the propagators `OTEL_PROPAGATORS` names (W3C trace context and baggage by default) in gRPC
//! metadata; events carry the W3C trace context in their AMQP headers. The helpers at the end
//! of this module are the one place that reads and writes it.
//!
//! JSON log lines carry the `trace_id` and `span_id` of the innermost span that has them at the
//! top level of the line, where Loki, Grafana and Datadog look for them (they are in the
//! `span`/`spans` objects too).

use std::collections::HashMap;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Whether, where and how to export traces, read from the standard OpenTelemetry variables.
///
/// Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// set or `OTEL_TRACES_EXPORTER=otlp`, unless `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or
/// `OTEL_EXPORTER_OTLP_PROTOCOL`) chooses `grpc` (the default, port 4317, as Tenantry always
/// exported) or `http/protobuf` (port 4318, `/v1/traces` appended to the base endpoint). The
/// exporter itself reads the endpoint, headers, timeout and compression variables; the SDK reads
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG` and the
/// `OTEL_BSP_*` batch settings. `OTEL_PROPAGATORS` chooses the propagators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// Export traces over OTLP.
    pub export: bool,
    /// The OTLP transport.
    pub protocol: OtlpProtocol,
    /// The propagators, in `OTEL_PROPAGATORS` order.
    pub propagators: Vec<Propagator>,
    /// What could not be understood (an unknown protocol or propagator), to log once installed.
    pub problems: Vec<String>,
}

/// How spans reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`grpc`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

/// A context propagator `OTEL_PROPAGATORS` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagator {
    /// W3C `traceparent`/`tracestate` (`tracecontext`).
    TraceContext,
    /// W3C `baggage` (`baggage`).
    Baggage,
}

impl OtlpSettings {
    /// Reads the variables through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim() == "true");
        let exporter = var("OTEL_TRACES_EXPORTER").map(|value| value.trim().to_ascii_lowercase());
        let wanted = set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            || exporter.as_deref() == Some("otlp");
        let mut problems = Vec::new();
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .filter(|value| !value.trim().is_empty())
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => {
                problems.push(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (grpc or \
                     http/protobuf); exporting over grpc"
                ));
                OtlpProtocol::Grpc
            }
        };
        let mut propagators = Vec::new();
        let names = var("OTEL_PROPAGATORS")
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| "tracecontext,baggage".to_string());
        for name in names
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
        {
            let propagator = match name.as_str() {
                "tracecontext" => Propagator::TraceContext,
                "baggage" => Propagator::Baggage,
                "none" => {
                    propagators.clear();
                    break;
                }
                "" => continue,
                other => {
                    problems.push(format!(
                        "OTEL_PROPAGATORS: {other:?} is not supported (tracecontext, baggage, \
                         none); ignored"
                    ));
                    continue;
                }
            };
            if !propagators.contains(&propagator) {
                propagators.push(propagator);
            }
        }
        Self {
            export: wanted && !disabled && exporter.as_deref() != Some("none"),
            protocol,
            propagators,
            problems,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// The propagators of the process, set once by [`init`] (W3C trace context and baggage until
/// then, and in tests that never call it).
static PROPAGATOR: std::sync::OnceLock<TextMapCompositePropagator> = std::sync::OnceLock::new();

fn propagator() -> &'static TextMapCompositePropagator {
    PROPAGATOR.get_or_init(|| composite(&[Propagator::TraceContext, Propagator::Baggage]))
}

fn composite(propagators: &[Propagator]) -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(
        propagators
            .iter()
            .map(|propagator| -> Box<dyn TextMapPropagator + Send + Sync> {
                match propagator {
                    Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                    Propagator::Baggage => Box::new(BaggagePropagator::new()),
                }
            })
            .collect(),
    )
}

/// The installed tracer provider; [`Telemetry::shutdown`] flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (call once, before the process exits).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing the last traces failed");
        }
    }

    /// Exports what is buffered now.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing traces failed");
        }
    }
}

/// Installs the global subscriber: logs as configured and, when [`OtlpSettings::from_env`] says
/// so, OTLP trace export. `RUST_LOG`, when set, wins over the configured log filter.
/// `default_service_name` names the process in traces unless `OTEL_SERVICE_NAME` does.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(config: &LogConfig, default_service_name: &str) -> Telemetry {
    let settings = OtlpSettings::from_env();
    // The first call wins, like the subscriber's.
    let _ = PROPAGATOR.set(composite(&settings.propagators));
    let mut builder = SdkTracerProvider::builder().with_resource(resource(default_service_name));
    let mut export_error = None;
    if settings.export {
        let exporter = match settings.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build(),
        };
        match exporter {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error),
        }
    }
    if !settings.export || export_error.is_some() {
        // Nothing is exported: give spans ids but record nothing, unless a caller's sampled
        // trace passes through (its flag is kept for the services downstream).
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    }
    let telemetry = install(config, builder.build());
    for problem in &settings.problems {
        tracing::warn!("{problem}");
    }
    if let Some(error) = export_error {
        tracing::error!(%error, "cannot set up OTLP trace export; traces are not exported");
    } else if settings.export {
        let protocol = match settings.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        };
        tracing::info!(protocol, "exporting traces over OTLP");
    }
    telemetry
}

/// Installs the global subscriber with every span sent to `exporter` as it ends (tests use the
/// SDK's in-memory exporter).
pub fn init_with_exporter(
    config: &LogConfig,
    service_name: &str,
    exporter: impl SpanExporter + 'static,
) -> Telemetry {
    let provider = SdkTracerProvider::builder()
        .with_resource(resource(service_name))
        .with_sampler(Sampler::AlwaysOn)
        .with_simple_exporter(exporter)
        .build();
    install(config, provider)
}

fn resource(default_service_name: &str) -> Resource {
    resource_from(default_service_name, |name| std::env::var(name).ok())
}

/// The resource: the SDK's detectors read `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`;
/// `default_service_name` names the process only when neither names it (the specification's
/// order: `OTEL_SERVICE_NAME`, then `service.name` among the attributes, then the default).
fn resource_from(default_service_name: &str, var: impl Fn(&str) -> Option<String>) -> Resource {
    let builder = Resource::builder();
    if names_the_service(var) {
        builder.build()
    } else {
        builder
            .with_service_name(default_service_name.to_string())
            .build()
    }
}

/// Whether the environment (through `var`) names the service itself.
fn names_the_service(var: impl Fn(&str) -> Option<String>) -> bool {
    let named = var("OTEL_SERVICE_NAME").is_some_and(|value| !value.trim().is_empty());
    named
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
            attributes.split(',').any(|pair| {
                pair.split_once('=').is_some_and(|(key, value)| {
                    key.trim() == "service.name" && !value.trim().is_empty()
                })
            })
        })
}

fn install(config: &LogConfig, provider: SdkTracerProvider) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Traces hold Tenantry's own spans (and the events logged inside them) whatever the log
    // filter says, so turning logs down never breaks a trace apart.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tenantry"))
        .with_filter(FilterFn::new(|metadata| {
            metadata.target().starts_with("tenantry") && *metadata.level() <= LevelFilter::INFO
        }));
    let logs = match config.format {
        LogFormat::Human => fmt::layer().with_target(true).boxed(),
        LogFormat::Json => json_logs(std::io::stdout).boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(filter))
        .try_init();
    // A subscriber already installed (tests start several servers) is not an error.
    drop(result);
    Telemetry { provider }
}

/// Makes `span` a child of the trace context in `traceparent`/`tracestate` (when present and
/// valid) and records its `trace_id`/`span_id` fields. Call before the span is first entered.
pub fn continue_trace(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert("traceparent".to_string(), traceparent.to_string());
        if let Some(tracestate) = tracestate {
            carrier.insert("tracestate".to_string(), tracestate.to_string());
        }
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            // Events carry the W3C trace context only, whatever the propagators (their outbox
            // rows keep `traceparent`/`tracestate`). Fails only without the OpenTelemetry layer.
            drop(span.set_parent(parent));
        }
    }
    record_ids(span);
}

/// [`continue_trace`] from the headers of an incoming call, read by the configured
/// propagators: the trace context, and baggage, which goes on to the calls it makes.
pub fn continue_trace_from_headers(span: &Span, headers: &http::HeaderMap) {
    let parent = propagator().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() || !parent.baggage().is_empty() {
        drop(span.set_parent(parent));
    }
    record_ids(span);
}

/// Records `span`'s own ids in its `trace_id` and `span_id` fields (when it declares them).
pub fn record_ids(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// The W3C trace context of `span`, to carry along with work it hands on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    /// The `traceparent` value, if `span` belongs to a trace.
    pub traceparent: Option<String>,
    /// The `tracestate` value, if any.
    pub tracestate: Option<String>,
}

/// The trace context of `span` (empty when tracing is not installed).
pub fn trace_headers(span: &Span) -> TraceHeaders {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return TraceHeaders::default();
    }
    let mut carrier = HashMap::with_capacity(2);
    // The W3C trace context only: it is what an event's outbox row keeps.
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    TraceHeaders {
        traceparent: carrier.remove("traceparent"),
        tracestate: carrier
            .remove("tracestate")
            .filter(|state| !state.is_empty()),
    }
}

/// Writes the context of `span` (trace context, baggage: the configured propagators) into the
/// headers of an outgoing call.
pub fn inject_headers(span: &Span, headers: &mut http::HeaderMap) {
    let context = span.context();
    propagator().inject_context(&context, &mut HeaderInjector(headers));
}

/// JSON log lines to `writer`: the event's fields flattened, the current span and the list of
/// spans, and the trace ids on top ([`TraceIdsOnTop`]).
fn json_logs<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'writer> fmt::MakeWriter<'writer> + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .map_event_format(TraceIdsOnTop)
        .with_writer(writer)
}

/// The JSON log format with the `trace_id` and `span_id` of the innermost span that recorded
/// them added at the top of each line.
struct TraceIdsOnTop<F>(F);

impl<S, N, F> FormatEvent<S, N> for TraceIdsOnTop<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0
            .format_event(context, Writer::new(&mut line), event)?;
        let ids = context.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| {
                let extensions = span.extensions();
                let fields = extensions.get::<FormattedFields<N>>()?;
                ids_in(&fields.fields)
            })
        });
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The `trace_id` and `span_id` among a span's fields as the JSON formatter keeps them (a JSON
/// object); only hexadecimal ids, so nothing needs escaping.
fn ids_in(fields: &str) -> Option<(String, String)> {
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(fields).ok()?;
    let hex = |name: &str| {
        fields
            .get(name)?
            .as_str()
            .filter(|id| !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .map(str::to_string)
    };
    Some((hex("trace_id")?, hex("span_id")?))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> OtlpSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        OtlpSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn export_is_off_unless_an_otel_variable_asks_for_it() {
        assert!(!settings(&[]).export);
        assert!(!settings(&[("OTEL_SERVICE_NAME", "membership")]).export);
        assert!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).export);
        assert!(settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")]).export);
        assert!(settings(&[("OTEL_TRACES_EXPORTER", "otlp")]).export);
        assert!(!settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).export);
    }

    #[test]
    fn disabling_variables_win() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        assert!(!settings(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).export);
        assert!(!settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).export);
        assert!(settings(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).export);
    }

    #[test]
    fn the_protocol_and_propagators_follow_the_standard_variables() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(settings(&[endpoint]).protocol, OtlpProtocol::Grpc);
        let http = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        assert_eq!(http.protocol, OtlpProtocol::HttpProtobuf);
        assert!(http.problems.is_empty());
        // The signal's own variable wins.
        let traces = settings(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert_eq!(traces.protocol, OtlpProtocol::Grpc);
        let json = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(json.protocol, OtlpProtocol::Grpc);
        assert_eq!(json.problems.len(), 1, "{:?}", json.problems);

        let both = vec![Propagator::TraceContext, Propagator::Baggage];
        assert_eq!(settings(&[]).propagators, both);
        assert_eq!(
            settings(&[("OTEL_PROPAGATORS", "baggage, tracecontext")]).propagators,
            vec![Propagator::Baggage, Propagator::TraceContext]
        );
        assert!(
            settings(&[("OTEL_PROPAGATORS", "none")])
                .propagators
                .is_empty()
        );
        let unknown = settings(&[("OTEL_PROPAGATORS", "b3,tracecontext")]);
        assert_eq!(unknown.propagators, vec![Propagator::TraceContext]);
        assert_eq!(unknown.problems.len(), 1);
    }

    #[test]
    fn the_default_service_name_yields_to_the_environment() {
        let names = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            names_the_service(|name| vars.get(name).cloned())
        };
        assert!(!names(&[]));
        assert!(names(&[("OTEL_SERVICE_NAME", "billing")]));
        assert!(names(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod, service.name=billing"
        )]));
        assert!(!names(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=tenantry"
        )]));
        assert!(!names(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=")]));
        assert!(!names(&[("OTEL_SERVICE_NAME", " ")]));
        // (That the SDK then puts the attributes on the exported resource is shown end to end
        // by crates/cli/tests/otlp_export.rs, against a collector.)
    }

    /// A subscriber with the OpenTelemetry layer (so spans have ids) and JSON logs into a buffer.
    fn with_json_logs<T>(run: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .build();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(json_logs(move || writer.clone()));
        let result = tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        (result, text)
    }

    #[test]
    fn json_lines_carry_the_trace_ids_at_the_top_level() {
        let (ids, text) = with_json_logs(|| {
            let span = tracing::info_span!(
                "work",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            record_ids(&span);
            let ids = {
                let context = span.context();
                let span_context = context.span().span_context().clone();
                (
                    span_context.trace_id().to_string(),
                    span_context.span_id().to_string(),
                )
            };
            span.in_scope(|| {
                // An inner span without ids of its own: the outer span's are used.
                tracing::info_span!("inner").in_scope(|| tracing::info!(answer = 42, "inside"));
            });
            tracing::info!("outside");
            ids
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["trace_id"], ids.0.as_str(), "{text}");
        assert_eq!(lines[0]["span_id"], ids.1.as_str(), "{text}");
        assert_eq!(lines[0]["answer"], 42, "{text}");
        assert_eq!(lines[0]["message"], "inside", "{text}");
        assert!(
            lines[0].get("span").is_some(),
            "the span object stays: {text}"
        );
        assert!(
            lines[1].get("trace_id").is_none(),
            "outside every span: {text}"
        );
    }

    #[test]
    fn baggage_goes_on_to_the_calls_a_call_makes() {
        let (out, _) = with_json_logs(|| {
            let mut incoming = http::HeaderMap::new();
            incoming.insert(
                "traceparent",
                http::HeaderValue::from_static(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            );
            incoming.insert(
                "baggage",
                http::HeaderValue::from_static("tenant=acme,request.origin=portal"),
            );
            let span = tracing::info_span!(
                "grpc.server",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            continue_trace_from_headers(&span, &incoming);
            let mut outgoing = http::HeaderMap::new();
            inject_headers(&span, &mut outgoing);
            outgoing
        });
        let header = |name: &str| {
            out.get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("traceparent").starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{out:?}"
        );
        let baggage = header("baggage");
        assert!(
            baggage.contains("tenant=acme") && baggage.contains("request.origin=portal"),
            "{out:?}"
        );
    }

    #[test]
    fn headers_round_trip_through_the_propagator() {
        let mut headers = http::HeaderMap::new();
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.insert("traceparent", http::HeaderValue::from_static(traceparent));
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let mut out = http::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut out));
        assert_eq!(
            out.get("traceparent").and_then(|value| value.to_str().ok()),
            Some(traceparent)
        );
    }
}
