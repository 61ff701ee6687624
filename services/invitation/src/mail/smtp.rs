//! The SMTP client: lettre speaks the protocol, this module opens the connection.
//!
//! Why not lettre's own `AsyncSmtpTransport`: it never sets `TCP_NODELAY` (lettre 0.11.23), and
//! writes the message body and the final `.` in two writes. With Nagle's algorithm on, the
//! second write waits for the server's delayed ACK of the first: 40 ms per e-mail on Linux,
//! measured by the benchmark (docs/benchmarks.md). So the TCP connection is opened here, with
//! `TCP_NODELAY`, and handed to lettre's `AsyncSmtpConnection` for greeting, EHLO, STARTTLS,
//! AUTH and the transaction.
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

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
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

    /// Sends one message over a new connection, all of it within the timeout.
    pub(super) async fn send(&self, message: &Message) -> Result<(), MailError> {
        match tokio::time::timeout(self.timeout, self.exchange(message)).await {
            Ok(result) => result,
            Err(_) => Err(MailError::transient(format!(
                "the mail server did not finish within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    async fn exchange(&self, message: &Message) -> Result<(), MailError> {
        let mut connection = self.connect().await?;
        let sent = connection
            .send(message.envelope(), &message.formatted())
            .await;
        // QUIT politely; the message's fate is already decided.
        connection.abort().await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => Err(smtp_failure(&error)),
        }
    }

    /// A connection that has been greeted, EHLO'd, secured as configured and authenticated.
    async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
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
mod tests {
    //! A small SMTP server in the test speaks plain text, STARTTLS and implicit TLS, so every
    //! way of connecting is exercised against a real socket and a real TLS handshake.

    use super::*;
    use base64::Engine as _;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// What the server saw of one session.
    #[derive(Debug, Default)]
    struct Session {
        tls: bool,
        auth: Option<String>,
        recipients: Vec<String>,
        data: String,
    }

    struct TestCa {
        root: CertificateDer<'static>,
        server: rustls::ServerConfig,
    }

    fn test_ca() -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server TLS config");
        TestCa {
            root: ca_cert.der().clone(),
            server,
        }
    }

    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

    /// Serves one SMTP session on a fresh port; `implicit` starts TLS at once, `offer_starttls`
    /// advertises STARTTLS.
    async fn serve_once(
        tls: Option<rustls::ServerConfig>,
        implicit: bool,
        offer_starttls: bool,
    ) -> (u16, tokio::task::JoinHandle<Session>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut session = Session::default();
            let mut stream: Box<dyn Stream> = if implicit {
                session.tls = true;
                let acceptor = acceptor.clone().expect("a TLS config");
                Box::new(acceptor.accept(tcp).await.expect("TLS handshake"))
            } else {
                Box::new(tcp)
            };
            stream
                .write_all(b"220 test ESMTP\r\n")
                .await
                .expect("greet");
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.expect("read") == 0 {
                    return session;
                }
                let command = line.trim_end().to_owned();
                let verb = command
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let answer: String = match verb.as_str() {
                    "EHLO" => {
                        let starttls = if offer_starttls && !session.tls {
                            "250-STARTTLS\r\n"
                        } else {
                            ""
                        };
                        format!("250-test\r\n{starttls}250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    }
                    "STARTTLS" => {
                        let mut stream = reader.into_inner();
                        stream.write_all(b"220 go ahead\r\n").await.expect("write");
                        let acceptor = acceptor.clone().expect("a TLS config");
                        let secured = acceptor.accept(stream).await.expect("STARTTLS handshake");
                        session.tls = true;
                        reader = BufReader::new(Box::new(secured));
                        continue;
                    }
                    "AUTH" => {
                        let encoded = command.rsplit(' ').next().unwrap_or_default();
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .expect("base64");
                        session.auth = Some(String::from_utf8_lossy(&decoded).replace('\0', "|"));
                        "235 ok\r\n".into()
                    }
                    "MAIL" => "250 ok\r\n".into(),
                    "RCPT" => {
                        session.recipients.push(command.clone());
                        "250 ok\r\n".into()
                    }
                    "DATA" => {
                        reader
                            .get_mut()
                            .write_all(b"354 go on\r\n")
                            .await
                            .expect("write");
                        loop {
                            let mut data_line = String::new();
                            reader.read_line(&mut data_line).await.expect("read data");
                            if data_line == ".\r\n" {
                                break;
                            }
                            session.data.push_str(&data_line);
                        }
                        "250 queued\r\n".into()
                    }
                    "QUIT" => {
                        let _ = reader.get_mut().write_all(b"221 bye\r\n").await;
                        return session;
                    }
                    _ => "502 not implemented\r\n".into(),
                };
                reader
                    .get_mut()
                    .write_all(answer.as_bytes())
                    .await
                    .expect("write");
            }
        });
        (port, task)
    }

    fn message() -> Message {
        Message::builder()
            .from("Tenantry <noreply@tenantry.test>".parse().expect("from"))
            .to("ada@example.com".parse().expect("to"))
            .subject("hello")
            .body("the body\r\n.a line starting with a dot\r\n".to_string())
            .expect("message")
    }

    async fn send_through(url: &str, ca: Option<&TestCa>) -> Result<(), MailError> {
        let mut endpoint = SmtpEndpoint::parse(url, Duration::from_secs(10)).expect("URL");
        if let Some(ca) = ca {
            endpoint.trust(ca.root.clone());
        }
        endpoint.send(&message()).await
    }

    #[tokio::test]
    async fn plain_text_delivers_the_message_dot_stuffed() {
        let (port, server) = serve_once(None, false, false).await;
        send_through(&format!("smtp://127.0.0.1:{port}"), None)
            .await
            .expect("sent");
        let session = server.await.expect("server");
        assert!(!session.tls);
        assert_eq!(session.auth, None);
        assert_eq!(session.recipients, ["RCPT TO:<ada@example.com>"]);
        assert!(session.data.contains("Subject: hello"));
        // The client doubles a leading dot; the server sees it stuffed.
        assert!(session.data.contains("..a line starting with a dot"));
    }

    #[tokio::test]
    async fn starttls_upgrades_and_authenticates_inside_tls() {
        let ca = test_ca();
        let (port, server) = serve_once(Some(ca.server.clone()), false, true).await;
        send_through(
            &format!("smtp://mailer:s%40cret@localhost:{port}?tls=required"),
            Some(&ca),
        )
        .await
        .expect("sent");
        let session = server.await.expect("server");
        assert!(session.tls);
        assert_eq!(session.auth.as_deref(), Some("|mailer|s@cret"));
        assert!(session.data.contains("Subject: hello"));
    }

    #[tokio::test]
    async fn required_starttls_refuses_a_server_without_it() {
        let ca = test_ca();
        let (port, _server) = serve_once(Some(ca.server.clone()), false, false).await;
        let error = send_through(&format!("smtp://localhost:{port}?tls=required"), Some(&ca))
            .await
            .expect_err("no plain-text fallback");
        assert!(error.reason.contains("STARTTLS"), "{}", error.reason);
    }

    #[tokio::test]
    async fn opportunistic_starttls_falls_back_to_plain_text() {
        let (port, server) = serve_once(None, false, false).await;
        send_through(&format!("smtp://localhost:{port}?tls=opportunistic"), None)
            .await
            .expect("sent");
        assert!(!server.await.expect("server").tls);
    }

    #[tokio::test]
    async fn implicit_tls_verifies_the_server_and_delivers() {
        let ca = test_ca();
        let (port, server) = serve_once(Some(ca.server.clone()), true, false).await;
        send_through(&format!("smtps://localhost:{port}"), Some(&ca))
            .await
            .expect("sent");
        let session = server.await.expect("server");
        assert!(session.tls);
        assert!(session.data.contains("Subject: hello"));
    }

    #[tokio::test]
    async fn implicit_tls_refuses_an_unknown_certificate_authority() {
        let ca = test_ca();
        let (port, _server) = serve_once(Some(ca.server.clone()), true, false).await;
        let error = send_through(&format!("smtps://localhost:{port}"), None)
            .await
            .expect_err("unknown CA");
        assert!(error.reason.contains("SMTP TLS"), "{}", error.reason);
        assert!(!error.permanent);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_failure() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let error = send_through(&format!("smtp://127.0.0.1:{port}"), None)
            .await
            .expect_err("nobody listens");
        assert!(!error.permanent);
        assert!(error.reason.contains("cannot connect"), "{}", error.reason);
    }

    #[test]
    fn urls_are_parsed_like_lettre_and_bad_ones_refused_without_echoing_them() {
        let parse = |url: &str| SmtpEndpoint::parse(url, Duration::from_secs(1));
        let plain = parse("smtp://mail.example.com").expect("plain");
        assert_eq!((plain.port, plain.security.clone()), (25, Security::Plain));
        let starttls = parse("smtp://mail.example.com?tls=required").expect("starttls");
        assert_eq!(
            (starttls.port, starttls.security),
            (587, Security::StartTls { required: true })
        );
        let implicit = parse("smtps://u:p@mail.example.com").expect("smtps");
        assert_eq!(
            (implicit.port, implicit.security),
            (465, Security::Implicit)
        );
        assert!(implicit.credentials.is_some());
        let v6 = parse("smtp://[::1]:2525").expect("IPv6");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 2525));
        for bad in [
            "http://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com?tls=sometimes",
            "smtps://u:hunter2@mail.example.com?tls=required",
            "not a url hunter2",
        ] {
            let error = parse(bad).err().expect(bad);
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }
}
