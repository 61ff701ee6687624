//! A small pool of open, authenticated SMTP connections per replica (issue 14), so consecutive
//! e-mails reuse one session instead of paying, each time, the TCP connect, the greeting, EHLO,
//! the TLS handshake (implicit, or STARTTLS and a second EHLO) and AUTH: several round trips
//! and a handshake per e-mail, most of its time against a remote relay. Each new connection is
//! opened exactly as before ([`SmtpEndpoint::connect`]: `TCP_NODELAY`, TLS, AUTH, EHLO name).
//!
//! - **Bounded**: at most [`PoolLimits::max_connections`] connections are open at once, idle
//!   ones included. A sender that finds none idle while that many are busy waits for one to
//!   come free. The wait counts against the SMTP timeout, so one e-mail, waiting included,
//!   still takes at most that long (the mailer sends inside a database transaction).
//! - **Retired** with QUIT after [`PoolLimits::max_messages_per_connection`] e-mails, and once
//!   idle for [`PoolLimits::idle_timeout`]: a reaper task closes those (it holds the pool only
//!   weakly, ends when the pool is dropped, and is aborted then), and a sender never takes a
//!   connection idle longer than that.
//! - **Never reused after a failure**: a connection goes back to the pool only after the
//!   server answered 250 to the end of the data. After an I/O error, a timeout, a 4xx/5xx reply
//!   or a cancelled send it is closed, so a recipient refused for good fails that one e-mail
//!   (permanently, as before) and no other.
//! - **One retry on a stale connection**: a server may close a connection while it sits idle
//!   (its own idle timeout, a restart). That shows on the first command of the next e-mail,
//!   MAIL FROM, before the server has accepted anything, so that e-mail is tried once more on a
//!   new connection (see [`Pool::exchange`] for why never later).
//!
//! Dropping the pool (the process ending) closes idle connections without QUIT; servers treat
//! that as a client gone away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::smtp::{self, SmtpEndpoint};
use super::{MailError, MailSetupError};

/// The longest a polite QUIT may take when a connection is retired; then it is just closed.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// How many SMTP connections a replica keeps and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Most connections open at once, idle or carrying an e-mail (at least 1).
    pub max_connections: usize,
    /// E-mails one connection carries before it is closed and a new one opened (at least 1;
    /// 1 is one connection per e-mail, as before the pool).
    pub max_messages_per_connection: u32,
    /// How long a connection may sit unused before it is closed rather than reused.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_connections: 4,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl PoolLimits {
    /// The limits from `TENANTRY_SMTP_POOL_SIZE`, `TENANTRY_SMTP_MESSAGES_PER_CONNECTION` and
    /// `TENANTRY_SMTP_IDLE_SECONDS`, each the default when unset or empty; a value that is not
    /// a whole number in range is an error naming its variable.
    pub fn from_env() -> Result<Self, MailSetupError> {
        let defaults = Self::default();
        let max_connections = setting(
            "TENANTRY_SMTP_POOL_SIZE",
            std::env::var("TENANTRY_SMTP_POOL_SIZE"),
            defaults.max_connections as u64,
            1_000,
        )?;
        let max_messages_per_connection = setting(
            "TENANTRY_SMTP_MESSAGES_PER_CONNECTION",
            std::env::var("TENANTRY_SMTP_MESSAGES_PER_CONNECTION"),
            u64::from(defaults.max_messages_per_connection),
            1_000_000,
        )?;
        let idle_seconds = setting(
            "TENANTRY_SMTP_IDLE_SECONDS",
            std::env::var("TENANTRY_SMTP_IDLE_SECONDS"),
            defaults.idle_timeout.as_secs(),
            86_400,
        )?;
        Ok(Self {
            // Both fit: the maximums above are far below usize::MAX and u32::MAX.
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            max_messages_per_connection: u32::try_from(max_messages_per_connection)
                .unwrap_or(u32::MAX),
            idle_timeout: Duration::from_secs(idle_seconds),
        })
    }
}

/// One whole-number setting from 1 to `max`: `default` when unset or empty.
fn setting(
    name: &'static str,
    value: Result<String, std::env::VarError>,
    default: u64,
    max: u64,
) -> Result<u64, MailSetupError> {
    let invalid = |reason: String| MailSetupError::Setting { name, reason };
    let value = match value {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => return Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => return Err(invalid("not UTF-8".into())),
    };
    if value.trim().is_empty() {
        return Ok(default);
    }
    match value.trim().parse::<u64>() {
        Ok(number) if (1..=max).contains(&number) => Ok(number),
        _ => Err(invalid(format!(
            "expected a whole number from 1 to {max}, got {value:?}"
        ))),
    }
}

/// The pool of one SMTP endpoint; clones share it.
#[derive(Clone)]
pub(super) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: SmtpEndpoint,
    limits: PoolLimits,
    /// One permit per sender holding (or opening) a connection. Idle connections hold none,
    /// yet all open connections stay within `max_connections`: a sender opens a new one only
    /// when none is idle, that is when every open connection is held by another permit.
    in_use: Semaphore,
    /// Connections ready for the next e-mail, the most recently used last (taken first, so
    /// the others age out when fewer are needed).
    idle: Mutex<Vec<Pooled>>,
    /// Numbers connections in the logs.
    next_id: AtomicU64,
    /// The task closing idle connections, started with the first one put back.
    reaper: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get() {
            reaper.abort();
        }
    }
}

/// An open, authenticated connection.
struct Pooled {
    connection: AsyncSmtpConnection,
    id: u64,
    /// E-mails it has carried.
    sent: u32,
    idle_since: Instant,
}

/// A failed e-mail, and its connection unless that is already gone.
struct Failure {
    error: MailError,
    /// The connection, and whether its session still answers (then it is QUIT politely).
    connection: Option<(Pooled, bool)>,
}

impl From<MailError> for Failure {
    fn from(error: MailError) -> Self {
        Self {
            error,
            connection: None,
        }
    }
}

impl Pool {
    /// An empty pool; connections are opened on demand.
    pub(super) fn new(endpoint: SmtpEndpoint, limits: PoolLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                in_use: Semaphore::new(limits.max_connections.max(1)),
                endpoint,
                limits,
                idle: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                reaper: OnceLock::new(),
            }),
        }
    }

    /// The endpoint the connections go to.
    pub(super) fn endpoint(&self) -> &SmtpEndpoint {
        &self.inner.endpoint
    }

    /// Sends `message` over a pooled connection (or a new one), waiting for one while all are
    /// busy; all of it, waiting included, within the endpoint's timeout.
    pub(super) async fn send(&self, message: &Message) -> Result<(), MailError> {
        let timeout = self.inner.endpoint.timeout();
        let deadline = Instant::now() + timeout;
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.inner.in_use.acquire()).await
        else {
            return Err(MailError::transient(format!(
                "no SMTP connection came free within {} s (all {} busy)",
                timeout.as_secs(),
                self.inner.limits.max_connections
            )));
        };
        // On a timeout the exchange is dropped, and with it its connection: closed, not put back.
        let outcome = tokio::time::timeout_at(deadline, self.exchange(message, deadline))
            .await
            .map_err(|_| {
                tracing::debug!(reason = "timeout", "SMTP connection (if any) dropped");
                MailError::transient(format!(
                    "the mail server did not finish within {} s",
                    timeout.as_secs()
                ))
            })?;
        // The e-mail's fate is decided; what follows cannot change it. The permit is kept
        // until the connection is back or closed, so that it never counts twice.
        match outcome {
            Ok(pooled) => {
                self.check_in(pooled, deadline).await;
                Ok(())
            }
            Err(Failure { error, connection }) => {
                if let Some((pooled, session_alive)) = connection {
                    retire(pooled, "the e-mail failed", session_alive, deadline).await;
                }
                Err(error)
            }
        }
    }

    /// One e-mail on an idle connection or a new one; the connection when the server took it.
    ///
    /// The retry: a reused connection whose MAIL FROM fails (the server closed it while it sat
    /// idle, or says 421 now) has had nothing of this e-mail accepted, so the e-mail is tried
    /// once more on a new connection. Never after MAIL FROM: once the data's final `.` is sent
    /// the server may have queued the e-mail even if its 250 never arrives, and sending again
    /// could deliver it twice. Failures between MAIL FROM and the `.` would still be safe to
    /// retry, but by then the server has answered on this connection, so it was not stale and
    /// a new one is unlikely to fare better; such an e-mail fails (transiently or for good, as
    /// the reply says) and the mailer's own retries take over, as before the pool.
    async fn exchange(&self, message: &Message, deadline: Instant) -> Result<Pooled, Failure> {
        let envelope = message.envelope();
        let body = message.formatted();
        let (mut pooled, reused) = self.check_out(deadline).await?;
        let mut result = smtp::transaction(&mut pooled.connection, envelope, &body).await;
        if reused
            && let Err(failed) = &result
            && failed.at_mail_from
        {
            tracing::debug!(
                connection = pooled.id,
                error = %failed.error,
                "the pooled SMTP connection failed at MAIL FROM; trying a new one"
            );
            let session_alive = failed.session_alive;
            retire(pooled, "stale (MAIL FROM failed)", session_alive, deadline).await;
            pooled = self.open().await?;
            result = smtp::transaction(&mut pooled.connection, envelope, &body).await;
        }
        match result {
            Ok(()) => {
                pooled.sent += 1;
                Ok(pooled)
            }
            Err(failed) => Err(Failure {
                error: failed.error,
                connection: Some((pooled, failed.session_alive)),
            }),
        }
    }

    /// The most recently used idle connection (true: reused) or a new one.
    async fn check_out(&self, deadline: Instant) -> Result<(Pooled, bool), MailError> {
        let idle = self.inner.idle().pop();
        if let Some(pooled) = idle {
            if pooled.idle_since.elapsed() < self.inner.limits.idle_timeout {
                tracing::debug!(
                    connection = pooled.id,
                    messages = pooled.sent,
                    "SMTP connection reused"
                );
                return Ok((pooled, true));
            }
            // The freshest idle connection is too old, so all are: this one is closed now,
            // the reaper closes the others.
            retire(pooled, "idle timeout", true, deadline).await;
        }
        Ok((self.open().await?, false))
    }

    /// A new connection, as [`SmtpEndpoint::connect`] opens it.
    async fn open(&self) -> Result<Pooled, MailError> {
        let connection = self.inner.endpoint.connect().await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            connection = id,
            server = %self.inner.endpoint.address(),
            "SMTP connection opened"
        );
        Ok(Pooled {
            connection,
            id,
            sent: 0,
            idle_since: Instant::now(),
        })
    }

    /// Puts a connection that just carried an e-mail back, or retires it at its limit.
    async fn check_in(&self, mut pooled: Pooled, deadline: Instant) {
        if pooled.connection.has_broken() {
            retire(pooled, "broken", false, deadline).await;
        } else if pooled.sent >= self.inner.limits.max_messages_per_connection {
            retire(pooled, "message limit", true, deadline).await;
        } else {
            let mut idle = self.inner.idle();
            // Stamped under the lock, so the list stays ordered oldest first.
            pooled.idle_since = Instant::now();
            idle.push(pooled);
            drop(idle);
            self.inner
                .reaper
                .get_or_init(|| tokio::spawn(reap(Arc::downgrade(&self.inner))).abort_handle());
        }
    }
}

impl Inner {
    fn idle(&self) -> MutexGuard<'_, Vec<Pooled>> {
        // Nothing panics while the lock is held, so a poisoned lock still holds a sound list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest idle connection if it has been idle for the limit.
    fn take_stale(&self) -> Option<Pooled> {
        let mut idle = self.idle();
        let oldest = idle.first()?;
        (oldest.idle_since.elapsed() >= self.limits.idle_timeout).then(|| idle.remove(0))
    }
}

/// Closes a connection: with QUIT when `quit` (within [`QUIT_WAIT`] and `deadline`), else by
/// dropping it.
async fn retire(mut pooled: Pooled, reason: &'static str, quit: bool, deadline: Instant) {
    tracing::debug!(
        connection = pooled.id,
        messages = pooled.sent,
        reason,
        "SMTP connection retired"
    );
    if quit {
        let until = deadline.min(Instant::now() + QUIT_WAIT);
        // `abort` sends QUIT unless the session already failed, then closes the stream.
        let _ = tokio::time::timeout_at(until, pooled.connection.abort()).await;
    }
}

/// Closes connections idle for the limit, checking twice per limit, until the pool is gone.
async fn reap(pool: Weak<Inner>) {
    loop {
        let Some(period) = pool
            .upgrade()
            .map(|inner| (inner.limits.idle_timeout / 2).max(Duration::from_millis(50)))
        else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        // A permit per connection being closed keeps it within `max_connections` until the
        // QUIT is done; when all are taken, the connection waits for the next round (or is
        // closed by the sender that takes it).
        while let Ok(_permit) = inner.in_use.try_acquire() {
            let Some(stale) = inner.take_stale() else {
                break;
            };
            retire(stale, "idle timeout", true, Instant::now() + QUIT_WAIT).await;
        }
    }
}

#[cfg(test)]
mod tests;
