//! A small SMTP server in the test speaks plain text, STARTTLS and implicit TLS, so every
//! way of connecting is exercised against a real socket and a real TLS handshake. (The pool's
//! own tests, in `pool/tests.rs`, run against aiosmtpd.)

use super::*;
use crate::pool::{Pool, PoolLimits};
use base64::Engine as _;
use lettre::Message;
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

fn pool(url: &str, ca: Option<&TestCa>, messages_per_connection: u32) -> Pool {
    let mut endpoint = SmtpEndpoint::parse(url, Duration::from_secs(10)).expect("URL");
    if let Some(ca) = ca {
        endpoint.trust(ca.root.clone());
    }
    let limits = PoolLimits {
        max_messages_per_connection: messages_per_connection,
        ..PoolLimits::default()
    };
    Pool::new(endpoint, limits)
}

/// Sends one message on a connection that is then closed with QUIT (one message per
/// connection), so the server's session ends.
async fn send_through(url: &str, ca: Option<&TestCa>) -> Result<(), MailError> {
    pool(url, ca, 1).send(&message()).await
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
async fn a_pooled_starttls_session_carries_the_next_email_without_a_new_handshake() {
    let ca = test_ca();
    // The server takes one connection only: a second would never be greeted.
    let (port, server) = serve_once(Some(ca.server.clone()), false, true).await;
    let pool = pool(
        &format!("smtp://mailer:pw@localhost:{port}?tls=required"),
        Some(&ca),
        2,
    );
    pool.send(&message()).await.expect("first");
    pool.send(&message())
        .await
        .expect("second, on the same session");
    // The second e-mail reached the limit of 2: the connection was closed with QUIT.
    let session = server.await.expect("server");
    assert!(session.tls);
    assert_eq!(session.auth.as_deref(), Some("|mailer|pw"));
    assert_eq!(session.recipients.len(), 2);
    assert_eq!(session.data.matches("Subject: hello").count(), 2);
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
