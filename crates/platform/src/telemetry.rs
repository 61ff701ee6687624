//! Logs and traces.
//!
//! Logs go through `tracing`: human-readable in a terminal, JSON lines when asked. Every span
//! Tenantry opens for a unit of work (a gRPC call, an event handled, an outbox row relayed, a
//! fan-out page) also becomes an OpenTelemetry span, and records its `trace_id` and `span_id`
//! as fields, so every log line written inside it carries them.
//!
//! Traces are exported over OTLP/gRPC when the standard `OTEL_*` variables ask for it (see
//! [`OtlpSettings`]); otherwise spans still get ids (so logs can be correlated with a caller's
//! `traceparent`) but nothing is recorded or exported. The W3C trace context travels in the
//! `traceparent`/`tracestate` gRPC metadata and AMQP headers; the helpers at the end of this
//! module are the one place that reads and writes it.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Whether and where to export traces, read from the standard OpenTelemetry variables.
///
/// Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// set or `OTEL_TRACES_EXPORTER=otlp`, unless `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`. The exporter itself reads the endpoint, headers, timeout and
/// compression variables; the SDK reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER`/`_ARG` and the `OTEL_BSP_*` batch settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// Export traces over OTLP/gRPC.
    pub export: bool,
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
        Self {
            export: wanted && !disabled && exporter.as_deref() != Some("none"),
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
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
    let mut builder = SdkTracerProvider::builder().with_resource(resource(default_service_name));
    let mut export_error = None;
    if settings.export {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
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
    if let Some(error) = export_error {
        tracing::error!(%error, "cannot set up OTLP trace export; traces are not exported");
    } else if settings.export {
        tracing::info!("exporting traces over OTLP/gRPC");
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
    let builder = Resource::builder();
    // OTEL_SERVICE_NAME (read by the SDK's detector) wins over the default.
    if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.trim().is_empty()) {
        builder.build()
    } else {
        builder
            .with_service_name(default_service_name.to_string())
            .build()
    }
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
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
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
            // Fails only without the OpenTelemetry layer (nothing to link then).
            drop(span.set_parent(parent));
        }
    }
    record_ids(span);
}

/// [`continue_trace`] from the `traceparent`/`tracestate` headers of an incoming call.
pub fn continue_trace_from_headers(span: &Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
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
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    TraceHeaders {
        traceparent: carrier.remove("traceparent"),
        tracestate: carrier
            .remove("tracestate")
            .filter(|state| !state.is_empty()),
    }
}

/// Writes the trace context of `span` into the headers of an outgoing call.
pub fn inject_headers(span: &Span, headers: &mut http::HeaderMap) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
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
