//! The admin HTTP port: Prometheus metrics and HTTP probes. Scrapes `/metrics` of an embedded
//! cluster (SQLite, in-process bus, `.eml` files) before and after part of the seed flow and
//! checks that the metric names are there and the counters moved.

use std::time::Duration;

use tenantry_e2e::{add_member, expect_code, invite, partner_admin_in_customer, send_message};
use tenantry_proto::membership::v1::Role;
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_proto::registry::v1::CreateAccountRequest;
use tenantry_testkit::{Backend, TestCluster, TestUser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const REGISTRY: &str = "tenantry.registry.v1.CustomerRegistryService";

/// A plain HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
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

async fn scrape(cluster: &TestCluster) -> String {
    let (status, body) = get(cluster.admin_addr(), "/metrics").await;
    assert_eq!(status, 200, "/metrics answers: {body}");
    body
}

/// The sum of the samples of `name` whose labels include every `labels` pair (0 if none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")));
            matches.then(|| sample.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn has_series(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        !line.starts_with('#')
            && (line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
    })
}

/// Scrapes until `condition` holds on the exposition (event handling is asynchronous).
async fn scrape_until(
    cluster: &TestCluster,
    what: &str,
    condition: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(cluster).await;
        if condition(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics never showed {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_admin_port_serves_probes_and_metrics_that_move() {
    let cluster = TestCluster::start(Backend::Sqlite).await;
    let admin = cluster.admin_addr();

    assert_eq!(get(admin, "/livez").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200, "the cluster is ready");
    assert_eq!(get(admin, "/nothing-here").await.0, 404);

    let before = scrape(&cluster).await;
    let create_ok = [
        ("grpc_service", REGISTRY),
        ("grpc_method", "CreateAccount"),
        ("grpc_type", "unary"),
        ("grpc_code", "OK"),
    ];
    let create_unauthenticated = [
        ("grpc_service", REGISTRY),
        ("grpc_method", "CreateAccount"),
        ("grpc_code", "Unauthenticated"),
    ];
    let mailer = [
        ("group", "tenantry.invitation.mailer"),
        ("outcome", "handled"),
    ];
    for name in [
        "tenantry_emails_sent_total",
        "tenantry_emails_failed_total",
        "tenantry_deliveries_written_total",
        "tenantry_consumer_deliveries_total",
        "tenantry_consumer_retries_total",
        "tenantry_consumer_dead_letters_total",
    ] {
        assert!(
            has_series(&before, name),
            "{name} is exported from the start"
        );
    }

    // The seed flow: a partner whose owner administrates a customer, an invitation (→ an .eml
    // file), a member in the customer and a message to it (→ a delivery).
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let alice = &partner.owner;
    let bob = TestUser::new("bob");
    invite(&cluster, alice, &customer.name, &bob.email, Role::Employee)
        .await
        .expect("alice invites bob");
    let gus = TestUser::new("gus");
    add_member(&cluster, &operator, &customer.name, &gus, Role::Employee)
        .await
        .expect("add gus");
    send_message(
        &cluster,
        alice,
        &partner.account.name,
        &[customer.name.as_str()],
        "Maintenance",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("alice sends a message");
    // A refused call: no token.
    let refused = cluster
        .registry(None)
        .create_account(CreateAccountRequest {
            account_id: "nobody".to_string(),
            display_name: "Nobody".to_string(),
            request_id: String::new(),
        })
        .await;
    expect_code(refused, Code::Unauthenticated);

    let after = scrape_until(&cluster, "the e-mail and the delivery", |text| {
        value(text, "tenantry_emails_sent_total", &[]) >= 1.0
            && value(text, "tenantry_deliveries_written_total", &[]) >= 1.0
            && value(text, "tenantry_consumer_deliveries_total", &mailer) >= 1.0
    })
    .await;
    assert!(
        !cluster.mail_files().is_empty(),
        "the invitation was written as an .eml file"
    );

    // Per-RPC requests, errors by code and latency.
    assert!(
        value(&after, "grpc_server_handled_total", &create_ok)
            > value(&before, "grpc_server_handled_total", &create_ok),
        "CreateAccount calls are counted:\n{after}"
    );
    assert!(
        value(&after, "grpc_server_handled_total", &create_unauthenticated) >= 1.0,
        "the refused call is counted by its code:\n{after}"
    );
    assert!(
        value(
            &after,
            "grpc_server_handling_seconds_count",
            &[("grpc_service", REGISTRY), ("grpc_method", "CreateAccount")]
        ) >= 2.0,
        "CreateAccount latencies are observed"
    );
    assert!(has_series(&after, "grpc_server_handling_seconds_bucket"));
    assert!(
        value(
            &after,
            "grpc_server_started_total",
            &[("grpc_service", REGISTRY), ("grpc_method", "CreateAccount")]
        ) >= 2.0,
        "started calls are counted"
    );
    // Probes are counted apart, never in the RPC series dashboards compute error rates from;
    // the process's own resources are exported; no label is named like the ones Kubernetes
    // service discovery sets.
    assert!(
        !after.contains("grpc_service=\"grpc.health.v1.Health\""),
        "health checks stay out of the RPC series:\n{after}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(has_series(&after, name), "{name} is exported:\n{after}");
    }
    assert!(
        !after.contains("{service=") && !after.contains(",service="),
        "no `service` label:\n{after}"
    );

    // Events: the relays publish and sample their outboxes; the consumers count deliveries.
    assert!(
        value(
            &after,
            "tenantry_events_published_total",
            &[("tenantry_service", "customer-registry")]
        ) >= 1.0,
        "the registry's relay published account events"
    );
    for name in ["tenantry_outbox_backlog", "tenantry_relay_lag_seconds"] {
        assert!(
            after.contains(&format!("{name}{{tenantry_service=\"invitation\"}}")),
            "{name} is sampled per service:\n{after}"
        );
    }
    assert!(has_series(&after, "tenantry_consumer_retries_total"));
    assert!(has_series(&after, "tenantry_consumer_dead_letters_total"));
    assert_eq!(value(&after, "tenantry_emails_failed_total", &[]), 0.0);
    // Each service's pruner exports its tables' series from the start (nothing is old yet).
    for (service, table) in [
        ("customer-registry", "registry_request_ids"),
        ("membership", "processed_events"),
        ("invitation", "invitations"),
        ("notification", "notification_request_ids"),
    ] {
        let series = format!(
            "tenantry_pruned_rows_total{{table=\"{table}\",tenantry_service=\"{service}\"}} 0"
        );
        assert!(after.contains(&series), "{series}:\n{after}");
    }

    cluster.stop().await;
}
