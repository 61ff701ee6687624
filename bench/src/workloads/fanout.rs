//! Fan-out: one `SendMessage` to C customers with M members each, timed from the call to the
//! message turning DELIVERED (every delivery committed: the last fan-out page marks it). The
//! customers are created through the API; their members are inserted straight into
//! membership's database (the rows `AddMember` writes). Ceiling: a bulk insert of the same
//! C × M delivery rows (multi-row `INSERT … SELECT FROM UNNEST`, 5,000 rows a statement, one
//! transaction) into a scratch database with notification's schema; taken before and after
//! the workload, and averaged.

use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::sqlx::PgPool;
use tenantry_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tenantry_proto::notification::v1::{ReadPolicy, SendMessageRequest};
use tenantry_testkit::ServiceKind;

use crate::cluster::{Bench, bearer, pool, with_token};
use crate::load::Measured;
use crate::report::{Goal, Row};

/// Rows per statement of the ceiling's bulk insert.
const BULK_ROWS: usize = 5_000;

/// Measures the fan-out against the bulk insert.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let (customers, members) = (settings.fanout_customers, settings.fanout_members);
    let total = customers * members;
    eprintln!("  creating {customers} customers and {total} members…");
    let mut customer_ids = Vec::with_capacity(customers);
    for i in 0..customers {
        let id = format!("fo-{}-{i}", bench.tag);
        bench.create_customer(&id).await?;
        customer_ids.push(id);
    }
    let membership = bench.service_pool(ServiceKind::Membership).await?;
    load_members(&membership, &customer_ids, members).await?;
    membership.close().await;
    let users: Vec<(String, String)> = customer_ids
        .iter()
        .flat_map(|account| (0..members).map(move |m| (account.clone(), member_id(account, m))))
        .collect();

    let scratch = bench
        .scratch_database::<tenantry_notification::Migrator>("notification")
        .await?;
    let scratch = pool(&scratch, 1).await?;
    let before = bulk_insert(&scratch, "ceiling-before", &users).await?;

    let notification = bench.service_pool(ServiceKind::Notification).await?;
    let mut client = NotificationServiceClient::new(bench.channel().await?);
    let token = bearer(&bench.owner)?;
    let started = Instant::now();
    let message = client
        .send_message(with_token(
            SendMessageRequest {
                parent: bench.partner_name(),
                title: "Everyone".into(),
                body: "Everyone: please read this at login.".into(),
                read_policy: ReadPolicy::AllMustRead as i32,
                recipients: customer_ids
                    .iter()
                    .map(|id| format!("accounts/{id}"))
                    .collect(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .context("SendMessage")?
        .into_inner()
        .message
        .context("SendMessage returned no message")?;
    let message_id = message
        .name
        .rsplit('/')
        .next()
        .context("message name")?
        .to_string();
    let fan_out = wait_delivered(&notification, &message_id, total, started).await?;
    let written: i64 =
        sea_orm::sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE message_id = $1")
            .bind(&message_id)
            .fetch_one(&notification)
            .await?;
    anyhow::ensure!(
        written as usize == total,
        "the fan-out wrote {written} deliveries, expected {total}"
    );
    let after = bulk_insert(&scratch, "ceiling-after", &users).await?;
    scratch.close().await;
    notification.close().await;

    let ceiling_time = (before + after) / 2;
    let measured = Measured {
        ops: total as u64,
        elapsed: fan_out,
        latencies: Vec::new(),
    };
    let ceiling = Measured {
        ops: total as u64,
        elapsed: ceiling_time,
        latencies: Vec::new(),
    };
    Ok(Row::rated(
        &format!("fan-out to {customers} customers × {members} members (deliveries/s)"),
        &measured,
        &ceiling,
        Goal {
            ratio: 0.5,
            p50: None,
            p99: None,
        },
        format!(
            "time to the last delivery {:.2} s; bulk insert {:.2} s (before {:.2} s, after {:.2} s)",
            fan_out.as_secs_f64(),
            ceiling_time.as_secs_f64(),
            before.as_secs_f64(),
            after.as_secs_f64()
        ),
    ))
}

/// Inserts `count` EMPLOYEE members per account, as `AddMember` stores them.
async fn load_members(pool: &PgPool, accounts: &[String], count: usize) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    for account in accounts {
        let users: Vec<String> = (0..count).map(|m| member_id(account, m)).collect();
        sea_orm::sqlx::query(
            "INSERT INTO members (account_id, user_id, role, source, added_by, create_time, \
             update_time, version) SELECT $1, user_id, 'EMPLOYEE', 'DIRECT', 'users/bench', $2, \
             $2, 1 FROM UNNEST($3::text[]) AS loaded(user_id)",
        )
        .bind(account)
        .bind(now)
        .bind(&users)
        .execute(pool)
        .await?;
    }
    sea_orm::sqlx::query("ANALYZE members")
        .execute(pool)
        .await?;
    Ok(())
}

/// The user id of member `m` of `account`.
fn member_id(account: &str, m: usize) -> String {
    format!("{account}-u{m}")
}

/// Waits until the message is DELIVERED; prints the deliveries written every second.
async fn wait_delivered(
    pool: &PgPool,
    message_id: &str,
    total: usize,
    started: Instant,
) -> anyhow::Result<Duration> {
    let mut last_report = Instant::now();
    loop {
        let state: Option<String> =
            sea_orm::sqlx::query_scalar("SELECT state FROM messages WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(pool)
                .await?;
        if state.as_deref() == Some("DELIVERED") {
            let elapsed = started.elapsed();
            eprintln!(
                "  fan-out: {total} deliveries in {:.2} s",
                elapsed.as_secs_f64()
            );
            return Ok(elapsed);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let written: i64 = sea_orm::sqlx::query_scalar(
                "SELECT count(*) FROM deliveries WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_one(pool)
            .await?;
            eprintln!(
                "  fan-out: {written}/{total} deliveries ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the fan-out did not finish within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ceiling: the same (account, user) delivery rows of one message in one transaction.
async fn bulk_insert(
    pool: &PgPool,
    message_id: &str,
    users: &[(String, String)],
) -> anyhow::Result<Duration> {
    let now = chrono::Utc::now();
    let started = Instant::now();
    let mut txn = pool.begin().await?;
    for chunk in users.chunks(BULK_ROWS) {
        let accounts: Vec<&str> = chunk.iter().map(|(account, _)| account.as_str()).collect();
        let user_ids: Vec<&str> = chunk.iter().map(|(_, user)| user.as_str()).collect();
        sea_orm::sqlx::query(
            "INSERT INTO deliveries (message_id, account_id, user_id, state, \
             message_create_time, message_expire_time, create_time, ack_time, update_time) \
             SELECT $1, account_id, user_id, 'PENDING', $2, NULL, $2, NULL, $2 \
             FROM UNNEST($3::text[], $4::text[]) AS page(account_id, user_id) \
             ON CONFLICT DO NOTHING",
        )
        .bind(message_id)
        .bind(now)
        .bind(&accounts)
        .bind(&user_ids)
        .execute(&mut *txn)
        .await?;
    }
    txn.commit().await?;
    let elapsed = started.elapsed();
    eprintln!(
        "  bulk insert of {} deliveries: {:.2} s",
        users.len(),
        elapsed.as_secs_f64()
    );
    Ok(elapsed)
}
