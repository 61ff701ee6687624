//! The event transport of a process.

use std::sync::Arc;

use tenantry_platform::server::Shutdown;
use tokio::task::JoinHandle;

use crate::{AmqpBus, AmqpConfig, ConsumerSpec, InProcessBus, Publisher, RetryPolicy};

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

    /// The publisher the relays use.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            Self::InProcess(bus) => bus.publisher(),
            Self::Amqp(bus) => bus.publisher(),
        }
    }

    /// Starts a consumer group (declares its topology first: durable queue bound to the exchange,
    /// "{group}.retry" delay queue dead-lettering back, "{group}.dead" dead-letter queue), running
    /// until shutdown; in-flight handlers finish before it returns.
    pub fn spawn_consumer(&self, spec: ConsumerSpec, shutdown: Shutdown) -> JoinHandle<()> {
        match self {
            Self::InProcess(bus) => bus.spawn_consumer(spec, shutdown),
            Self::Amqp(bus) => bus.spawn_consumer(spec, shutdown),
        }
    }
}
