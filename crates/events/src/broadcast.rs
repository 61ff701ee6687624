//! Broadcast subscriptions for live pushes (DESIGN.md §6: "live pushes (`WatchInbox`) use a
//! per-replica exclusive queue so every replica sees every change"): unlike a consumer group,
//! whose replicas compete for its events, every subscription gets its own copy of every
//! matching event published while it is bound. Delivery is at most once and best effort (no
//! acks, no retry, nothing kept while disconnected): subscribers resynchronise from the database.
//!
//! Both transports hand events to the subscriber through a bounded channel of
//! [`CAPACITY`] events; when the subscriber does not keep up, new events are dropped (with a
//! warning) rather than stalling the broker or the publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

use crate::Event;

/// How many events a subscription buffers before it drops new ones.
pub(crate) const CAPACITY: usize = 1024;

/// A live broadcast subscription, from [`crate::EventBus::subscribe`].
///
/// - [`Subscription::events`] yields every event published with a bound routing key from the
///   moment the subscription is bound (see [`Subscription::ready`]); events published while it is
///   not bound (before the first bind, while reconnecting after a broker failure) are missed.
///   It yields `None` once the subscription ended: on shutdown, or when it could not start at
///   all (an invalid name or binding, logged).
/// - Dropping the subscription (its `events` receiver) stops it: on RabbitMQ its consumer is
///   cancelled and its exclusive, auto-delete queue disappears.
#[derive(Debug)]
pub struct Subscription {
    /// The matching events, in the order the transport delivered them.
    pub events: mpsc::Receiver<Event>,
    /// true while a queue is bound and consumed (RabbitMQ), or from the start (in-process).
    ready: watch::Receiver<bool>,
    /// Events dropped so far because the subscriber did not keep up.
    dropped: Arc<AtomicU64>,
    /// Bindings so far (a new queue after each reconnection).
    sessions: Arc<AtomicU64>,
}

impl Subscription {
    /// A subscription and the feeding end its transport keeps.
    pub(crate) fn new(name: &str) -> (Self, Feed) {
        let (events, receiver) = mpsc::channel(CAPACITY);
        let (ready, ready_receiver) = watch::channel(false);
        let dropped_total = Arc::new(AtomicU64::new(0));
        let sessions = Arc::new(AtomicU64::new(0));
        let subscription = Self {
            events: receiver,
            ready: ready_receiver,
            dropped: dropped_total.clone(),
            sessions: sessions.clone(),
        };
        let feed = Feed {
            name: name.to_string(),
            events,
            ready,
            dropped: 0,
            dropped_total,
            sessions,
        };
        (subscription, feed)
    }

    /// Waits until the subscription is bound, i.e. events published from now on reach it;
    /// true then, false if the subscription ended without being bound (shutdown, invalid names).
    /// After a broker failure it is not bound again until it has reconnected and declared a new
    /// queue; this waits for that too.
    pub async fn ready(&mut self) -> bool {
        self.ready.wait_for(|bound| *bound).await.is_ok()
    }

    /// Whether the subscription is bound right now (see [`Subscription::ready`]).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// A receiver that sees every change of [`Subscription::is_ready`] as it happens.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// How many events were dropped so far because this subscriber did not keep up: a
    /// subscriber that must not miss any (the local view) treats an increase as a gap.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// How many times a queue was bound so far: a change means a gap in which events were
    /// missed, even when the subscription is bound again by the time anyone looks.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::SeqCst)
    }

    /// The next event; `None` once the subscription ended (shorthand for `events.recv()`).
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

/// The transport's end of a [`Subscription`]: offers events, reports readiness.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) name: String,
    events: mpsc::Sender<Event>,
    ready: watch::Sender<bool>,
    /// Events dropped since the subscriber last kept up (logged when it catches up).
    dropped: u64,
    /// Every event dropped, as the subscriber sees it.
    dropped_total: Arc<AtomicU64>,
    /// Bindings so far, as the subscriber sees them.
    sessions: Arc<AtomicU64>,
}

/// What happened to an offered event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued for the subscriber (or dropped because it is not keeping up).
    Taken,
    /// The subscriber is gone: stop feeding it.
    Closed,
}

impl Feed {
    /// Hands `event` to the subscriber without waiting: a full buffer drops it (warning once per
    /// run of drops, so a slow subscriber does not flood the log).
    pub(crate) fn offer(&mut self, event: Event) -> Offer {
        match self.events.try_send(event) {
            Ok(()) => {
                if self.dropped > 0 {
                    tracing::warn!(
                        subscription = %self.name, dropped = self.dropped,
                        "subscriber caught up; events were dropped meanwhile"
                    );
                    self.dropped = 0;
                }
                Offer::Taken
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                if self.dropped == 0 {
                    tracing::warn!(
                        subscription = %self.name, event_id = %event.id,
                        event_type = %event.event_type, capacity = CAPACITY,
                        "subscriber is not keeping up; dropping events"
                    );
                }
                self.dropped += 1;
                self.dropped_total.fetch_add(1, Ordering::SeqCst);
                Offer::Taken
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Completes once the subscriber dropped its receiver.
    pub(crate) async fn closed(&self) {
        self.events.closed().await;
    }

    /// A sender for another task to watch (`closed()`) while the feed itself stays with the
    /// transport; it must be dropped too before the subscriber's stream ends.
    pub(crate) fn closed_signal(&self) -> mpsc::Sender<Event> {
        self.events.clone()
    }

    /// Reports whether a queue is bound now.
    pub(crate) fn set_ready(&self, bound: bool) {
        if bound {
            self.sessions.fetch_add(1, Ordering::SeqCst);
        }
        self.ready.send_replace(bound);
    }
}
