//! Degrade, don't fall over (issue 13): membership in a process of its own is stopped; the
//! registry's process keeps answering what its local view holds (a decision it kept), answers
//! the rest UNAVAILABLE — never INTERNAL — and says on `/readyz` what it runs without.
//!
//! Two nodes on RabbitMQ (SQLite files for their databases): membership alone, and the
//! registry with invitation and notification. Needs TENANTRY_TEST_AMQP_URL and
//! TENANTRY_TEST_POSTGRES_URL (the test resources helper makes a database it does not use);
//! under CI=true a missing one is a failure.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{TestResources, authorized, backend_url};
use tenantry_cli::{EventsSpec, Node, NodeSpec, PeerUrls, ServiceKind};
use tenantry_events::{AmqpConfig, RetryPolicy};
use tenantry_platform::config::AuthConfig;
use tenantry_proto::membership::v1::membership_service_client::MembershipServiceClient;
use tenantry_proto::membership::v1::{AddMemberRequest, Role, add_member_request};
use tenantry_proto::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use tenantry_proto::registry::v1::{CreateAccountRequest, GetAccountRequest};
use tonic::Code;

const JWT_SECRET: &str = "membership-stopped-test-secret";
const INTERNAL_SECRET: &str = "membership-stopped-internal";

fn token(sub: &str, operator: bool) -> String {
    support::user_token(JWT_SECRET, sub, operator)
}

fn spec(
    services: Vec<(ServiceKind, String)>,
    peers: PeerUrls,
    amqp: &str,
    prefix: &str,
    dir: &std::path::Path,
) -> NodeSpec {
    let mut events = EventsSpec::new(
        Some(AmqpConfig {
            url: amqp.to_string(),
            exchange: "tenantry.events".into(),
            queue_prefix: prefix.to_string(),
            prefetch: 16,
            retry: RetryPolicy::default(),
            ..AmqpConfig::default()
        }),
        RetryPolicy::default(),
    );
    // The shortest warm-up the bounds allow (ten heartbeat timeouts), to wait less.
    events.freshness.forget_after = Duration::from_secs(10);
    NodeSpec {
        services,
        auth: AuthConfig::with_secrets(JWT_SECRET, INTERNAL_SECRET),
        peers,
        max_request_bytes: 256 * 1024,
        shutdown_grace: Duration::from_secs(5),
        registry: tenantry_registry::Config::default(),
        membership: tenantry_membership::Config::default(),
        invitation: tenantry_invitation::Config::default(),
        mail: tenantry_mail::MailConfig::default(),
        notification: tenantry_notification::Config::default(),
        audit: tenantry_audit::Config::default(),
        events,
        mail_dir: dir.join("mail"),
        admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /readyz` on the admin port: the status code and the body.
async fn readyz(admin: SocketAddr) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("admin port");
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_membership_stopped_kept_decisions_still_answer_and_the_rest_is_unavailable() {
    let (Some(amqp), Some(postgres)) = (
        backend_url("TENANTRY_TEST_AMQP_URL"),
        backend_url("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    let resources = TestResources::create("membership-stopped", &amqp, &postgres).await;
    let (dir, prefix) = (&resources.dir, &resources.prefix);
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());

    let membership_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let registry_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let membership_url = format!("http://{}", membership_listener.local_addr().expect("addr"));
    let registry_url = format!("http://{}", registry_listener.local_addr().expect("addr"));
    let membership = Node::start(
        spec(
            vec![(ServiceKind::Membership, sqlite("membership.db"))],
            PeerUrls {
                registry: Some(registry_url.clone()),
                membership: None,
            },
            &amqp,
            prefix,
            dir,
        ),
        membership_listener,
    )
    .await
    .expect("start membership");
    let registry = Node::start(
        spec(
            vec![
                (ServiceKind::CustomerRegistry, sqlite("registry.db")),
                (ServiceKind::Invitation, sqlite("invitation.db")),
                (ServiceKind::Notification, sqlite("notification.db")),
            ],
            PeerUrls {
                registry: None,
                membership: Some(membership_url.clone()),
            },
            &amqp,
            prefix,
            dir,
        ),
        registry_listener,
    )
    .await
    .expect("start the registry's node");
    assert!(membership.wait_ready(Duration::from_secs(60)).await);
    assert!(registry.wait_ready(Duration::from_secs(60)).await);
    let admin = registry.admin_addr().expect("admin port");

    let channel = |url: &str| {
        tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("url")
            .connect_lazy()
    };
    let registry_client = CustomerRegistryServiceClient::new(channel(&registry_url));
    let membership_client = MembershipServiceClient::new(channel(&membership_url));
    let operator = token("ops", true);
    let account = registry_client
        .clone()
        .create_account(authorized(
            CreateAccountRequest {
                account_id: "steady".into(),
                display_name: "Steady".into(),
                request_id: String::new(),
            },
            &operator,
        ))
        .await
        .expect("create account")
        .into_inner()
        .account
        .expect("account")
        .name;
    for user in ["kept", "unkept"] {
        membership_client
            .clone()
            .add_member(authorized(
                AddMemberRequest {
                    parent: account.clone(),
                    principal: Some(add_member_request::Principal::User(format!("users/{user}"))),
                    role: Role::Employee as i32,
                    source: 0,
                    request_id: String::new(),
                    invitee_profile: None,
                },
                &operator,
            ))
            .await
            .expect("add member");
    }
    // Once the registry's view is trusted, one member's decision is kept there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(&registry.metrics().render(), "tenantry_view_fresh ") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the registry's view became fresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = |user: &str| {
        let (client, account, token) =
            (registry_client.clone(), account.clone(), token(user, false));
        async move {
            client
                .clone()
                .get_account(authorized(GetAccountRequest { name: account }, &token))
                .await
                .map(|_| ())
        }
    };
    read("kept").await.expect("the member reads");
    read("kept").await.expect("the member reads again");
    let hits = r#"tenantry_view_lookups_total{cache="decisions",outcome="hit"} "#;
    assert!(sample(&registry.metrics().render(), hits) >= 1.0, "kept");

    membership.stop().await.expect("membership stops");

    read("kept")
        .await
        .expect("a kept decision is still answered with membership stopped");
    let refused = read("unkept")
        .await
        .expect_err("not kept: membership is asked");
    assert_eq!(
        refused.code(),
        Code::Unavailable,
        "UNAVAILABLE, never INTERNAL: {refused:?}"
    );
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "still ready: it answers what it can ({body})");
    assert!(
        body.contains("degraded: membership: unreachable"),
        "/readyz names what is missing: {body}"
    );
    registry.stop().await.expect("stop");
}
