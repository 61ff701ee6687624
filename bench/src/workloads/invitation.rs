//! Invitation to e-mail: `CreateInvitation` by an ADMIN of a customer, timed until the SMTP
//! server has the e-mail (transaction with outbox row → relay publishes with confirms →
//! RabbitMQ quorum queue → mailer: load, account name from the registry, mint the secret,
//! render, SMTP, commit → ack). Ceiling: the same transport steps without Tenantry — publish a
//! persistent message with confirm to a quorum queue, consume it (same prefetch as the
//! cluster's consumers), send an e-mail of similar size with lettre to the same SMTP server,
//! ack. Both keep the same number of messages in flight, each timed from start to receipt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use lettre::Message;
use lettre::message::{MultiPart, SinglePart};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tenantry_proto::invitation::v1::CreateInvitationRequest;
use tenantry_proto::invitation::v1::invitation_service_client::InvitationServiceClient;
use tenantry_proto::membership::v1::{AddMyselfRequest, Role};

use crate::cluster::{Bench, bearer, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};
use crate::smtp_sink::SmtpSink;

/// Longest wait for one e-mail.
const MAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// Measures invitation → e-mail against publish + consume + SMTP.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let customer = bench.create_customer(&format!("iv-{}", bench.tag)).await?;
    bench
        .cluster
        .membership_as(&bench.owner)
        .add_myself(AddMyselfRequest {
            account: customer.clone(),
            ..Default::default()
        })
        .await
        .context("AddMyself")?;
    let token = bearer(&bench.owner)?;
    let client = InvitationServiceClient::new(bench.channel().await?);
    let next = Arc::new(AtomicU64::new(0));
    let workload = {
        let (sink, tag, next) = (bench.sink.clone(), bench.tag.clone(), next.clone());
        move |_n: u64| {
            let mut client = client.clone();
            let address = format!(
                "iv-{tag}-{}@example.com",
                next.fetch_add(1, Ordering::Relaxed)
            );
            let arrived = sink.expect(&address);
            let request = with_token(
                CreateInvitationRequest {
                    parent: customer.clone(),
                    email: address.clone(),
                    given_name: "Ivy".into(),
                    family_name: "Invitee".into(),
                    role: Role::Employee as i32,
                    request_id: String::new(),
                    expire_time: None,
                },
                &token,
            );
            async move {
                client.create_invitation(request).await?;
                tokio::time::timeout(MAIL_TIMEOUT, arrived)
                    .await
                    .with_context(|| format!("no e-mail to {address}"))??;
                Ok(())
            }
        }
    };

    let amqp_url = tenantry_testkit::amqp_url().context("RabbitMQ URL")?;
    let queue = format!("bench-{}.mail-ceiling", bench.tag);
    // The same prefetch as the cluster's consumers.
    let prefetch = bench
        .cluster
        .amqp()
        .context("the invitation workload needs the cluster on RabbitMQ")?
        .prefetch;
    let ceiling = TransportCeiling::start(&amqp_url, &queue, &bench.sink, prefetch).await?;
    let ceiling_op = {
        let (ceiling, tag) = (ceiling.clone(), bench.tag.clone());
        move |_n: u64| {
            let ceiling = ceiling.clone();
            let address = format!(
                "ic-{tag}-{}@example.com",
                next.fetch_add(1, Ordering::Relaxed)
            );
            async move { ceiling.round_trip(&address).await }
        }
    };
    let count = settings.invitations;
    let phase = Phase::counted(settings.in_flight, (count / 10).max(10), count);
    let outcome = load::alternate("invitation → e-mail", 1, phase, ceiling_op, workload).await;
    ceiling.stop().await;
    let (ceiling_measured, measured) = outcome?;
    Ok(Row::rated(
        &format!("invitation → e-mail received ({count} invitations)"),
        &measured,
        &ceiling_measured,
        // Issue 14's goal.
        Goal {
            ratio: 0.3,
            p50: Some(Duration::from_millis(50)),
            p99: None,
        },
        format!(
            "ceiling p50 {:.2} ms, p99 {:.2} ms; {} e-mails received in all",
            super::get_account::ms(ceiling_measured.quantile(0.5)),
            super::get_account::ms(ceiling_measured.quantile(0.99)),
            bench.sink.received()
        ),
    ))
}

/// Publish with confirm → quorum queue → consumer → SMTP, without Tenantry.
#[derive(Clone)]
struct TransportCeiling {
    connection: Arc<Connection>,
    publisher: lapin::Channel,
    queue: ShortString,
    sink: SmtpSink,
}

impl TransportCeiling {
    async fn start(url: &str, queue: &str, sink: &SmtpSink, prefetch: u16) -> anyhow::Result<Self> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
        );
        let queue = ShortString::from(queue);
        publisher
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        let consumer_channel = connection.create_channel().await?;
        consumer_channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = consumer_channel
            .basic_consume(
                queue.clone(),
                ShortString::from("bench-ceiling"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let smtp_addr = sink.addr();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                tokio::spawn(async move {
                    let address = String::from_utf8_lossy(&delivery.data).to_string();
                    match email_to(&address) {
                        Ok(message) => {
                            if let Err(error) = send_bare(smtp_addr, &message).await {
                                eprintln!("  ceiling: SMTP failed: {error:#}");
                            }
                        }
                        Err(error) => eprintln!("  ceiling: cannot build the e-mail: {error}"),
                    }
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                });
            }
        });
        Ok(Self {
            connection: Arc::new(connection),
            publisher,
            queue,
            sink: sink.clone(),
        })
    }

    async fn round_trip(&self, address: &str) -> anyhow::Result<()> {
        let arrived = self.sink.expect(address);
        let confirmation = self
            .publisher
            .basic_publish(
                ShortString::from(""),
                self.queue.clone(),
                BasicPublishOptions::default(),
                address.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        anyhow::ensure!(!confirmation.is_nack(), "the broker refused the message");
        tokio::time::timeout(MAIL_TIMEOUT, arrived)
            .await
            .with_context(|| format!("no e-mail to {address}"))??;
        Ok(())
    }

    async fn stop(&self) {
        let _ = self
            .publisher
            .queue_delete(self.queue.clone(), QueueDeleteOptions::default())
            .await;
        let _ = self.connection.close(0, "bench done".into()).await;
    }
}

/// lettre's SMTP exchange over a new `TCP_NODELAY` connection, as the mailer does (one
/// connection per e-mail; lettre's own transport would add Nagle's 40 ms stall).
async fn send_bare(addr: std::net::SocketAddr, message: &Message) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut connection =
        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ClientId::default()).await?;
    let sent = connection
        .send(message.envelope(), &message.formatted())
        .await;
    connection.abort().await;
    sent?;
    Ok(())
}

/// An e-mail of about the size of an invitation (text and HTML alternatives with a link).
fn email_to(address: &str) -> anyhow::Result<Message> {
    let link = format!(
        "http://localhost:8080/invitations/accept?token={}",
        "x".repeat(43)
    );
    let text = format!(
        "Hello Ivy,\n\nAlice Admin invited you to join Customer iv as an employee.\n\n\
         Accept the invitation: {link}\n\nThe link works once and expires in 7 days.\n\
         If you did not expect this e-mail, ignore it.\n"
    );
    let html = format!(
        "<!doctype html><html><body><p>Hello Ivy,</p><p>Alice Admin invited you to join \
         <strong>Customer iv</strong> as an employee.</p><p><a href=\"{link}\">Accept the \
         invitation</a></p><p>The link works once and expires in 7 days. If you did not \
         expect this e-mail, ignore it.</p></body></html>"
    );
    Ok(Message::builder()
        .from("Tenantry <no-reply@tenantry.invalid>".parse()?)
        .to(format!("Ivy Invitee <{address}>").parse()?)
        .subject("You are invited to Customer iv")
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html)),
        )?)
}
