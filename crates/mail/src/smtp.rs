//! The SMTP client: lettre speaks the protocol, this module opens the connection and runs the
//! mail transaction; [`super::pool`] keeps the connections open between e-mails.
//!
//! Why not lettre's own `AsyncSmtpTransport`: it never sets `TCP_NODELAY` (lettre 0.11.23), and
//! writes the message body and the final `.` in two writes. With Nagle's algorithm on, the
//! second write waits for the server's delayed ACK of the first: 40 ms per e-mail on Linux,
//! measured by the benchmark (docs/benchmarks.md). So the TCP connection is opened here, with
//! `TCP_NODELAY`, and handed to lettre's `AsyncSmtpConnection` for greeting, EHLO, STARTTLS and
//! AUTH ([`SmtpEndpoint::connect`]).
//!
//! The transaction (MAIL FROM, RCPT TO, DATA, the message) is run here too, command by command
//! ([`transaction`]) rather than with lettre's `send`, because the pool must know *where* a
//! transaction failed: a reused connection the server closed while it sat idle fails at the
//! first command, MAIL FROM, before the server accepted anything, and only then may the e-mail
//! be tried again on a new connection.
//!
//! The URL format is lettre's: `smtp://host[:25]` (plain), `smtp://host[:587]?tls=required`
//! or `?tls=opportunistic` (STARTTLS), `smtps://host[:465]` (TLS from the first byte);
//! `user:password@` for AUTH (percent-encoded), and a path for the EHLO name.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::{MailError, MailSetupError};

/// How the connection is secured.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Security {
    /// No TLS (local catchers and relays on a trusted network).
    Plain,
    /// STARTTLS after the greeting; `required: false` falls back to plain text when the server
    /// does not offer it.
    StartTls { required: bool },
    /// TLS from the first byte (`smtps://`, RFC 8314).
    Implicit,
}

/// Where the SMTP server is and how to talk to it, parsed once from the URL.
#[derive(Clone)]
pub(super) struct SmtpEndpoint {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello_name: ClientId,
    /// Built once: loading the system's certificates reads files, not a thing to repeat for
    /// every e-mail.
    tls: TlsSetup,
    timeout: Duration,
}

/// What securing a connection needs, per [`Security`].
#[derive(Clone)]
enum TlsSetup {
    None,
    /// For lettre's STARTTLS.
    StartTls(TlsParameters),
    /// For the handshake of `smtps://`.
    Implicit {
        connector: tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    },
}

impl TlsSetup {
    /// Verifies servers named `host` against the system's roots plus `extra_roots`.
    fn new(
        host: &str,
        security: &Security,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, String> {
        match security {
            Security::Plain => Ok(Self::None),
            Security::StartTls { .. } => {
                let mut parameters = TlsParameters::builder(host.to_owned());
                for root in extra_roots {
                    let root = Certificate::from_der(root.to_vec()).map_err(|e| e.to_string())?;
                    parameters = parameters.add_root_certificate(root);
                }
                parameters
                    .build_rustls()
                    .map(Self::StartTls)
                    .map_err(|error| error.to_string())
            }
            Security::Implicit => {
                let mut roots = rustls::RootCertStore::empty();
                // Unreadable system certificates are skipped, as lettre does; a server that
                // needs one of them then fails its handshake with a clear error.
                for root in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(root);
                }
                for root in extra_roots {
                    roots.add(root.clone()).map_err(|error| error.to_string())?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|error| error.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|error| error.to_string())?;
                Ok(Self::Implicit {
                    connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                    server_name,
                })
            }
        }
    }
}

impl SmtpEndpoint {
    /// Parses `url` (see the module documentation). The error never repeats the URL: it may
    /// hold a password.
    pub(super) fn parse(url: &str, timeout: Duration) -> Result<Self, MailSetupError> {
        let invalid = |why: &str| MailSetupError::SmtpUrl(why.to_owned());
        let url = url::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| invalid("the URL names no host"))?
            // An IPv6 literal comes bracketed; the socket address wants it bare.
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls { required: true }, 587),
            ("smtp", Some("opportunistic")) => (Security::StartTls { required: false }, 587),
            ("smtps", None) => (Security::Implicit, 465),
            (scheme, tls) => {
                return Err(invalid(&format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?} (smtp://, \
                     smtp://…?tls=required|opportunistic, smtps://)"
                )));
            }
        };
        let hello_name = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let credentials = match url.password() {
            None => None,
            Some(password) => {
                let decode = |text: &str| {
                    percent_encoding::percent_decode_str(text)
                        .decode_utf8()
                        .map(Cow::into_owned)
                        .map_err(|_| invalid("the user name or password is not UTF-8"))
                };
                Some(Credentials::new(decode(url.username())?, decode(password)?))
            }
        };
        let tls = TlsSetup::new(&host, &security, &[])
            .map_err(|why| invalid(&format!("cannot set up TLS: {why}")))?;
        Ok(Self {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello_name,
            tls,
            timeout,
        })
    }

    /// Trusts `certificate` (a certificate authority) besides the system roots, instead of any
    /// trusted this way before.
    #[cfg(test)]
    pub(super) fn trust(&mut self, certificate: rustls::pki_types::CertificateDer<'static>) {
        self.tls =
            TlsSetup::new(&self.host, &self.security, &[certificate]).expect("a valid test CA");
    }

    /// How long one e-mail may take, from waiting for a connection to the server's last reply.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `host:port`, for logs (never the URL: it may hold a password).
    pub(super) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A new connection that has been greeted, EHLO'd, secured as configured and authenticated.
    /// The caller bounds the time it may take.
    pub(super) async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| {
                MailError::transient(format!(
                    "cannot connect to the mail server {}:{}: {error}",
                    self.host, self.port
                ))
            })?;
        tcp.set_nodelay(true).map_err(|error| {
            MailError::transient(format!(
                "cannot set TCP_NODELAY on the SMTP socket: {error}"
            ))
        })?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            TlsSetup::Implicit {
                connector,
                server_name,
            } => {
                let stream = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|error| MailError::transient(format!("SMTP TLS: {error}")))?;
                Box::new(ImplicitTls(stream))
            }
            TlsSetup::None | TlsSetup::StartTls(_) => Box::new(tcp),
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &self.hello_name)
            .await
            .map_err(|error| smtp_failure(&error))?;
        if let (Security::StartTls { required }, TlsSetup::StartTls(parameters)) =
            (&self.security, &self.tls)
            && (*required || connection.can_starttls())
        {
            connection
                .starttls(parameters.clone(), &self.hello_name)
                .await
                .map_err(|error| smtp_failure(&error))?;
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|error| smtp_failure(&error))?;
        }
        Ok(connection)
    }
}

/// How a [`transaction`] failed, for the pool to decide what becomes of its connection.
#[derive(Debug)]
pub(super) struct Failed {
    /// The failure as the sender sees it.
    pub(super) error: MailError,
    /// The first command, MAIL FROM, failed: the server has accepted nothing of this e-mail.
    pub(super) at_mail_from: bool,
    /// The session still works: the server answered 4xx/5xx, or nothing was sent. Such a
    /// connection is closed politely (QUIT); one whose I/O failed is just dropped.
    pub(super) session_alive: bool,
}

/// One mail transaction on an open session: MAIL FROM (with SMTPUTF8 / 8BITMIME as lettre would
/// ask for them), RCPT TO for each recipient, DATA and the dot-stuffed message. Ok once the
/// server answered 250 to the final `.`: it has taken responsibility for the e-mail.
///
/// After that reply the session is ready for the next transaction (RFC 5321 §4.1.1.4: the
/// end of data clears the buffers), so a reused connection starts with MAIL FROM, no RSET.
pub(super) async fn transaction(
    connection: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), Failed> {
    let parameters = mail_parameters(connection, envelope, body).map_err(|reason| Failed {
        error: MailError::transient(format!(
            "the mail server could not take the message: {reason}"
        )),
        at_mail_from: false,
        session_alive: true,
    })?;
    let failed = |at_mail_from: bool| {
        move |error: lettre::transport::smtp::Error| Failed {
            error: smtp_failure(&error),
            at_mail_from,
            session_alive: error.status().is_some(),
        }
    };
    connection
        .command(Mail::new(envelope.from().cloned(), parameters))
        .await
        .map_err(failed(true))?;
    for recipient in envelope.to() {
        connection
            .command(Rcpt::new(recipient.clone(), Vec::new()))
            .await
            .map_err(failed(false))?;
    }
    connection.command(Data).await.map_err(failed(false))?;
    connection.message(body).await.map_err(failed(false))?;
    Ok(())
}

/// The MAIL FROM parameters the e-mail needs, as lettre's `send` chooses them; an error when
/// the server lacks the extension (never sent without it, per RFC 6531 and RFC 6152).
fn mail_parameters(
    connection: &AsyncSmtpConnection,
    envelope: &Envelope,
    body: &[u8],
) -> Result<Vec<MailParameter>, &'static str> {
    let server = connection.server_info();
    let mut parameters = Vec::new();
    if envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|address| !AsRef::<str>::as_ref(address).is_ascii())
    {
        if !server.supports_feature(Extension::SmtpUtfEight) {
            return Err("the envelope has non-ASCII addresses but the server lacks SMTPUTF8");
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !body.is_ascii() {
        if !server.supports_feature(Extension::EightBitMime) {
            return Err("the message is not ASCII but the server lacks 8BITMIME");
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(parameters)
}

/// lettre's error as ours: 5xx answers are permanent, everything else may pass.
fn smtp_failure(error: &lettre::transport::smtp::Error) -> MailError {
    if error.is_permanent() {
        MailError::permanent(format!("the mail server refused the message: {error}"))
    } else {
        MailError::transient(format!(
            "the mail server could not take the message: {error}"
        ))
    }
}

/// A TLS client stream lettre can talk through (its trait wants the peer address too).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
