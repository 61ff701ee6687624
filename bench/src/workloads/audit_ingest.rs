//! Audit ingest: events consumed into the audit log, per second. Each round publishes N
//! hand-made events (`member.added`, `member.updated`, `account.updated` of 100 fresh accounts,
//! with a person's provenance, as the services publish them) straight into the audit
//! consumer's own queue on RabbitMQ (the default exchange, persistent, with confirms; the type
//! travels in the `cloudEvents_type` header as on every delivery), so no other consumer and no
//! producer's work is measured. Timed from the first publish until every event is an entry
//! (the chain heads of the round's accounts count N; checked against the entries afterwards).
//! The audit consumer appends each entry in its batch transaction: lock the account's chain
//! head, hash, insert the entry, update the head, plus the batch's `processed_events` record.
//!
//! Ceiling: raw inserts of the same rows — the entries that round's consumer wrote, read back,
//! under other account and event ids — into the same `audit_entries` table of the audit
//! service's database, one multi-row `INSERT … SELECT FROM UNNEST` per transaction of as many
//! rows as the consumer's batches (the cluster's `batch_size`), with as many transactions in
//! flight as the consumer can have (its prefetch / batch size: the unacknowledged deliveries
//! it may hold), committed durably (the server's `fsync` and `synchronous_commit` as they are).
//! Workload and ceiling alternate, two rounds each (one in `--quick`).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use prost::Message;
use sea_orm::sqlx::{PgPool, Row as _};
use tenantry_proto::events::v1::{
    AccountUpdated, ActorKind, MemberAdded, MemberUpdated, Provenance,
};
use tenantry_proto::membership::v1::{Member, MemberSource, Role};
use tenantry_proto::registry::v1::{Account, AccountState};
use tenantry_testkit::ServiceKind;

use crate::cluster::Bench;
use crate::load::Measured;
use crate::report::{Goal, Row};

/// Accounts whose logs one round's events go to.
const ACCOUNTS: usize = 100;
/// The longest a round may take.
const ROUND_TIMEOUT: Duration = Duration::from_secs(600);

/// One stored entry, as the ceiling re-inserts it (every column but `id`).
struct EntryRow {
    account_id: String,
    sequence: i64,
    event_id: String,
    event_type: String,
    event_time: DateTime<Utc>,
    actor: String,
    actor_kind: String,
    via: String,
    actor_role: String,
    resource: String,
    before_json: String,
    after_json: String,
    request_id: String,
    trace_id: String,
    previous_hash: String,
    hash: String,
}

/// What one workload round measured.
struct Round {
    elapsed: Duration,
    published: Duration,
    transactions: i64,
}

/// Measures the audit consumer against raw inserts of the same rows.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let events = settings.audit_events;
    let amqp = bench
        .cluster
        .amqp()
        .context("the audit ingest needs the cluster on RabbitMQ")?
        .clone();
    let group = ServiceKind::Audit
        .info()
        .consumer_groups
        .first()
        .context("the audit service has no consumer group")?;
    let queue = format!("{}{group}", amqp.queue_prefix);
    let batch_size = amqp.batch_size.max(1);
    let in_flight = (usize::from(amqp.prefetch) / batch_size).max(1);
    let pool = bench.service_pool(ServiceKind::Audit).await?;
    let connection = Connection::connect(&amqp.url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let mut measured = Measured::default();
    let mut ceiling = Measured::default();
    let mut rounds = Vec::new();
    let mut ceiling_rounds = Vec::new();
    let total_rounds = settings.rounds.max(1);
    for round in 1..=total_rounds {
        let accounts: Vec<String> = (0..ACCOUNTS)
            .map(|i| format!("ai-{}-r{round}-{i}", bench.tag))
            .collect();
        eprintln!("  audit ingest (round {round}/{total_rounds}): {events} events…");
        let result = ingest_round(
            &pool,
            (&channel, &queue, group),
            (&bench.owner.resource_name(), &bench.partner),
            &accounts,
            events,
        )
        .await?;
        eprintln!(
            "  audit ingest (round {round}/{total_rounds}): {events} entries in {:.2} s = {:.0}/s \
             (published in {:.2} s, {} transactions)",
            result.elapsed.as_secs_f64(),
            events as f64 / result.elapsed.as_secs_f64(),
            result.published.as_secs_f64(),
            result.transactions
        );
        measured.merge(Measured {
            ops: events as u64,
            elapsed: result.elapsed,
            latencies: Vec::new(),
        });
        rounds.push(result);

        let rows = stored_rows(&pool, &accounts, events).await?;
        let inserted = ceiling_round(&pool, rows, round, batch_size, in_flight).await?;
        eprintln!(
            "  audit ingest ceiling (round {round}/{total_rounds}): {events} rows in {:.2} s = {:.0}/s",
            inserted.as_secs_f64(),
            events as f64 / inserted.as_secs_f64()
        );
        ceiling.merge(Measured {
            ops: events as u64,
            elapsed: inserted,
            latencies: Vec::new(),
        });
        ceiling_rounds.push(inserted);
    }
    let _ = connection.close(0, "bench done".into()).await;
    pool.close().await;

    let transactions: i64 = rounds.iter().map(|round| round.transactions).sum();
    let total_events = events * total_rounds;
    let seconds = |durations: &mut dyn Iterator<Item = Duration>| {
        durations
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    Ok(Row::rated(
        &format!("audit ingest ({events} events a round, entries/s)"),
        &measured,
        &ceiling,
        Goal {
            ratio: 0.5,
            p50: None,
            p99: None,
        },
        format!(
            "published into the audit queue, timed to the last entry: {} s a round (publishing \
             took {} s of it); the consumer committed {transactions} transactions, {:.1} events \
             each (batch size {batch_size}, prefetch {}); ceiling: {batch_size}-row transactions, \
             {in_flight} in flight, {} s a round",
            seconds(&mut rounds.iter().map(|round| round.elapsed)),
            seconds(&mut rounds.iter().map(|round| round.published)),
            total_events as f64 / transactions.max(1) as f64,
            amqp.prefetch,
            seconds(&mut ceiling_rounds.iter().copied()),
        ),
    ))
}

/// Publishes `count` events about `accounts` into the audit queue and waits until the log
/// holds them all.
async fn ingest_round(
    pool: &PgPool,
    (channel, queue, group): (&lapin::Channel, &str, &str),
    (actor, partner): (&str, &str),
    accounts: &[String],
    count: usize,
) -> anyhow::Result<Round> {
    let now = Utc::now();
    let messages: Vec<(String, &'static str, &'static str, Vec<u8>)> = (0..count)
        .map(|i| event(&accounts[i % accounts.len()], i, (actor, partner), now))
        .collect();
    let event_ids: Vec<String> = messages.iter().map(|(id, ..)| id.clone()).collect();
    let queue = ShortString::from(queue);
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(count);
    for (id, event_type, source, payload) in &messages {
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                queue.clone(),
                BasicPublishOptions::default(),
                payload,
                properties(id, event_type, source, now),
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        anyhow::ensure!(!confirm.await?.is_nack(), "the broker refused an event");
    }
    let published = started.elapsed();
    let mut last_report = Instant::now();
    loop {
        let appended: i64 = sea_orm::sqlx::query_scalar(
            "SELECT COALESCE(sum(last_sequence), 0)::bigint FROM audit_chains \
             WHERE account_id = ANY($1)",
        )
        .bind(accounts)
        .fetch_one(pool)
        .await?;
        if appended as usize >= count {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < ROUND_TIMEOUT,
            "only {appended} of {count} events reached the audit log within {ROUND_TIMEOUT:?}"
        );
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "  audit ingest: {appended}/{count} entries ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let stored: i64 = sea_orm::sqlx::query_scalar(
        "SELECT count(*) FROM audit_entries WHERE account_id = ANY($1)",
    )
    .bind(accounts)
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        stored as usize == count,
        "the audit log holds {stored} entries of the round, expected {count}"
    );
    // One batch transaction records its events with one `handled_time`.
    let transactions: i64 = sea_orm::sqlx::query_scalar(
        "SELECT count(DISTINCT handled_time) FROM processed_events \
         WHERE consumer_group = $1 AND event_id = ANY($2)",
    )
    .bind(group)
    .bind(&event_ids)
    .fetch_one(pool)
    .await?;
    Ok(Round {
        elapsed,
        published,
        transactions,
    })
}

/// Event `i` of a round about `account` (a customer of `partner`): its id, type, source and
/// payload. Members added, then their role changed, and every fourth event the account
/// renamed, each with the provenance of an OWNER's call by `actor`.
fn event(
    account: &str,
    i: usize,
    (actor, partner): (&str, &str),
    now: DateTime<Utc>,
) -> (String, &'static str, &'static str, Vec<u8>) {
    let id = uuid::Uuid::now_v7().to_string();
    let provenance = Some(Provenance {
        actor_kind: ActorKind::Person as i32,
        via: String::new(),
        actor_role: "OWNER".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: format!("{:032x}", uuid::Uuid::new_v4().as_u128()),
        person: actor.to_string(),
    });
    let time = Some(tenantry_platform::time::to_timestamp(now));
    let user = format!("u-{:08}", i / 2);
    let member = |role: Role| Member {
        name: format!("accounts/{account}/members/{user}"),
        user: format!("users/{user}"),
        email: format!("{user}@example.com"),
        given_name: "Bench".into(),
        family_name: format!("Member {i}"),
        role: role as i32,
        source: MemberSource::Direct as i32,
        added_by: actor.to_string(),
        create_time: time,
        update_time: time,
        etag: format!("W/\"{i}\""),
        expire_time: None,
    };
    let (event_type, source, payload) = match i % 4 {
        0 | 2 => (
            "member.added",
            "/tenantry/membership",
            MemberAdded {
                member: Some(member(Role::Employee)),
                actor: actor.to_string(),
                provenance,
            }
            .encode_to_vec(),
        ),
        1 => (
            "member.updated",
            "/tenantry/membership",
            MemberUpdated {
                member: Some(member(Role::Admin)),
                previous_role: Role::Employee as i32,
                actor: actor.to_string(),
                previous_expire_time: None,
                provenance,
            }
            .encode_to_vec(),
        ),
        _ => {
            let named = |display_name: String| Account {
                name: format!("accounts/{account}"),
                account_id: account.to_string(),
                display_name,
                partner: false,
                managed_by: format!("accounts/{partner}"),
                state: AccountState::Active as i32,
                create_time: time,
                update_time: time,
                delete_time: None,
                etag: format!("W/\"{i}\""),
                creator: actor.to_string(),
            };
            (
                "account.updated",
                "/tenantry/customer-registry",
                AccountUpdated {
                    account: Some(named(format!("Customer {account} ({i})"))),
                    actor: actor.to_string(),
                    previous: Some(named(format!("Customer {account}"))),
                    provenance,
                }
                .encode_to_vec(),
            )
        }
    };
    (id, event_type, source, payload)
}

/// The AMQP properties the relay gives an event (CloudEvents attributes as headers).
fn properties(id: &str, event_type: &str, source: &str, time: DateTime<Utc>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("cloudEvents_specversion", "1.0"),
        ("cloudEvents_id", id),
        ("cloudEvents_type", event_type),
        ("cloudEvents_source", source),
        ("cloudEvents_time", &time.to_rfc3339()),
    ] {
        headers.insert(
            name.into(),
            AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        );
    }
    BasicProperties::default()
        .with_content_type("application/protobuf".into())
        .with_message_id(id.into())
        .with_timestamp(time.timestamp().max(0) as u64)
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// The entries the consumer wrote for `accounts`, in the order it appended them.
async fn stored_rows(
    pool: &PgPool,
    accounts: &[String],
    count: usize,
) -> anyhow::Result<Vec<EntryRow>> {
    let rows = sea_orm::sqlx::query(
        "SELECT account_id, sequence, event_id, event_type, event_time, actor, actor_kind, via, \
         actor_role, resource, before_json, after_json, request_id, trace_id, previous_hash, \
         hash FROM audit_entries WHERE account_id = ANY($1) ORDER BY id",
    )
    .bind(accounts)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(
        rows.len() == count,
        "read {} entries back, expected {count}",
        rows.len()
    );
    rows.iter()
        .map(|row| {
            Ok(EntryRow {
                account_id: row.try_get(0)?,
                sequence: row.try_get(1)?,
                event_id: row.try_get(2)?,
                event_type: row.try_get(3)?,
                event_time: row.try_get(4)?,
                actor: row.try_get(5)?,
                actor_kind: row.try_get(6)?,
                via: row.try_get(7)?,
                actor_role: row.try_get(8)?,
                resource: row.try_get(9)?,
                before_json: row.try_get(10)?,
                after_json: row.try_get(11)?,
                request_id: row.try_get(12)?,
                trace_id: row.try_get(13)?,
                previous_hash: row.try_get(14)?,
                hash: row.try_get(15)?,
            })
        })
        .collect()
}

/// Inserts `rows` (under other account and event ids) in transactions of `batch_size` rows,
/// `in_flight` at a time; returns how long that took.
async fn ceiling_round(
    pool: &PgPool,
    mut rows: Vec<EntryRow>,
    round: usize,
    batch_size: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    for row in &mut rows {
        row.account_id = row.account_id.replacen("ai-", "ac-", 1);
        row.event_id = uuid::Uuid::now_v7().to_string();
    }
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(rows.chunks(batch_size))
        .map(|chunk| insert_batch(pool, chunk))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in results {
        result.with_context(|| format!("ceiling round {round}"))?;
    }
    Ok(elapsed)
}

/// One transaction inserting `chunk` with one statement.
async fn insert_batch(pool: &PgPool, chunk: &[EntryRow]) -> anyhow::Result<()> {
    fn column<T: Clone>(chunk: &[EntryRow], get: impl Fn(&EntryRow) -> &T) -> Vec<T> {
        chunk.iter().map(|row| get(row).clone()).collect()
    }
    let mut txn = pool.begin().await?;
    sea_orm::sqlx::query(
        "INSERT INTO audit_entries (account_id, sequence, event_id, event_type, event_time, \
         actor, actor_kind, via, actor_role, resource, before_json, after_json, request_id, \
         trace_id, previous_hash, hash, record_time) \
         SELECT account_id, sequence, event_id, event_type, event_time, actor, actor_kind, via, \
         actor_role, resource, before_json, after_json, request_id, trace_id, previous_hash, \
         hash, $17 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], \
         $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[]) \
         AS entry(account_id, sequence, event_id, event_type, event_time, actor, actor_kind, \
         via, actor_role, resource, before_json, after_json, request_id, trace_id, \
         previous_hash, hash)",
    )
    .bind(column(chunk, |row| &row.account_id))
    .bind(column(chunk, |row| &row.sequence))
    .bind(column(chunk, |row| &row.event_id))
    .bind(column(chunk, |row| &row.event_type))
    .bind(column(chunk, |row| &row.event_time))
    .bind(column(chunk, |row| &row.actor))
    .bind(column(chunk, |row| &row.actor_kind))
    .bind(column(chunk, |row| &row.via))
    .bind(column(chunk, |row| &row.actor_role))
    .bind(column(chunk, |row| &row.resource))
    .bind(column(chunk, |row| &row.before_json))
    .bind(column(chunk, |row| &row.after_json))
    .bind(column(chunk, |row| &row.request_id))
    .bind(column(chunk, |row| &row.trace_id))
    .bind(column(chunk, |row| &row.previous_hash))
    .bind(column(chunk, |row| &row.hash))
    .bind(Utc::now())
    .execute(&mut *txn)
    .await?;
    txn.commit().await?;
    Ok(())
}
