//! A minimal SMTP server for the e-mail workloads: it speaks enough SMTP for lettre (EHLO,
//! MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps nothing, and reports the moment each message's
//! final `.` arrived, per recipient. It replaces aiosmtpd here because the benchmark needs
//! exact receive times for thousands of messages without polling a Maildir, and a Python
//! server would be the bottleneck of both the workload and its ceiling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running sink.
#[derive(Clone, Debug)]
pub struct SmtpSink {
    port: u16,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    waiting: std::sync::Mutex<HashMap<String, oneshot::Sender<Instant>>>,
    received: AtomicU64,
}

impl SmtpSink {
    /// Starts listening on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, accepting.clone()));
            }
        });
        Ok(Self { port, state })
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }

    /// Completes with the moment a message to `address` arrives (register before sending).
    pub fn expect(&self, address: &str) -> oneshot::Receiver<Instant> {
        let (sender, receiver) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(address.to_ascii_lowercase(), sender);
        receiver
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    let mut recipients: Vec<String> = Vec::new();
    if write.write_all(b"220 bench ESMTP\r\n").await.is_err() {
        return;
    }
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-bench\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if command.starts_with("HELO") {
            b"250 bench\r\n"
        } else if command.starts_with("MAIL FROM") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            recipients.push(address_of(line.trim_end()));
            b"250 OK\r\n"
        } else if command == "DATA" {
            if write.write_all(b"354 go on\r\n").await.is_err() {
                return;
            }
            // The message ends with a line holding a single dot.
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == ".\r\n" || line == ".\n" => break,
                    Ok(_) => {}
                }
            }
            let now = Instant::now();
            state.received.fetch_add(1, Ordering::Relaxed);
            let mut waiting = state
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for recipient in recipients.drain(..) {
                if let Some(sender) = waiting.remove(&recipient) {
                    let _ = sender.send(now);
                }
            }
            drop(waiting);
            b"250 OK queued\r\n"
        } else if command.starts_with("RSET") {
            recipients.clear();
            b"250 OK\r\n"
        } else if command.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// `RCPT TO:<a@b>` → `a@b`, lower-cased.
fn address_of(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(command.len());
    command[start..end].trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    #[test]
    fn reads_the_address_of_a_recipient() {
        assert_eq!(address_of("RCPT TO:<Ivy@Example.com>"), "ivy@example.com");
        assert_eq!(address_of("RCPT TO:<a@b.example> SMTPUTF8"), "a@b.example");
    }

    #[tokio::test]
    async fn lettre_delivers_to_the_sink() {
        let sink = SmtpSink::start().await.unwrap();
        let arrived = sink.expect("ivy@example.com");
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        let message = Message::builder()
            .from("Bench <bench@example.com>".parse().unwrap())
            .to("Ivy <ivy@example.com>".parse().unwrap())
            .subject("hello")
            .body("a line\r\n.starts with a dot\r\n".to_string())
            .unwrap();
        transport.send(message).await.unwrap();
        arrived.await.unwrap();
        assert_eq!(sink.received(), 1);
    }
}
