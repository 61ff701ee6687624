//! The per-replica hub of open WatchInbox streams. Every replica subscribes to `inbox.changed`
//! (a per-replica exclusive queue, DESIGN.md §6) and hands each change to the open streams of
//! the users it names. Each stream has a bounded queue: a stream whose client went away is
//! dropped at the next change, and one that falls too far behind is ended so its client
//! reconnects and starts again from a fresh snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tenantry_events::Event;
use tenantry_platform::names::parse_user;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as events;
use tenantry_proto::notification::v1::{WatchInboxResponse, watch_inbox_response};
use tokio::sync::mpsc;

/// Changes queued per stream before it counts as too slow.
pub const STREAM_BUFFER: usize = 256;

type StreamSender = mpsc::Sender<Result<WatchInboxResponse, tonic::Status>>;

#[derive(Debug, Default)]
struct Streams {
    by_user: HashMap<String, Vec<(u64, StreamSender)>>,
}

/// The open WatchInbox streams of this replica, by user.
#[derive(Clone, Debug, Default)]
pub struct InboxHub {
    streams: Arc<Mutex<Streams>>,
    next_id: Arc<AtomicU64>,
}

/// One stream's registration; dropping it unregisters the stream.
#[derive(Debug)]
pub struct Registration {
    hub: InboxHub,
    user_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.user_id, self.id);
    }
}

impl InboxHub {
    /// A hub with no streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a stream of `user_id`'s inbox: changes for that user go to `sender` from now
    /// on (call before reading the snapshot, so nothing between the two is missed).
    pub fn register(&self, user_id: &str, sender: StreamSender) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .by_user
            .entry(user_id.to_string())
            .or_default()
            .push((id, sender));
        Registration {
            hub: self.clone(),
            user_id: user_id.to_string(),
            id,
        }
    }

    /// How many streams are open (for tests and metrics).
    pub fn open_streams(&self) -> usize {
        self.lock().by_user.values().map(Vec::len).sum()
    }

    fn unregister(&self, user_id: &str, id: u64) {
        let mut streams = self.lock();
        if let Some(list) = streams.by_user.get_mut(user_id) {
            list.retain(|(stream_id, _)| *stream_id != id);
            if list.is_empty() {
                streams.by_user.remove(user_id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A panic while holding the lock leaves the map usable.
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forwards `inbox.changed` events from the broadcast subscription (`EventBus::subscribe`
    /// bound to `inbox.changed`) to the open streams until it ends (shutdown); then
    /// every stream ends.
    pub async fn run(self, subscription: tenantry_events::Subscription) {
        self.run_receiver(subscription.events).await;
    }

    /// [`InboxHub::run`] on a plain receiver of events.
    pub async fn run_receiver(self, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            if event.known_type() == Some(EventType::InboxChanged) {
                self.dispatch(&event);
            }
        }
        self.lock().by_user.clear();
    }

    /// Hands one `inbox.changed` event to the streams of the users it names.
    pub fn dispatch(&self, event: &Event) {
        let Ok(changed) = event.decode::<events::InboxChanged>() else {
            tracing::warn!(event_id = %event.id, "undecodable inbox.changed event ignored");
            return;
        };
        let Some(change) = changed.change else {
            return;
        };
        let response = WatchInboxResponse {
            event: Some(match change {
                events::inbox_changed::Change::Arrived(item) => {
                    watch_inbox_response::Event::Arrived(item)
                }
                events::inbox_changed::Change::Removed(name) => {
                    watch_inbox_response::Event::Removed(name)
                }
            }),
        };
        let mut streams = self.lock();
        for user in std::iter::once(&changed.user).chain(changed.also_users.iter()) {
            let Ok(user_id) = parse_user("user", user) else {
                continue;
            };
            let Some(list) = streams.by_user.get_mut(&user_id) else {
                continue;
            };
            // A closed stream (client gone) or a full one (client too slow) is dropped; the
            // slow client sees its stream end and reconnects to a fresh snapshot.
            list.retain(|(_, sender)| sender.try_send(Ok(response.clone())).is_ok());
            if list.is_empty() {
                streams.by_user.remove(&user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tenantry_proto::notification::v1::InboxItem;

    use super::*;
    use crate::events::{InboxChange, inbox_changed};

    #[tokio::test]
    async fn changes_reach_the_named_users_only() {
        let hub = InboxHub::new();
        let (alice_tx, mut alice) = mpsc::channel(4);
        let (bob_tx, mut bob) = mpsc::channel(4);
        let (carol_tx, mut carol) = mpsc::channel(4);
        let _a = hub.register("alice", alice_tx);
        let _b = hub.register("bob", bob_tx);
        let c = hub.register("carol", carol_tx);
        let item = InboxItem {
            message: "accounts/p/messages/m".into(),
            ..InboxItem::default()
        };
        let event = inbox_changed(
            &["alice".to_string(), "bob".to_string()],
            InboxChange::Arrived(item.clone()),
        )
        .unwrap();
        hub.dispatch(&event);
        for receiver in [&mut alice, &mut bob] {
            let got = receiver.try_recv().unwrap().unwrap();
            assert_eq!(
                got.event,
                Some(watch_inbox_response::Event::Arrived(item.clone()))
            );
        }
        assert!(carol.try_recv().is_err());
        drop(c);
        assert_eq!(hub.open_streams(), 2);
        // A client that went away is dropped at the next change.
        drop(alice);
        let removed = inbox_changed(
            &["alice".to_string()],
            InboxChange::Removed("accounts/p/messages/m".into()),
        )
        .unwrap();
        hub.dispatch(&removed);
        assert_eq!(hub.open_streams(), 1);
    }

    #[tokio::test]
    async fn run_ends_every_stream_when_the_subscription_ends() {
        let hub = InboxHub::new();
        let (tx, mut rx) = mpsc::channel(4);
        let registration = hub.register("alice", tx);
        let (events_tx, events_rx) = mpsc::channel(4);
        let task = tokio::spawn(hub.clone().run_receiver(events_rx));
        let event = inbox_changed(
            &["alice".to_string()],
            InboxChange::Removed("accounts/p/messages/m".into()),
        )
        .unwrap();
        events_tx.send(event).await.unwrap();
        let got = rx.recv().await.unwrap().unwrap();
        assert_eq!(
            got.event,
            Some(watch_inbox_response::Event::Removed(
                "accounts/p/messages/m".into()
            ))
        );
        drop(events_tx);
        task.await.unwrap();
        assert_eq!(hub.open_streams(), 0);
        drop(registration);
        assert!(rx.recv().await.is_none(), "the stream ended");
    }
}
