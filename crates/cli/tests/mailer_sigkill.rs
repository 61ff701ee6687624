//! SIGKILL of `tenantry serve invitation` while 500 invitation e-mails are being sent: after a
//! new process takes over (same database, same queues), every address has exactly one e-mail,
//! or a duplicate of it with the same `Message-ID` — the one documented case, the process dying
//! between the SMTP server's `250` and the commit of SENT — and every invitation is SENT.
//!
//! What it exercises: the mailer's lease (`services/invitation/src/store/mailer.rs`). The
//! deliveries the killed process held return to the queue at once; the new process finds their
//! e-mails claimed by the dead process and waits until those leases lapse
//! (TENANTRY_MAIL_LEASE_SECONDS, 30 s here) before sending them.
//!
//! Real processes: customer-registry and membership (SQLite), invitation on PostgreSQL, and
//! aiosmtpd taking `SMTP_DELAY` before each 250, so many e-mails are mid-exchange at the kill.
//! Needs TENANTRY_TEST_AMQP_URL, TENANTRY_TEST_POSTGRES_URL and aiosmtpd; under CI=true a
//! missing one is a failure.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use support::mailer::MailerCluster;
use support::{aiosmtpd_available, authorized, backend_url};
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::invitation::v1::{
    CreateInvitationRequest, EmailDeliveryState, ListInvitationsRequest,
};
use tenantry_proto::membership::v1::Role;

const JWT_SECRET: &str = "mailer-sigkill-test-secret";
const INTERNAL_SECRET: &str = "mailer-sigkill-internal";
const INVITATIONS: usize = 500;
/// E-mails accepted by the SMTP server before the kill.
const KILL_AFTER: usize = 150;
/// How long the SMTP server takes to accept each message.
const SMTP_DELAY: Duration = Duration::from_millis(100);
const LEASE_SECONDS: u64 = 30;
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_500_emails_are_sent_loses_none_and_duplicates_only_detectably() {
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
        "mailer-sigkill",
        (&amqp, &postgres),
        (JWT_SECRET, INTERNAL_SECRET),
        SMTP_DELAY,
        &[],
        &[("TENANTRY_MAIL_LEASE_SECONDS", LEASE_SECONDS.to_string())],
    )
    .await;
    let smtp = &cluster.smtp;
    let first = cluster.start_invitation("invitation-1").await;
    let token = cluster.operator_token();
    let invitations = InvitationServiceClient::new(first.channel().await);
    let invitees: Vec<String> = (0..INVITATIONS)
        .map(|index| format!("invitee-{index}@globex.example"))
        .collect();
    let created = futures::stream::iter(invitees.iter().cloned())
        .map(|email| {
            let mut client = invitations.clone();
            let token = token.clone();
            async move {
                client
                    .create_invitation(authorized(
                        CreateInvitationRequest {
                            parent: "accounts/globex".into(),
                            email,
                            role: Role::Employee as i32,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(
        created.iter().all(Result::is_ok),
        "every invitation created"
    );

    smtp.wait_for("accepted", KILL_AFTER, Duration::from_secs(60))
        .await;
    first.kill().await;
    let killed_at = Instant::now();
    let at_kill = smtp.events();
    let count = |outcome: &str| at_kill.iter().filter(|e| e.outcome == outcome).count();
    let (begun, accepted) = (count("begin"), count("accepted"));
    assert!(
        accepted < INVITATIONS,
        "the kill came before every e-mail was sent ({accepted} accepted)"
    );

    let second = cluster.start_invitation("invitation-2").await;
    // Every address gets an e-mail: the rest at once, the ones the dead process held once
    // their leases lapsed.
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS * 3 + 60);
    let recipients = || -> BTreeSet<String> {
        smtp.events()
            .into_iter()
            .filter(|event| event.outcome == "accepted")
            .map(|event| event.recipients)
            .collect()
    };
    while recipients().len() < INVITATIONS {
        assert!(
            Instant::now() < deadline,
            "only {} of {INVITATIONS} addresses got an e-mail",
            recipients().len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_mailed_after = killed_at.elapsed();
    // A late duplicate would come within a round of retries; give it time.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let events = smtp.events();
    let mut per_recipient: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for event in events.iter().filter(|event| event.outcome == "accepted") {
        per_recipient
            .entry(event.recipients.as_str())
            .or_default()
            .push(event.message_id.as_str());
    }
    let mut duplicates = 0;
    for email in &invitees {
        let message_ids = per_recipient
            .get(email.as_str())
            .unwrap_or_else(|| panic!("{email} got no e-mail"));
        if message_ids.len() > 1 {
            // The documented case: the same e-mail again, detectable by its Message-ID.
            assert!(
                message_ids.iter().all(|id| *id == message_ids[0]),
                "{email} got two different e-mails: {message_ids:?}"
            );
            duplicates += message_ids.len() - 1;
        }
    }
    // A duplicate needs the kill to land between a 250 and its commit: a few at most.
    let in_flight_at_kill = begun - accepted;
    assert!(
        duplicates <= in_flight_at_kill.max(1),
        "{duplicates} duplicates, more than the {in_flight_at_kill} e-mails in flight"
    );

    // The invitations agree: every one SENT.
    let mut client = InvitationServiceClient::new(second.channel().await);
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_invitations(authorized(
                ListInvitationsRequest {
                    parent: "accounts/globex".into(),
                    page_size: 100,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("list invitations")
            .into_inner();
        listed.extend(page.invitations);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(listed.len(), INVITATIONS);
    let not_sent: Vec<_> = listed
        .iter()
        .filter(|invitation| {
            invitation.delivery.as_ref().map(|delivery| delivery.state)
                != Some(EmailDeliveryState::Sent as i32)
        })
        .map(|invitation| (&invitation.email, &invitation.delivery))
        .collect();
    assert!(not_sent.is_empty(), "not SENT: {not_sent:?}");

    eprintln!(
        "SIGKILL after {accepted} of {INVITATIONS} e-mails accepted ({} begun and not answered); \
         every address mailed {all_mailed_after:.1?} after the kill (lease {LEASE_SECONDS}s); \
         {duplicates} duplicate(s), each with its original's Message-ID",
        begun - accepted
    );
    let (exited_zero, _) = second.terminate(EXIT_TIMEOUT).await;
    assert!(exited_zero, "the second invitation process exited non-zero");
    cluster.stop_peers(EXIT_TIMEOUT).await;
}
