//! Broadcast subscriptions over RabbitMQ: one session per connection, reconnecting with
//! back-off, each session on its own exclusive queue.
//!
//! A session opens a channel on the bus's shared connection, declares a fresh queue
//! `{prefix}{name}.{uuid}` — classic, non-durable, exclusive (gone with the connection) and
//! auto-delete (gone once its consumer is cancelled) — binds it to the exchange with each
//! binding and consumes it without acks. After a failure the next session declares a new
//! queue: events published in between are missed, which live pushes tolerate.

use std::time::Duration;

use futures::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use tenantry_platform::error::ErrorChain;
use tenantry_platform::server::Shutdown;
use uuid::Uuid;

use super::message::{self, short};
use super::{AmqpBus, BROKER_CALL_TIMEOUT, CHANNEL_CHECK_INTERVAL, topology};
use crate::broadcast::{Feed, Offer};
use crate::consumer::{BROKER_BACKOFF, Backoff};
use crate::error::ConsumeError;

/// How long closing a finished session's channel may take (the connection may be dead).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The checked names of a subscription: its exchange, queue name stem and bindings.
#[derive(Debug)]
pub(super) struct Names {
    exchange: ShortString,
    /// `{prefix}{exchange}.control`: where control bindings (`tenantry.…`) are bound.
    control_exchange: ShortString,
    /// `{prefix}{name}.`; each session appends a fresh uuid.
    stem: String,
    bindings: Vec<ShortString>,
}

impl Names {
    pub(super) fn new(
        prefix: &str,
        exchange: &str,
        name: &str,
        bindings: &[String],
    ) -> Result<Self, String> {
        let stem = format!("{prefix}{name}.");
        // Checked once with a placeholder of the uuid's length, so sessions cannot fail on it.
        short(&format!("{stem}{}", Uuid::nil().simple()))?;
        Ok(Self {
            exchange: short(&format!("{prefix}{exchange}"))?,
            control_exchange: short(&format!("{prefix}{exchange}.control"))?,
            stem,
            bindings: bindings
                .iter()
                .map(|binding| short(binding))
                .collect::<Result<_, _>>()?,
        })
    }

    fn fresh_queue(&self) -> ShortString {
        ShortString::from(format!("{}{}", self.stem, Uuid::new_v4().simple()))
    }
}

/// Feeds `feed` until `shutdown` or until the subscriber is gone, reconnecting after any broker
/// failure; dropping `feed` at the end ends the subscriber's stream.
pub(super) async fn run(bus: AmqpBus, names: Names, mut feed: Feed, shutdown: Shutdown) {
    let mut backoff = Backoff::new(BROKER_BACKOFF.0, BROKER_BACKOFF.1);
    while !shutdown.is_triggered() {
        match session(&bus, &names, &mut feed, &shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(error) => {
                feed.set_ready(false);
                let delay = backoff.next_delay();
                tracing::warn!(
                    subscription = %feed.name, error = %ErrorChain(&error), retry_in = ?delay,
                    "subscription lost the broker; reconnecting (events meanwhile are missed)"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {},
                    () = shutdown.wait() => {},
                    () = feed.closed() => break,
                }
            }
        }
    }
    feed.set_ready(false);
    tracing::info!(subscription = %feed.name, "subscription stopped");
}

/// One connected session on its own queue; Ok when the subscription is over (shutdown or the
/// subscriber is gone), Err when the broker failed or cancelled the consumer.
async fn session(
    bus: &AmqpBus,
    names: &Names,
    feed: &mut Feed,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) -> Result<(), ConsumeError> {
    // Connecting may take a while (up to its timeout); nothing exists on the broker yet, so
    // giving up on it at shutdown leaves nothing behind.
    let connection = tokio::select! {
        () = shutdown.wait() => return Ok(()),
        () = feed.closed() => return Ok(()),
        connection = bus.connection() => connection?,
    };
    let Ok(channel) = tokio::time::timeout(BROKER_CALL_TIMEOUT, connection.create_channel()).await
    else {
        bus.discard(&connection).await;
        return Err(ConsumeError::SetupTimeout(BROKER_CALL_TIMEOUT));
    };
    let channel = channel?;
    let result = consume(&channel, names, feed, shutdown, backoff).await;
    // Closing the channel cancels its consumer (if any): the exclusive, auto-delete queue goes
    // away. After a failure the channel is probably gone already; try anyway, not for long.
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        channel.close(200, "subscription stopped".into()),
    )
    .await;
    result
}

async fn consume(
    channel: &Channel,
    names: &Names,
    feed: &mut Feed,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) -> Result<(), ConsumeError> {
    let queue = names.fresh_queue();
    let set_up = async {
        topology::declare_exchange(channel, &names.exchange).await?;
        topology::declare_exchange(channel, &names.control_exchange).await?;
        let mut arguments = FieldTable::default();
        // Explicitly classic: a broker defaulting to quorum queues would refuse an exclusive one.
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(b"classic".to_vec())),
        );
        channel
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        for binding in &names.bindings {
            channel
                .queue_bind(
                    queue.clone(),
                    if crate::view_feed::is_control(binding.as_str()) {
                        names.control_exchange.clone()
                    } else {
                        names.exchange.clone()
                    },
                    binding.clone(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let deliveries = channel
            .basic_consume(
                queue.clone(),
                ShortString::from(""),
                BasicConsumeOptions {
                    // Auto-ack: live pushes are never redelivered.
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>(deliveries)
    };
    let mut deliveries = tokio::time::timeout(BROKER_CALL_TIMEOUT, set_up)
        .await
        .map_err(|_| ConsumeError::SetupTimeout(BROKER_CALL_TIMEOUT))??;
    backoff.reset();
    feed.set_ready(true);
    tracing::info!(subscription = %feed.name, %queue, "subscription bound");

    let mut channel_check = tokio::time::interval(CHANNEL_CHECK_INTERVAL);
    let result = loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => break Ok(()),
            () = feed.closed() => break Ok(()),
            _ = channel_check.tick() => {
                if !channel.status().connected() {
                    break Err(ConsumeError::ChannelClosed);
                }
            }
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => {
                    let event = message::event(
                        delivery.routing_key.as_str(),
                        &delivery.properties,
                        &delivery.data,
                    );
                    match event {
                        Ok(event) => {
                            if feed.offer(event) == Offer::Closed {
                                break Ok(());
                            }
                        }
                        Err(reason) => tracing::warn!(
                            subscription = %feed.name, %queue, reason,
                            "malformed message skipped"
                        ),
                    }
                }
                Some(Err(error)) => break Err(ConsumeError::Broker(error)),
                None => break Err(ConsumeError::Cancelled),
            },
        }
    };
    feed.set_ready(false);
    if result.is_ok() {
        // The auto-delete queue goes with its only consumer.
        let cancel = channel.basic_cancel(deliveries.tag(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, cancel).await;
    }
    result
}
