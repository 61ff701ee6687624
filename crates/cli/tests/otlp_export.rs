//! Traces leave a real `tenantry up` process over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, over gRPC (the default) and over HTTP/protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL`): a
//! collector started by the test receives the spans of one call and of the event it caused, in
//! one trace, under the process's service name and with `OTEL_RESOURCE_ATTRIBUTES`; the JSON log
//! lines written inside those spans carry the same trace id at their top level; without the
//! variable nothing is exported.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use support::{free_port, operator_token};
use tenantry_proto::registry::v1::CreateAccountRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "otlp-export-test-secret";

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    /// The resource's attributes (string values), e.g. `service.name`.
    resource: Vec<(String, String)>,
    name: String,
    trace_id: String,
}

impl ReceivedSpan {
    fn resource(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    fn record(&self, request: ExportTraceServiceRequest) {
        let mut received = self.spans.lock().expect("lock");
        for resource_spans in request.resource_spans {
            let resource: Vec<(String, String)> = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(value) => Some((kv.key.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        resource: resource.clone(),
                        name: span.name,
                        trace_id: span
                            .trace_id
                            .iter()
                            .map(|byte| format!("{byte:02x}"))
                            .collect(),
                    });
                }
            }
        }
    }

    /// An OTLP/gRPC collector on a free port; its endpoint.
    async fn serve_grpc(&self) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        (endpoint, task)
    }

    /// An OTLP/HTTP collector (protobuf bodies on `POST /v1/traces`) on a free port; its base
    /// endpoint, to which the exporter appends `/v1/traces`.
    async fn serve_http(&self) -> (String, tokio::task::JoinHandle<()>) {
        use prost::Message as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let collector = self.clone();
        let router = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let collector = collector.clone();
                    async move {
                        let protobuf = headers
                            .get("content-type")
                            .is_some_and(|value| value == "application/x-protobuf");
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(request) if protobuf => {
                                collector.record(request);
                                let body = ExportTraceServiceResponse::default().encode_to_vec();
                                (
                                    axum::http::StatusCode::OK,
                                    [("content-type", "application/x-protobuf")],
                                    body,
                                )
                            }
                            _ => (
                                axum::http::StatusCode::BAD_REQUEST,
                                [("content-type", "text/plain")],
                                b"expected an OTLP protobuf body".to_vec(),
                            ),
                        }
                    }
                },
            ),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (endpoint, task)
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Runs `tenantry up` with the OpenTelemetry variables `otel` (none: no export), creates one
/// account, waits until `settle` says so (given the log lines so far; at most 20 s), stops the
/// process with SIGTERM and returns its JSON log lines.
async fn run_once(otel: &[(&str, &str)], settle: impl Fn(&[String]) -> bool) -> Vec<String> {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tenantry-otlp-{}", uuid::Uuid::new_v4().simple()));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command
        .arg("up")
        .env("TENANTRY_DATA_DIR", &dir)
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
        // The invitation page on a port of its own, not the default 8080.
        .env(
            "TENANTRY_PUBLIC_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env_remove("TENANTRY_ACCEPT_PAGE_LISTEN")
        .env("TENANTRY_JWT_SECRET", SECRET)
        .env("TENANTRY_LOG_FORMAT", "json")
        .env("TENANTRY_LOG", "info,tenantry_events=debug")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_PROPAGATORS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if !otel.is_empty() {
        command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    for (name, value) in otel {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start tenantry up");
    let stdout = child.stdout.take().expect("stdout");
    let logged = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let logged = logged.clone();
        async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logged.lock().expect("lock").push(line);
            }
        }
    });

    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", operator_token(SECRET))
        .parse()
        .expect("header");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let created = async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone())
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut request = tonic::Request::new(CreateAccountRequest {
                account_id: "traced-account".into(),
                display_name: "Traced account".into(),
                request_id: String::new(),
            });
            request
                .metadata_mut()
                .insert("authorization", token.clone());
            CustomerRegistryServiceClient::new(channel)
                .create_account(request)
                .await
                .ok()
        }
        .await;
        if created.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tenantry up never took the call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !settle(&logged.lock().expect("lock")) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let _ = child.start_kill();
    let _ = std::fs::remove_dir_all(&dir);
    reader.await.expect("log reader");
    let lines = std::mem::take(&mut *logged.lock().expect("lock"));
    match exit {
        Ok(Ok(status)) if status.success() => lines,
        other => panic!(
            "tenantry up did not exit 0 within 30 s of SIGTERM ({other:?}); its log:\n{}",
            lines.join("\n")
        ),
    }
}

/// The trace of the CreateAccount call that created the account (the one holding the
/// consumer's span of the event it caused), once the collector has it.
fn call_with_its_event(spans: &[ReceivedSpan]) -> Option<ReceivedSpan> {
    let in_trace = |trace_id: &str, name: &str| {
        spans
            .iter()
            .any(|span| span.trace_id == trace_id && span.name == name)
    };
    spans
        .iter()
        .find(|span| span.name == CREATE && in_trace(&span.trace_id, CONSUMED))
        .cloned()
}

const CREATE: &str = "tenantry.registry.v1.CustomerRegistryService/CreateAccount";
const CONSUMED: &str = "account.created process";

/// Runs `tenantry up` exporting to `collector` with `otel`, and checks the trace of one call
/// and its event, and the trace id of the JSON log lines written while handling the event.
/// Returns the call's span.
async fn export_and_check(collector: &Collector, otel: &[(&str, &str)]) -> ReceivedSpan {
    let spans = collector.spans.clone();
    let logs = run_once(otel, |_| {
        call_with_its_event(&spans.lock().expect("lock")).is_some()
    })
    .await;
    let spans = collector.spans.lock().expect("lock").clone();
    // Calls made before the registry was ready were refused, each its own trace: the one that
    // created the account is the trace with the event in it.
    let call = call_with_its_event(&spans).unwrap_or_else(|| {
        panic!("no {CREATE} trace holds the consumer's span {CONSUMED}; got {spans:#?}")
    });
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == call.trace_id)
        .collect();
    assert!(
        trace
            .iter()
            .any(|span| span.name == "account.created publish"),
        "the relay's publication is in the trace: {trace:#?}"
    );

    // Logs: JSON lines, and those written while handling the event carry the trace id at the
    // top level of the line (where log stores look for it).
    let handled: Vec<serde_json::Value> = logs
        .iter()
        .filter(|line| line.contains("event handled") && line.contains("account.created"))
        .map(|line| serde_json::from_str(line).expect("JSON log line"))
        .collect();
    assert!(!handled.is_empty(), "no 'event handled' log line");
    for line in &handled {
        assert!(line.get("timestamp").is_some(), "{line}");
    }
    assert!(
        handled
            .iter()
            .any(|line| line["trace_id"] == call.trace_id.as_str() && line["span_id"].is_string()),
        "a log line of the consumer carries trace id {} at its top level: {handled:#?}",
        call.trace_id
    );
    eprintln!(
        "{otel:?}: exported {} spans; trace {} has {} spans",
        spans.len(),
        call.trace_id,
        trace.len()
    );
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_over_otlp_and_logs_carry_their_ids() {
    let collector = Collector::default();
    let (endpoint, server) = collector.serve_grpc().await;
    let call = export_and_check(&collector, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    assert_eq!(
        call.resource("service.name"),
        Some("tenantry"),
        "the process names itself"
    );

    // Without an endpoint nothing is sent (the collector sees no new span).
    let before = collector.spans.lock().expect("lock").len();
    let logs = run_once(&[], |lines| {
        lines
            .iter()
            .any(|line| line.contains("event handled") && line.contains("\"trace_id\":\""))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(collector.spans.lock().expect("lock").len(), before);
    assert!(
        logs.iter().any(|line| line.contains("\"trace_id\":\"")),
        "log lines carry trace ids even when nothing is exported"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_over_otlp_http_with_the_resource_attributes() {
    let collector = Collector::default();
    let (endpoint, server) = collector.serve_http().await;
    let call = export_and_check(
        &collector,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=ci,service.namespace=tenantry-test,service.name=tenantry-ci",
            ),
            ("OTEL_PROPAGATORS", "tracecontext,baggage"),
        ],
    )
    .await;
    assert_eq!(call.resource("deployment.environment.name"), Some("ci"));
    assert_eq!(call.resource("service.namespace"), Some("tenantry-test"));
    assert_eq!(
        call.resource("service.name"),
        Some("tenantry-ci"),
        "service.name among the resource attributes wins over the built-in default"
    );
    server.abort();
}
