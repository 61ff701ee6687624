//! Broadcast subscriptions (live pushes): every subscription — every replica — gets its own copy
//! of every matching event, on the real broker (exclusive per-replica queues, reconnection) and
//! on the in-process bus.

mod common;

use std::time::Duration;

use common::*;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use tenantry_events::{AmqpConfig, Event, EventBus, RetryPolicy, Subscription};
use tenantry_platform::server::Shutdown;
use tokio::sync::mpsc::error::TryRecvError;

const INBOX: &str = "tenantry.test.inbox";

fn amqp(url: &str, prefix: &str) -> EventBus {
    EventBus::amqp(AmqpConfig {
        url: url.to_string(),
        queue_prefix: prefix.to_string(),
        ..AmqpConfig::default()
    })
}

fn bindings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

async fn publish(bus: &EventBus, events: &[Event]) {
    bus.publisher().publish(events).await.expect("publish");
}

/// The next event within `within`, or None.
async fn next(subscription: &mut Subscription, within: Duration) -> Option<Event> {
    tokio::time::timeout(within, subscription.recv())
        .await
        .ok()
        .flatten()
}

/// Waits until the subscription is bound (it must be, within 10 s).
async fn bound(subscription: &mut Subscription) {
    let ready = tokio::time::timeout(Duration::from_secs(10), subscription.ready()).await;
    assert_eq!(ready, Ok(true), "subscription bound");
}

/// Nothing more arrives within a short while.
async fn quiet(subscription: &mut Subscription) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(subscription.events.try_recv(), Err(TryRecvError::Empty));
}

/// The stream ends (None) soon.
async fn ends(subscription: &mut Subscription) {
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while subscription.recv().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream ended");
}

#[tokio::test]
async fn every_replica_gets_every_event_on_the_broker() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("broadcast");
    let bus = amqp(AMQP_URL, &prefix);
    let shutdown = Shutdown::new();
    // Two replicas of the same service: same name, same bindings, each its own queue.
    let mut first = bus.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    let mut second = bus.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    bound(&mut first).await;
    bound(&mut second).await;
    assert!(first.is_ready() && second.is_ready());

    let sent = event("message.sent", "hello");
    publish(&bus, std::slice::from_ref(&sent)).await;
    for subscription in [&mut first, &mut second] {
        let received = next(subscription, Duration::from_secs(10)).await;
        assert_eq!(received.as_ref(), Some(&sent), "every replica gets it");
    }

    // A malformed message on the exchange is skipped; the next one still arrives.
    let probe = broker.create_channel().await.expect("channel");
    probe
        .basic_publish(
            format!("{prefix}tenantry.events").as_str().into(),
            "message.sent".into(),
            BasicPublishOptions::default(),
            b"no cloudEvents headers",
            BasicProperties::default(),
        )
        .await
        .expect("publish malformed")
        .await
        .expect("published");
    let after = event("message.sent", "after");
    publish(&bus, std::slice::from_ref(&after)).await;
    for subscription in [&mut first, &mut second] {
        let received = next(subscription, Duration::from_secs(10)).await;
        assert_eq!(received.map(|e| e.id), Some(after.id), "malformed skipped");
    }

    // Shutdown ends both streams.
    shutdown.trigger();
    ends(&mut first).await;
    ends(&mut second).await;
    assert!(!first.is_ready());
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[]).await;
}

#[tokio::test]
async fn only_bound_events_arrive_on_the_broker() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("broadcast-bindings");
    let bus = amqp(AMQP_URL, &prefix);
    let shutdown = Shutdown::new();
    let mut messages = bus.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    let mut members = bus.subscribe(
        "tenantry.test.members",
        bindings(&["member.*", "account.deleted"]),
        shutdown.clone(),
    );
    bound(&mut messages).await;
    bound(&mut members).await;

    let sent = event("message.sent", "ok");
    let added = event("member.added", "ok");
    let created = event("account.created", "ok");
    let deleted = event("account.deleted", "ok");
    publish(
        &bus,
        &[
            sent.clone(),
            added.clone(),
            created.clone(),
            deleted.clone(),
        ],
    )
    .await;

    let received = next(&mut messages, Duration::from_secs(10)).await;
    assert_eq!(received.map(|e| e.id), Some(sent.id));
    for expected in [&added, &deleted] {
        let received = next(&mut members, Duration::from_secs(10)).await;
        assert_eq!(received.map(|e| e.id), Some(expected.id));
    }
    quiet(&mut messages).await;
    quiet(&mut members).await;

    // A dropped subscription stops (its queue goes); the others carry on.
    drop(members);
    let again = event("message.sent", "again");
    publish(&bus, std::slice::from_ref(&again)).await;
    let received = next(&mut messages, Duration::from_secs(10)).await;
    assert_eq!(received.map(|e| e.id), Some(again.id));

    shutdown.trigger();
    ends(&mut messages).await;
    let probe = broker.create_channel().await.expect("channel");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[]).await;
}

#[tokio::test]
async fn resumes_on_a_new_queue_after_the_connection_drops() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("broadcast-reconnect");
    let port = closed_port().await;
    let proxy = Proxy::start(port, BROKER_ADDR).await;
    let through_proxy = amqp(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"), &prefix);
    // Events are published directly, so only the subscription loses the broker.
    let direct = amqp(AMQP_URL, &prefix);
    let shutdown = Shutdown::new();
    let mut subscription =
        through_proxy.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    bound(&mut subscription).await;

    let before = event("message.sent", "before");
    publish(&direct, std::slice::from_ref(&before)).await;
    let received = next(&mut subscription, Duration::from_secs(10)).await;
    assert_eq!(received.map(|e| e.id), Some(before.id));

    // The broker goes away from the subscription's side; it reconnects (through the proxy,
    // which still accepts new connections) and binds a new queue. Events published while it
    // is down are missed, so publish fresh ones until one arrives.
    proxy.cut();
    let mut published = Vec::new();
    let mut resumed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while resumed.is_none() && tokio::time::Instant::now() < deadline {
        let after = event("message.sent", "after");
        publish(&direct, std::slice::from_ref(&after)).await;
        published.push(after.id);
        resumed = next(&mut subscription, Duration::from_millis(250)).await;
    }
    let resumed = resumed.expect("the subscription resumed");
    assert!(published.contains(&resumed.id), "a new event, not a replay");
    assert!(subscription.is_ready());

    // And it keeps going.
    let later = event("message.sent", "later");
    publish(&direct, std::slice::from_ref(&later)).await;
    let received = loop {
        match next(&mut subscription, Duration::from_secs(10)).await {
            Some(event) if published.contains(&event.id) => continue,
            other => break other,
        }
    };
    assert_eq!(received.map(|e| e.id), Some(later.id));

    shutdown.trigger();
    ends(&mut subscription).await;
    proxy.stop();
    let probe = broker.create_channel().await.expect("channel");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[]).await;
}

#[tokio::test]
async fn in_process_every_subscription_gets_every_matching_event() {
    let bus = EventBus::in_process(RetryPolicy::default());
    let shutdown = Shutdown::new();
    let mut first = bus.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    let mut second = bus.subscribe(INBOX, bindings(&["message.#"]), shutdown.clone());
    let mut members = bus.subscribe(
        "tenantry.test.members",
        bindings(&["member.*"]),
        shutdown.clone(),
    );
    // Bound as soon as subscribe returns.
    assert!(first.is_ready() && second.is_ready() && members.is_ready());
    bound(&mut first).await;

    let sent = event("message.sent", "ok");
    let added = event("member.added", "ok");
    let created = event("account.created", "ok");
    publish(&bus, &[sent.clone(), added.clone(), created.clone()]).await;

    for subscription in [&mut first, &mut second] {
        let received = next(subscription, Duration::from_secs(5)).await;
        assert_eq!(received.as_ref(), Some(&sent));
        quiet(subscription).await;
    }
    let received = next(&mut members, Duration::from_secs(5)).await;
    assert_eq!(received.as_ref(), Some(&added));
    quiet(&mut members).await;

    // A dropped subscription is forgotten; publishing still works for the rest.
    drop(members);
    let again = event("member.removed", "ok");
    publish(&bus, std::slice::from_ref(&again)).await;

    shutdown.trigger();
    ends(&mut first).await;
    ends(&mut second).await;
    assert!(!first.is_ready());
    // Subscribing after shutdown yields an ended stream.
    let mut late = bus.subscribe(INBOX, bindings(&["#"]), shutdown.clone());
    ends(&mut late).await;
}

#[tokio::test]
async fn in_process_a_slow_subscriber_loses_events_instead_of_blocking_publishers() {
    let bus = EventBus::in_process(RetryPolicy::default());
    let shutdown = Shutdown::new();
    let mut slow = bus.subscribe(INBOX, bindings(&["message.sent"]), shutdown.clone());
    let events: Vec<Event> = (0..1100).map(|_| event("message.sent", "ok")).collect();
    tokio::time::timeout(Duration::from_secs(5), publish(&bus, &events))
        .await
        .expect("publishing does not wait for the subscriber");
    let mut received = Vec::new();
    while let Ok(event) = slow.events.try_recv() {
        received.push(event.id);
    }
    let first: Vec<_> = events.iter().take(1024).map(|event| event.id).collect();
    assert_eq!(
        received, first,
        "the buffer's worth, in order; the rest dropped"
    );

    // Once it catches up, new events arrive again.
    let fresh = event("message.sent", "fresh");
    publish(&bus, std::slice::from_ref(&fresh)).await;
    let received = next(&mut slow, Duration::from_secs(5)).await;
    assert_eq!(received.map(|e| e.id), Some(fresh.id));
    shutdown.trigger();
    ends(&mut slow).await;
}

/// Heartbeats (`tenantry.…` control messages) never reach what is bound to events — not even
/// `#` — and reach only what binds them, on both transports.
async fn control_messages_travel_apart(bus: &EventBus) -> (Subscription, Subscription) {
    let shutdown = Shutdown::new();
    let mut everything = bus.subscribe(INBOX, bindings(&["#"]), shutdown.clone());
    let mut heartbeats = bus.subscribe(INBOX, bindings(&["tenantry.heartbeat"]), shutdown);
    bound(&mut everything).await;
    bound(&mut heartbeats).await;
    let heartbeat = event("tenantry.heartbeat", "");
    let sent = event("message.sent", "hello");
    publish(bus, &[heartbeat.clone(), sent.clone()]).await;
    let received = next(&mut everything, Duration::from_secs(10)).await;
    assert_eq!(
        received.map(|e| e.id),
        Some(sent.id),
        "`#` gets the event only"
    );
    let received = next(&mut heartbeats, Duration::from_secs(10)).await;
    assert_eq!(
        received.map(|e| e.id),
        Some(heartbeat.id),
        "the heartbeat arrives"
    );
    quiet(&mut everything).await;
    quiet(&mut heartbeats).await;
    (everything, heartbeats)
}

#[tokio::test]
async fn control_messages_travel_apart_on_the_broker() {
    let Some(broker) = broker().await else { return };
    let prefix = prefix("broadcast-control");
    let bus = amqp(AMQP_URL, &prefix);
    let _subscriptions = control_messages_travel_apart(&bus).await;
    let probe = broker.create_channel().await.expect("channel");
    cleanup(&probe, &format!("{prefix}tenantry.events"), &[]).await;
}

#[tokio::test]
async fn control_messages_travel_apart_in_process() {
    let bus = EventBus::in_process(RetryPolicy::default());
    let _subscriptions = control_messages_travel_apart(&bus).await;
}
