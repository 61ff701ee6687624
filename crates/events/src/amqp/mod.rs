//! The RabbitMQ transport: lapin 4 over tokio, publisher confirms for the relay and for the
//! consumers' republishes, quorum queues, and reconnection with back-off.
//!
//! One AMQP connection per [`AmqpBus`] (shared by its publishers and consumers, each with its
//! own channel). A connection found not connected is replaced on next use; a publisher whose
//! channel failed opens a new one on its next batch; a consumer whose channel or connection
//! failed reconnects, redeclares its topology and consumes again (see `consumer.rs`); a
//! broadcast subscription likewise reconnects, on a new exclusive queue (see `broadcast.rs`).

mod broadcast;
mod consumer;
mod message;
mod topology;

pub use message::event as event_from_amqp;
pub use topology::group_queues;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;
use tokio::task::JoinHandle;

use crate::error::ConnectError;
use crate::{ConsumerSpec, Event, PublishError, Publisher, RetryPolicy, Subscription};

/// How long connecting (TCP, TLS, AMQP handshake) may take before it counts as a failure; a
/// black-holed broker address would otherwise hang the relay and the consumers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long setting up a session (channel, QoS, topology, consume) and settling one delivery
/// (ack, republish and its confirm) may take. lapin has had futures that never resolve when a
/// connection dies at the wrong moment (e.g. a broker stopping); without a bound, one such
/// future would stall a consumer for good instead of making it reconnect.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a session checks that its channel and connection are still open, in case the
/// delivery stream was not ended when they closed.
const CHANNEL_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Deliveries per consumer transaction by default.
pub const DEFAULT_BATCH_SIZE: usize = 16;
/// How long a consumer waits to fill a batch by default.
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(2);

/// How to reach RabbitMQ and name things on it.
#[derive(Clone)]
pub struct AmqpConfig {
    /// e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (`amqps://` uses rustls).
    pub url: String,
    /// The topic exchange, default `tenantry.events` (durable).
    pub exchange: String,
    /// Prepended to every queue and the exchange (default ""; tests isolate themselves with it):
    /// queues are `{prefix}{group}`, the exchange `{prefix}{exchange}`.
    pub queue_prefix: String,
    /// Unacknowledged deliveries per consumer, handled concurrently (default 32).
    pub prefetch: u16,
    /// Retry and dead-letter policy of the consumers.
    pub retry: RetryPolicy,
    /// Most deliveries a consumer handles in one transaction (default 16; 1 = one at a time).
    pub batch_size: usize,
    /// How long a consumer waits for more deliveries to fill a batch after the first arrived
    /// (default 2 ms): the latency it may add to an event, for fewer commits under load.
    pub batch_linger: Duration,
    /// The name this process's connection shows in RabbitMQ's management UI and
    /// `rabbitmqctl list_connections` (the `connection_name` client property), e.g.
    /// `tenantry membership on membership-7f9c (pid 1)` (the base name, the services, the host,
    /// the process; `tenantry` and every service under `tenantry up`): who is who among the
    /// connections. Default `tenantry`.
    pub connection_name: String,
}

/// The URL without its password, so a configuration can be logged.
impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &tenantry_platform::db::redact(&self.url))
            .field("exchange", &self.exchange)
            .field("queue_prefix", &self.queue_prefix)
            .field("prefetch", &self.prefetch)
            .field("retry", &self.retry)
            .field("batch_size", &self.batch_size)
            .field("batch_linger", &self.batch_linger)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
            exchange: "tenantry.events".to_string(),
            queue_prefix: String::new(),
            prefetch: 32,
            retry: RetryPolicy::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_linger: DEFAULT_BATCH_LINGER,
            connection_name: "tenantry".to_string(),
        }
    }
}

impl AmqpConfig {
    /// `config.url` with defaults for everything else. Added for callers that only know the URL.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            ..Self::default()
        }
    }

    fn exchange_name(&self) -> String {
        format!("{}{}", self.queue_prefix, self.exchange)
    }

    /// The exchange of control messages (heartbeats), apart from the events.
    fn control_exchange_name(&self) -> String {
        format!("{}{}.control", self.queue_prefix, self.exchange)
    }
}

/// The RabbitMQ event bus of a process.
#[derive(Clone)]
pub struct AmqpBus {
    shared: Arc<Shared>,
}

struct Shared {
    config: AmqpConfig,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    metrics: std::sync::OnceLock<Metrics>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show the rest only.
        f.debug_struct("AmqpBus")
            .field("exchange", &self.shared.config.exchange)
            .field("queue_prefix", &self.shared.config.queue_prefix)
            .field("prefetch", &self.shared.config.prefetch)
            .field("retry", &self.shared.config.retry)
            .finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// A bus for `config`; connects lazily and reconnects after broker restarts.
    pub fn new(config: AmqpConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                connection: tokio::sync::Mutex::new(None),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Records consumer metrics (deliveries by outcome, retries, dead letters) in `metrics`.
    /// Set once: later calls, and calls on clones of a bus that already has metrics, keep the
    /// first.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.shared.metrics.set(metrics);
        self
    }

    /// The metrics consumers record in, if any.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.shared.metrics.get()
    }

    /// The configuration this bus was made with.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    /// The publisher the relays use (each gets its own confirm channel).
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(AmqpPublisher {
            bus: self.clone(),
            channel: tokio::sync::Mutex::new(None),
        })
    }

    /// Starts a consumer group; see [`crate::EventBus::spawn_consumer`].
    pub fn spawn_consumer(&self, spec: ConsumerSpec, shutdown: Shutdown) -> JoinHandle<()> {
        if let Some(metrics) = self.metrics() {
            metrics.consumer_started(&spec.group);
        }
        tokio::spawn(consumer::run(self.clone(), spec, shutdown))
    }

    /// A broadcast subscription; see [`crate::EventBus::subscribe`]. Runs in a task of its own
    /// on a channel of this bus's connection: an exclusive, auto-delete, non-durable classic
    /// queue `{prefix}{name}.{uuid}` bound to the exchange with each of `bindings`, consumed
    /// with auto-ack; a new such queue after each reconnection. Not bound yet when this
    /// returns: await [`Subscription::ready`] before relying on it.
    pub fn subscribe(&self, name: &str, bindings: Vec<String>, shutdown: Shutdown) -> Subscription {
        let (subscription, feed) = Subscription::new(name);
        let config = self.config();
        match broadcast::Names::new(&config.queue_prefix, &config.exchange, name, &bindings) {
            Ok(names) => {
                tokio::spawn(broadcast::run(self.clone(), names, feed, shutdown));
            }
            Err(reason) => {
                // A configuration defect: retrying cannot help. Dropping the feed ends the
                // subscriber's stream at once.
                tracing::error!(subscription = %name, reason, "subscription not started: invalid names");
            }
        }
        subscription
    }

    /// Gives up on `connection` (it looks open but did not answer in time): the next
    /// [`AmqpBus::connection`] opens a new one, and closing it ends the channels still on it,
    /// whose owners reconnect too.
    pub(crate) async fn discard(&self, connection: &Arc<Connection>) {
        {
            let mut slot = self.shared.connection.lock().await;
            if slot
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, connection))
            {
                *slot = None;
            }
        }
        let close = connection.close(320, "unresponsive; reconnecting".into());
        let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, close).await;
    }

    /// The shared connection, (re)connecting when there is none or it is no longer connected.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, ConnectError> {
        let mut slot = self.shared.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.status().connected()
        {
            return Ok(connection.clone());
        }
        // A broken connection is dropped; its channels and consumers have failed already and
        // their owners come back here for a new one.
        *slot = None;
        let properties = ConnectionProperties::default()
            .with_connection_name(self.shared.config.connection_name.as_str().into());
        let connect = Connection::connect(&self.shared.config.url, properties);
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))??;
        let connection = Arc::new(connection);
        *slot = Some(connection.clone());
        tracing::info!(exchange = %self.shared.config.exchange_name(), "connected to the message broker");
        Ok(connection)
    }
}

/// Publishes on one confirm-mode channel, reopened after any failure.
#[derive(Debug)]
struct AmqpPublisher {
    bus: AmqpBus,
    channel: tokio::sync::Mutex<Option<Channel>>,
}

#[async_trait::async_trait]
impl Publisher for AmqpPublisher {
    async fn publish(&self, batch: &[Event]) -> Result<(), PublishError> {
        // Held for the whole batch: one batch at a time per channel keeps confirms simple.
        let mut slot = self.channel.lock().await;
        let result = self.publish_batch(&mut slot, batch).await;
        if result.is_err() {
            // Whatever failed, the next batch starts from a fresh channel (and, if the
            // connection broke, a fresh connection).
            if let Some(channel) = slot.take() {
                let _ = channel.close(200, "publish failed".into()).await;
            }
        }
        result
    }
}

impl AmqpPublisher {
    async fn publish_batch(
        &self,
        slot: &mut Option<Channel>,
        batch: &[Event],
    ) -> Result<(), PublishError> {
        let channel = self.channel(slot).await?;
        let exchange =
            message::short(&self.bus.config().exchange_name()).map_err(PublishError::Invalid)?;
        let control = message::short(&self.bus.config().control_exchange_name())
            .map_err(PublishError::Invalid)?;
        // Publish the whole batch first, then wait for the confirms: the broker confirms in
        // bulk, so a batch costs about one round trip rather than one per event.
        let mut confirms = Vec::with_capacity(batch.len());
        for event in batch {
            let routing_key = message::short(&event.event_type).map_err(PublishError::Invalid)?;
            let target = if crate::view_feed::is_control(&event.event_type) {
                &control
            } else {
                &exchange
            };
            let confirm = channel
                .basic_publish(
                    target.clone(),
                    routing_key,
                    BasicPublishOptions::default(),
                    &event.payload,
                    message::properties(event),
                )
                .await
                .map_err(|source| PublishError::Publish {
                    event_id: event.id,
                    source,
                })?;
            confirms.push((event.id, confirm));
        }
        for (event_id, confirm) in confirms {
            let confirmation = confirm
                .await
                .map_err(|source| PublishError::Publish { event_id, source })?;
            if confirmation.is_nack() {
                return Err(PublishError::Nacked(event_id));
            }
        }
        Ok(())
    }

    async fn channel(&self, slot: &mut Option<Channel>) -> Result<Channel, PublishError> {
        if let Some(channel) = slot.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let connection = self.bus.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(PublishError::Unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(PublishError::Unavailable)?;
        // Publishing to a missing exchange would close the channel; declaring is idempotent.
        let exchange =
            message::short(&self.bus.config().exchange_name()).map_err(PublishError::Invalid)?;
        topology::declare_exchange(&channel, &exchange)
            .await
            .map_err(PublishError::Unavailable)?;
        let control = message::short(&self.bus.config().control_exchange_name())
            .map_err(PublishError::Invalid)?;
        topology::declare_exchange(&channel, &control)
            .await
            .map_err(PublishError::Unavailable)?;
        *slot = Some(channel.clone());
        Ok(channel)
    }
}
