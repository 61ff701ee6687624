//! Traces leave a real `tenantry up` process over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set: a collector started by the test receives the spans of one call and of the event it
//! caused, in one trace, under the process's service name; the JSON log lines written inside
//! those spans carry the same trace id; without the variable nothing is exported.

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
    service_name: String,
    name: String,
    trace_id: String,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.spans.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    Value::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service_name: service_name.clone(),
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
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Runs `tenantry up` with `otel_endpoint` (if any), creates one account, waits until `settle`
/// says so (given the log lines so far; at most 20 s), stops the process with SIGTERM and
/// returns its JSON log lines.
async fn run_once(otel_endpoint: Option<&str>, settle: impl Fn(&[String]) -> bool) -> Vec<String> {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(endpoint) = otel_endpoint {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_over_otlp_and_logs_carry_their_ids() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let create = "tenantry.registry.v1.CustomerRegistryService/CreateAccount";
    let consumed = "account.created process";
    let spans = collector.spans.clone();
    let logs = run_once(Some(&endpoint), |_| {
        let spans = spans.lock().expect("lock");
        let trace_of = |name: &str| {
            spans
                .iter()
                .filter(|span| span.name == name)
                .map(|span| span.trace_id.clone())
                .collect::<Vec<_>>()
        };
        let calls = trace_of(create);
        trace_of(consumed).iter().any(|trace| calls.contains(trace))
    })
    .await;

    let spans = collector.spans.lock().expect("lock").clone();
    // Calls made before the registry was ready were refused, each its own trace: the one that
    // created the account is the trace with the event in it.
    let in_trace = |trace_id: &str, name: &str| {
        spans
            .iter()
            .any(|span| span.trace_id == trace_id && span.name == name)
    };
    let call = spans
        .iter()
        .find(|span| span.name == create && in_trace(&span.trace_id, consumed))
        .unwrap_or_else(|| {
            panic!("no {create} trace holds the consumer's span {consumed}; got {spans:#?}")
        });
    assert_eq!(call.service_name, "tenantry", "the process names itself");
    assert!(
        in_trace(&call.trace_id, "account.created publish"),
        "the relay's publication is in the trace: {spans:#?}"
    );
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == call.trace_id)
        .collect();

    // Logs: JSON lines, and those written while handling the event carry the trace id.
    let handled: Vec<&String> = logs
        .iter()
        .filter(|line| line.contains("event handled") && line.contains("account.created"))
        .collect();
    assert!(!handled.is_empty(), "no 'event handled' log line");
    for line in &handled {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        assert!(parsed.get("timestamp").is_some(), "{line}");
    }
    assert!(
        handled
            .iter()
            .any(|line| line.contains(&format!("\"trace_id\":\"{}\"", call.trace_id))),
        "a log line of the consumer carries trace id {}: {handled:#?}",
        call.trace_id
    );
    eprintln!(
        "exported {} spans; trace {} has {} spans",
        spans.len(),
        call.trace_id,
        trace.len()
    );

    // Without an endpoint nothing is sent (the collector sees no new span).
    let before = collector.spans.lock().expect("lock").len();
    let logs = run_once(None, |lines| {
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
