//! Tenantry's one e-mail transport, shared by every service that sends e-mail (each service
//! owns its templates and its send state): a small trait its consumers send through, with an
//! SMTP transport (lettre, tokio; plain `smtp://` for local catchers, `smtps://` or
//! `smtp://…?tls=required` with rustls) and a file transport that writes `.eml` files (the
//! embedded default). [`transport`] picks one from the configuration.
//!
//! The SMTP transport keeps a small pool of open, authenticated connections ([`pool`]):
//! consecutive e-mails reuse a session instead of connecting, greeting, securing and
//! authenticating again each time. At most [`PoolLimits::max_connections`] are open per
//! replica; a connection is closed after [`PoolLimits::max_messages_per_connection`] e-mails,
//! after [`PoolLimits::idle_timeout`] unused, and after any failure; an e-mail whose reused
//! connection turns out to be closed is sent once more on a new one.

mod config;
mod pool;
mod smtp;
mod text;

pub use config::{DEFAULT_MAIL_FROM, MailConfig};
pub use pool::PoolLimits;
pub use text::{one_line, stable_message_id};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

/// How long sending one e-mail over SMTP may take before it counts as a (transient) failure:
/// waiting for a pooled connection, opening one if needed, and the transaction.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an e-mail could not be handed over. The reason never contains the message (so never
/// the secret link).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MailError {
    /// What went wrong, for `EmailDelivery.failure_reason` and logs.
    pub reason: String,
    /// True when retrying cannot help (e.g. the server refused the recipient for good, 5xx).
    pub permanent: bool,
}

impl MailError {
    /// A failure that may go away (server unreachable, 4xx, timeout, disk full).
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: false,
        }
    }

    /// A failure that will not go away for this message.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: true,
        }
    }
}

/// Why the mail transport could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// The SMTP URL is not usable (the URL itself is not repeated: it may hold a password).
    #[error("TENANTRY_SMTP_URL is not a usable SMTP URL: {0}")]
    SmtpUrl(String),
    /// A setting of the SMTP connection pool is not usable ([`PoolLimits::from_env`]).
    #[error("{name} is not valid: {reason}")]
    Setting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The sender address does not parse.
    #[error("TENANTRY_MAIL_FROM is not a valid mailbox: {0}")]
    From(String),
    /// The mail directory cannot be created.
    #[error("cannot create the mail directory {path}")]
    MailDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Hands an e-mail over for delivery.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync + std::fmt::Debug {
    /// Sends `message`; Ok once the server (or the file system) took it.
    async fn send(&self, message: Message) -> Result<(), MailError>;
}

/// SMTP: lettre's protocol over connections opened with `TCP_NODELAY` (see [`smtp`]), kept
/// open between e-mails in a bounded pool (see [`pool`]). Clones share the pool.
#[derive(Clone)]
pub struct SmtpTransport {
    pool: pool::Pool,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpTransport")
    }
}

impl SmtpTransport {
    /// A transport for `url`: `smtp://host:port` (plain, for local servers),
    /// `smtp://host?tls=required|opportunistic` (STARTTLS), `smtps://user:pass@host:465`
    /// (implicit TLS). Connects lazily, pooling with the default [`PoolLimits`].
    pub fn from_url(url: &str) -> Result<Self, MailSetupError> {
        let endpoint = smtp::SmtpEndpoint::parse(url, SMTP_TIMEOUT)?;
        Ok(Self {
            pool: pool::Pool::new(endpoint, PoolLimits::default()),
        })
    }

    /// This transport with a pool of `limits` (e.g. [`PoolLimits::from_env`]) instead; call it
    /// before sending (the connections of the previous pool are not carried over).
    pub fn with_pool(self, limits: PoolLimits) -> Self {
        Self {
            pool: pool::Pool::new(self.pool.endpoint().clone(), limits),
        }
    }
}

#[async_trait::async_trait]
impl MailTransport for SmtpTransport {
    #[tracing::instrument(
        name = "smtp.send",
        skip_all,
        fields(otel.kind = "client", server.protocol = "smtp")
    )]
    async fn send(&self, message: Message) -> Result<(), MailError> {
        self.pool.send(&message).await
    }
}

/// Writes each e-mail as `{uuid}.eml` into a directory (created if missing).
#[derive(Clone)]
pub struct FileTransport {
    directory: PathBuf,
    inner: AsyncFileTransport<Tokio1Executor>,
}

impl std::fmt::Debug for FileTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTransport")
            .field("directory", &self.directory)
            .finish()
    }
}

impl FileTransport {
    /// A transport writing into `directory`, which is created now if missing.
    pub fn new(directory: &Path) -> Result<Self, MailSetupError> {
        std::fs::create_dir_all(directory).map_err(|source| MailSetupError::MailDir {
            path: directory.to_path_buf(),
            source,
        })?;
        Ok(Self {
            directory: directory.to_path_buf(),
            inner: AsyncFileTransport::new(directory),
        })
    }

    /// Where the files go.
    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

#[async_trait::async_trait]
impl MailTransport for FileTransport {
    #[tracing::instrument(name = "mail.write_file", skip_all)]
    async fn send(&self, message: Message) -> Result<(), MailError> {
        // The directory may have been removed since start-up (e.g. `rm -r data/mail`).
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(|error| {
                MailError::transient(format!("cannot create the mail directory: {error}"))
            })?;
        self.inner
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| MailError::transient(format!("cannot write the e-mail file: {error}")))
    }
}

/// SMTP when `smtp_url` is set and not blank (pooled with [`PoolLimits::from_env`]), else
/// `.eml` files in `mail_dir` (created if missing). Also checks that `mail_from`, the sender
/// every service puts on its e-mails, is a mailbox.
pub fn transport(
    smtp_url: Option<&str>,
    mail_from: &str,
    mail_dir: &Path,
) -> Result<Arc<dyn MailTransport>, MailSetupError> {
    mail_from
        .parse::<Mailbox>()
        .map_err(|error| MailSetupError::From(error.to_string()))?;
    match smtp_url.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => Ok(Arc::new(
            SmtpTransport::from_url(url)?.with_pool(PoolLimits::from_env()?),
        )),
        None => Ok(Arc::new(FileTransport::new(mail_dir)?)),
    }
}
