//! SIGTERM to `tenantry serve invitation` while its mailer is busy sending: the e-mails being
//! sent finish and their deliveries are acknowledged, the process exits 0 within its grace
//! period, and a new process on the same database and queues sends every remaining e-mail —
//! each invitation gets exactly one e-mail, none lost, none twice.
//!
//! Real processes: customer-registry and membership (the mailer reads the account's display name
//! from the registry; invitations are authorized by membership), then two generations of
//! invitation. The SMTP server is aiosmtpd with a handler that takes `SMTP_DELAY` before it
//! answers DATA, so the deliveries being handled stay unacknowledged while the signal lands. It
//! logs when DATA arrived (`begin`) and how it ended: `accepted` (it answered 250) or `abandoned`
//! (the client hung up first, so, as with an MTA that never replied, nothing was delivered).
//! The invitation database is PostgreSQL as in production: the mailer sends inside its
//! transaction, and SQLite's single connection would serialize the sends.
//!
//! Needs TENANTRY_TEST_AMQP_URL, TENANTRY_TEST_POSTGRES_URL and aiosmtpd (`pip install
//! aiosmtpd`); under CI=true a missing one is a failure.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::mailer::MailerCluster;
use support::{SmtpEvent, aiosmtpd_available, authorized, backend_url};
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::invitation::v1::{
    CreateInvitationRequest, EmailDeliveryState, ListInvitationsRequest,
};
use tenantry_proto::membership::v1::Role;

const JWT_SECRET: &str = "consumer-shutdown-test-secret";
const INTERNAL_SECRET: &str = "consumer-shutdown-internal";
/// Invitations created, so e-mails expected.
const INVITATIONS: usize = 12;
/// Unacknowledged deliveries the mailer may hold (TENANTRY_AMQP_PREFETCH): the e-mails in
/// flight when SIGTERM lands.
const PREFETCH: usize = 4;
/// How long the SMTP server takes to accept each message.
const SMTP_DELAY: Duration = Duration::from_millis(1500);
/// TENANTRY_SHUTDOWN_GRACE_SECONDS of every process.
const GRACE_SECONDS: u64 = 5;
/// How long the test waits for an exit after SIGTERM before it fails (the grace is asserted
/// separately).
const EXIT_TIMEOUT: Duration = Duration::from_secs(GRACE_SECONDS * 4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_mails_in_flight_and_a_new_process_sends_the_rest_once() {
    let (Some(amqp), Some(postgres)) = (
        backend_url("TENANTRY_TEST_AMQP_URL"),
        backend_url("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    if !aiosmtpd_available() {
        eprintln!("skipped: aiosmtpd is not installed");
        return;
    }
    // Declared before the invitation processes, so dropped after them: also on a failed
    // assertion.
    let cluster = MailerCluster::start(
        "consumer-shutdown",
        (&amqp, &postgres),
        (JWT_SECRET, INTERNAL_SECRET),
        SMTP_DELAY,
        &[("TENANTRY_SHUTDOWN_GRACE_SECONDS", GRACE_SECONDS.to_string())],
        &[("TENANTRY_AMQP_PREFETCH", PREFETCH.to_string())],
    )
    .await;
    let smtp = &cluster.smtp;
    let prefix = &cluster.resources.prefix;
    let first = cluster.start_invitation("invitation-1").await;
    let token = cluster.operator_token();
    let mut invitations = InvitationServiceClient::new(first.channel().await);
    let invitees: Vec<String> = (0..INVITATIONS)
        .map(|index| format!("invitee-{index}@globex.example"))
        .collect();
    for email in &invitees {
        invitations
            .create_invitation(authorized(
                CreateInvitationRequest {
                    parent: "accounts/globex".into(),
                    email: email.clone(),
                    role: Role::Employee as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("create an invitation");
    }

    // The mailer holds PREFETCH deliveries, each waiting for the slow SMTP server's answer.
    smtp.wait_for("begin", PREFETCH, Duration::from_secs(20))
        .await;
    let in_flight = smtp.count("begin") - smtp.count("accepted");
    let (exited_zero, took) = first.terminate(EXIT_TIMEOUT).await;
    let after_first = smtp.events();
    let count = |events: &[SmtpEvent], outcome: &str| {
        events
            .iter()
            .filter(|event| event.outcome == outcome)
            .count()
    };
    let (begun_first, accepted_first) = (
        count(&after_first, "begin"),
        count(&after_first, "accepted"),
    );
    assert!(exited_zero, "the first invitation process exited non-zero");
    assert!(
        took < Duration::from_secs(GRACE_SECONDS),
        "exit took {took:?}, grace is {GRACE_SECONDS}s"
    );
    assert!(
        in_flight >= 2,
        "several e-mails were in flight at SIGTERM: {in_flight}"
    );
    assert_eq!(
        count(&after_first, "abandoned"),
        0,
        "every e-mail in flight at SIGTERM was finished: {after_first:#?}"
    );
    assert_eq!(
        accepted_first, begun_first,
        "every e-mail begun was accepted"
    );
    assert!(
        accepted_first < INVITATIONS,
        "the first process stopped before sending everything ({accepted_first} sent)"
    );

    // Same database, same queues: the rest (queued, or delivered but unacknowledged) is sent.
    let second = cluster.start_invitation("invitation-2").await;
    smtp.wait_for("accepted", INVITATIONS, Duration::from_secs(30))
        .await;
    // A duplicate would begin within a delivery round; give it one.
    tokio::time::sleep(SMTP_DELAY + Duration::from_millis(500)).await;
    let events = smtp.events();
    let mut per_recipient: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_message_id: BTreeMap<&str, usize> = BTreeMap::new();
    for event in events.iter().filter(|event| event.outcome == "accepted") {
        *per_recipient.entry(event.recipients.as_str()).or_default() += 1;
        *per_message_id.entry(event.message_id.as_str()).or_default() += 1;
    }
    assert_eq!(
        count(&events, "begin"),
        INVITATIONS,
        "no e-mail was sent twice: {events:#?}"
    );
    assert_eq!(count(&events, "abandoned"), 0);
    assert_eq!(
        per_message_id.len(),
        INVITATIONS,
        "one Message-ID per event"
    );
    for email in &invitees {
        assert_eq!(
            per_recipient.get(email.as_str()),
            Some(&1),
            "{email} got exactly one e-mail: {events:#?}"
        );
    }

    // The invitations agree: every one SENT, on the first attempt.
    let listed = InvitationServiceClient::new(second.channel().await)
        .list_invitations(authorized(
            ListInvitationsRequest {
                parent: "accounts/globex".into(),
                page_size: 100,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("list invitations")
        .into_inner()
        .invitations;
    assert_eq!(listed.len(), INVITATIONS);
    for invitation in &listed {
        let delivery = invitation.delivery.clone().unwrap_or_default();
        assert_eq!(
            (delivery.state, delivery.attempts),
            (EmailDeliveryState::Sent as i32, 1),
            "{} {delivery:?}",
            invitation.email
        );
    }

    // Nothing is left in the mailer's queue, and nothing was dead-lettered.
    let connection = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let mailer_group = tenantry_invitation::consumers::MAILER_GROUP;
    for (queue, what) in [
        (format!("{prefix}{mailer_group}"), "queued mail events"),
        (format!("{prefix}{mailer_group}.dead"), "dead letters"),
    ] {
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("the queue exists");
        assert_eq!(declared.message_count(), 0, "{what} in {queue}");
    }

    let (second_exited_zero, second_took) = second.terminate(EXIT_TIMEOUT).await;
    assert!(
        second_exited_zero,
        "the second invitation process exited non-zero"
    );
    eprintln!(
        "SIGTERM with {in_flight} e-mails in flight: first process sent {accepted_first} and exited 0 \
         after {took:?} (grace {GRACE_SECONDS}s); second sent {} more, exited 0 after \
         {second_took:?}; {INVITATIONS} invitations, {INVITATIONS} e-mails, none twice",
        INVITATIONS - accepted_first
    );

    let _ = connection.close(0, "done".into()).await;
    cluster.stop_peers(EXIT_TIMEOUT).await;
}
