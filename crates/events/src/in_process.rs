//! The in-process bus for `tenantry up`: the same outbox, relay and consumer semantics as
//! RabbitMQ with no broker. Routing follows the AMQP topic exchange (a queue bound with several
//! matching keys gets one copy), each consumer group has one queue that its consumers share,
//! failed events come back after the same back-off, and dead letters are kept in memory and
//! logged. Broadcast subscriptions ([`InProcessBus::subscribe`]) get a copy of every matching
//! event as it is published. Nothing survives the process: events already taken from the outbox but not yet
//! handled are lost on exit (the embedded default trades this for needing no broker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tenantry_platform::metrics::Metrics;
use tenantry_platform::server::Shutdown;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::broadcast::{Feed, Offer, Subscription};
use crate::consumer::{self, Disposition, Outcome};
use crate::{ConsumerSpec, Event, PublishError, Publisher, RetryPolicy};

/// An event bus inside one process: topic routing by routing key, one queue per consumer
/// group, retry with back-off, dead letters kept in memory (and logged).
#[derive(Clone, Debug)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    retry: RetryPolicy,
    state: Mutex<State>,
    metrics: std::sync::OnceLock<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    /// Group → its queue. Like a durable queue, it outlives its consumers: events routed while
    /// no consumer runs wait for the next one.
    queues: HashMap<String, Queue>,
    /// Dead letters per group, for operators (logged) and tests.
    dead: HashMap<String, Vec<Event>>,
    /// Live broadcast subscriptions by id; each gets a copy of every matching event.
    subscribers: HashMap<u64, Subscriber>,
    /// The id of the next subscription.
    next_subscriber: u64,
}

#[derive(Debug)]
struct Subscriber {
    bindings: Vec<String>,
    feed: Feed,
}

#[derive(Debug)]
struct Queue {
    bindings: Vec<String>,
    sender: mpsc::UnboundedSender<Message>,
    /// Shared by the group's consumers, which compete for messages.
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
}

#[derive(Debug)]
struct Message {
    event: Event,
    attempt: u32,
}

impl InProcessBus {
    /// A bus retrying failed events by `retry`.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                retry,
                state: Mutex::new(State::default()),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Records consumer metrics (deliveries by outcome, retries, dead letters) in `metrics`.
    /// Set once: later calls, and calls on clones of a bus that already has metrics, keep the
    /// first.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// The publisher the relays use.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(InProcessPublisher { bus: self.clone() })
    }

    /// Starts a consumer group; see [`crate::EventBus::spawn_consumer`]. The group's queue and
    /// bindings exist when this returns, so events relayed afterwards reach it.
    pub fn spawn_consumer(&self, spec: ConsumerSpec, shutdown: Shutdown) -> JoinHandle<()> {
        let (sender, receiver) = self.declare(&spec);
        if let Some(metrics) = self.inner.metrics.get() {
            metrics.consumer_started(&spec.group);
        }
        let retry = self.inner.retry.clone();
        let bus = self.clone();
        tokio::spawn(async move {
            tracing::info!(group = %spec.group, "in-process consumer started");
            // Retries wait in their own tasks so a back-off never blocks the group's queue.
            let mut retries = JoinSet::new();
            loop {
                let message = tokio::select! {
                    biased;
                    () = shutdown.wait() => break,
                    message = async { receiver.lock().await.recv().await } => message,
                };
                // The bus holds a sender for as long as it lives, so None means it is gone.
                let Some(message) = message else { break };
                while retries.try_join_next().is_some() {}
                bus.deliver(&spec, &retry, &sender, &mut retries, message, &shutdown)
                    .await;
            }
            // Pending retries die with the process, like the rest of this bus's queue.
            retries.abort_all();
            tracing::info!(group = %spec.group, "in-process consumer stopped");
        })
    }

    /// A broadcast subscription; see [`crate::EventBus::subscribe`]. It is bound when this
    /// returns (already [`Subscription::ready`]): every event published afterwards whose type
    /// matches one of `bindings` is offered to it. It ends on `shutdown` or when the
    /// subscription is dropped.
    pub fn subscribe(&self, name: &str, bindings: Vec<String>, shutdown: Shutdown) -> Subscription {
        let (subscription, feed) = Subscription::new(name);
        feed.set_ready(true);
        let watcher = feed.closed_signal();
        let id = {
            let mut state = self.state();
            let id = state.next_subscriber;
            state.next_subscriber += 1;
            state.subscribers.insert(id, Subscriber { bindings, feed });
            id
        };
        tracing::info!(subscription = %name, "in-process subscription started");
        let bus = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.wait() => {},
                () = watcher.closed() => {},
            }
            // Dropping the feed (and then the watcher) ends the subscriber's stream.
            let removed = bus.state().subscribers.remove(&id);
            if let Some(subscriber) = removed {
                subscriber.feed.set_ready(false);
            }
            tracing::info!(subscription = %name, "in-process subscription stopped");
        });
        subscription
    }

    /// The dead letters of `group` so far, oldest first (operators and tests inspect them).
    /// Added to the contract: RabbitMQ's `{group}.dead` queue has no other in-process view.
    pub fn dead_letters(&self, group: &str) -> Vec<Event> {
        self.state().dead.get(group).cloned().unwrap_or_default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a panic-prone call; recover it regardless
        // rather than panicking the whole bus.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates the group's queue on first use and (re)binds it.
    fn declare(
        &self,
        spec: &ConsumerSpec,
    ) -> (
        mpsc::UnboundedSender<Message>,
        Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
    ) {
        let mut state = self.state();
        let queue = state.queues.entry(spec.group.clone()).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            Queue {
                bindings: Vec::new(),
                sender,
                receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            }
        });
        for binding in &spec.bindings {
            if !queue.bindings.contains(binding) {
                queue.bindings.push(binding.clone());
            }
        }
        (queue.sender.clone(), queue.receiver.clone())
    }

    async fn deliver(
        &self,
        spec: &ConsumerSpec,
        retry: &RetryPolicy,
        sender: &mpsc::UnboundedSender<Message>,
        retries: &mut JoinSet<()>,
        message: Message,
        shutdown: &Shutdown,
    ) {
        let Message { event, attempt } = message;
        let outcome = consumer::process(
            &spec.group,
            &spec.database,
            &*spec.handler,
            spec.outbox.as_ref(),
            &event,
            attempt,
            shutdown,
        )
        .await;
        let metrics = self.inner.metrics.get();
        let Outcome::Failed(error) = &outcome else {
            consumer::record_outcome(metrics, &spec.group, &outcome, None);
            return;
        };
        let disposition = retry.after_failure(attempt, error);
        consumer::record_outcome(metrics, &spec.group, &outcome, Some(&disposition));
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
            } => {
                let sender = sender.clone();
                let shutdown = shutdown.clone();
                retries.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {
                            let _ = sender.send(Message { event, attempt: next_attempt });
                        }
                        () = shutdown.wait() => {}
                    }
                });
            }
            Disposition::Dead => {
                tracing::error!(
                    group = %spec.group, event_id = %event.id, event_type = %event.event_type,
                    attempt, error = %tenantry_platform::error::ErrorChain(error),
                    "event dead-lettered (kept in memory)"
                );
                self.state()
                    .dead
                    .entry(spec.group.clone())
                    .or_default()
                    .push(event);
            }
        }
    }
}

#[derive(Debug)]
struct InProcessPublisher {
    bus: InProcessBus,
}

#[async_trait::async_trait]
impl Publisher for InProcessPublisher {
    /// "Confirmed" once every matching group's queue holds the event (and every matching
    /// subscription was offered a copy).
    async fn publish(&self, batch: &[Event]) -> Result<(), PublishError> {
        let mut state = self.bus.state();
        for event in batch {
            // Offering never waits (a full subscription drops the event), so the lock is held
            // only briefly; subscribers found gone are forgotten.
            state.subscribers.retain(|_, subscriber| {
                let routed = subscriber
                    .bindings
                    .iter()
                    .any(|binding| routes(binding, &event.event_type));
                !routed || subscriber.feed.offer(event.clone()) == Offer::Taken
            });
            for queue in state.queues.values() {
                let routed = queue
                    .bindings
                    .iter()
                    .any(|binding| routes(binding, &event.event_type));
                if routed {
                    let message = Message {
                        event: event.clone(),
                        attempt: 1,
                    };
                    queue
                        .sender
                        .send(message)
                        .map_err(|_| PublishError::Closed)?;
                }
            }
        }
        Ok(())
    }
}

/// Whether a message with `routing_key` reaches a queue bound with `binding`: control messages
/// only reach control bindings (as on RabbitMQ, where they go to an exchange of their own), and
/// events only event bindings.
fn routes(binding: &str, routing_key: &str) -> bool {
    crate::view_feed::is_control(binding) == crate::view_feed::is_control(routing_key)
        && topic_matches(binding, routing_key)
}

/// AMQP topic matching: words separated by `.`, `*` matches one word, `#` zero or more.
pub(crate) fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| matches(rest, &key[skip..])),
            Some((&word, rest)) => match key.split_first() {
                Some((first, key_rest)) => {
                    (word == "*" || word == *first) && matches(rest, key_rest)
                }
                None => false,
            },
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn matches_like_an_amqp_topic_exchange() {
        assert!(topic_matches("account.created", "account.created"));
        assert!(!topic_matches("account.created", "account.deleted"));
        assert!(!topic_matches("account", "account.created"));
        assert!(topic_matches("account.*", "account.created"));
        assert!(!topic_matches("*", "account.created"));
        assert!(topic_matches("#", "account.created"));
        assert!(topic_matches("account.#", "account"));
        assert!(topic_matches("#.created", "invitation.created"));
    }
}
