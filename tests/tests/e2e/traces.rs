//! One user action is one trace: the spans of `CreateInvitation` → outbox relay → mailer →
//! SMTP send, and of `SendMessage` → fan-out → `ListMembers`, collected with the SDK's
//! in-memory exporter, share one trace id, and every parent link leads back to the call that
//! started it. On PostgreSQL + RabbitMQ + SMTP the context crosses real AMQP headers.
//!
//! The spans are collected by the process-wide subscriber the services' own telemetry set-up
//! installs (`tenantry_platform::telemetry::init_with_exporter`, the same layers as
//! production), which would also record every span of every other test of the end-to-end
//! binary: each test here runs alone in a child process of it
//! ([`tenantry_e2e::in_own_process`]).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tenantry_e2e::{invite, load_members, partner_admin_in_customer, send_message};
use tenantry_platform::config::{LogConfig, LogFormat};
use tenantry_proto::membership::v1::Role;
use tenantry_proto::notification::v1::ReadPolicy;
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip, postgres_or_skip, smtp_or_skip,
};

/// The process-wide subscriber, installed once in the (child) process of a test.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let config = LogConfig {
            format: LogFormat::Human,
            filter: "warn".to_string(),
        };
        // Kept for the life of the process: the simple processor exports as spans end.
        std::mem::forget(tenantry_platform::telemetry::init_with_exporter(
            &config,
            "tenantry-e2e",
            exporter.clone(),
        ));
        exporter
    })
}

/// The production shape when its backends are there (under CI they must be), else the
/// embedded default (SQLite, in-process bus, `.eml` files).
async fn start_cluster() -> (TestCluster, Option<SmtpServer>) {
    // All three asked (no short circuit), so the notice names every suite that is missing.
    let (postgres, amqp, aiosmtpd) = (postgres_or_skip(), amqp_or_skip(), smtp_or_skip());
    if postgres.is_some() && amqp.is_some() && aiosmtpd {
        let smtp = SmtpServer::start().await;
        let mut options = ClusterOptions::new(Backend::Postgres);
        options.amqp = true;
        options.mail.smtp_url = Some(smtp.url());
        (TestCluster::start_with(options).await, Some(smtp))
    } else {
        eprintln!("PostgreSQL, RabbitMQ or aiosmtpd missing: tracing the embedded default");
        (TestCluster::start(Backend::Sqlite).await, None)
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The spans of the trace started by the server span named `root_name`, once `complete` says
/// the trace has everything the test waits for and every parent has ended too (spans are
/// exported as they end).
async fn trace_of(
    root_name: &str,
    complete: impl Fn(&[SpanData]) -> bool,
) -> (SpanData, Vec<SpanData>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = exporter().get_finished_spans().expect("finished spans");
        let root = spans
            .iter()
            .find(|span| span.name == root_name && span.span_kind == SpanKind::Server)
            .cloned();
        if let Some(root) = root {
            let trace_id = root.span_context.trace_id();
            let trace: Vec<SpanData> = spans
                .into_iter()
                .filter(|span| span.span_context.trace_id() == trace_id)
                .collect();
            // Spans are exported as they end, so a parent (the consumer's process span around
            // the SMTP send, say) may still be open when its child is already here.
            if complete(&trace) && every_parent_present(&trace) {
                return (root, trace);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace of {root_name} did not complete; spans so far: {:#?}",
            exporter()
                .get_finished_spans()
                .unwrap_or_default()
                .iter()
                .map(|span| (&span.name, span.span_context.trace_id()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every span that has a parent has it in `trace` (i.e. it has ended and been
/// exported too).
fn every_parent_present(trace: &[SpanData]) -> bool {
    let ids: std::collections::HashSet<SpanId> = trace
        .iter()
        .map(|span| span.span_context.span_id())
        .collect();
    trace
        .iter()
        .all(|span| span.parent_span_id == SpanId::INVALID || ids.contains(&span.parent_span_id))
}

fn has(trace: &[SpanData], name: &str, kind: SpanKind) -> bool {
    trace
        .iter()
        .any(|span| span.name == name && span.span_kind == kind)
}

/// Every span but the root has its parent in the trace; returns the chain of names from
/// `span` up to the root.
fn ancestry(trace: &[SpanData], root: &SpanData, span: &SpanData) -> Vec<String> {
    let by_id: HashMap<SpanId, &SpanData> = trace
        .iter()
        .map(|span| (span.span_context.span_id(), span))
        .collect();
    let mut chain = vec![span.name.to_string()];
    let mut current = span;
    while current.span_context.span_id() != root.span_context.span_id() {
        let parent = by_id.get(&current.parent_span_id).unwrap_or_else(|| {
            panic!(
                "span {:?} has parent {} which is not in the trace",
                current.name, current.parent_span_id
            )
        });
        chain.push(parent.name.to_string());
        current = parent;
    }
    chain
}

fn assert_connected(trace: &[SpanData], root: &SpanData) {
    assert_eq!(
        root.parent_span_id,
        SpanId::INVALID,
        "the call starts the trace"
    );
    let trace_id: TraceId = root.span_context.trace_id();
    for span in trace {
        assert_eq!(span.span_context.trace_id(), trace_id);
        // Panics when a link is broken.
        ancestry(trace, root, span);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_invitation_to_smtp_send_is_one_trace() {
    if !tenantry_e2e::in_own_process(
        module_path!(),
        "create_invitation_to_smtp_send_is_one_trace",
    ) {
        return;
    }
    exporter();
    let (cluster, smtp) = start_cluster().await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "tracing-inv", "tracing-cust").await;
    let invitee = TestUser::new("traced-invitee");
    invite(
        &cluster,
        &partner.owner,
        &customer.name,
        &invitee.email,
        Role::Employee,
    )
    .await
    .expect("invite");

    let root_name = "tenantry.invitation.v1.InvitationService/CreateInvitation";
    let mail_span = if smtp.is_some() {
        "smtp.send"
    } else {
        "mail.write_file"
    };
    let (root, trace) = trace_of(root_name, |trace| {
        has(trace, mail_span, SpanKind::Internal) || has(trace, mail_span, SpanKind::Client)
    })
    .await;
    assert_connected(&trace, &root);

    // The authorization check crossed a gRPC hop inside the same trace.
    let authorize = "tenantry.membership.v1.MembershipService/Authorize";
    assert!(has(&trace, authorize, SpanKind::Client), "{trace:#?}");
    assert!(has(&trace, authorize, SpanKind::Server), "{trace:#?}");
    let server = trace
        .iter()
        .find(|span| span.name == authorize && span.span_kind == SpanKind::Server)
        .expect("Authorize server span");
    assert!(
        server.parent_span_is_remote,
        "the callee's span is a child of the caller's client span, from the traceparent header"
    );

    // CreateInvitation → invitation.created publish (relay) → process (mailer) → SMTP send.
    let send = trace
        .iter()
        .find(|span| span.name == mail_span)
        .expect("the mail span");
    let chain = ancestry(&trace, &root, send);
    let expected = [
        mail_span,
        "invitation.created process",
        "invitation.created publish",
        root_name,
    ];
    let names: Vec<&str> = chain.iter().map(String::as_str).collect();
    for name in expected {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The mailer's consumer span (the audit log consumes the same event in a span of its own).
    let process = trace
        .iter()
        .find(|span| {
            span.name == "invitation.created process"
                && attribute(span, "messaging.consumer.group.name").as_deref()
                    == Some("tenantry.invitation.mailer")
        })
        .expect("the mailer's consumer span");
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        attribute(process, "messaging.consumer.group.name").as_deref(),
        Some("tenantry.invitation.mailer")
    );
    let publish = trace
        .iter()
        .find(|span| span.name == "invitation.created publish")
        .expect("producer span");
    assert_eq!(publish.span_kind, SpanKind::Producer);
    eprintln!(
        "CreateInvitation trace {}: {} spans, mail path {:?}",
        root.span_context.trace_id(),
        trace.len(),
        chain
    );

    if let Some(smtp) = smtp {
        smtp.wait_for(&invitee.email, 1, Duration::from_secs(10))
            .await;
        smtp.stop().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_to_fan_out_pages_is_one_trace() {
    if !tenantry_e2e::in_own_process(module_path!(), "send_message_to_fan_out_pages_is_one_trace") {
        return;
    }
    exporter();
    let (cluster, smtp) = start_cluster().await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "tracing-msg", "tracing-msg-cust").await;
    let customer_id = customer.name.trim_start_matches("accounts/").to_string();
    // Enough members for several ListMembers pages.
    load_members(&cluster, &customer_id, "traced-member", 1200).await;
    send_message(
        &cluster,
        &partner.owner,
        &partner.account.name,
        &[customer.name.as_str()],
        "Traced maintenance",
        ReadPolicy::AllMustRead,
    )
    .await
    .expect("send");

    let root_name = "tenantry.notification.v1.NotificationService/SendMessage";
    let list_members = "tenantry.membership.v1.MembershipService/ListMembers";
    let (root, trace) = trace_of(root_name, |trace| {
        // Every page of the job has its ListMembers server span and its inbox.changed event.
        let pages = trace
            .iter()
            .filter(|span| span.name == list_members && span.span_kind == SpanKind::Server)
            .count();
        pages >= 2 && has(trace, "fanout.job", SpanKind::Internal)
    })
    .await;
    assert_connected(&trace, &root);
    let page = trace
        .iter()
        .find(|span| span.name == list_members && span.span_kind == SpanKind::Server)
        .expect("a ListMembers page");
    let chain = ancestry(&trace, &root, page);
    let names: Vec<&str> = chain.iter().map(String::as_str).collect();
    for name in [
        list_members,
        "fanout.job",
        "message.sent process",
        "message.sent publish",
        root_name,
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    eprintln!(
        "SendMessage trace {}: {} spans, page path {:?}",
        root.span_context.trace_id(),
        trace.len(),
        chain
    );
    cluster.stop().await;
    if let Some(smtp) = smtp {
        smtp.stop().await;
    }
}
