//! Helpers of the tests that run real `tenantry serve` processes: backends from the
//! environment (a failure under CI=true when missing), a process with its log in a file, a slow
//! SMTP server, and the clean-up of what a test created outside its processes.
//!
//! Each test binary uses the part it needs.
#![allow(dead_code)]

pub mod mailer;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use tokio::process::Child;
use tonic::transport::Channel;

/// aiosmtpd answering DATA after a delay, logging `begin` / `accepted` / `abandoned` lines
/// (tab-separated: outcome, recipients, Message-ID). Arguments: port, log file, delay seconds.
const SLOW_SMTP_SERVER: &str = r#"
import asyncio, email, sys
from aiosmtpd.smtp import SMTP

port, log_path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])

def log(outcome, envelope, message_id):
    with open(log_path, "a") as log_file:
        log_file.write(f"{outcome}\t{','.join(envelope.rcpt_tos)}\t{message_id}\n")

class SlowMailbox:
    async def handle_DATA(self, server, session, envelope):
        message_id = email.message_from_bytes(envelope.original_content)["Message-ID"]
        log("begin", envelope, message_id)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # aiosmtpd cancels the handler when the client disconnects: no reply was sent.
            log("abandoned", envelope, message_id)
            raise
        log("accepted", envelope, message_id)
        return "250 Message accepted for delivery"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(SlowMailbox()), "127.0.0.1", port)
    await server.serve_forever()

asyncio.run(main())
"#;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// A test backend's URL from `variable`; under CI=true its absence is a failure. Outside CI
/// the caller skips its test, and the first skip of the test binary says so ([`note_not_run`]).
pub fn backend_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!("{variable} is not set but CI=true"),
        _ => {
            note_not_run(variable);
            None
        }
    }
}

/// Says once per test binary and per missing part, on the terminal, that tests needing it did
/// not run: a skipped test still passes, so without this a run without the servers could pass
/// for the full one. `variable` is the backend's variable, or `aiosmtpd`. Written straight to
/// stderr, which libtest does not capture (it captures only the `print!`/`eprint!` macros).
fn note_not_run(variable: &str) {
    use std::io::Write;
    use std::sync::Once;
    static POSTGRES: Once = Once::new();
    static AMQP: Once = Once::new();
    static SMTP: Once = Once::new();
    static OTHER: Once = Once::new();
    let (once, notice) = match variable {
        "TENANTRY_TEST_POSTGRES_URL" => (
            &POSTGRES,
            "note: the PostgreSQL suite did not run in this test binary; set \
             TENANTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres to run it"
                .to_string(),
        ),
        "TENANTRY_TEST_AMQP_URL" => (
            &AMQP,
            "note: the RabbitMQ suite did not run in this test binary; set \
             TENANTRY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f to run it"
                .to_string(),
        ),
        "aiosmtpd" => (
            &SMTP,
            "note: the SMTP suite did not run in this test binary; `pip install aiosmtpd` (or \
             set TENANTRY_TEST_PYTHON to a Python that has it) to run it"
                .to_string(),
        ),
        other => (
            &OTHER,
            format!(
                "note: tests needing {other} did not run in this test binary; set it to run them"
            ),
        ),
    };
    once.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{notice}");
    });
}

/// The Python that runs aiosmtpd (as in `tenantry_testkit::smtp`).
fn python() -> String {
    std::env::var("TENANTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether aiosmtpd can be started here; under CI=true its absence is a failure.
pub fn aiosmtpd_available() -> bool {
    let available = std::process::Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available && in_ci() {
        panic!("aiosmtpd is not installed but CI=true: `pip install aiosmtpd` (see .ci/run)");
    }
    if !available {
        note_not_run("aiosmtpd");
    }
    available
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// A token of the operator `ops`, signed with the HS256 user secret `jwt_secret`, valid for
/// ten minutes.
pub fn operator_token(jwt_secret: &str) -> String {
    use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
    let now = unix_now();
    mint_user_token(
        jwt_secret,
        &DevTokenClaims {
            sub: "ops".into(),
            email: Some("ops@example.com".into()),
            email_verified: Some(true),
            given_name: Some("Olivia".into()),
            family_name: None,
            roles: vec!["tenantry-operator".into()],
            iss: "tenantry".into(),
            aud: "tenantry".into(),
            exp: now + 600,
            iat: now,
        },
    )
    .expect("token")
}

/// A user token for `sub` signed with `jwt_secret` (an operator if `operator`), valid for an
/// hour, with the e-mail `{sub}@example.com`.
pub fn user_token(jwt_secret: &str, sub: &str, operator: bool) -> String {
    use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
    let now = unix_now();
    mint_user_token(
        jwt_secret,
        &DevTokenClaims {
            sub: sub.into(),
            email: Some(format!("{sub}@example.com")),
            email_verified: Some(true),
            given_name: None,
            family_name: None,
            roles: if operator {
                vec!["tenantry-operator".into()]
            } else {
                Vec::new()
            },
            iss: "tenantry".into(),
            aud: "tenantry".into(),
            exp: now + 3600,
            iat: now,
        },
    )
    .expect("token")
}

/// `message` with `authorization: Bearer {token}`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let header = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", header);
    request
}

/// What the SMTP server logged about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEvent {
    pub outcome: String,
    pub recipients: String,
    pub message_id: String,
}

/// aiosmtpd that takes its time to accept each message (see `SLOW_SMTP_SERVER`).
pub struct SlowSmtpServer {
    _child: Child,
    port: u16,
    log: PathBuf,
}

impl SlowSmtpServer {
    /// Starts a server on a free port that answers each DATA after `delay`, logging to a file
    /// in `dir`.
    pub async fn start(dir: &Path, delay: Duration) -> Self {
        let port = free_port();
        let log = dir.join("smtp.log");
        std::fs::write(&log, "").expect("smtp log");
        let child = tokio::process::Command::new(python())
            .args(["-c", SLOW_SMTP_SERVER, &port.to_string()])
            .arg(&log)
            .arg(delay.as_secs_f64().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    _child: child,
                    port,
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn events(&self) -> Vec<SmtpEvent> {
        std::fs::read_to_string(&self.log)
            .expect("smtp log")
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(SmtpEvent {
                    outcome: fields.next()?.to_string(),
                    recipients: fields.next()?.to_string(),
                    message_id: fields.next()?.to_string(),
                })
            })
            .collect()
    }

    pub fn count(&self, outcome: &str) -> usize {
        self.events()
            .iter()
            .filter(|event| event.outcome == outcome)
            .count()
    }

    /// Waits until `count` events with `outcome` were logged (panics after `timeout`).
    pub async fn wait_for(&self, outcome: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(outcome) < count {
            assert!(
                Instant::now() < deadline,
                "expected {count} `{outcome}` within {timeout:?}, SMTP log: {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One `tenantry serve SERVICE` process, its log in a file.
pub struct ServeProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ServeProcess {
    /// Starts `service` on `port` with `settings` as its whole environment, and waits until
    /// its gRPC health reports `grpc_name` SERVING.
    pub async fn start(
        service: &str,
        grpc_name: &str,
        port: u16,
        dir: &Path,
        log_name: &str,
        settings: &[(&str, String)],
    ) -> Self {
        let log = dir.join(format!("{log_name}.log"));
        let output = std::fs::File::create(&log).expect("log file");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
        // Nothing inherited from the test's environment.
        command
            .env_clear()
            .args(["serve", service])
            .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
            .envs(settings.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .kill_on_drop(true);
        let child = command.spawn().expect("start tenantry serve");
        let process = Self { child, port, log };
        process.wait_serving(grpc_name).await;
        process
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn wait_serving(&self, grpc_name: &str) {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(self.url())
                .expect("url")
                .connect()
                .await
            {
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: grpc_name.to_string(),
                    })
                    .await;
                if status
                    .is_ok_and(|status| status.into_inner().status == ServingStatus::Serving as i32)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{grpc_name} did not become SERVING within 60 s; log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGKILL (no clean-up of any kind, as a crash or an OOM kill) and waits until the
    /// process is gone.
    pub async fn kill(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid}");
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the process is gone within 10 s of SIGKILL")
            .expect("exit status");
        assert!(!exit.success(), "a killed process does not exit 0");
    }

    /// Sends SIGTERM and waits for the exit (panics after `timeout`); returns whether it
    /// exited 0 and how long it took.
    pub async fn terminate(mut self, timeout: Duration) -> (bool, Duration) {
        let pid = self.child.id().expect("pid").to_string();
        let signalled = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
        let exit = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no exit within {timeout:?} of SIGTERM; log: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
            .expect("exit status");
        (exit.success(), signalled.elapsed())
    }
}

/// `admin_url` with its database replaced by `database`.
pub fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let authority = base.find("://").map_or(0, |index| index + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    if query.is_empty() {
        format!("{base}/{database}")
    } else {
        format!("{base}/{database}?{query}")
    }
}

/// What a test creates outside its processes: a temporary directory (SQLite files, logs),
/// a PostgreSQL database, and queues and an exchange under an AMQP prefix. Removed on drop.
pub struct TestResources {
    pub dir: PathBuf,
    pub amqp_url: String,
    pub prefix: String,
    pub postgres_url: String,
    pub database: String,
}

impl TestResources {
    /// Fresh resources for the test called `name`: its temporary directory created, a new
    /// PostgreSQL database on `postgres_url`, and an AMQP prefix of its own.
    pub async fn create(name: &str, amqp_url: &str, postgres_url: &str) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let resources = Self {
            dir: std::env::temp_dir().join(format!("tenantry-{name}-{tag}")),
            amqp_url: amqp_url.to_string(),
            prefix: format!("{name}-{}.", &tag[..8]),
            postgres_url: postgres_url.to_string(),
            database: format!("t_{}_{}", name.replace('-', "_"), &tag[..12]),
        };
        std::fs::create_dir_all(&resources.dir).expect("temp dir");
        let admin = sea_orm::Database::connect(postgres_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{}\"", resources.database))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        resources
    }
}

impl Drop for TestResources {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let (amqp_url, prefix) = (self.amqp_url.clone(), self.prefix.clone());
        let (postgres_url, database) = (self.postgres_url.clone(), self.database.clone());
        // Drop cannot await, and may run while the test's runtime unwinds: use a runtime of
        // its own on another thread.
        let removal = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(postgres_url.as_str()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
                if let Ok(connection) =
                    lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default())
                        .await
                {
                    delete_topology(&connection, &prefix).await;
                    let _ = connection.close(0, "done".into()).await;
                }
            });
        });
        let _ = removal.join();
    }
}

/// Deletes the queues (every consumer group's) and the exchange declared under `prefix`.
pub async fn delete_topology(connection: &lapin::Connection, prefix: &str) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let groups = tenantry_cli::ServiceKind::ALL
        .into_iter()
        .flat_map(|kind| kind.info().consumer_groups.iter().copied());
    // The retry policy `tenantry serve` configures by default (none of these tests sets
    // TENANTRY_EVENT_RETRY_DELAY_MS), which names the delay queues.
    let retry = tenantry_events::RetryPolicy {
        max_attempts: 5,
        base_delay: std::time::Duration::from_millis(1000),
        max_delay: std::time::Duration::from_secs(60),
    };
    for group in groups {
        for queue in tenantry_events::group_queues(prefix, group, &retry) {
            let _ = channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
    }
    for exchange in [
        format!("{prefix}tenantry.events"),
        format!("{prefix}tenantry.events.control"),
    ] {
        let _ = channel
            .exchange_delete(
                exchange.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

/// `GET path` on the admin port: the status and the body.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}
