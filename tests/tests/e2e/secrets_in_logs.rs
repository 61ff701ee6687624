//! Nothing secret reaches the logs: this binary captures every log line of two clusters at
//! TRACE level (every crate: our services, tonic, hyper, h2, sqlx, lettre through the `log`
//! bridge) while users call with bearer tokens, an invitation goes from e-mail to acceptance, a
//! guess fails, and the mailer tries an SMTP server whose URL carries a password. Then no JWT
//! (user or service identity), no invitation secret and no SMTP password is in the capture.
//!
//! The capture is the process-wide subscriber, so that it sees every thread (sqlx's SQLite
//! workers included), and a process-wide subscriber would see every other test of the
//! end-to-end binary too: the test runs alone in a child process of it
//! ([`tenantry_e2e::in_own_process`]).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenantry_e2e::{expect_code, invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{
    AcceptInvitationRequest, EmailDeliveryState, GetInvitationRequest, ListInvitationsRequest,
    LookupInvitationRequest,
};
use tenantry_proto::membership::v1::{ListMyAccountsRequest, Role};
use tenantry_testkit::{Backend, ClusterOptions, TestCluster, TestUser};
use tonic::Code;

/// Where the subscriber writes: one buffer for the whole (child) process.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn install() -> Self {
        let capture = Self::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this process");
        capture
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

/// Every JWT-shaped run (`eyJ…` base64url header, then payload and signature) in `text`.
fn jwts(text: &str) -> Vec<&str> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.match_indices("eyJ")
        .map(|(start, _)| {
            let end = text[start..]
                .find(|c: char| !is_token_char(c))
                .map_or(text.len(), |len| start + len);
            &text[start..end]
        })
        .filter(|run| run.split('.').filter(|part| !part.is_empty()).count() >= 3)
        .collect()
}

#[test]
fn jwts_are_recognised() {
    let token = TestUser::new("x").token();
    let line = format!("metadata: {{\"authorization\": \"Bearer {token}\"}}");
    assert_eq!(jwts(&line), vec![token.as_str()]);
    assert!(jwts("eyJhbGciOi only a header").is_empty());
}

const SMTP_PASSWORD: &str = "s3cret-smtp-Pa55word";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_secrets_and_passwords_never_reach_the_logs() {
    if !tenantry_e2e::in_own_process(
        module_path!(),
        "tokens_secrets_and_passwords_never_reach_the_logs",
    ) {
        return;
    }
    let capture = Capture::install();
    let mut invitation_secrets = Vec::new();
    let mut bearer_tokens = Vec::new();

    // An invitation from e-mail to acceptance, with authenticated calls all around.
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice_token = partner.owner.token();
    let bob = TestUser::new("bob");
    let bob_token = bob.token();
    bearer_tokens.extend([alice_token.clone(), bob_token.clone()]);
    let invitation = invite(
        &cluster,
        &partner.owner,
        &customer.name,
        &bob.email,
        Role::Employee,
    )
    .await
    .expect("invite");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let secret = loop {
        // The link works once the invitation says SENT (the hash is recorded at that commit).
        let sent = cluster
            .invitation(Some(&alice_token))
            .get_invitation(GetInvitationRequest {
                name: invitation.name.clone(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .and_then(|invitation| invitation.delivery)
            .is_some_and(|delivery| delivery.state == EmailDeliveryState::Sent as i32);
        if let Some(token) = cluster
            .mail_files()
            .iter()
            .find(|mail| mail.to.contains(&bob.email))
            .and_then(|mail| mail.accept_token())
            .filter(|_| sent)
        {
            break token;
        }
        assert!(tokio::time::Instant::now() < deadline, "no e-mail");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    invitation_secrets.push(secret.clone());
    let mut as_bob = cluster.invitation(Some(&bob_token));
    as_bob
        .lookup_invitation(LookupInvitationRequest {
            token: secret.clone(),
        })
        .await
        .expect("lookup");
    let guess = format!("{}x", &secret[..secret.len() - 1]);
    expect_code(
        as_bob
            .lookup_invitation(LookupInvitationRequest { token: guess })
            .await,
        Code::NotFound,
    );
    as_bob
        .accept_invitation(AcceptInvitationRequest { token: secret })
        .await
        .expect("accept");
    cluster
        .membership(Some(&bob_token))
        .list_my_accounts(ListMyAccountsRequest::default())
        .await
        .expect("list my accounts");
    cluster
        .invitation(Some(&alice_token))
        .list_invitations(ListInvitationsRequest {
            parent: customer.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list invitations");
    cluster.stop().await;

    // A mailer whose SMTP URL holds a password, failing to reach the server.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.mail.smtp_url = Some(format!(
        "smtp://tenantry:{SMTP_PASSWORD}@127.0.0.1:{closed_port}"
    ));
    let cluster = TestCluster::start_with(options).await;
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice_token = partner.owner.token();
    bearer_tokens.push(alice_token.clone());
    let invitation = invite(
        &cluster,
        &partner.owner,
        &customer.name,
        "carol@example.com",
        Role::Admin,
    )
    .await
    .expect("invite");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = cluster
            .invitation(Some(&alice_token))
            .get_invitation(GetInvitationRequest {
                name: invitation.name.clone(),
            })
            .await
            .expect("get invitation")
            .into_inner()
            .invitation
            .expect("invitation");
        if current
            .delivery
            .is_some_and(|delivery| delivery.attempts >= 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mailer never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;

    let logs = capture.text();
    assert!(
        logs.contains("grpc.server") && logs.contains("LookupInvitation"),
        "the capture holds the run's TRACE logs ({} bytes)",
        logs.len()
    );
    let leaked = jwts(&logs);
    assert!(leaked.is_empty(), "JWTs in the logs: {leaked:?}");
    for token in &bearer_tokens {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(
            !logs.contains(signature),
            "a bearer token's signature is logged"
        );
    }
    for secret in &invitation_secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "an invitation secret is logged"
        );
    }
    assert!(!logs.contains(SMTP_PASSWORD), "the SMTP password is logged");
}
