//! RabbitMQ stopped for a few seconds while 1,000 invitations are created by several callers at
//! once: every call succeeds (or is UNAVAILABLE and retried with its request_id), and the SMTP
//! server receives exactly 1,000 e-mails — one per invitation, by recipient and by Message-ID —
//! with every invitation SENT.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tenantry_e2e::{create_customer, partner_with_owner};
use tenantry_proto::invitation::v1::{
    CreateInvitationRequest, EmailDeliveryState, Invitation, ListInvitationsRequest,
};
use tenantry_proto::membership::v1::{AddMyselfRequest, Role};
use tenantry_testkit::proxy::TcpProxy;
use tenantry_testkit::smtp::SmtpServer;
use tenantry_testkit::{
    Backend, ClusterOptions, InvitationClient, TestCluster, TestUser, amqp_or_skip,
    postgres_or_skip, smtp_or_skip,
};

use crate::observe::Tally;
use crate::system::{self, Outage};
use crate::{SERIAL, retrying, server_addr, through, via_proxy};

const INVITATIONS: usize = 1_000;
const CUSTOMERS: usize = 4;
/// CreateInvitation calls in flight at once.
const PARALLEL_CALLS: usize = 16;
/// How long RabbitMQ stays stopped.
const BROKER_OUTAGE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_while_1000_invitations_are_created() {
    let _serial = SERIAL.lock().await;
    let (Some(broker), Some(_)) = (amqp_or_skip(), postgres_or_skip()) else {
        eprintln!("skipped: needs TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    if !smtp_or_skip() {
        eprintln!("skipped: aiosmtpd is not installed");
        return;
    }
    let smtp = SmtpServer::start().await;
    let mut options = ClusterOptions::new(Backend::Postgres);
    options.amqp = true;
    options.mail.smtp_url = Some(smtp.url());
    let (proxy, rabbitmq) = if via_proxy() {
        let proxy = Arc::new(TcpProxy::start(server_addr(&broker, 5672)).await);
        options.amqp_url = Some(through(&broker, proxy.addr()));
        (Some(proxy), None)
    } else {
        let Some(rabbitmq) = system::RabbitMq::locate(&broker) else {
            return;
        };
        (None, Some(rabbitmq))
    };
    let cluster = TestCluster::start_with(options).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(&cluster, &operator, "acme", "alice").await;
    let mut customers = Vec::new();
    for index in 0..CUSTOMERS {
        let customer = create_customer(
            &cluster,
            &partner.owner,
            &partner.account.name,
            &format!("customer-{index}"),
        )
        .await
        .expect("create customer");
        cluster
            .membership_as(&partner.owner)
            .add_myself(AddMyselfRequest {
                account: customer.name.clone(),
                ..Default::default()
            })
            .await
            .expect("add myself");
        customers.push(customer.name);
    }
    let requests: Vec<CreateInvitationRequest> = (0..INVITATIONS)
        .map(|index| CreateInvitationRequest {
            parent: customers[index % CUSTOMERS].clone(),
            email: format!("invitee-{index}@example.com"),
            given_name: "Ivy".into(),
            role: Role::Employee as i32,
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .collect();

    // Invitations are created at a steady pace by PARALLEL_CALLS callers…
    let tally = Tally::default();
    let created = Arc::new(AtomicUsize::new(0));
    let creator = tokio::spawn(create_all(
        cluster.invitation_as(&partner.owner),
        requests.clone(),
        tally.clone(),
        created.clone(),
    ));
    // …and about a third of the way through, the broker goes away for BROKER_OUTAGE.
    while created.load(Ordering::SeqCst) < INVITATIONS / 3 {
        assert!(!creator.is_finished(), "the creator stopped early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outage = match (&proxy, rabbitmq) {
        (Some(proxy), _) => Outage::cut("RabbitMQ", proxy.clone()).await,
        (None, Some(rabbitmq)) => rabbitmq.stop().await,
        (None, None) => unreachable!("one way to stop the broker"),
    };
    let (created_at_stop, mailed_at_stop) = (created.load(Ordering::SeqCst), smtp.received().len());
    tokio::time::sleep(BROKER_OUTAGE).await;
    let (created_in_outage, mailed_in_outage) = (
        created.load(Ordering::SeqCst) - created_at_stop,
        smtp.received().len() - mailed_at_stop,
    );
    let down = outage.end().await;
    let invitations = creator.await.expect("creator");
    let all_created = Instant::now();

    assert_eq!(invitations.len(), INVITATIONS);
    let failures = tally.failures();
    assert!(
        failures.keys().all(|code| code == "Unavailable"),
        "every failed CreateInvitation was UNAVAILABLE: {failures:?}"
    );
    assert!(
        created_in_outage > 0,
        "invitations kept being created while the broker was down"
    );

    // Every invitation is mailed once: wait for all, then give duplicates time to show up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while smtp.received().len() < INVITATIONS {
        assert!(
            Instant::now() < deadline,
            "only {} of {INVITATIONS} e-mails arrived",
            smtp.received().len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mailed_after = all_created.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = smtp.received();
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &received {
        *per_recipient.entry(address(&mail.to)).or_default() += 1;
        *per_message_id.entry(mail.message_id.clone()).or_default() += 1;
    }
    let duplicated: Vec<_> = per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} mailed more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    let lost: Vec<_> = requests
        .iter()
        .filter(|request| !per_recipient.contains_key(&request.email))
        .map(|request| &request.email)
        .collect();
    assert!(
        lost.is_empty(),
        "{} never mailed, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(received.len(), INVITATIONS, "one e-mail per invitation");
    assert_eq!(
        per_message_id.len(),
        INVITATIONS,
        "one Message-ID per e-mail"
    );

    // The invitations agree: every one SENT.
    let mut listed = Vec::new();
    for customer in &customers {
        listed.extend(list_invitations(&cluster, &partner.owner, customer).await);
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
        "RabbitMQ {} for {down:.1?}: {INVITATIONS} invitations over {CUSTOMERS} customers \
         ({PARALLEL_CALLS} callers), {created_in_outage} created and {mailed_in_outage} mailed \
         during the outage; calls OK {} / failed {:?}; {} e-mails to {} recipients with {} \
         Message-IDs, all SENT, the last {mailed_after:.1?} after the last invitation; slowest \
         call {:.1?}",
        if via_proxy() { "cut" } else { "stopped" },
        tally.ok(),
        failures,
        received.len(),
        per_recipient.len(),
        per_message_id.len(),
        tally.slowest(),
    );
    cluster.stop().await;
    smtp.stop().await;
}

/// The address of a `To` header (`Name <address>` or a bare address), lower-cased.
fn address(to: &str) -> String {
    let to = to.trim();
    let bare = match (to.rfind('<'), to.rfind('>')) {
        (Some(open), Some(close)) if open < close => &to[open + 1..close],
        _ => to,
    };
    bare.to_lowercase()
}

/// Creates every invitation of `requests` with PARALLEL_CALLS calls in flight, retrying
/// UNAVAILABLE with the same request; counts the ones created in `created`.
async fn create_all(
    client: InvitationClient,
    requests: Vec<CreateInvitationRequest>,
    tally: Tally,
    created: Arc<AtomicUsize>,
) -> Vec<Invitation> {
    futures::stream::iter(requests)
        .map(|request| {
            let (client, tally, created) = (client.clone(), tally.clone(), created.clone());
            async move {
                let invitation = retrying(&tally, || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.create_invitation(request).await }
                })
                .await
                .unwrap_or_else(|status| panic!("create {}: {status:?}", request.email))
                .into_inner()
                .invitation
                .expect("invitation");
                created.fetch_add(1, Ordering::SeqCst);
                invitation
            }
        })
        .buffer_unordered(PARALLEL_CALLS)
        .collect()
        .await
}

async fn list_invitations(
    cluster: &TestCluster,
    actor: &TestUser,
    parent: &str,
) -> Vec<Invitation> {
    let mut invitations = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = cluster
            .invitation_as(actor)
            .list_invitations(ListInvitationsRequest {
                parent: parent.to_string(),
                page_size: 1000,
                page_token,
                states: Vec::new(),
            })
            .await
            .expect("list invitations")
            .into_inner();
        invitations.extend(page.invitations);
        if page.next_page_token.is_empty() {
            return invitations;
        }
        page_token = page.next_page_token;
    }
}
