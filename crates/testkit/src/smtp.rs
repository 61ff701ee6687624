//! A real SMTP server for tests: aiosmtpd (Python, installed by `.ci/run`) on a free local
//! port, storing every message it receives in a Maildir that the test reads back. One server
//! per test, so tests never see each other's mail.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running SMTP server.
#[derive(Debug)]
pub struct SmtpServer {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

/// One received message, decoded.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// The `To` header.
    pub to: String,
    /// The `From` header.
    pub from: String,
    /// The decoded `Subject`.
    pub subject: String,
    /// The `Message-ID` header.
    pub message_id: String,
    /// The decoded text/plain part.
    pub text: String,
    /// The decoded text/html part, if any.
    pub html: Option<String>,
}

impl ReceivedMail {
    /// The `token` of the first accept link (`…/invitations/accept?token=…`) in the text part.
    pub fn accept_token(&self) -> Option<String> {
        let start =
            self.text.find("/invitations/accept?token=")? + "/invitations/accept?token=".len();
        let token: String = self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!token.is_empty()).then_some(token)
    }

    /// The first accept link (`…/invitations/accept?token=…`) in the text part, whole.
    pub fn accept_link(&self) -> Option<String> {
        let token = self.accept_token()?;
        let marker = format!("/invitations/accept?token={token}");
        let end = self.text.find(&marker)? + marker.len();
        let start = self.text[..end]
            .rfind(|c: char| c.is_whitespace() || c == '<' || c == '(')
            .map_or(0, |at| at + 1);
        Some(self.text[start..end].to_string())
    }
}

fn python() -> String {
    std::env::var("TENANTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// aiosmtpd's SMTP server with its Maildir handler on 127.0.0.1, a port the system chooses
/// (printed on the first line of stdout), storing into the Maildir named by the argument.
const SERVE: &str = r#"
import asyncio, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

async def main():
    handler = Mailbox(sys.argv[1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// Whether aiosmtpd can be started here. Under `CI=true` its absence is a failure.
pub fn available() -> bool {
    let ok = std::process::Command::new(python())
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ok && std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("aiosmtpd is not installed but CI=true: `pip install aiosmtpd` (see .ci/run)");
    }
    ok
}

impl SmtpServer {
    /// Starts a server on a port the system chooses and waits until it listens.
    ///
    /// aiosmtpd binds port 0 itself and prints the port it got. (Picking a free port here and
    /// handing it over raced with every other test: another server could take the port in
    /// between, this aiosmtpd then failed to bind and exited, and the readiness probe reached
    /// the other test's server — so e-mails went to a server that stopped with its test.)
    pub async fn start() -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir =
            std::env::temp_dir().join(format!("tenantry-smtp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("mail dir");
        let mut child = tokio::process::Command::new(python())
            .args(["-c", SERVE])
            .arg(dir.join("Maildir"))
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().expect("aiosmtpd's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("aiosmtpd did not say its port within 30 s")
            .expect("aiosmtpd's stdout");
        let port: u16 = first
            .as_deref()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("aiosmtpd did not start (said {first:?})"));
        Self { child, port, dir }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedMail> {
        read_maildir(&self.dir.join("Maildir"))
    }

    /// The messages to `address` received so far.
    pub fn received_by(&self, address: &str) -> Vec<ReceivedMail> {
        self.received()
            .into_iter()
            .filter(|mail| mail.to.to_lowercase().contains(&address.to_lowercase()))
            .collect()
    }

    /// Waits until `count` messages to `address` have arrived (panics after `timeout`).
    pub async fn wait_for(
        &self,
        address: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mails = self.received_by(address);
            if mails.len() >= count {
                return mails;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "expected {count} e-mail(s) to {address} within {timeout:?}, got {}",
                    mails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and removes its mail.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads every message of a Maildir (`new` and `cur`), ordered by file name (delivery time).
pub fn read_maildir(maildir: &Path) -> Vec<ReceivedMail> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .filter_map(|raw| parse(&raw))
        .collect()
}

/// Decodes one raw message (`.eml` or Maildir file).
pub fn parse(raw: &[u8]) -> Option<ReceivedMail> {
    use mailparse::MailHeaderMap;
    let mail = mailparse::parse_mail(raw).ok()?;
    let header = |name: &str| mail.headers.get_first_value(name).unwrap_or_default();
    let mut text = String::new();
    let mut html = None;
    collect_parts(&mail, &mut text, &mut html);
    Some(ReceivedMail {
        to: header("To"),
        from: header("From"),
        subject: header("Subject"),
        message_id: header("Message-ID"),
        text,
        html,
    })
}

fn collect_parts(part: &mailparse::ParsedMail<'_>, text: &mut String, html: &mut Option<String>) {
    if part.subparts.is_empty() {
        let body = part.get_body().unwrap_or_default();
        match part.ctype.mimetype.as_str() {
            "text/html" => *html = Some(body),
            _ => text.push_str(&body),
        }
    } else {
        for sub in &part.subparts {
            collect_parts(sub, text, html);
        }
    }
}
