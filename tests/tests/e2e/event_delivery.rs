//! No event is lost and none is acted on twice: invitations created while RabbitMQ is
//! unreachable are all mailed exactly once when it is back; a handler that keeps failing ends
//! in the dead-letter queue with the failure visible on the invitation; and a redelivered
//! event sends no second e-mail. Runs against the real RabbitMQ and a real SMTP server.

use std::net::SocketAddr;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tenantry_e2e::{invite, partner_admin_in_customer};
use tenantry_proto::invitation::v1::{EmailDeliveryState, GetInvitationRequest, Invitation};
use tenantry_proto::membership::v1::Role;
use tenantry_testkit::proxy::TcpProxy;
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{
    Backend, ClusterOptions, TestCluster, TestUser, amqp_or_skip, smtp_or_skip,
};

/// The broker URL, or `None` (test skipped) when RabbitMQ or aiosmtpd is not available here;
/// under `CI=true` both are required.
fn backends() -> Option<String> {
    // Both asked (no short circuit), so the notice names every suite that is missing.
    let (url, aiosmtpd) = (amqp_or_skip(), smtp_or_skip());
    url.filter(|_| aiosmtpd)
}

/// `host:port` of an `amqp://user:pass@host:port/vhost` URL.
fn broker_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let host = rest.rsplit_once('@').map(|(_, host)| host).unwrap_or(rest);
    let host = host.split('/').next().unwrap_or(host);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5672")
    };
    host.replace("localhost", "127.0.0.1")
        .parse()
        .expect("broker address")
}

async fn delivery_of(cluster: &TestCluster, actor: &TestUser, name: &str) -> Invitation {
    cluster
        .invitation_as(actor)
        .get_invitation(GetInvitationRequest {
            name: name.to_string(),
        })
        .await
        .expect("get invitation")
        .into_inner()
        .invitation
        .expect("invitation")
}

/// Sends the services' warnings (and the mailer's and the consumers' progress) to the test's
/// output, which the harness shows only when the test fails: an outage test that fails on a
/// loaded machine must say why. Other tests of this binary that log are captured alike (their
/// threads write to their own test's output); the tests that install a subscriber of their own
/// run in a child process.
fn show_logs_if_failing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,tenantry_invitation=info,tenantry_events=info,lapin=off",
        ))
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_made_while_the_broker_is_down_are_mailed_exactly_once() {
    show_logs_if_failing();
    let Some(broker) = backends() else {
        eprintln!("skipped: needs RabbitMQ and aiosmtpd (see .ci/run)");
        return;
    };
    let smtp = SmtpServer::start().await;
    let proxy = TcpProxy::start(broker_addr(&broker)).await;
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.amqp = true;
    options.amqp_url = Some(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    options.mail.smtp_url = Some(smtp.url());
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;

    proxy.cut().await;
    const INVITES: usize = 25;
    let addresses: Vec<String> = (0..INVITES)
        .map(|index| format!("outage-{index}@example.com"))
        .collect();
    let mut names = Vec::with_capacity(INVITES);
    for address in &addresses {
        let invitation = invite(
            &cluster,
            &partner.owner,
            &customer.name,
            address,
            Role::Employee,
        )
        .await
        .expect("creating an invitation needs no broker");
        names.push(invitation.name);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        smtp.received().is_empty(),
        "nothing can be mailed while the broker is unreachable"
    );

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while smtp.received().len() < INVITES {
        if tokio::time::Instant::now() >= deadline {
            let mut states = Vec::new();
            for name in &names {
                let delivery = delivery_of(&cluster, &partner.owner, name).await.delivery;
                states.push(format!("{name}: {delivery:?}"));
            }
            panic!(
                "only {} of {INVITES} e-mails arrived after the broker came back; deliveries:\n{}",
                smtp.received().len(),
                states.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give duplicates a chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = smtp.received();
    assert_eq!(received.len(), INVITES, "exactly one e-mail per invitation");
    for address in &addresses {
        assert_eq!(
            received
                .iter()
                .filter(|mail| mail.to.contains(address.as_str()))
                .count(),
            1,
            "{address}"
        );
    }
    cluster.stop().await;
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_keeps_failing_ends_in_the_dead_letter_queue() {
    let Some(broker) = backends() else {
        eprintln!("skipped: needs RabbitMQ and aiosmtpd (see .ci/run)");
        return;
    };
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("port")
        .port();
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.amqp = true;
    options.mail.smtp_url = Some(format!("smtp://127.0.0.1:{closed_port}"));
    let max_attempts = options.retry.max_attempts;
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;
    let invitation = invite(
        &cluster,
        &partner.owner,
        &customer.name,
        "dlq@example.com",
        Role::Employee,
    )
    .await
    .expect("invite");

    // The failure is visible on the invitation: FAILED, with every attempt counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let current = delivery_of(&cluster, &partner.owner, &invitation.name).await;
        let delivery = current.delivery.clone().unwrap_or_default();
        if delivery.state == EmailDeliveryState::Failed as i32 {
            break delivery;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery never failed for good: {delivery:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.attempts, max_attempts as i32);
    assert!(!failed.failure_reason.is_empty());

    // And the event waits in the dead-letter queue for an operator.
    let amqp = cluster.amqp().expect("broker settings").clone();
    let connection = lapin::Connection::connect(&broker, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let dead_queue = format!("{}tenantry.invitation.mailer.dead", amqp.queue_prefix);
    let mut dead = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dead.is_none() && tokio::time::Instant::now() < deadline {
        dead = channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get");
        if dead.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let dead = dead.expect("a dead letter");
    let event_type = dead
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("cloudEvents_type").cloned());
    assert!(
        matches!(&event_type, Some(lapin::types::AMQPValue::LongString(value))
            if value.as_bytes() == b"invitation.created"),
        "the dead letter is the invitation.created event: {event_type:?}"
    );
    dead.ack(BasicAckOptions::default()).await.expect("ack");
    let _ = connection.close(0, "done".into()).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_sends_no_second_email() {
    let Some(broker) = backends() else {
        eprintln!("skipped: needs RabbitMQ and aiosmtpd (see .ci/run)");
        return;
    };
    let smtp = SmtpServer::start().await;
    let mut options = ClusterOptions::new(Backend::Sqlite);
    options.amqp = true;
    options.mail.smtp_url = Some(smtp.url());
    let cluster = TestCluster::start_with(options).await;
    let amqp = cluster.amqp().expect("broker settings").clone();
    let operator = TestUser::operator("ops");
    let (partner, customer) =
        partner_admin_in_customer(&cluster, &operator, "acme", "globex").await;

    // A tap on the cluster's exchange keeps a copy of every invitation.created message.
    let connection = lapin::Connection::connect(&broker, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let exchange = format!("{}{}", amqp.queue_prefix, amqp.exchange);
    let tap = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    channel
        .queue_bind(
            tap.name().clone(),
            exchange.as_str().into(),
            "invitation.created".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind tap");

    let bob = TestUser::new("bob");
    invite(
        &cluster,
        &partner.owner,
        &customer.name,
        &bob.email,
        Role::Employee,
    )
    .await
    .expect("invite");
    smtp.wait_for(&bob.email, 1, Duration::from_secs(30)).await;
    let mut copy = None;
    for _ in 0..200 {
        copy = channel
            .basic_get(tap.name().clone(), BasicGetOptions::default())
            .await
            .expect("basic_get");
        if copy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let copy = copy.expect("the tap saw the event");

    // The broker delivers the same event again (as after a consumer crash before its ack).
    channel
        .basic_publish(
            exchange.as_str().into(),
            "invitation.created".into(),
            BasicPublishOptions::default(),
            &copy.data,
            copy.properties.clone(),
        )
        .await
        .expect("publish")
        .await
        .expect("published");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.received_by(&bob.email).len(),
        1,
        "the redelivered event is recognised by its id and mails nothing"
    );
    let _ = connection.close(0, "done".into()).await;
    cluster.stop().await;
    smtp.stop().await;
}
