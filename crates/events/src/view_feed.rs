//! What keeps a process's [`LocalView`] current and tells it when it cannot be trusted
//! (DESIGN.md §9, docs/local-view.md).
//!
//! - **The feed** ([`spawn_view_feed`]): a per-replica broadcast subscription to `member.*`,
//!   `account.*` and the heartbeats. A `member.*` event voids the answers about its user, an
//!   `account.*` event those about its account.
//! - **Heartbeats** ([`spawn_heartbeats`]): every replica that can take access away (one running
//!   membership or the registry) publishes one every [`FreshnessSettings::heartbeat_every`]
//!   through a channel of its own (shared with the acknowledgements), and a goodbye when it stops cleanly. It skips
//!   them while one of its revocations is not confirmed by the broker (see [`Revocations`]).
//! - **Freshness**: the view is fresh only while its subscription is bound, no event was dropped,
//!   and every revoking replica heard from in the last [`FreshnessSettings::forget_after`] has
//!   sent a heartbeat within [`FreshnessSettings::heartbeat_timeout`]. Otherwise nothing cached
//!   is served (every call asks the source of record), and both losing and regaining freshness
//!   drop every cached answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tenantry_platform::server::{Readiness, Shutdown};
use tenantry_platform::view::LocalView;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as pb;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::revocations::Revoked;
use crate::{Event, EventBus, Revocations};

/// The routing key of a heartbeat. Keys under `tenantry.` are control messages, not events:
/// they travel apart from the events (RabbitMQ: the exchange `{exchange}.control`), so nothing
/// bound to events — `#` included — ever sees them.
pub const HEARTBEAT: &str = "tenantry.heartbeat";
/// The routing key of the heartbeat a replica sends when it stops cleanly.
pub const GOODBYE: &str = "tenantry.goodbye";
/// The routing key of a revocation announced again by a call that changed nothing (payload:
/// `u` + user or `a` + account); views void it and acknowledge it like an event.
pub const INVALIDATE: &str = "tenantry.invalidate";
/// The routing key of a view's acknowledgement that it applied a revocation (payload: the
/// event id's 16 bytes), awaited by the revoking call (see [`Revocations`]).
pub const APPLIED: &str = "tenantry.applied";

/// How long an acknowledgement may take to be confirmed before it is given up.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a routing key (or binding) names a control message rather than an event.
pub(crate) fn is_control(key: &str) -> bool {
    key.starts_with("tenantry.")
}

/// The bounds of freshness; the same in every process of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreshnessSettings {
    /// How often a revoking replica sends a heartbeat.
    pub heartbeat_every: Duration,
    /// A view trusts its cache only while every revoking replica's latest heartbeat is younger
    /// than this (by the sender's clock and by the time since it arrived, whichever is older).
    pub heartbeat_timeout: Duration,
    /// A replica silent this long without a goodbye is taken for gone and stops holding every
    /// view's trust back.
    pub forget_after: Duration,
    /// How long a revoking call waits for the broker's confirm before it falls back to
    /// silencing this replica's heartbeats.
    pub confirm_wait: Duration,
    /// The clock difference between replicas that the bounds tolerate.
    pub clock_skew: Duration,
}

impl Default for FreshnessSettings {
    fn default() -> Self {
        Self {
            heartbeat_every: Duration::from_millis(250),
            heartbeat_timeout: Duration::from_millis(1000),
            forget_after: Duration::from_secs(30),
            confirm_wait: Duration::from_millis(1000),
            clock_skew: Duration::from_millis(250),
        }
    }
}

impl FreshnessSettings {
    /// Whether the bounds make sense together (a heartbeat fits in the timeout several times,
    /// and a silent replica is forgotten only long after it would have been distrusted).
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_every.is_zero() || self.heartbeat_every * 2 > self.heartbeat_timeout {
            return Err(format!(
                "the heartbeat interval ({:?}) must be positive and at most half the heartbeat \
                 timeout ({:?})",
                self.heartbeat_every, self.heartbeat_timeout
            ));
        }
        if self.forget_after < self.heartbeat_timeout * 10 {
            return Err(format!(
                "forget-after ({:?}) must be at least ten heartbeat timeouts ({:?})",
                self.forget_after,
                self.heartbeat_timeout * 10
            ));
        }
        Ok(())
    }
}

/// The latest heartbeat of each revoking replica, and what that says about freshness.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatTracker {
    replicas: HashMap<String, Seen>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    sent: DateTime<Utc>,
    received: Instant,
}

impl HeartbeatTracker {
    pub(crate) fn heard(&mut self, replica: &str, sent: DateTime<Utc>, received: Instant) {
        let seen = self
            .replicas
            .entry(replica.to_string())
            .or_insert(Seen { sent, received });
        if sent >= seen.sent {
            *seen = Seen { sent, received };
        }
    }

    pub(crate) fn goodbye(&mut self, replica: &str) {
        if self.replicas.remove(replica).is_some() {
            tracing::info!(replica, "revoking replica said goodbye");
        }
    }

    /// How much longer every replica heard from stays recent (`None` if one is not recent, or
    /// nobody was heard); forgets the replicas silent for longer than `forget_after`.
    pub(crate) fn trust_left(
        &mut self,
        settings: &FreshnessSettings,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> Option<Duration> {
        let age = |seen: &Seen| {
            let by_sender = (now - seen.sent).to_std().unwrap_or(Duration::ZERO);
            by_sender.max(now_instant.duration_since(seen.received))
        };
        self.replicas.retain(|replica, seen| {
            let keep = age(seen) <= settings.forget_after;
            if !keep {
                tracing::warn!(
                    replica, silent_for = ?age(seen),
                    "revoking replica silent without a goodbye; taken for gone"
                );
            }
            keep
        });
        self.replicas
            .values()
            .map(|seen| settings.heartbeat_timeout.checked_sub(age(seen)))
            .try_fold(None, |least: Option<Duration>, left| {
                let left = left.filter(|left| !left.is_zero())?;
                Some(Some(least.map_or(left, |least| least.min(left))))
            })
            .flatten()
    }

    #[cfg(test)]
    fn all_recent(
        &mut self,
        settings: &FreshnessSettings,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> bool {
        self.trust_left(settings, now, now_instant).is_some()
    }
}

/// Keeps `view` current from the bus and fresh only while it can be (see the module
/// documentation), until shutdown; the view is left not fresh at the end.
pub fn spawn_view_feed(
    bus: &EventBus,
    view: LocalView,
    settings: FreshnessSettings,
    revocations: Revocations,
    readiness: Readiness,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let bindings = vec![
        "member.*".to_string(),
        "account.*".to_string(),
        HEARTBEAT.to_string(),
        GOODBYE.to_string(),
        APPLIED.to_string(),
        INVALIDATE.to_string(),
    ];
    let mut subscription = bus.subscribe("tenantry.view", bindings, shutdown.clone());
    let publisher = revocations.control_publisher(bus);
    tokio::spawn(async move {
        let feed = Feed {
            view: view.clone(),
            revocations,
            publisher,
        };
        let started = Instant::now();
        let mut bound_now = subscription.readiness();
        let health = readiness;
        let mut tracker = HeartbeatTracker::default();
        let mut dropped = subscription.dropped();
        let mut sessions = subscription.sessions();
        let mut bound_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(settings.heartbeat_every / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                event = subscription.recv() => match event {
                    Some(event) => feed.apply(&mut tracker, &event),
                    None => break,
                },
                changed = bound_now.changed() => if changed.is_err() { break },
                _ = tick.tick() => {},
            }
            let now_dropped = subscription.dropped();
            let now_sessions = subscription.sessions();
            if now_dropped != dropped || now_sessions != sessions {
                // An invalidation may be among the dropped events, or among those published
                // while the queue was gone (even if it is bound again already).
                dropped = now_dropped;
                sessions = now_sessions;
                view.drop_all();
                bound_since = None;
            }
            let bound = *bound_now.borrow();
            let now = Instant::now();
            if !bound {
                bound_since = None;
            } else if bound_since.is_none() {
                bound_since = Some(now);
            }
            feed.revocations.feed_bound_since(bound_since);
            let trust = Trust {
                bound,
                warm: started.elapsed() >= settings.forget_after,
                steady: bound_since.is_some_and(|since| now - since >= settings.heartbeat_timeout),
                heard: tracker.trust_left(&settings, Utc::now(), now),
                heard_back: feed
                    .revocations
                    .own_heartbeat_left(settings.heartbeat_timeout),
            };
            view.set_fresh_until(trust.until(now));
            health.set_degraded("local view", trust.missing(&settings));
        }
        view.set_fresh(false);
        if !shutdown.is_triggered() {
            tracing::error!(
                "the local view's event feed ended; every call asks membership and the database"
            );
            health.set_degraded(
                "local view",
                Some("event feed ended; every call asks membership and the database".into()),
            );
        }
    })
}

/// What the view's trust rests on at one moment.
struct Trust {
    /// The subscription is bound.
    bound: bool,
    /// The process has run for `forget_after`: a replica that fell silent before it started,
    /// and that it therefore never heard, is no longer counted on by anyone.
    warm: bool,
    /// Bound without a break for a heartbeat timeout: every replica's heartbeat arrived since.
    steady: bool,
    /// How long every revoking replica's heartbeat stays recent.
    heard: Option<Duration>,
    /// How long this replica's own last confirmed heartbeat stays recent: revoking calls wait
    /// for the acknowledgements of the replicas they hear, so a replica they cannot hear must
    /// not trust its cache.
    heard_back: Option<Duration>,
}

impl Trust {
    fn until(&self, now: Instant) -> Option<Instant> {
        if !(self.bound && self.warm && self.steady) {
            return None;
        }
        Some(now + self.heard?.min(self.heard_back?))
    }

    fn missing(&self, settings: &FreshnessSettings) -> Option<String> {
        let uncached = "every call asks membership and the database";
        if !self.bound {
            return Some(format!("event subscription not bound; {uncached}"));
        }
        if !self.warm {
            return Some(format!(
                "starting: the cache is trusted {:?} after start; {uncached}",
                settings.forget_after
            ));
        }
        if !self.steady {
            return Some(format!("event subscription bound just now; {uncached}"));
        }
        if self.heard.is_none() {
            return Some(format!(
                "no heartbeat within {:?} from every membership and registry replica; {uncached}",
                settings.heartbeat_timeout
            ));
        }
        if self.heard_back.is_none() {
            return Some(format!(
                "this replica's heartbeats are not confirmed; {uncached}"
            ));
        }
        None
    }
}

/// What the feed task holds besides the view.
struct Feed {
    view: LocalView,
    revocations: Revocations,
    publisher: std::sync::Arc<dyn crate::Publisher>,
}

impl Feed {
    /// Applies one event: invalidations (acknowledged when they revoke), heartbeats and
    /// acknowledgements; anything else is ignored.
    fn apply(&self, tracker: &mut HeartbeatTracker, event: &Event) {
        let me = self.revocations.replica();
        match event.event_type.as_str() {
            HEARTBEAT => {
                if event.payload.first() == Some(&REVOKING_REPLICA) {
                    tracker.heard(&event.source, event.time, Instant::now());
                }
                if event.source != me {
                    self.revocations.view_heard(&event.source);
                }
            }
            GOODBYE => {
                tracker.goodbye(&event.source);
                self.revocations.view_gone(&event.source);
            }
            APPLIED => {
                if let Ok(id) = Uuid::from_slice(&event.payload) {
                    self.revocations.applied(id, &event.source);
                }
            }
            INVALIDATE => {
                match Revoked::from_payload(&event.payload) {
                    Some(Revoked::User(user)) => self.view.drop_user(&user),
                    Some(Revoked::Account(account)) => self.view.drop_account(&account),
                    None => self.view.drop_all(),
                }
                self.acknowledge(event.id);
            }
            _ => match invalidation(event) {
                Some(invalidation) => {
                    invalidation.apply(&self.view);
                    if revokes(event) {
                        self.acknowledge(event.id);
                    }
                }
                None if event.event_type.starts_with("member.")
                    || event.event_type.starts_with("account.") =>
                {
                    // A change this build cannot read (a newer type, a malformed payload) may
                    // revoke anything: void everything rather than guess.
                    tracing::warn!(
                        event_type = %event.event_type, event_id = %event.id,
                        "unreadable change event; dropping the whole local view"
                    );
                    self.view.drop_all();
                    self.acknowledge(event.id);
                }
                None => {}
            },
        }
    }

    /// Tells the revoking replica that this view applied `id` (published in the background:
    /// the feed never waits for the broker).
    fn acknowledge(&self, id: Uuid) {
        let ack = Event {
            id: Uuid::now_v7(),
            event_type: APPLIED.to_string(),
            source: self.revocations.replica().to_string(),
            time: Utc::now(),
            payload: id.as_bytes().to_vec(),
            traceparent: None,
            tracestate: None,
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            // Late is as good as never to a caller that waits at most the confirm wait: bounded,
            // so acknowledgements cannot pile up behind a blocked broker.
            let publish = publisher.publish(std::slice::from_ref(&ack));
            match tokio::time::timeout(ACK_TIMEOUT, publish).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot acknowledge a revocation; its caller falls back to the heartbeat bound")
                }
                Err(_) => tracing::debug!(
                    "acknowledgement not confirmed in time; its caller falls back to the heartbeat bound"
                ),
            }
        });
    }
}

/// Whether applying `event` must be acknowledged: the types whose calls take access away
/// (the writers append them with `append_revocation`). `member.expired` is the expiry sweep's
/// removal and takes access away exactly as `member.removed` does; an acknowledgement that no
/// writer awaits is ignored, so acknowledging it never costs a wait.
fn revokes(event: &Event) -> bool {
    matches!(
        event.known_type(),
        Some(
            EventType::MemberUpdated
                | EventType::MemberRemoved
                | EventType::MemberExpired
                | EventType::AccountDisabled
                | EventType::AccountDeleted
        )
    )
}

/// The heartbeat payload of a replica that can take access away (membership, the registry);
/// other replicas send [`VIEW_ONLY_REPLICA`].
const REVOKING_REPLICA: u8 = b'r';
/// The heartbeat payload of a replica that only keeps a view.
const VIEW_ONLY_REPLICA: u8 = b'v';

/// What one change event voids.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// Every answer about this user (`users/{sub}`).
    User(String),
    /// Every answer about this account (`accounts/{id}`).
    Account(String),
}

impl Invalidation {
    pub(crate) fn apply(&self, view: &LocalView) {
        match self {
            Invalidation::User(user) => view.drop_user(user),
            Invalidation::Account(account) => view.drop_account(account),
        }
    }
}

/// What `event` voids in a local view; `None` for events that void nothing (or that this build
/// cannot read).
pub(crate) fn invalidation(event: &Event) -> Option<Invalidation> {
    let member = |member: Option<tenantry_proto::membership::v1::Member>| {
        member
            .map(|member| member.user)
            .filter(|user| !user.is_empty())
            .map(Invalidation::User)
    };
    let account = |account: Option<tenantry_proto::registry::v1::Account>| {
        account
            .map(|account| account.name)
            .filter(|name| !name.is_empty())
            .map(Invalidation::Account)
    };
    match event.known_type()? {
        EventType::MemberAdded => member(event.decode::<pb::MemberAdded>().ok()?.member),
        EventType::MemberUpdated => member(event.decode::<pb::MemberUpdated>().ok()?.member),
        EventType::MemberRemoved => member(event.decode::<pb::MemberRemoved>().ok()?.member),
        // The sweep's removal: the user's answers go, as for `member.removed` (without this arm
        // the feed would void the whole view for it).
        EventType::MemberExpired => member(event.decode::<pb::MemberExpired>().ok()?.member),
        EventType::AccountCreated => account(event.decode::<pb::AccountCreated>().ok()?.account),
        EventType::AccountUpdated => account(event.decode::<pb::AccountUpdated>().ok()?.account),
        EventType::AccountPromotedToPartner => {
            account(event.decode::<pb::AccountPromotedToPartner>().ok()?.account)
        }
        EventType::AccountDisabled => account(event.decode::<pb::AccountDisabled>().ok()?.account),
        EventType::AccountEnabled => account(event.decode::<pb::AccountEnabled>().ok()?.account),
        EventType::AccountDeleted => account(event.decode::<pb::AccountDeleted>().ok()?.account),
        _ => None,
    }
}

/// The source of this replica's heartbeats: unique per process start.
pub fn replica_source() -> String {
    format!("/tenantry/replicas/{}", Uuid::new_v4())
}

/// Publishes this replica's heartbeats until shutdown (skipping them while `revocations` holds
/// one back), then a goodbye if no revocation is left unconfirmed. Every replica sends them: a
/// `revoking` one (membership, the registry) so that views know when to stop trusting, every
/// one so that revoking calls know whose acknowledgement to wait for.
pub fn spawn_heartbeats(
    bus: &EventBus,
    revocations: Revocations,
    revoking: bool,
    settings: FreshnessSettings,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let publisher = revocations.control_publisher(bus);
    let source = revocations.replica().to_string();
    let kind = if revoking {
        REVOKING_REPLICA
    } else {
        VIEW_ONLY_REPLICA
    };
    tokio::spawn(async move {
        let beat = |event_type: &str| Event {
            id: Uuid::now_v7(),
            event_type: event_type.to_string(),
            source: source.clone(),
            time: Utc::now(),
            payload: vec![kind],
            traceparent: None,
            tracestate: None,
        };
        let mut tick = tokio::time::interval(settings.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {},
            }
            // Stamped before looking at the holds: a heartbeat that passes the check was
            // stamped before any hold that makes the next one skip.
            let heartbeat = beat(HEARTBEAT);
            let sent = heartbeat.time;
            if revocations.holding() {
                continue;
            }
            let publish = publisher.publish(std::slice::from_ref(&heartbeat));
            match tokio::time::timeout(settings.heartbeat_timeout, publish).await {
                Ok(Ok(())) => {
                    revocations.heartbeat_confirmed(sent);
                    if failing {
                        tracing::info!("heartbeats confirmed again");
                        failing = false;
                    }
                }
                Ok(Err(error)) => {
                    if !failing {
                        tracing::warn!(error = %tenantry_platform::error::ErrorChain(&error), "heartbeat not confirmed");
                        failing = true;
                    }
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!("heartbeat not confirmed in time");
                        failing = true;
                    }
                }
            }
        }
        if revocations.holding() {
            tracing::warn!("stopping with an unconfirmed revocation: no goodbye, views stay wary");
            return;
        }
        let goodbye = beat(GOODBYE);
        let publish = publisher.publish(std::slice::from_ref(&goodbye));
        if !matches!(
            tokio::time::timeout(settings.heartbeat_timeout, publish).await,
            Ok(Ok(()))
        ) {
            tracing::warn!("goodbye not confirmed; views forget this replica after the timeout");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FreshnessSettings {
        FreshnessSettings::default()
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert_eq!(settings().validate(), Ok(()));
        let slow = FreshnessSettings {
            heartbeat_every: Duration::from_secs(1),
            ..settings()
        };
        assert!(slow.validate().is_err());
        let forgetful = FreshnessSettings {
            forget_after: Duration::from_secs(2),
            ..settings()
        };
        assert!(forgetful.validate().is_err());
    }

    #[test]
    fn fresh_only_while_every_replica_is_recent() {
        let mut tracker = HeartbeatTracker::default();
        let (now, instant) = (Utc::now(), Instant::now());
        assert!(
            !tracker.all_recent(&settings(), now, instant),
            "nobody heard: not fresh"
        );
        tracker.heard("a", now, instant);
        tracker.heard("b", now, instant);
        assert!(tracker.all_recent(&settings(), now, instant));
        let later = now + chrono::Duration::milliseconds(1500);
        let later_instant = instant + Duration::from_millis(1500);
        tracker.heard("a", later, later_instant);
        assert!(
            !tracker.all_recent(&settings(), later, later_instant),
            "b is 1.5 s old"
        );
        tracker.goodbye("b");
        assert!(tracker.all_recent(&settings(), later, later_instant));
    }

    #[test]
    fn the_older_of_both_clocks_counts() {
        let mut tracker = HeartbeatTracker::default();
        let (now, instant) = (Utc::now(), Instant::now());
        // Sent 2 s ago by the sender's clock, arrived just now (held up in transit).
        tracker.heard("a", now - chrono::Duration::seconds(2), instant);
        assert!(!tracker.all_recent(&settings(), now, instant));
        // A sender whose clock runs ahead: its own stamp looks recent, the arrival does not.
        let mut tracker = HeartbeatTracker::default();
        tracker.heard("a", now + chrono::Duration::seconds(5), instant);
        assert!(!tracker.all_recent(&settings(), now, instant + Duration::from_secs(2)));
    }

    #[test]
    fn silent_replicas_are_forgotten_after_the_bound() {
        let mut tracker = HeartbeatTracker::default();
        let (now, instant) = (Utc::now(), Instant::now());
        tracker.heard("dead", now, instant);
        tracker.heard("alive", now, instant);
        let later = now + chrono::Duration::seconds(31);
        let later_instant = instant + Duration::from_secs(31);
        tracker.heard("alive", later, later_instant);
        assert!(tracker.all_recent(&settings(), later, later_instant));
        assert_eq!(tracker.replicas.len(), 1);
    }

    #[test]
    fn change_events_name_what_they_void() {
        let member = tenantry_proto::membership::v1::Member {
            user: "users/alice".into(),
            name: "accounts/acme/members/alice".into(),
            ..Default::default()
        };
        let removed = Event::of(
            "/t",
            &pb::MemberRemoved {
                member: Some(member),
                actor: String::new(),
                provenance: None,
            },
        );
        assert_eq!(
            invalidation(&removed),
            Some(Invalidation::User("users/alice".into()))
        );
        let expired = Event::of(
            "/t",
            &pb::MemberExpired {
                member: removed.decode::<pb::MemberRemoved>().unwrap().member,
                actor: "services/membership".into(),
                provenance: None,
            },
        );
        assert_eq!(
            invalidation(&expired),
            Some(Invalidation::User("users/alice".into())),
            "an expiry voids what a removal voids"
        );
        assert!(revokes(&removed) && revokes(&expired));
        let disabled = Event::of(
            "/t",
            &pb::AccountDisabled {
                account: Some(tenantry_proto::registry::v1::Account {
                    name: "accounts/acme".into(),
                    ..Default::default()
                }),
                actor: String::new(),
                ..Default::default()
            },
        );
        assert_eq!(
            invalidation(&disabled),
            Some(Invalidation::Account("accounts/acme".into()))
        );
        let garbage = Event {
            payload: vec![0xff, 0xff],
            ..disabled
        };
        assert_eq!(invalidation(&garbage), None);
    }

    /// Keeps the events a feed publishes (its acknowledgements).
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<Event>>);

    #[async_trait::async_trait]
    impl crate::Publisher for Recorder {
        async fn publish(&self, batch: &[Event]) -> Result<(), crate::PublishError> {
            self.0.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }

    /// `member.expired` reaches the feed like `member.removed`: the member's cached answers are
    /// void, the rest of the view stays (not the drop-everything of an unreadable change), and
    /// the revoking replica gets its acknowledgement.
    #[tokio::test]
    async fn an_expired_member_loses_cached_answers_like_a_removed_one() {
        let member = tenantry_proto::membership::v1::Member {
            user: "users/alice".into(),
            name: "accounts/acme/members/alice".into(),
            ..Default::default()
        };
        let removed = Event::of(
            "/tenantry/membership",
            &pb::MemberRemoved {
                member: Some(member.clone()),
                actor: "users/admin".into(),
                provenance: None,
            },
        );
        let expired = Event::of(
            "/tenantry/membership",
            &pb::MemberExpired {
                member: Some(member),
                actor: "services/membership".into(),
                provenance: None,
            },
        );
        for event in [&removed, &expired] {
            let view = LocalView::new(tenantry_platform::view::ViewSettings::default());
            view.set_fresh(true);
            let recorder = std::sync::Arc::new(Recorder::default());
            let feed = Feed {
                view: view.clone(),
                revocations: Revocations::default(),
                publisher: recorder.clone(),
            };
            let alice = view.ticket(Some("alice"), Some("acme")).unwrap();
            // About no user: only dropping the whole view would void it.
            let account_only = view.ticket(None, Some("globex")).unwrap();
            feed.apply(&mut HeartbeatTracker::default(), event);
            assert!(
                !view.is_current(&alice),
                "{}: alice's answers go",
                event.event_type
            );
            assert!(
                view.is_current(&account_only),
                "{}: the rest of the view stays",
                event.event_type
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            let acknowledged = loop {
                let published = recorder.0.lock().unwrap().clone();
                if !published.is_empty() || Instant::now() > deadline {
                    break published;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            assert_eq!(acknowledged.len(), 1, "{}", event.event_type);
            assert_eq!(acknowledged[0].event_type, APPLIED);
            assert_eq!(acknowledged[0].payload, event.id.as_bytes());
        }
    }
}
