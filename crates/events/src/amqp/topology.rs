//! The broker topology of a consumer group, declared (idempotently) every time a consumer
//! (re)connects, so a broker that lost its definitions gets them back:
//!
//! - `{prefix}{exchange}`: durable topic exchange; routing key = event type;
//! - `{prefix}{group}`: durable quorum queue bound with each of the group's routing keys;
//! - `{prefix}{group}.retry`: durable *classic* delay queue (quorum queues ignore per-message
//!   TTL): a failed event is published there with `expiration` = its back-off and dead-letters
//!   back to the group queue via the default exchange when it expires;
//! - `{prefix}{group}.dead`: durable quorum queue of events that failed for good.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::message::short;

/// The names of one group's exchange and queues, checked against AMQP's limits once.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) exchange: ShortString,
    pub(crate) queue: ShortString,
    pub(crate) retry: ShortString,
    pub(crate) dead: ShortString,
    pub(crate) bindings: Vec<ShortString>,
}

impl Names {
    pub(crate) fn new(
        prefix: &str,
        exchange: &str,
        group: &str,
        bindings: &[String],
    ) -> Result<Self, String> {
        Ok(Self {
            exchange: short(&format!("{prefix}{exchange}"))?,
            queue: short(&format!("{prefix}{group}"))?,
            retry: short(&format!("{prefix}{group}.retry"))?,
            dead: short(&format!("{prefix}{group}.dead"))?,
            bindings: bindings
                .iter()
                .map(|binding| short(binding))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Declares the durable topic exchange events are published to.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &ShortString,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.clone(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares the exchange and the group's three queues, and binds the group queue.
pub(crate) async fn declare_group(channel: &Channel, names: &Names) -> Result<(), lapin::Error> {
    declare_exchange(channel, &names.exchange).await?;
    declare_queue(channel, &names.queue, quorum()).await?;
    for binding in &names.bindings {
        channel
            .queue_bind(
                names.queue.clone(),
                names.exchange.clone(),
                binding.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let mut retry = FieldTable::default();
    retry.insert("x-queue-type".into(), string("classic"));
    retry.insert("x-dead-letter-exchange".into(), string(""));
    retry.insert(
        "x-dead-letter-routing-key".into(),
        string(names.queue.as_str()),
    );
    declare_queue(channel, &names.retry, retry).await?;
    declare_queue(channel, &names.dead, quorum()).await?;
    Ok(())
}

async fn declare_queue(
    channel: &Channel,
    name: &ShortString,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            name.clone(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    Ok(())
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}
