//! `kill -9` of `tenantry serve audit` while it ingests 10,000 events: a new process on the
//! same database and queues finishes the log with exactly one entry per event — none lost, a
//! redelivered event (same CloudEvents id) never twice — each account's entries numbered
//! 1, 2, 3, … with no gap and no repeat, each chained to the one before, and VerifyAuditChain
//! finds every account's chain intact.
//!
//! What it exercises: the audit consumer's transactions (`services/audit/src/store/mod.rs`,
//! `append`: the chain head locked per account, the entry and the new head committed with the
//! consumer's record of the event) under a crash: whatever the killed process had uncommitted
//! is rolled back by PostgreSQL and redelivered by RabbitMQ; whatever it had committed but not
//! acknowledged is redelivered and must make no second entry.
//!
//! Real processes: customer-registry and membership on SQLite (the audit service asks
//! membership's `Authorize` for VerifyAuditChain; membership keeps its account replica from the
//! `account.*` events below, and reads through to the registry on a miss), and audit on its
//! own PostgreSQL database, killed once and started again. The events are published straight
//! to the exchange by the events crate's own publisher (`AmqpBus`: the CloudEvents AMQP binding
//! the relays write, with publisher confirms), `account.*` and `member.*` over 20 accounts,
//! 200 of them published twice with the same id.
//!
//! Needs TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL; under CI=true a missing one is a
//! failure.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use support::{
    ServeProcess, TestResources, authorized, backend_url, free_port, operator_token, with_database,
};
use tenantry_events::{AmqpBus, AmqpConfig, Event};
use tenantry_proto::audit::v1::VerifyAuditChainRequest;
use tenantry_proto::audit::v1::audit_service_client::AuditServiceClient;
use tenantry_proto::events::v1::{
    AccountCreated, AccountUpdated, ActorKind, MemberAdded, MemberUpdated, Provenance,
};
use tenantry_proto::membership::v1::{Member, MemberSource, Role};
use tenantry_proto::registry::v1::{Account, AccountState};

const JWT_SECRET: &str = "audit-sigkill-test-secret";
const INTERNAL_SECRET: &str = "audit-sigkill-internal";
/// Distinct events published (each one entry).
const EVENTS: usize = 10_000;
/// Accounts the events are spread over, round-robin: 500 entries each.
const ACCOUNTS: usize = 20;
/// Entries in the log when the first audit process is killed.
const KILL_AFTER: usize = 2_000;
/// Events per confirmed publish.
const PUBLISH_BATCH: usize = 250;
const AUDIT: &str = tenantry_audit::SERVICE_NAME;
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn account_id(index: usize) -> String {
    format!("audit-{index:02}")
}

/// The registry's account `id` at `version` (the etag membership's replica orders by).
fn account(id: &str, version: usize) -> Account {
    let now = prost_types::Timestamp::from(SystemTime::now());
    Account {
        name: format!("accounts/{id}"),
        account_id: id.to_string(),
        display_name: format!("Account {id} (v{version})"),
        partner: false,
        managed_by: String::new(),
        state: AccountState::Active as i32,
        create_time: Some(now),
        update_time: Some(now),
        etag: version.to_string(),
        creator: "users/ops".to_string(),
        ..Default::default()
    }
}

fn member(id: &str, user: &str, role: Role) -> Member {
    Member {
        name: format!("accounts/{id}/members/{user}"),
        user: format!("users/{user}"),
        email: format!("{user}@example.com"),
        role: role as i32,
        source: MemberSource::Direct as i32,
        added_by: "users/ops".to_string(),
        etag: "1".to_string(),
        ..Default::default()
    }
}

/// The `number`-th event (0-based) of the run, and the account it is about: per account,
/// `account.created` first, then every tenth an `account.updated`, every tenth (offset by five)
/// a `member.updated`, the rest `member.added`.
fn planned_event(number: usize) -> (String, Event) {
    let id = account_id(number % ACCOUNTS);
    let nth = number / ACCOUNTS;
    let actor = "users/ops".to_string();
    let provenance = Some(Provenance {
        actor_kind: ActorKind::Person as i32,
        via: String::new(),
        actor_role: "OPERATOR".to_string(),
        request_id: format!("audit-sigkill-{number}"),
        trace_id: String::new(),
        ..Default::default()
    });
    let event = if nth == 0 {
        Event::of(
            "/tenantry/customer-registry",
            &AccountCreated {
                account: Some(account(&id, 1)),
                actor,
                provenance,
            },
        )
    } else if nth.is_multiple_of(10) {
        let version = nth / 10 + 1;
        Event::of(
            "/tenantry/customer-registry",
            &AccountUpdated {
                account: Some(account(&id, version)),
                actor,
                previous: Some(account(&id, version - 1)),
                provenance,
            },
        )
    } else if nth % 10 == 5 {
        Event::of(
            "/tenantry/membership",
            &MemberUpdated {
                member: Some(member(&id, &format!("u-{}", nth - 1), Role::Admin)),
                previous_role: Role::Employee as i32,
                actor,
                previous_expire_time: None,
                provenance,
            },
        )
    } else {
        Event::of(
            "/tenantry/membership",
            &MemberAdded {
                member: Some(member(&id, &format!("u-{nth}"), Role::Employee)),
                actor,
                provenance,
            },
        )
    };
    (id, event)
}

/// What is published, in order: every event, with 200 of them twice — 100 right after their
/// first copy (likely in the same consumer batch), 100 about half a run later (likely
/// already committed, possibly by the killed process).
fn publication(events: &[Event]) -> (Vec<Event>, usize) {
    let mut published = Vec::with_capacity(events.len() + events.len() / 50);
    let mut duplicates = 0;
    for (number, event) in events.iter().enumerate() {
        published.push(event.clone());
        if number % 100 == 0 {
            published.push(event.clone());
            duplicates += 1;
        } else if number % 100 == 50 {
            published.push(events[number / 2].clone());
            duplicates += 1;
        }
    }
    (published, duplicates)
}

async fn count(database: &DatabaseConnection, sql: &str) -> usize {
    let row = database
        .query_one_raw(Statement::from_string(
            database.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .expect("count")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a number") as usize
}

/// The queue `queue` as the broker sees it now (a passive declare, on a channel of its own:
/// the broker closes the channel when the queue does not exist); None while it does not exist.
async fn queue_state(connection: &lapin::Connection, queue: &str) -> Option<(u32, u32)> {
    let channel = connection.create_channel().await.expect("channel");
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .ok()?;
    let _ = channel.close(200, "done".into()).await;
    Some((declared.message_count(), declared.consumer_count()))
}

/// One row of `audit_entries`.
#[derive(Debug)]
struct Row {
    sequence: i64,
    event_id: String,
    hash: String,
    previous_hash: String,
}

/// Every entry, by account, in sequence order.
async fn entries(database: &DatabaseConnection) -> BTreeMap<String, Vec<Row>> {
    let rows = database
        .query_all_raw(Statement::from_string(
            database.get_database_backend(),
            "SELECT account_id, sequence, event_id, hash, previous_hash FROM audit_entries \
             ORDER BY account_id, sequence"
                .to_string(),
        ))
        .await
        .expect("read the log");
    let mut by_account: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in rows {
        let account: String = row.try_get("", "account_id").expect("account_id");
        by_account.entry(account).or_default().push(Row {
            sequence: row.try_get("", "sequence").expect("sequence"),
            event_id: row.try_get("", "event_id").expect("event_id"),
            hash: row.try_get("", "hash").expect("hash"),
            previous_hash: row.try_get("", "previous_hash").expect("previous_hash"),
        });
    }
    by_account
}

fn rate(entries: usize, took: Duration) -> f64 {
    entries as f64 / took.as_secs_f64().max(f64::EPSILON)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_ingesting_10000_events_loses_none_records_none_twice_and_leaves_no_gap() {
    let (Some(amqp), Some(postgres)) = (
        backend_url("TENANTRY_TEST_AMQP_URL"),
        backend_url("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("skipped: set TENANTRY_TEST_AMQP_URL and TENANTRY_TEST_POSTGRES_URL");
        return;
    };
    // Declared before the processes, so dropped after them: also on a failed assertion.
    let resources = TestResources::create("audit-sigkill", &amqp, &postgres).await;
    let (dir, prefix) = (&resources.dir, &resources.prefix);
    let audit_database_url = with_database(&postgres, &resources.database);
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());

    // The peers listen on ports chosen up front, since each names the other.
    let (registry_port, membership_port) = (free_port(), free_port());
    let common = vec![
        ("TENANTRY_JWT_SECRET", JWT_SECRET.to_string()),
        ("TENANTRY_INTERNAL_SECRET", INTERNAL_SECRET.to_string()),
        ("TENANTRY_AMQP_URL", amqp.clone()),
        ("TENANTRY_AMQP_PREFIX", prefix.clone()),
        (
            "TENANTRY_REGISTRY_URL",
            format!("http://127.0.0.1:{registry_port}"),
        ),
        (
            "TENANTRY_MEMBERSHIP_URL",
            format!("http://127.0.0.1:{membership_port}"),
        ),
    ];
    let with = |database_url: String| {
        let mut settings = common.clone();
        settings.push(("TENANTRY_DATABASE_URL", database_url));
        settings
    };
    let (registry_settings, membership_settings, audit_settings) = (
        with(sqlite("registry.db")),
        with(sqlite("membership.db")),
        with(audit_database_url.clone()),
    );
    let (registry, membership) = tokio::join!(
        ServeProcess::start(
            "customer-registry",
            "tenantry.registry.v1.CustomerRegistryService",
            registry_port,
            dir,
            "registry",
            &registry_settings,
        ),
        ServeProcess::start(
            "membership",
            "tenantry.membership.v1.MembershipService",
            membership_port,
            dir,
            "membership",
            &membership_settings,
        ),
    );
    let start_audit = |log_name: &'static str| {
        ServeProcess::start("audit", AUDIT, free_port(), dir, log_name, &audit_settings)
    };
    let first = start_audit("audit-1").await;

    // Publishing before the audit queue is bound would route the events nowhere.
    let connection = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let log_queue = format!("{prefix}{}", tenantry_audit::consumers::LOG_GROUP);
    let dead_queue = format!("{log_queue}.dead");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let consumers = queue_state(&connection, &log_queue)
            .await
            .map_or(0, |(_, consumers)| consumers);
        if consumers > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit process did not consume {log_queue} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let planned: Vec<(String, Event)> = (0..EVENTS).map(planned_event).collect();
    let events: Vec<Event> = planned.iter().map(|(_, event)| event.clone()).collect();
    let (published, duplicates) = publication(&events);
    let bus = AmqpBus::new(AmqpConfig {
        url: amqp.clone(),
        queue_prefix: prefix.clone(),
        connection_name: "audit-sigkill test publisher".to_string(),
        ..AmqpConfig::default()
    });
    let publisher = bus.publisher();
    let publish_started = Instant::now();
    let publishing = tokio::spawn(async move {
        for batch in published.chunks(PUBLISH_BATCH) {
            publisher.publish(batch).await.expect("publish a batch");
        }
        (published.len(), publish_started.elapsed())
    });

    // SIGKILL once the log holds KILL_AFTER entries.
    let audit_db = sea_orm::Database::connect(audit_database_url.as_str())
        .await
        .expect("the audit database");
    let entry_count = || count(&audit_db, "SELECT COUNT(*) FROM audit_entries");
    let deadline = Instant::now() + Duration::from_secs(90);
    let at_kill = loop {
        let written = entry_count().await;
        if written >= KILL_AFTER {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "the log did not reach {KILL_AFTER} entries within 90 s ({written}); log: {}",
            std::fs::read_to_string(dir.join("audit-1.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed_after = publish_started.elapsed();
    first.kill().await;
    let after_kill = entry_count().await;
    assert!(
        after_kill < EVENTS,
        "the kill came before every event was recorded ({after_kill})"
    );
    let (published_count, publish_took) = publishing.await.expect("the publishing task");
    let pending_at_restart = queue_state(&connection, &log_queue)
        .await
        .map_or(0, |(messages, _)| messages);

    // Same database, same queue: the rest, and whatever the dead process had not acknowledged.
    let restarted = Instant::now();
    let second = start_audit("audit-2").await;
    let serving_after = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let written = entry_count().await;
        assert!(
            written <= EVENTS,
            "{written} entries for {EVENTS} distinct events: an event was recorded twice"
        );
        if written == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {written} of {EVENTS} events recorded 150 s after the restart; log: {}",
            std::fs::read_to_string(dir.join("audit-2.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished_after = restarted.elapsed();
    // The group's queue and its delay queues drain: every late copy (a redelivery, a retry
    // after a failed try, a published duplicate) is handled before the log is checked.
    let retry = tenantry_events::RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(1000),
        max_delay: Duration::from_secs(60),
    };
    let draining: Vec<String> =
        tenantry_events::group_queues(prefix, tenantry_audit::consumers::LOG_GROUP, &retry)
            .into_iter()
            .filter(|queue| *queue != dead_queue)
            .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for queue in &draining {
        while queue_state(&connection, queue)
            .await
            .is_some_and(|(messages, _)| messages > 0)
        {
            assert!(
                Instant::now() < deadline,
                "{queue} still holds messages 30 s after every event was recorded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Exactly one entry per distinct event id, each in the log of the account it is about.
    assert_eq!(entry_count().await, EVENTS, "one entry per event");
    assert_eq!(
        count(
            &audit_db,
            "SELECT COUNT(DISTINCT event_id) FROM audit_entries"
        )
        .await,
        EVENTS,
        "10,000 distinct event ids"
    );
    assert_eq!(
        count(
            &audit_db,
            &format!(
                "SELECT COUNT(*) FROM processed_events WHERE consumer_group = '{}'",
                tenantry_audit::consumers::LOG_GROUP
            )
        )
        .await,
        EVENTS,
        "the consumer recorded each event once"
    );
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (account, event) in &planned {
        expected
            .entry(account.clone())
            .or_default()
            .insert(event.id.to_string());
    }
    let log = entries(&audit_db).await;
    assert_eq!(
        log.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "one chain per account"
    );
    let heads: BTreeMap<String, (i64, String)> = audit_db
        .query_all_raw(Statement::from_string(
            audit_db.get_database_backend(),
            "SELECT account_id, last_sequence, last_hash FROM audit_chains".to_string(),
        ))
        .await
        .expect("chain heads")
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "account_id").expect("account_id"),
                (
                    row.try_get("", "last_sequence").expect("last_sequence"),
                    row.try_get("", "last_hash").expect("last_hash"),
                ),
            )
        })
        .collect();
    for (account, rows) in &log {
        let sequences: Vec<i64> = rows.iter().map(|row| row.sequence).collect();
        let gapless: Vec<i64> = (1..=rows.len() as i64).collect();
        if sequences != gapless {
            let present: BTreeSet<i64> = sequences.iter().copied().collect();
            let missing: Vec<i64> = gapless
                .iter()
                .filter(|sequence| !present.contains(sequence))
                .copied()
                .collect();
            let repeated: Vec<i64> = sequences
                .windows(2)
                .filter(|pair| pair[0] == pair[1])
                .map(|pair| pair[0])
                .collect();
            panic!(
                "accounts/{account}: sequences are not 1..={}: missing {missing:?}, repeated \
                 {repeated:?}, highest {:?}",
                rows.len(),
                sequences.last()
            );
        }
        let ids: BTreeSet<String> = rows.iter().map(|row| row.event_id.clone()).collect();
        let wanted = &expected[account];
        assert_eq!(
            ids.len(),
            rows.len(),
            "accounts/{account}: an event recorded twice"
        );
        let lost: Vec<&String> = wanted.difference(&ids).collect();
        let foreign: Vec<&String> = ids.difference(wanted).collect();
        assert!(
            lost.is_empty() && foreign.is_empty(),
            "accounts/{account}: events lost {lost:?}, events of another account {foreign:?}"
        );
        let mut previous = "";
        for row in rows {
            assert_eq!(
                row.previous_hash, previous,
                "accounts/{account}/auditEntries/{} is not chained to the entry before it",
                row.sequence
            );
            previous = &row.hash;
        }
        let last = rows.last().expect("entries");
        assert_eq!(
            heads.get(account),
            Some(&(last.sequence, last.hash.clone())),
            "accounts/{account}: the chain head names the last entry"
        );
    }

    // The service agrees: every chain verifies.
    let token = operator_token(JWT_SECRET);
    let mut audit = AuditServiceClient::new(second.channel().await);
    for (account, rows) in &log {
        let verification = audit
            .verify_audit_chain(authorized(
                VerifyAuditChainRequest {
                    parent: format!("accounts/{account}"),
                },
                &token,
            ))
            .await
            .unwrap_or_else(|status| panic!("VerifyAuditChain accounts/{account}: {status:?}"))
            .into_inner();
        assert!(
            verification.intact,
            "accounts/{account}: chain not intact: {verification:?}"
        );
        assert_eq!(
            (verification.checked_entries, verification.last_sequence),
            (rows.len() as i64, rows.len() as i64),
            "accounts/{account}: {verification:?}"
        );
    }

    // Nothing was dead-lettered.
    let dead = queue_state(&connection, &dead_queue)
        .await
        .map(|(messages, _)| messages);
    assert_eq!(dead, Some(0), "dead letters in {dead_queue}");

    // What the ingest cost the database: transactions rolled back, deadlocks detected.
    let (rollbacks, deadlocks) = (
        count(
            &audit_db,
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .await,
        count(
            &audit_db,
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
        .await,
    );
    let after_restart = EVENTS - after_kill;
    eprintln!(
        "published {published_count} messages ({EVENTS} events, {duplicates} of them twice) in \
         {publish_took:.1?} ({:.0} msg/s); SIGKILL {killed_after:.1?} after the first publish \
         with {at_kill} entries seen ({after_kill} committed once it was gone): {:.0} events/s \
         before the kill; {pending_at_restart} messages ready in the queue at the restart; the \
         new process was SERVING after {serving_after:.1?} and recorded the other \
         {after_restart} within {finished_after:.1?} of its start: {:.0} events/s after the \
         restart ({:.0} events/s from SERVING); {EVENTS} entries, {EVENTS} distinct event ids, \
         {ACCOUNTS} gapless chains, each verified intact; the audit database saw \
         {rollbacks} rollbacks and {deadlocks} deadlocks",
        rate(published_count, publish_took),
        rate(after_kill, killed_after),
        rate(after_restart, finished_after),
        rate(after_restart, finished_after.saturating_sub(serving_after)),
    );

    let _ = audit_db.close().await;
    let _ = connection.close(0, "done".into()).await;
    let (exited_zero, _) = second.terminate(EXIT_TIMEOUT).await;
    assert!(exited_zero, "the second audit process exited non-zero");
    for peer in [membership, registry] {
        let (exited_zero, _) = peer.terminate(EXIT_TIMEOUT).await;
        assert!(exited_zero, "a peer exited non-zero");
    }
}
