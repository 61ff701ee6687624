//! Server reflection serves real clients nobody in this project wrote: `buf curl` (reflection
//! v1) and a Python client on grpcio-reflection (v1alpha, tests/reflection/client.py) list the
//! services of a `tenantry up` process, make a call, and decode a refusal's error details
//! (google.rpc.ErrorInfo and BadRequest, in the `grpc-status-details-bin` trailer) with
//! descriptors the server reflected.
//!
//! Needs buf at .ci/.tools/node_modules/.bin/buf and a Python (`python3`, or
//! TENANTRY_TEST_PYTHON) with tests/reflection/requirements.txt installed; .ci/run installs
//! both. Without them a test says why and passes, except under CI=true, where it fails.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use prost::Message;
use prost_types::FileDescriptorProto;
use serde_json::Value;
use support::{free_port, operator_token};
use tonic_types::pb::{BadRequest, ErrorInfo};

const SECRET: &str = "reflection-clients-test-secret";
const REGISTRY: &str = "tenantry.registry.v1.CustomerRegistryService";
/// What both clients must be able to discover.
const SERVICES: [&str; 5] = [
    "tenantry.registry.v1.CustomerRegistryService",
    "tenantry.membership.v1.MembershipService",
    "tenantry.invitation.v1.InvitationService",
    "tenantry.notification.v1.NotificationService",
    "grpc.health.v1.Health",
];
/// The refused request: both fields break the rules.
const REFUSED: &str = r#"{"account_id":"Bad Id!","display_name":""}"#;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the calling test may go on: a missing client skips it, except under CI=true (the
/// project's rule: CI never passes a test that did not run).
fn prerequisite(available: bool, missing: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{missing}, but CI=true (.ci/run installs it)");
    }
    // Straight to stderr, which libtest does not capture: a skipped test passes, so the skip
    // must show.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {missing} (under CI=true this fails)"
    );
    false
}

/// One `tenantry up` process on SQLite in a fresh directory, its log in a file there.
struct Up {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Up {
    /// Starts the process and waits until its overall health is SERVING.
    async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "tenantry-reflection-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("test directory");
        let log = std::fs::File::create(dir.join("up.log")).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .arg("up")
            .env("TENANTRY_DATA_DIR", dir.join("data"))
            .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
            // The invitation page on a port of its own, not the default 8080.
            .env(
                "TENANTRY_PUBLIC_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env_remove("TENANTRY_ACCEPT_PAGE_LISTEN")
            .env("TENANTRY_JWT_SECRET", SECRET)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start tenantry up");
        let mut up = Self { child, port, dir };
        up.wait_serving().await;
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default()
    }

    async fn wait_serving(&mut self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("http://127.0.0.1:{}", self.port);
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .connect()
                .await
            {
                // "" is the whole process: SERVING once every service is.
                let check = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await;
                if check
                    .is_ok_and(|reply| reply.into_inner().status == ServingStatus::Serving as i32)
                {
                    return;
                }
            }
            let exited = self.child.try_wait().expect("process status");
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "tenantry up not SERVING within 60 s (exit: {exited:?}); log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and a clean exit within 30 s.
    async fn stop(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(signalled.success(), "kill -TERM {pid}");
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            matches!(exit, Ok(Ok(status)) if status.success()),
            "tenantry up did not exit 0 within 30 s of SIGTERM ({exit:?}); log:\n{}",
            self.log()
        );
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // The process itself is killed on drop (kill_on_drop) if the test failed before stop.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a client to its end (at most 60 s).
async fn run(command: &mut tokio::process::Command) -> Output {
    let output = command.stdin(Stdio::null()).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the client finished within 60 s")
        .expect("run the client")
}

/// Protobuf bytes from base64 as JSON clients print it: protojson writes standard base64 with
/// padding, Connect's error JSON may drop the padding, and either may be URL-safe.
fn base64_bytes(text: &str) -> Vec<u8> {
    let normalized: String = text
        .chars()
        .filter(|&c| c != '=')
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(normalized)
        .unwrap_or_else(|error| panic!("not base64 ({error}): {text}"))
}

/// The JSON value(s) a client printed; buf curl prints one object per streamed response.
fn json_values(text: &str) -> Vec<Value> {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("bad JSON ({error}): {text}"))
}

fn stdout_json(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "client failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    json_values(&String::from_utf8_lossy(&output.stdout))
}

/// The strings of a JSON array, or of one `key` of each of its objects, for the summary lines.
fn strings<'a>(array: &'a Value, key: &str) -> Vec<&'a str> {
    let items = array.as_array().map(Vec::as_slice).unwrap_or_default();
    let item = |value: &'a Value| if key.is_empty() { value } else { &value[key] };
    items
        .iter()
        .filter_map(|value| item(value).as_str())
        .collect()
}

/// `buf curl` over gRPC with HTTP/2 (no TLS) and `args`.
async fn buf_curl(buf: &Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(buf);
    command.args(["curl", "--protocol", "grpc", "--http2-prior-knowledge"]);
    run(command.args(args)).await
}

/// The files one v1 reflection request to `base` answers with, called by buf curl itself.
async fn reflected_files(buf: &Path, base: &str, request: &str) -> Vec<FileDescriptorProto> {
    let reflection = format!("{base}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    let responses = stdout_json(&buf_curl(buf, &["-d", request, &reflection]).await);
    let encoded = responses[0]["fileDescriptorResponse"]["fileDescriptorProto"]
        .as_array()
        .unwrap_or_else(|| panic!("no file descriptors in {responses:?}"));
    encoded
        .iter()
        .map(|file| base64_bytes(file.as_str().expect("base64 string")))
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).expect("file descriptor"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buf_curl_calls_and_decodes_error_details_over_reflection_v1() {
    let buf = repository_root().join(".ci/.tools/node_modules/.bin/buf");
    if !prerequisite(
        buf.is_file(),
        "buf is not installed at .ci/.tools/node_modules/.bin/buf",
    ) {
        return;
    }
    let up = Up::start().await;
    let base = format!("http://127.0.0.1:{}", up.port);
    let authorization = format!("authorization: Bearer {}", operator_token(SECRET));
    let create = format!("{base}/{REGISTRY}/CreateAccount");

    // a. Every service, found by reflection.
    let listed = buf_curl(&buf, &["--list-services", &base]).await;
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for service in SERVICES {
        assert!(
            listed.lines().any(|line| line.trim() == service),
            "{service} not in {listed}"
        );
    }

    // b. A call that succeeds; buf curl builds the request from reflected descriptors.
    let valid = r#"{"account_id":"buf-curl","display_name":"Buf curl"}"#;
    let created = buf_curl(&buf, &["-H", &authorization, "-d", valid, &create]).await;
    let account = &stdout_json(&created)[0]["account"];
    assert_eq!(account["name"], "accounts/buf-curl", "{account}");
    assert_eq!(account["accountId"], "buf-curl", "{account}");
    assert_eq!(account["state"], "ACCOUNT_STATE_ACTIVE", "{account}");

    // c. The refusal: buf curl prints Connect error JSON with the details still encoded.
    let refused = buf_curl(&buf, &["-H", &authorization, "-d", REFUSED, &create]).await;
    assert!(!refused.status.success(), "{refused:?}");
    let printed =
        String::from_utf8_lossy(&refused.stderr) + String::from_utf8_lossy(&refused.stdout);
    let error = json_values(&printed).remove(0);
    assert_eq!(error["code"], "invalid_argument", "{error}");
    let details = error["details"].as_array().expect("details");
    // buf curl shows the bare type name; a type URL would do as well.
    let detail = |name: &str| {
        let found = details.iter().find(|detail| {
            detail["type"]
                .as_str()
                .is_some_and(|kind| kind.rsplit('/').next() == Some(name))
        });
        let found = found.unwrap_or_else(|| panic!("no {name} in {error}"));
        base64_bytes(found["value"].as_str().expect("value"))
    };
    let bad_request =
        BadRequest::decode(detail("google.rpc.BadRequest").as_slice()).expect("BadRequest");
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(
        fields.contains(&"account_id") && fields.contains(&"display_name"),
        "{bad_request:?}"
    );
    let error_info =
        ErrorInfo::decode(detail("google.rpc.ErrorInfo").as_slice()).expect("ErrorInfo");
    assert_eq!(error_info.domain, "tenantry", "{error_info:?}");

    // The server's v1 reflection describes that type, and every file it imports, so a client
    // can decode the details without compiled-in googleapis types.
    let symbol = r#"{"file_containing_symbol":"google.rpc.BadRequest"}"#;
    let described = reflected_files(&buf, &base, symbol).await;
    let error_details = described
        .iter()
        .find(|file| {
            file.package() == "google.rpc"
                && file.message_type.iter().any(|message| {
                    message.name() == "BadRequest"
                        && message
                            .field
                            .iter()
                            .any(|field| field.name() == "field_violations")
                })
        })
        .unwrap_or_else(|| panic!("no google.rpc.BadRequest with field_violations: {described:?}"));
    // Under googleapis' own file name, so a client that already holds the googleapis files sees
    // the same file, not a second definition of every type; that name is served too.
    assert_eq!(error_details.name(), "google/rpc/error_details.proto");
    let by_name = r#"{"file_by_filename":"google/rpc/status.proto"}"#;
    assert!(
        reflected_files(&buf, &base, by_name)
            .await
            .iter()
            .any(|file| file
                .message_type
                .iter()
                .any(|message| message.name() == "Status")),
        "google/rpc/status.proto is served by name"
    );
    for dependency in &error_details.dependency {
        let request = format!(r#"{{"file_by_filename":"{dependency}"}}"#);
        let imported = reflected_files(&buf, &base, &request).await;
        assert!(
            imported.iter().any(|file| file.name() == dependency),
            "{dependency} not served"
        );
    }
    eprintln!(
        "buf curl: listed {}; refusal details {:?}, BadRequest fields {fields:?}; reflection \
         describes google.rpc.BadRequest in {} (imports {:?})",
        listed.lines().collect::<Vec<_>>().join(", "),
        strings(&error["details"], "type"),
        error_details.name(),
        error_details.dependency
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reflection_client_calls_and_decodes_error_details_over_v1alpha() {
    let python = std::env::var("TENANTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let importable = std::process::Command::new(&python)
        .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !prerequisite(
        importable,
        &format!(
            "{python} lacks grpcio, grpcio-reflection or protobuf \
             (pip install -r tests/reflection/requirements.txt)"
        ),
    ) {
        return;
    }
    let up = Up::start().await;
    let script = repository_root().join("tests/reflection/client.py");
    let output = run(tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("127.0.0.1:{}", up.port))
        .arg(operator_token(SECRET)))
    .await;
    let summary = stdout_json(&output).remove(0);

    let services = strings(&summary["services"], "");
    for service in SERVICES {
        assert!(services.contains(&service), "{service} not in {services:?}");
    }
    let account = &summary["created"]["account"];
    assert_eq!(account["name"], "accounts/python-reflection", "{summary}");
    assert_eq!(account["state"], "ACCOUNT_STATE_ACTIVE", "{summary}");

    // The refusal, decoded by the script with classes built from reflected descriptors.
    let refusal = &summary["refusal"];
    assert_eq!(refusal["code"], "INVALID_ARGUMENT", "{summary}");
    assert_eq!(
        refusal["status_code"], 3,
        "google.rpc.Status.code: {summary}"
    );
    let types = strings(&refusal["detail_types"], "");
    for kind in ["google.rpc.ErrorInfo", "google.rpc.BadRequest"] {
        assert!(types.contains(&kind), "{kind} not decoded: {summary}");
    }
    assert_eq!(refusal["error_info"]["domain"], "tenantry", "{summary}");
    let fields = strings(&refusal["field_violations"], "field");
    let descriptions = strings(&refusal["field_violations"], "description");
    assert!(
        fields.contains(&"account_id") && fields.contains(&"display_name"),
        "{summary}"
    );
    assert!(
        descriptions.iter().all(|text| !text.is_empty()),
        "{summary}"
    );
    eprintln!(
        "grpcio-reflection: listed {}; refusal {} with details {types:?}, BadRequest fields \
         {fields:?}",
        services.join(", "),
        refusal["code"]
    );
    up.stop().await;
}
