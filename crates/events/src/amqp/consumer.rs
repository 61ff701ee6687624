//! The consumer runtime over RabbitMQ: one session per connection, reconnecting with back-off.
//!
//! A session opens a channel (confirm mode, prefetch), declares the group's topology, consumes
//! the group queue and handles up to `prefetch` deliveries concurrently. Each delivery is acked
//! only after the handler's transaction committed, or after it was republished — with publisher
//! confirms — to the retry or dead-letter queue; whatever is unacked when a session dies goes
//! back to the queue and is redelivered (idempotency makes that harmless).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use tenantry_platform::error::ErrorChain;
use tenantry_platform::server::Shutdown;
use tokio::task::JoinSet;

use super::topology::{self, Names};
use super::{AmqpBus, BROKER_CALL_TIMEOUT, CHANNEL_CHECK_INTERVAL, message};
use crate::ConsumerSpec;
use crate::consumer::{self, BROKER_BACKOFF, Backoff, Disposition, Outcome};
use crate::error::{ConsumeError, SettleError};
use tenantry_platform::metrics::DeliveryOutcome;

/// Runs `spec`'s consumer until `shutdown`, reconnecting after any broker failure.
pub(super) async fn run(bus: AmqpBus, spec: ConsumerSpec, shutdown: Shutdown) {
    let config = bus.config();
    let names = match Names::new(
        &config.queue_prefix,
        &config.exchange,
        &spec.group,
        &spec.bindings,
        &config.retry,
    ) {
        Ok(names) => names,
        Err(reason) => {
            // A configuration defect: retrying cannot help, and panicking would take the
            // process down; say it loudly instead.
            tracing::error!(group = %spec.group, reason, "consumer not started: invalid names");
            return;
        }
    };
    let spec = Arc::new(spec);
    let mut backoff = Backoff::new(BROKER_BACKOFF.0, BROKER_BACKOFF.1);
    while !shutdown.is_triggered() {
        match session(&bus, &spec, &names, &shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    group = %spec.group, error = %ErrorChain(&error), retry_in = ?delay,
                    "consumer lost the broker; reconnecting"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {},
                    () = shutdown.wait() => {},
                }
            }
        }
    }
    tracing::info!(group = %spec.group, "consumer stopped");
}

/// One connected session; Ok after a clean shutdown, Err when the broker failed.
async fn session(
    bus: &AmqpBus,
    spec: &Arc<ConsumerSpec>,
    names: &Names,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) -> Result<(), ConsumeError> {
    let connection = bus.connection().await?;
    let set_up = async {
        let channel = connection.create_channel().await?;
        // Confirm mode: a delivery is acked only once its republish to the retry or dead-letter
        // queue is confirmed, so a failure never loses the event.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_qos(bus.config().prefetch.max(1), BasicQosOptions::default())
            .await?;
        topology::declare_group(&channel, names).await?;
        let deliveries = channel
            .basic_consume(
                names.queue.clone(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((channel, deliveries))
    };
    let Ok(set_up) = tokio::time::timeout(BROKER_CALL_TIMEOUT, set_up).await else {
        bus.discard(&connection).await;
        return Err(ConsumeError::SetupTimeout(BROKER_CALL_TIMEOUT));
    };
    let (channel, mut deliveries) = set_up?;
    backoff.reset();
    tracing::info!(group = %spec.group, queue = %names.queue, "consuming");

    let mut in_flight = JoinSet::new();
    // Ends the waits of deliveries whose handler waits for its database once this session is
    // over (shutdown, or the channel is gone and its deliveries will come again anyway).
    let session_over = Shutdown::new();
    let mut channel_check = tokio::time::interval(CHANNEL_CHECK_INTERVAL);
    let context = || Context {
        channel: channel.clone(),
        spec: spec.clone(),
        names: names.clone(),
        bus: bus.clone(),
        session_over: session_over.clone(),
    };
    // Deliveries wait here for a batch to fill, at most `batch_linger` after the first.
    let (batch_size, batch_linger) = batching(bus, spec);
    let mut pending: Vec<Delivery> = Vec::new();
    let linger = tokio::time::sleep(batch_linger);
    tokio::pin!(linger);
    let result = loop {
        tokio::select! {
            () = shutdown.wait() => break Ok(()),
            _ = channel_check.tick() => {
                if !channel.status().connected() || !connection.status().connected() {
                    break Err(ConsumeError::ChannelClosed);
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {},
            () = &mut linger, if !pending.is_empty() => {
                dispatch(&mut in_flight, context(), std::mem::take(&mut pending));
            }
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => {
                    if pending.is_empty() {
                        linger.as_mut().reset(tokio::time::Instant::now() + batch_linger);
                    }
                    pending.push(delivery);
                    if pending.len() >= batch_size {
                        dispatch(&mut in_flight, context(), std::mem::take(&mut pending));
                    }
                }
                Some(Err(error)) => break Err(ConsumeError::Broker(error)),
                None => break Err(ConsumeError::Cancelled),
            },
        }
    };
    // Received deliveries are handled (and acked, if the channel still works) rather than left
    // to the redelivery: the same as the ones already in flight.
    if !pending.is_empty() {
        dispatch(&mut in_flight, context(), std::mem::take(&mut pending));
    }
    if result.is_ok() {
        // Stop new deliveries; the ones in flight finish and are acked on this channel.
        let cancel = channel.basic_cancel(deliveries.tag(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, cancel).await;
    }
    session_over.trigger();
    while in_flight.join_next().await.is_some() {}
    if result.is_ok() {
        // Every delivery received was started at once; those the client still buffered after
        // the cancel were never acknowledged and return to the queue with the channel.
        let close = channel.close(200, "consumer stopped".into());
        let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, close).await;
    }
    result
}

/// The batch size and linger of `spec`'s consumer: one at a time, at once, for a handler that
/// does not handle batches.
fn batching(bus: &AmqpBus, spec: &ConsumerSpec) -> (usize, Duration) {
    let config = bus.config();
    if spec.handler.handles_batches() && !spec.handler.prepare_is_final() && config.batch_size > 1 {
        (config.batch_size, config.batch_linger)
    } else {
        (1, Duration::ZERO)
    }
}

/// Hands `deliveries` to a task of their own: one alone, or several as a batch.
fn dispatch(in_flight: &mut JoinSet<()>, context: Context, mut deliveries: Vec<Delivery>) {
    if deliveries.len() == 1 {
        let delivery = deliveries.pop().expect("one delivery");
        in_flight.spawn(async move { context.handle(delivery).await });
    } else {
        in_flight.spawn(async move { context.handle_batch(deliveries).await });
    }
}

/// What a delivery task needs.
struct Context {
    channel: Channel,
    spec: Arc<ConsumerSpec>,
    names: Names,
    bus: AmqpBus,
    session_over: Shutdown,
}

impl Context {
    /// Several deliveries in one transaction (see `consumer/batch.rs`); the ones the batch left
    /// out (malformed, or failed) are handled one by one afterwards.
    async fn handle_batch(self, deliveries: Vec<Delivery>) {
        let group = &self.spec.group;
        let mut decoded = Vec::with_capacity(deliveries.len());
        let mut alone = Vec::new();
        for delivery in deliveries {
            match message::event(
                delivery.routing_key.as_str(),
                &delivery.properties,
                &delivery.data,
            ) {
                Ok(event) => decoded.push((delivery, event)),
                Err(_) => alone.push(delivery),
            }
        }
        let events: Vec<&crate::Event> = decoded.iter().map(|(_, event)| event).collect();
        let spec = &self.spec;
        let outcomes = consumer::batch::process_batch(
            group,
            &spec.database,
            &*spec.handler,
            spec.outbox.as_ref(),
            &events,
        )
        .await;
        let mut committed = Vec::with_capacity(decoded.len());
        for ((delivery, event), outcome) in decoded.into_iter().zip(outcomes) {
            let Some(outcome) = outcome else {
                alone.push(delivery);
                continue;
            };
            let attempt = message::attempt(&delivery.properties);
            consumer::log_outcome(group, &event, attempt, &outcome);
            consumer::record_outcome(self.bus.metrics(), group, &outcome, None);
            committed.push(delivery);
        }
        // Acked together: each ack is a trip through the connection's I/O task, and one after
        // the other they held the batch's deliveries (and the prefetch window) that much longer.
        // One ack per tag, never `multiple` (another batch's lower tags may not be committed).
        let acks = committed
            .iter()
            .map(|delivery| settle(delivery.ack(BasicAckOptions::default())));
        let settled = futures::future::join_all(acks).await;
        for (delivery, result) in committed.iter().zip(settled) {
            if let Err(error) = result {
                self.unsettled(delivery, &error).await;
            }
        }
        for delivery in alone {
            self.handle_one(delivery).await;
        }
    }

    async fn handle(self, delivery: Delivery) {
        self.handle_one(delivery).await;
    }

    async fn handle_one(&self, delivery: Delivery) {
        let group = &self.spec.group;
        let attempt = message::attempt(&delivery.properties);
        let result = match message::event(
            delivery.routing_key.as_str(),
            &delivery.properties,
            &delivery.data,
        ) {
            Err(reason) => {
                tracing::error!(group, reason, "malformed message; dead-lettered");
                if let Some(metrics) = self.bus.metrics() {
                    metrics.consumer_delivery(group, DeliveryOutcome::Failed);
                    metrics.consumer_dead_letter(group);
                }
                self.dead_letter(&delivery, attempt, &reason).await
            }
            Ok(event) => {
                let spec = &self.spec;
                let outcome = consumer::process(
                    group,
                    &spec.database,
                    &*spec.handler,
                    spec.outbox.as_ref(),
                    &event,
                    attempt,
                    &self.session_over,
                )
                .await;
                let metrics = self.bus.metrics();
                match &outcome {
                    // Unacknowledged: the broker delivers it again once the channel is closed.
                    Outcome::Interrupted => Ok(()),
                    Outcome::Handled | Outcome::Duplicate | Outcome::UnknownType => {
                        consumer::record_outcome(metrics, group, &outcome, None);
                        settle(delivery.ack(BasicAckOptions::default())).await
                    }
                    Outcome::Failed(error) => {
                        let disposition = self.bus.config().retry.after_failure(attempt, error);
                        consumer::record_outcome(metrics, group, &outcome, Some(&disposition));
                        consumer::report_failure(
                            &spec.database,
                            &*spec.handler,
                            &event,
                            attempt,
                            error,
                            &disposition,
                        )
                        .await;
                        match disposition {
                            Disposition::Retry {
                                next_attempt,
                                delay,
                            } => self.retry(&delivery, next_attempt, delay).await,
                            Disposition::Dead => {
                                tracing::error!(
                                    group, event_id = %event.id, event_type = %event.event_type,
                                    attempt, error = %ErrorChain(error),
                                    "event dead-lettered to {}", self.names.dead
                                );
                                self.dead_letter(&delivery, attempt, &error.to_string())
                                    .await
                            }
                        }
                    }
                }
            }
        };
        if let Err(error) = result {
            self.unsettled(&delivery, &error).await;
        }
    }

    /// After a delivery could not be settled: logs it and gives it back, if the channel still
    /// works, rather than at reconnection.
    async fn unsettled(&self, delivery: &Delivery, error: &SettleError) {
        tracing::warn!(
            group = %self.spec.group, error = %ErrorChain(error),
            "could not settle a delivery; the broker will deliver it again"
        );
        if matches!(error, SettleError::Timeout(_)) {
            // The ack may have reached the broker after all: a nack of the same tag would be a
            // channel error. Closing the channel returns whatever it still holds unacked (the
            // session reconnects), and idempotency absorbs the redelivery.
            let close = self
                .channel
                .close(200, "a delivery could not be settled".into());
            let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, close).await;
            return;
        }
        let _ = settle(delivery.nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        }))
        .await;
    }

    /// Into the delay queue of `delay`'s level, which dead-letters it back to the group queue
    /// once its TTL (the level, never shorter than `delay`) has passed.
    async fn retry(
        &self,
        delivery: &Delivery,
        next_attempt: u32,
        delay: Duration,
    ) -> Result<(), SettleError> {
        let level = self.bus.config().retry.level_for(delay);
        let properties = message::republished(&delivery.properties, next_attempt, None);
        self.republish(self.names.retry_queue(level), delivery, properties)
            .await?;
        settle(delivery.ack(BasicAckOptions::default())).await
    }

    /// Into `{group}.dead`, with the reason in a header for the operator.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        attempt: u32,
        reason: &str,
    ) -> Result<(), SettleError> {
        let properties = message::republished(&delivery.properties, attempt, Some(reason));
        self.republish(&self.names.dead, delivery, properties)
            .await?;
        settle(delivery.ack(BasicAckOptions::default())).await
    }

    /// Publishes a copy to `queue` through the default exchange and waits for the confirm.
    async fn republish(
        &self,
        queue: &ShortString,
        delivery: &Delivery,
        properties: BasicProperties,
    ) -> Result<(), SettleError> {
        let publish = async {
            self.channel
                .basic_publish(
                    ShortString::from(""),
                    queue.clone(),
                    // Mandatory: if the queue is gone the broker returns the message instead of
                    // silently dropping it, and the delivery is not acked.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = tokio::time::timeout(BROKER_CALL_TIMEOUT, publish)
            .await
            .map_err(|_| SettleError::Timeout(BROKER_CALL_TIMEOUT))??;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(SettleError::Unroutable(queue.to_string())),
            Confirmation::Nack(_) => Err(SettleError::Nacked(queue.to_string())),
        }
    }
}

/// Waits for an ack or nack to be sent, at most [`BROKER_CALL_TIMEOUT`].
async fn settle<T>(
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<(), SettleError> {
    tokio::time::timeout(BROKER_CALL_TIMEOUT, call)
        .await
        .map_err(|_| SettleError::Timeout(BROKER_CALL_TIMEOUT))?
        .map(drop)
        .map_err(Into::into)
}
