//! The broker topology of a consumer group, declared (idempotently) every time a consumer
//! (re)connects, so a broker that lost its definitions gets them back:
//!
//! - `{prefix}{exchange}`: durable topic exchange; routing key = event type;
//! - `{prefix}{group}`: durable quorum queue bound with each of the group's routing keys;
//! - `{prefix}{group}.retry.{N}ms`: durable *classic* delay queues, one per delay level of the
//!   retry policy ([`crate::RetryPolicy::delay_levels`]), each with `x-message-ttl` = N: a
//!   failed event is published to the level of its back-off and dead-letters back to the group
//!   queue via the default exchange when it expires. One TTL per queue, because RabbitMQ
//!   expires messages only at a queue's head: with per-message TTLs in one queue, a 30 s wait at
//!   the head held back every shorter retry behind it;
//! - `{prefix}{group}.retry`: the single delay queue of earlier builds (per-message
//!   `expiration`), still declared so what an older replica put there during a rolling upgrade
//!   comes back;
//! - `{prefix}{group}.dead`: durable quorum queue of events that failed for good.
//!
//! [`group_queues`] names them all, for whoever removes a group's queues.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::message::short;
use crate::RetryPolicy;

/// The names of one group's exchange and queues, checked against AMQP's limits once.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) exchange: ShortString,
    pub(crate) queue: ShortString,
    /// The delay queue of earlier builds (drained, no longer published to).
    pub(crate) retry: ShortString,
    /// The delay queues, shortest delay first.
    pub(crate) retry_levels: Vec<(Duration, ShortString)>,
    pub(crate) dead: ShortString,
    pub(crate) bindings: Vec<ShortString>,
}

impl Names {
    pub(crate) fn new(
        prefix: &str,
        exchange: &str,
        group: &str,
        bindings: &[String],
        retry: &RetryPolicy,
    ) -> Result<Self, String> {
        Ok(Self {
            exchange: short(&format!("{prefix}{exchange}"))?,
            queue: short(&format!("{prefix}{group}"))?,
            retry: short(&format!("{prefix}{group}.retry"))?,
            retry_levels: retry
                .delay_levels()
                .into_iter()
                .map(|level| Ok((level, short(&retry_level_name(prefix, group, level))?)))
                .collect::<Result<_, String>>()?,
            dead: short(&format!("{prefix}{group}.dead"))?,
            bindings: bindings
                .iter()
                .map(|binding| short(binding))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The delay queue of `level`, one of the policy's levels (which one a delay waits is
    /// [`RetryPolicy::level_for`]'s rule, not this lookup's).
    pub(crate) fn retry_queue(&self, level: Duration) -> &ShortString {
        self.retry_levels
            .iter()
            .find(|(candidate, _)| *candidate == level)
            .or(self.retry_levels.last())
            .map_or(&self.retry, |(_, name)| name)
    }
}

fn retry_level_name(prefix: &str, group: &str, level: Duration) -> String {
    format!("{prefix}{group}.retry.{}ms", level.as_millis())
}

/// Every queue a consumer group `group` declares under `prefix` with `retry`: the group queue,
/// its delay queues (the current levels and the earlier single one) and its dead letters.
pub fn group_queues(prefix: &str, group: &str, retry: &RetryPolicy) -> Vec<String> {
    let mut queues = vec![format!("{prefix}{group}"), format!("{prefix}{group}.retry")];
    queues.extend(
        retry
            .delay_levels()
            .into_iter()
            .map(|level| retry_level_name(prefix, group, level)),
    );
    queues.push(format!("{prefix}{group}.dead"));
    queues
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
    declare_queue(channel, &names.retry, delay_queue(names, None)).await?;
    for (level, name) in &names.retry_levels {
        declare_queue(channel, name, delay_queue(names, Some(*level))).await?;
    }
    declare_queue(channel, &names.dead, quorum()).await?;
    Ok(())
}

/// The arguments of a delay queue dead-lettering into the group queue; `ttl` for the queue's
/// messages, none for the earlier per-message queue.
fn delay_queue(names: &Names, ttl: Option<Duration>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("classic"));
    arguments.insert("x-dead-letter-exchange".into(), string(""));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        string(names.queue.as_str()),
    );
    if let Some(ttl) = ttl {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
    }
    arguments
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
