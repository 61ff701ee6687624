//! TLS on the gRPC port: `tenantry up` with a certificate generated here (a test CA and a
//! server certificate for `localhost` / 127.0.0.1). A client trusting the CA gets health and
//! authenticated calls — including ones the process forwards to its own services over TLS —
//! while a plaintext client and a client that does not trust the CA are refused. Half a
//! configuration (a certificate without its key) stops the process at start-up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tenantry_platform::auth::{DevTokenClaims, mint_user_token, unix_now};
use tenantry_platform::config::DEV_JWT_SECRET;
use tenantry_proto::registry::v1::GetAccountRequest;
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// PEM files of a test CA and a server certificate it signed, in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
}

impl Pki {
    fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("tenantry-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write CA");
        std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("write certificate");
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write key");
        Self { dir, ca_pem }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// `tenantry up` on `port` with data in `data_dir` and the given TLS variables.
fn tenantry_up(port: u16, data_dir: &Path, tls: &[(&str, &Path)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command
        .arg("up")
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
        // The invitation page on a port of its own, not the default 8080.
        .env(
            "TENANTRY_PUBLIC_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env_remove("TENANTRY_ACCEPT_PAGE_LISTEN")
        .env("TENANTRY_DATA_DIR", data_dir)
        .env("TENANTRY_LOG", "warn")
        .env_remove("TENANTRY_AMQP_URL")
        .env_remove("TENANTRY_SMTP_URL")
        .env_remove("TENANTRY_ADMIN_LISTEN")
        .env_remove("TENANTRY_TLS_CERT")
        .env_remove("TENANTRY_TLS_KEY")
        .env_remove("TENANTRY_TLS_CA")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (variable, path) in tls {
        command.env(variable, path);
    }
    command
}

/// A channel over TLS to `port` (name `localhost`) trusting `ca` (`None`: the system roots).
async fn tls_channel(port: u16, ca: Option<&str>) -> Result<Channel, tonic::transport::Error> {
    let config = match ca {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    Endpoint::from_shared(format!("https://localhost:{port}"))?
        .tls_config(config.domain_name("localhost"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

async fn health(channel: Channel, service: &str) -> Result<HealthCheckResponse, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|response| response.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_speaks_tls_only_when_configured() {
    let pki = Pki::generate();
    let data_dir = pki.path("data");
    let port = free_port();
    let mut child = tenantry_up(
        port,
        &data_dir,
        &[
            ("TENANTRY_TLS_CERT", &pki.path("server.pem")),
            ("TENANTRY_TLS_KEY", &pki.path("server.key")),
            ("TENANTRY_TLS_CA", &pki.path("ca.pem")),
        ],
    )
    .spawn()
    .expect("start tenantry up");

    // Health over TLS, trusting the test CA: every service SERVING.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let channel = loop {
        if let Ok(channel) = tls_channel(port, Some(&pki.ca_pem)).await
            && health(channel.clone(), "")
                .await
                .is_ok_and(|answer| answer.status == ServingStatus::Serving as i32)
        {
            break channel;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tenantry up exited early: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never SERVING over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for service in [
        "tenantry.registry.v1.CustomerRegistryService",
        "tenantry.membership.v1.MembershipService",
        "tenantry.invitation.v1.InvitationService",
        "tenantry.notification.v1.NotificationService",
    ] {
        let answer = health(channel.clone(), service).await.expect("health");
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service}");
    }

    // An authenticated call the registry answers by asking membership's Authorize — on this
    // same TLS port. A broken internal channel would be UNAVAILABLE, not the refusal.
    let now = unix_now();
    let token = mint_user_token(
        DEV_JWT_SECRET,
        &DevTokenClaims {
            sub: "tls-user".into(),
            email: Some("tls-user@example.com".into()),
            email_verified: Some(true),
            given_name: None,
            family_name: None,
            roles: Vec::new(),
            iss: "tenantry".into(),
            aud: "tenantry".into(),
            exp: now + 600,
            iat: now,
        },
    )
    .expect("token");
    let mut request = tonic::Request::new(GetAccountRequest {
        name: "accounts/someone-elses".into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let refusal = CustomerRegistryServiceClient::new(channel)
        .get_account(request)
        .await
        .expect_err("not this user's account");
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");

    // Plaintext is refused on the TLS port.
    let plaintext = match Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("url")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        Ok(channel) => health(channel, "").await.map(|_| ()),
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    assert!(plaintext.is_err(), "a plaintext client got an answer");

    // A client that does not trust the test CA fails the handshake.
    let untrusted = match tls_channel(port, None).await {
        Ok(channel) => health(channel, "").await.map(|_| ()),
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    assert!(untrusted.is_err(), "a client without the CA got an answer");

    // The server survived both refused handshakes.
    let again = tls_channel(port, Some(&pki.ca_pem))
        .await
        .expect("reconnect");
    assert!(health(again, "").await.is_ok());

    child.start_kill().expect("stop tenantry up");
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_its_key_stops_start_up() {
    let pki = Pki::generate();
    let output = tenantry_up(
        free_port(),
        &pki.path("data"),
        &[("TENANTRY_TLS_CERT", &pki.path("server.pem"))],
    )
    .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("exits at once")
        .expect("run tenantry up");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-key"),
        "names what is missing: {stderr}"
    );
}
