//! `ListPendingMessages` (the login inbox) with many deliveries stored. The deliveries are
//! loaded with `COPY` straight into notification's database, in the shape its store writes
//! them (services/notification/src/store): 20 messages; every user got 10 of them through one
//! account, 8 still PENDING and 2 ACKNOWLEDGED, so an inbox page holds 8 messages.
//! Ceiling: the same SQL the store issues for a page (the page's message keys, their accounts,
//! the messages) sent directly through sqlx with a pool as large as the service's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::postgres::PgPoolCopyExt;
use sea_orm::sqlx::{AssertSqlSafe, PgPool, Row as _};
use tenantry_proto::notification::v1::ListPendingMessagesRequest;
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_testkit::{ServiceKind, TestUser};
use tonic::metadata::{Ascii, MetadataValue};

use crate::cluster::{Bench, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};

/// Messages in the fixture.
const MESSAGES: usize = 20;
/// Messages each user received.
const PER_USER: usize = 10;
/// Of which still pending.
const PENDING_PER_USER: usize = 8;
/// Users whose inboxes are read (tokens minted up front), spread over all users.
const READERS: usize = 2_000;
/// The page the service reads: its default page size + 1 (to know whether more follow).
const PAGE_LIMIT: i64 = 51;

/// Measures ListPendingMessages against the same SQL issued directly.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let pool = bench.service_pool(ServiceKind::Notification).await?;
    let users = settings.stored_deliveries / PER_USER;
    let prefix = format!("pm-{}", bench.tag);
    load(&pool, &bench.partner, &prefix, users).await?;

    let readers: Vec<(String, MetadataValue<Ascii>)> = (0..READERS.min(users))
        .map(|i| {
            let sub = format!("{prefix}-{}", (i * 7919) % users);
            let user = TestUser {
                sub: sub.clone(),
                email: format!("{sub}@example.com"),
                operator: false,
            };
            Ok((sub, format!("Bearer {}", user.token()).parse()?))
        })
        .collect::<anyhow::Result<_>>()?;
    let readers = Arc::new(readers);
    let client = NotificationServiceClient::new(bench.channel().await?);
    let workload = {
        let readers = readers.clone();
        move |n: u64| {
            let mut client = client.clone();
            let (_, token) = &readers[n as usize % readers.len()];
            let request = with_token(ListPendingMessagesRequest::default(), token);
            async move {
                let page = client.list_pending_messages(request).await?.into_inner();
                anyhow::ensure!(
                    page.items.len() == PENDING_PER_USER,
                    "expected {PENDING_PER_USER} pending messages, got {}",
                    page.items.len()
                );
                Ok(())
            }
        }
    };
    let ceiling = move |n: u64| {
        let pool = pool.clone();
        let user = readers[n as usize % readers.len()].0.clone();
        async move {
            let count = inbox_page_sql(&pool, &user, Utc::now()).await?;
            anyhow::ensure!(count == PENDING_PER_USER, "the SQL found {count} messages");
            Ok(())
        }
    };
    let phase = Phase::timed(settings.in_flight, settings.warmup, settings.window);
    let (ceiling, measured) = load::alternate(
        "ListPendingMessages",
        settings.rounds,
        phase,
        ceiling,
        workload,
    )
    .await?;
    Ok(Row::rated(
        &format!(
            "ListPendingMessages ({} deliveries stored)",
            users * PER_USER
        ),
        &measured,
        &ceiling,
        Goal {
            ratio: 0.6,
            p50: None,
            p99: Some(Duration::from_millis(5)),
        },
        format!(
            "ceiling p50 {:.2} ms, p99 {:.2} ms; deliveries loaded with COPY",
            super::get_account::ms(ceiling.quantile(0.5)),
            super::get_account::ms(ceiling.quantile(0.99))
        ),
    ))
}

/// Loads the fixture: the messages, then `users × PER_USER` deliveries with COPY.
async fn load(pool: &PgPool, partner: &str, prefix: &str, users: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let now = Utc::now();
    let message_ids: Vec<String> = (0..MESSAGES)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    // Older messages first; each a minute apart.
    let create_times: Vec<DateTime<Utc>> = (0..MESSAGES)
        .map(|i| now - chrono::Duration::minutes((MESSAGES - i) as i64))
        .collect();
    for (i, id) in message_ids.iter().enumerate() {
        sea_orm::sqlx::query(
            "INSERT INTO messages (message_id, partner_id, partner_display_name, sender, title, \
             body, read_policy, all_customers, roles, create_time, expire_time, state, \
             update_time, version) VALUES ($1, $2, 'Bench Partner', 'users/bench', $3, $4, \
             'ALL_MUST_READ', false, '', $5, NULL, 'DELIVERED', $5, 1)",
        )
        .bind(id)
        .bind(partner)
        .bind(format!("Maintenance window number {i}"))
        .bind(
            "The platform is read-only on Sunday from 02:00 to 04:00 UTC while the database \
             is upgraded. Please plan deployments around it and acknowledge this message.",
        )
        .bind(create_times[i])
        .execute(pool)
        .await?;
    }
    let total = users * PER_USER;
    eprintln!("  loading {total} deliveries for {users} users with COPY…");
    let fmt = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let loaded_at = fmt(now);
    let mut written = 0usize;
    let mut last_report = Instant::now();
    let mut copy = pool
        .copy_in_raw(
            "COPY deliveries (message_id, account_id, user_id, state, message_create_time, \
             message_expire_time, create_time, ack_time, update_time) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(8 << 20);
    for user in 0..users {
        let account = format!("{prefix}-acct-{}", user % 1000);
        for k in 0..PER_USER {
            let message = (user + k) % MESSAGES;
            let (state, ack_time) = if k < PENDING_PER_USER {
                ("PENDING", "\\N".to_string())
            } else {
                ("ACKNOWLEDGED", loaded_at.clone())
            };
            buffer.push_str(&format!(
                "{}\t{account}\t{prefix}-{user}\t{state}\t{}\t\\N\t{loaded_at}\t{ack_time}\t{loaded_at}\n",
                message_ids[message],
                fmt(create_times[message]),
            ));
        }
        written += PER_USER;
        if buffer.len() > (4 << 20) {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "  loaded {written}/{total} deliveries ({:.0}/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    copy.send(buffer.as_bytes()).await?;
    let rows = copy.finish().await.context("COPY deliveries")?;
    anyhow::ensure!(
        rows as usize == total,
        "COPY wrote {rows} rows, not {total}"
    );
    sea_orm::sqlx::query("ANALYZE deliveries")
        .execute(pool)
        .await?;
    sea_orm::sqlx::query("ANALYZE messages")
        .execute(pool)
        .await?;
    eprintln!(
        "  loaded {total} deliveries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The statements `Store::pending_inbox` issues for a first page, with the same binds;
/// returns the number of messages on the page.
async fn inbox_page_sql(pool: &PgPool, user: &str, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let keys = sea_orm::sqlx::query(
        "SELECT \"deliveries\".\"message_create_time\", \"deliveries\".\"message_id\" \
         FROM \"deliveries\" WHERE \"deliveries\".\"user_id\" = $1 \
         AND \"deliveries\".\"state\" = $2 \
         AND (\"deliveries\".\"message_expire_time\" IS NULL \
              OR \"deliveries\".\"message_expire_time\" > $3) \
         GROUP BY \"deliveries\".\"message_create_time\", \"deliveries\".\"message_id\" \
         ORDER BY \"deliveries\".\"message_create_time\" DESC, \"deliveries\".\"message_id\" DESC \
         LIMIT $4",
    )
    .bind(user)
    .bind("PENDING")
    .bind(now)
    .bind(PAGE_LIMIT)
    .fetch_all(pool)
    .await?;
    let ids: Vec<String> = keys
        .iter()
        .map(|row| row.try_get::<String, _>(1))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let placeholders = |first: usize| {
        (0..ids.len())
            .map(|i| format!("${}", first + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let accounts_sql = format!(
        "SELECT \"deliveries\".\"message_id\", \"deliveries\".\"account_id\" FROM \"deliveries\" \
         WHERE \"deliveries\".\"user_id\" = $1 AND \"deliveries\".\"state\" = $2 \
         AND \"deliveries\".\"message_id\" IN ({}) ORDER BY \"deliveries\".\"account_id\" ASC",
        placeholders(3)
    );
    let mut accounts = sea_orm::sqlx::query(AssertSqlSafe(accounts_sql))
        .bind(user)
        .bind("PENDING");
    for id in &ids {
        accounts = accounts.bind(id);
    }
    let accounts = accounts.fetch_all(pool).await?;
    let mut pairs = Vec::with_capacity(accounts.len());
    for row in &accounts {
        pairs.push((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
    }
    let messages_sql = format!(
        "SELECT \"messages\".\"message_id\", \"messages\".\"partner_id\", \
         \"messages\".\"partner_display_name\", \"messages\".\"sender\", \"messages\".\"title\", \
         \"messages\".\"body\", \"messages\".\"read_policy\", \"messages\".\"all_customers\", \
         \"messages\".\"roles\", \"messages\".\"create_time\", \"messages\".\"expire_time\", \
         \"messages\".\"state\", \"messages\".\"update_time\", \"messages\".\"version\" \
         FROM \"messages\" WHERE \"messages\".\"message_id\" IN ({})",
        placeholders(1)
    );
    let mut messages = sea_orm::sqlx::query(AssertSqlSafe(messages_sql));
    for id in &ids {
        messages = messages.bind(id);
    }
    let messages = messages.fetch_all(pool).await?;
    let mut titles = Vec::with_capacity(messages.len());
    for row in &messages {
        titles.push((
            row.try_get::<String, _>(0)?,
            row.try_get::<String, _>(4)?,
            row.try_get::<String, _>(5)?,
            row.try_get::<DateTime<Utc>, _>(9)?,
        ));
    }
    Ok(titles.len().min(ids.len()))
}
