//! The event transport of a process.

use std::sync::Arc;

use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;
use tokio::task::JoinHandle;

use crate::{
    AmqpBus, AmqpConfig, ConsumerSpec, InProcessBus, Publisher, RetryPolicy, Subscription,
};

/// The event transport of a process: RabbitMQ in production, in-process for `tenantry up`.
#[derive(Clone, Debug)]
pub enum EventBus {
    /// Everything in this process (the embedded default).
    InProcess(InProcessBus),
    /// RabbitMQ.
    Amqp(AmqpBus),
}

impl EventBus {
    /// An in-process bus retrying failed events by `retry`.
    pub fn in_process(retry: RetryPolicy) -> Self {
        Self::InProcess(InProcessBus::new(retry))
    }

    /// A RabbitMQ bus; connects lazily, reconnects after broker restarts.
    pub fn amqp(config: AmqpConfig) -> Self {
        Self::Amqp(AmqpBus::new(config))
    }

    /// Records consumer metrics (`tenantry_consumer_deliveries_total`,
    /// `tenantry_consumer_retries_total`, `tenantry_consumer_dead_letters_total`) in `metrics`
    /// (default: none). Call before spawning consumers.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        match self {
            Self::InProcess(bus) => Self::InProcess(bus.with_metrics(metrics)),
            Self::Amqp(bus) => Self::Amqp(bus.with_metrics(metrics)),
        }
    }

    /// The publisher the relays use.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            Self::InProcess(bus) => bus.publisher(),
            Self::Amqp(bus) => bus.publisher(),
        }
    }

    /// Starts a consumer group (declares its topology first: durable queue bound to the exchange,
    /// "{group}.retry.{N}ms" delay queues dead-lettering back, "{group}.dead" dead-letter queue;
    /// see `amqp/topology.rs`), running until shutdown; in-flight handlers finish before it
    /// returns.
    pub fn spawn_consumer(&self, spec: ConsumerSpec, shutdown: Shutdown) -> JoinHandle<()> {
        match self {
            Self::InProcess(bus) => bus.spawn_consumer(spec, shutdown),
            Self::Amqp(bus) => bus.spawn_consumer(spec, shutdown),
        }
    }

    /// A broadcast subscription for live pushes (e.g. `WatchInbox`): every event published from
    /// now on whose type matches one of `bindings` (routing keys; `*` = one word, `#` = zero or
    /// more), delivered to THIS process — every replica (every subscription) gets its own copy,
    /// unlike a consumer group whose replicas share the work.
    ///
    /// - RabbitMQ: a per-subscription exclusive, auto-delete, non-durable classic queue
    ///   `{prefix}{name}.{uuid}` bound with `bindings`, consumed with auto-ack (no
    ///   redelivery). After a broker failure it reconnects with back-off and binds a new queue;
    ///   events published meanwhile are missed (subscribers resynchronise from the database,
    ///   e.g. `WatchInbox` clients get a fresh snapshot).
    /// - In-process: a copy of every matching event as it is published.
    ///
    /// `name` (e.g. `tenantry.notification.inbox`) names the queue and appears in logs.
    /// Events are buffered up to 1024; beyond that new ones are dropped with a warning rather
    /// than holding up the broker. [`Subscription::ready`] completes once the subscription is
    /// bound (at once in-process; after the queue is declared, bound and consumed on RabbitMQ).
    /// The stream ([`Subscription::events`]) ends (`None`) on `shutdown`; dropping the
    /// subscription stops it. Must be called within a tokio runtime.
    pub fn subscribe(&self, name: &str, bindings: Vec<String>, shutdown: Shutdown) -> Subscription {
        match self {
            Self::InProcess(bus) => bus.subscribe(name, bindings, shutdown),
            Self::Amqp(bus) => bus.subscribe(name, bindings, shutdown),
        }
    }
}
