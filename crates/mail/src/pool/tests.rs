//! The pool against a real SMTP server: aiosmtpd, as the rest of the suite uses it, with a
//! handler that logs what the pool cannot be asked: which connection (the client's port)
//! carried each e-mail, when connections open and close, QUITs, and how many are open at once.
//! It refuses recipients starting with `refused` (550), and closes connections idle for its
//! own timeout as real servers do.
//!
//! Needs aiosmtpd (`pip install aiosmtpd`, or TENANTRY_TEST_PYTHON naming a Python that has
//! it); without it these tests pass without running (saying so once), under CI=true they fail.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

const SERVER: &str = r#"
import asyncio, sys
from aiosmtpd.smtp import SMTP

port, log_path = int(sys.argv[1]), sys.argv[2]
idle_timeout, delay = float(sys.argv[3]), float(sys.argv[4])
open_connections = 0

def log(*fields):
    with open(log_path, "a") as log_file:
        log_file.write("\t".join(str(field) for field in fields) + "\n")

class Recorder:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused"):
            log("refused", session.peer[1], address)
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(delay)
        log("accepted", session.peer[1], ",".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope):
        log("quit", session.peer[1], "")
        return "221 Bye"

class CountingSMTP(SMTP):
    def connection_made(self, transport):
        global open_connections
        super().connection_made(transport)
        open_connections += 1
        log("open", self.session.peer[1], open_connections)

    def connection_lost(self, error):
        global open_connections
        open_connections -= 1
        log("closed", self.session.peer[1], open_connections)
        super().connection_lost(error)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(Recorder(), timeout=idle_timeout), "127.0.0.1", port)
    log("ready", 0, "")
    await server.serve_forever()

asyncio.run(main())
"#;

fn python() -> String {
    std::env::var("TENANTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether aiosmtpd can run here (`tenantry_testkit::smtp_or_skip`, which this crate cannot
/// depend on): when not, says so once; under CI=true its absence is a failure.
fn smtp_or_skip() -> bool {
    let available = std::process::Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !available && std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("aiosmtpd is not installed but CI=true: `pip install aiosmtpd` (see .ci/run)");
    }
    if !available {
        static NOTED: std::sync::Once = std::sync::Once::new();
        NOTED.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: the SMTP suite did not run in this test binary; `pip install aiosmtpd` \
                 (or set TENANTRY_TEST_PYTHON to a Python that has it) to run it"
            );
        });
    }
    available
}

/// One line of the server's log.
#[derive(Debug)]
struct Event {
    kind: String,
    /// The client's port: which connection.
    port: u16,
    detail: String,
}

struct Server {
    _child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// aiosmtpd closing connections idle for `idle_timeout`, taking `delay` to accept each
    /// e-mail.
    async fn start(idle_timeout: Duration, delay: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "tenantry-smtp-pool-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("server dir");
        let log = dir.join("smtp.log");
        std::fs::write(&log, "").expect("server log");
        let child = tokio::process::Command::new(python())
            .args(["-c", SERVER, &port.to_string()])
            .arg(&log)
            .arg(idle_timeout.as_secs_f64().to_string())
            .arg(delay.as_secs_f64().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let server = Self {
            _child: child,
            port,
            dir,
        };
        // Ready when it says so: a probing connection would show in the counts.
        server
            .wait_until("aiosmtpd to start", |events| {
                events.iter().any(|event| event.kind == "ready")
            })
            .await;
        server
    }

    fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.dir.join("smtp.log"))
            .expect("server log")
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                Some(Event {
                    kind: fields.next()?.to_string(),
                    port: fields.next()?.parse().ok()?,
                    detail: fields.next()?.to_string(),
                })
            })
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.events()
            .iter()
            .filter(|event| event.kind == kind)
            .count()
    }

    /// The connections (client ports) with an event of `kind`.
    fn connections(&self, kind: &str) -> BTreeSet<u16> {
        self.events()
            .iter()
            .filter(|event| event.kind == kind)
            .map(|event| event.port)
            .collect()
    }

    /// The most connections the server had open at once.
    fn most_open(&self) -> usize {
        self.events()
            .iter()
            .filter(|event| event.kind == "open")
            .filter_map(|event| event.detail.parse().ok())
            .max()
            .unwrap_or(0)
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events();
            if done(&events) {
                return;
            }
            assert!(Instant::now() < deadline, "waited for {what}: {events:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pool(&self, limits: PoolLimits, timeout: Duration) -> Pool {
        let url = format!("smtp://127.0.0.1:{}", self.port);
        Pool::new(SmtpEndpoint::parse(&url, timeout).expect("URL"), limits)
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);
/// aiosmtpd's own default: connections are not closed by the server during a test.
const SERVER_IDLE: Duration = Duration::from_secs(300);

fn message(to: &str) -> Message {
    Message::builder()
        .from("Tenantry <noreply@tenantry.test>".parse().expect("from"))
        .to(to.parse().expect("to"))
        .subject("hello")
        .body("the body\r\n".to_string())
        .expect("message")
}

fn limits(max_connections: usize, messages: u32, idle: Duration) -> PoolLimits {
    PoolLimits {
        max_connections,
        max_messages_per_connection: messages,
        idle_timeout: idle,
    }
}

#[tokio::test]
async fn twenty_emails_in_a_row_share_one_connection() {
    if !smtp_or_skip() {
        return;
    }
    let server = Server::start(SERVER_IDLE, Duration::ZERO).await;
    let pool = server.pool(PoolLimits::default(), TIMEOUT);
    for index in 0..20 {
        pool.send(&message(&format!("ada{index}@example.com")))
            .await
            .expect("sent");
    }
    assert_eq!(server.count("accepted"), 20);
    assert_eq!(server.connections("accepted").len(), 1);
    assert_eq!(server.count("open"), 1);
    assert_eq!(server.count("quit"), 0);
}

#[tokio::test]
async fn a_connection_is_closed_with_quit_after_its_message_limit() {
    if !smtp_or_skip() {
        return;
    }
    let server = Server::start(SERVER_IDLE, Duration::ZERO).await;
    let pool = server.pool(limits(4, 5, Duration::from_secs(30)), TIMEOUT);
    for index in 0..20 {
        pool.send(&message(&format!("ada{index}@example.com")))
            .await
            .expect("sent");
    }
    assert_eq!(server.count("accepted"), 20);
    let used = server.connections("accepted");
    assert_eq!(used.len(), 4);
    assert_eq!(server.count("open"), 4);
    // Each connection was retired politely after its fifth e-mail, the last one included.
    assert_eq!(server.connections("quit"), used);
    for port in used {
        let carried = server
            .events()
            .iter()
            .filter(|event| event.kind == "accepted" && event.port == port)
            .count();
        assert_eq!(carried, 5, "connection {port}");
    }
}

#[tokio::test]
async fn a_connection_idle_past_the_limit_is_closed_with_quit_and_not_reused() {
    if !smtp_or_skip() {
        return;
    }
    let server = Server::start(SERVER_IDLE, Duration::ZERO).await;
    let pool = server.pool(limits(4, 100, Duration::from_millis(300)), TIMEOUT);
    pool.send(&message("ada@example.com")).await.expect("first");
    let first = server.connections("accepted");
    // The reaper closes it between one and one and a half idle limits later.
    server
        .wait_until("the idle connection's QUIT", |events| {
            events.iter().any(|event| event.kind == "quit")
        })
        .await;
    assert_eq!(server.connections("quit"), first);
    pool.send(&message("bob@example.com"))
        .await
        .expect("second");
    assert_eq!(server.count("accepted"), 2);
    assert_eq!(server.connections("accepted").len(), 2);
    assert_eq!(server.count("open"), 2);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_and_the_email_sent_once() {
    if !smtp_or_skip() {
        return;
    }
    // The server hangs up after 300 ms without a command; the pool would keep it for 30 s.
    let server = Server::start(Duration::from_millis(300), Duration::ZERO).await;
    let pool = server.pool(PoolLimits::default(), TIMEOUT);
    pool.send(&message("ada@example.com")).await.expect("first");
    server
        .wait_until("the server to close the idle connection", |events| {
            events.iter().any(|event| event.kind == "closed")
        })
        .await;
    pool.send(&message("bob@example.com"))
        .await
        .expect("second, retried on a new connection");
    let events = server.events();
    let accepted: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "accepted")
        .map(|event| event.detail.as_str())
        .collect();
    assert_eq!(accepted, ["ada@example.com", "bob@example.com"]);
    assert_eq!(server.connections("accepted").len(), 2);
    assert_eq!(server.count("open"), 2);
    // And the new connection is pooled in turn.
    pool.send(&message("cy@example.com")).await.expect("third");
    assert_eq!(server.count("open"), 2);
}

#[tokio::test]
async fn concurrent_emails_use_at_most_the_pool_size_of_connections() {
    if !smtp_or_skip() {
        return;
    }
    // Each e-mail takes 150 ms to be accepted, so the twelve overlap.
    let server = Server::start(SERVER_IDLE, Duration::from_millis(150)).await;
    let pool = server.pool(limits(3, 100, Duration::from_secs(30)), TIMEOUT);
    let mut sends = tokio::task::JoinSet::new();
    for index in 0..12 {
        let pool = pool.clone();
        sends.spawn(async move {
            pool.send(&message(&format!("ada{index}@example.com")))
                .await
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.expect("task").expect("sent");
    }
    assert_eq!(server.count("accepted"), 12);
    assert_eq!(server.connections("accepted").len(), 3);
    assert_eq!(server.count("open"), 3);
    assert_eq!(server.most_open(), 3);
}

#[tokio::test]
async fn waiting_for_a_free_connection_is_bounded_by_the_timeout() {
    if !smtp_or_skip() {
        return;
    }
    let server = Server::start(SERVER_IDLE, Duration::ZERO).await;
    let pool = server.pool(
        limits(1, 100, Duration::from_secs(30)),
        Duration::from_millis(300),
    );
    // The only connection's permit is taken, as by a sender that does not finish.
    let busy = pool.inner.in_use.acquire().await.expect("permit");
    let started = Instant::now();
    let error = pool
        .send(&message("ada@example.com"))
        .await
        .expect_err("no connection comes free");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!error.permanent);
    assert!(error.reason.contains("came free"), "{}", error.reason);
    assert_eq!(server.count("open"), 0);
    drop(busy);
    pool.send(&message("ada@example.com"))
        .await
        .expect("sent once free");
}

#[tokio::test]
async fn a_refused_recipient_fails_permanently_without_a_retry_and_spoils_nothing_else() {
    if !smtp_or_skip() {
        return;
    }
    let server = Server::start(SERVER_IDLE, Duration::ZERO).await;
    let pool = server.pool(PoolLimits::default(), TIMEOUT);
    pool.send(&message("ada@example.com")).await.expect("first");
    // On the reused connection: RCPT is refused after MAIL FROM was accepted, so no retry.
    let error = pool
        .send(&message("refused@example.com"))
        .await
        .expect_err("refused");
    assert!(error.permanent, "{}", error.reason);
    assert!(error.reason.contains("550"), "{}", error.reason);
    assert_eq!(server.count("refused"), 1);
    let spoiled = server.connections("refused");
    // That connection was closed politely, not put back.
    assert_eq!(server.connections("quit"), spoiled);
    for index in 0..3 {
        pool.send(&message(&format!("bob{index}@example.com")))
            .await
            .expect("sent after the refusal");
    }
    assert_eq!(server.count("accepted"), 4);
    let after: BTreeSet<u16> = server
        .events()
        .iter()
        .filter(|event| event.kind == "accepted" && event.detail.starts_with("bob"))
        .map(|event| event.port)
        .collect();
    assert_eq!(after.len(), 1, "the three share one new connection");
    assert!(after.is_disjoint(&spoiled));
}

#[test]
fn settings_default_when_unset_and_name_the_variable_when_invalid() {
    use std::env::VarError::NotPresent;
    let name = "TENANTRY_SMTP_POOL_SIZE";
    assert_eq!(setting(name, Err(NotPresent), 4, 10).expect("unset"), 4);
    assert_eq!(setting(name, Ok(" ".into()), 4, 10).expect("empty"), 4);
    assert_eq!(setting(name, Ok(" 7 ".into()), 4, 10).expect("seven"), 7);
    for bad in ["0", "11", "-1", "four", "2.5"] {
        let error = setting(name, Ok(bad.into()), 4, 10).expect_err(bad);
        let text = error.to_string();
        assert!(
            text.starts_with("TENANTRY_SMTP_POOL_SIZE is not valid"),
            "{text}"
        );
        assert!(text.contains("from 1 to 10"), "{text}");
    }
    assert_eq!(
        PoolLimits::default(),
        limits(4, 100, Duration::from_secs(30))
    );
}
