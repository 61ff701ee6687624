//! `ListAuditEntries` with many entries stored, one call in flight: the partner's OWNER reads
//! the first page of the partner's own trail (page_size 50, newest first): authentication,
//! membership's `Authorize` for `PERMISSION_AUDIT_READ` (from the audit process's local view
//! once warm), the store's keyset query, the rows mapped to the wire.
//!
//! The entries are loaded with `COPY` straight into the audit service's `audit_entries` (and
//! the chain heads into `audit_chains`), spread over 1,000 accounts, a tenth of them in the
//! partner's log, interleaved as appends of many accounts would be; every column is filled
//! with values of a real entry's shape (JSON before/after, request and trace ids, 64-digit
//! hashes), but the hashes are not a valid chain (nothing here verifies them). The partner's
//! entries continue its chain after the entries the cluster's own events gave it, in one
//! transaction holding its chain head.
//!
//! Ceiling: the statement `Store::list` sends for that page (its text taken from
//! `store::list_statement`, page_size + 1 rows) sent directly through sqlx with a pool as large
//! as the service's, its rows decoded. One call in flight on both sides (the goal is a latency at
//! one call in flight), whatever `--in-flight` says.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::{PgPool, Row as _};
use tenantry_proto::audit::v1::ListAuditEntriesRequest;
use tenantry_proto::audit::v1::audit_service_client::AuditServiceClient;
use tenantry_testkit::ServiceKind;

use crate::cluster::{Bench, bearer, with_token};
use crate::load::{self, Phase};
use crate::report::{Goal, Row};

/// Accounts the entries are spread over (the partner among them).
const ACCOUNTS: usize = 1_000;
/// One entry in this many is the partner's.
const PARTNER_SHARE: usize = 10;
/// The page asked for.
const PAGE_SIZE: i32 = 50;

/// The page's statement, exactly as the service's `Store::list` builds it for the partner's
/// own log, newest first, no filter and no page token; its two parameters are the account and
/// page_size + 1 (checked: another shape fails the workload rather than measure something else).
fn page_sql_text(partner: &str) -> anyhow::Result<String> {
    let query = tenantry_audit::store::ListQuery {
        account_id: partner.to_string(),
        ..Default::default()
    };
    let statement = tenantry_audit::store::list_statement(
        sea_orm::DbBackend::Postgres,
        &query,
        None,
        PAGE_SIZE as u64 + 1,
    );
    let values = statement.values.map(|values| values.0).unwrap_or_default();
    anyhow::ensure!(
        values
            == vec![
                sea_orm::Value::from(partner.to_string()),
                sea_orm::Value::from(PAGE_SIZE as u64 + 1)
            ],
        "Store::list's statement has other parameters than (account, limit): {values:?}"
    );
    Ok(statement.sql)
}

/// Measures ListAuditEntries against its SQL issued directly.
pub async fn run(bench: &Bench) -> anyhow::Result<Row> {
    let settings = &bench.settings;
    let pool = bench.service_pool(ServiceKind::Audit).await?;
    let total = settings.audit_entries_stored;
    let newest = load(&pool, &bench.partner, &format!("al-{}", bench.tag), total).await?;

    let token = bearer(&bench.owner)?;
    let parent = bench.partner_name();
    let client = AuditServiceClient::new(bench.channel().await?);
    let workload = {
        let parent = parent.clone();
        move |_n: u64| {
            let mut client = client.clone();
            let request = with_token(
                ListAuditEntriesRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    ..Default::default()
                },
                &token,
            );
            async move {
                let page = client.list_audit_entries(request).await?.into_inner();
                anyhow::ensure!(
                    page.audit_entries.len() == PAGE_SIZE as usize,
                    "expected {PAGE_SIZE} entries, got {}",
                    page.audit_entries.len()
                );
                anyhow::ensure!(
                    page.audit_entries[0].sequence >= newest,
                    "the page does not start with the newest entry"
                );
                anyhow::ensure!(!page.next_page_token.is_empty(), "no next page token");
                Ok(())
            }
        }
    };
    let sql = std::sync::Arc::new(page_sql_text(&bench.partner)?);
    let ceiling = {
        let (pool, partner) = (pool.clone(), bench.partner.clone());
        move |_n: u64| {
            let (pool, partner, sql) = (pool.clone(), partner.clone(), sql.clone());
            async move {
                let count = page_sql(&pool, &sql, &partner).await?;
                anyhow::ensure!(
                    count == PAGE_SIZE as usize + 1,
                    "the SQL found {count} entries"
                );
                Ok(())
            }
        }
    };
    let phase = Phase::timed(1, settings.warmup, settings.window);
    let before = crate::cluster::lookups(&bench.cluster.metrics());
    let handled_before = handling(&bench.cluster.metrics());
    let (ceiling, measured) = load::alternate(
        "ListAuditEntries",
        settings.rounds,
        phase,
        ceiling,
        workload,
    )
    .await?;
    let after = crate::cluster::lookups(&bench.cluster.metrics());
    let handled_after = handling(&bench.cluster.metrics());
    let server_mean_ms =
        (handled_after.0 - handled_before.0) / (handled_after.1 - handled_before.1).max(1.0) * 1e3;
    pool.close().await;
    let mut row = Row::rated(
        &format!("ListAuditEntries, 1 in flight ({total} entries stored)"),
        &measured,
        &ceiling,
        Goal {
            ratio: 0.6,
            p50: None,
            p99: Some(Duration::from_millis(5)),
        },
        format!(
            "page_size {PAGE_SIZE}, newest first, the partner's OWNER on the partner's log ({} \
             entries); ceiling p50 {:.2} ms, p99 {:.2} ms; the service's own handling (its \
             `grpc_server_handling_seconds`, warm-ups included) {server_mean_ms:.2} ms on \
             average; entries loaded with COPY; local view: {}",
            total / PARTNER_SHARE,
            super::get_account::ms(ceiling.quantile(0.5)),
            super::get_account::ms(ceiling.quantile(0.99)),
            crate::cluster::describe_lookups(&before, &after)
        ),
    );
    row.goal = format!("{} at 1 in flight", row.goal);
    Ok(row)
}

/// The sum (seconds) and count of the audit process's `ListAuditEntries` handling times.
fn handling(metrics: &str) -> (f64, f64) {
    let series = |name: &str| {
        metrics
            .lines()
            .filter(|line| {
                line.starts_with(name) && line.contains("grpc_method=\"ListAuditEntries\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (
        series("grpc_server_handling_seconds_sum{"),
        series("grpc_server_handling_seconds_count{"),
    )
}

/// Loads `total` entries (a tenth the partner's, the rest over `ACCOUNTS - 1` accounts named
/// `{prefix}-{i}`) and their chain heads; returns the partner's newest sequence number.
async fn load(pool: &PgPool, partner: &str, prefix: &str, total: usize) -> anyhow::Result<i64> {
    let started = Instant::now();
    let mut txn = pool.begin().await?;
    // The partner's chain as the cluster's events left it; held until the entries are in.
    sea_orm::sqlx::query(
        "INSERT INTO audit_chains (account_id, managed_by, last_sequence, last_hash, update_time) \
         VALUES ($1, NULL, 0, '', now()) ON CONFLICT DO NOTHING",
    )
    .bind(partner)
    .execute(&mut *txn)
    .await?;
    let (partner_sequence, partner_hash): (i64, String) = sea_orm::sqlx::query_as(
        "SELECT last_sequence, last_hash FROM audit_chains WHERE account_id = $1 FOR UPDATE",
    )
    .bind(partner)
    .fetch_one(&mut *txn)
    .await?;
    let accounts: Vec<String> = (0..ACCOUNTS - 1).map(|i| format!("{prefix}-{i}")).collect();
    // Per account: (last sequence, last hash).
    let mut heads: HashMap<&str, (i64, String)> = accounts
        .iter()
        .map(|account| (account.as_str(), (0, String::new())))
        .collect();
    heads.insert(partner, (partner_sequence, partner_hash));

    eprintln!("  loading {total} audit entries over {ACCOUNTS} accounts with COPY…");
    let now = Utc::now();
    let fmt = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let mut copy = txn
        .copy_in_raw(
            "COPY audit_entries (account_id, sequence, event_id, event_type, event_time, actor, \
             actor_kind, via, actor_role, resource, before_json, after_json, request_id, \
             trace_id, previous_hash, hash, record_time) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(8 << 20);
    let mut last_report = Instant::now();
    for k in 0..total {
        let account: &str = if k % PARTNER_SHARE == 0 {
            partner
        } else {
            &accounts[(k * 7919) % accounts.len()]
        };
        let head = heads
            .get_mut(account)
            .context("an account without a head")?;
        let sequence = head.0 + 1;
        let hash = format!(
            "{:032x}{:032x}",
            uuid::Uuid::new_v4().as_u128(),
            uuid::Uuid::new_v4().as_u128()
        );
        // Oldest first, a millisecond apart, the newest a moment ago.
        let time = fmt(now - chrono::Duration::milliseconds((total - k) as i64));
        let user = format!("u-{:07}", k % 100_000);
        let (event_type, resource, before, after) = match k % 5 {
            0 => (
                "member.added",
                format!("accounts/{account}/members/{user}"),
                "{}".to_string(),
                format!(
                    "{{\"role\":\"EMPLOYEE\",\"source\":\"DIRECT\",\"user\":\"users/{user}\"}}"
                ),
            ),
            1 => (
                "member.updated",
                format!("accounts/{account}/members/{user}"),
                "{\"role\":\"EMPLOYEE\"}".to_string(),
                "{\"role\":\"ADMIN\"}".to_string(),
            ),
            2 => (
                "account.updated",
                format!("accounts/{account}"),
                format!("{{\"display_name\":\"Customer {account}\"}}"),
                format!("{{\"display_name\":\"Customer {account} ({k})\"}}"),
            ),
            3 => (
                "invitation.created",
                format!("accounts/{account}/invitations/{}", uuid::Uuid::now_v7()),
                "{}".to_string(),
                format!(
                    "{{\"email\":\"{user}@example.com\",\"expire_time\":\"{}\",\
                     \"resend_count\":0,\"role\":\"EMPLOYEE\",\"state\":\"PENDING\"}}",
                    now.format("%Y-%m-%dT%H:%M:%S%.6fZ")
                ),
            ),
            _ => (
                "member.removed",
                format!("accounts/{account}/members/{user}"),
                format!(
                    "{{\"role\":\"EMPLOYEE\",\"source\":\"DIRECT\",\"user\":\"users/{user}\"}}"
                ),
                "{}".to_string(),
            ),
        };
        buffer.push_str(&format!(
            "{account}\t{sequence}\t{}\t{event_type}\t{time}\tusers/bench-owner\t\
             ACTOR_KIND_PERSON\t\tOWNER\t{resource}\t{before}\t{after}\t{}\t{:032x}\t{}\t{hash}\t{time}\n",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::new_v4().as_u128(),
            head.1,
        ));
        *head = (sequence, hash);
        if buffer.len() > (4 << 20) {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "  loaded {k}/{total} audit entries ({:.0}/s)",
                k as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    copy.send(buffer.as_bytes()).await?;
    let rows = copy.finish().await.context("COPY audit_entries")?;
    anyhow::ensure!(
        rows as usize == total,
        "COPY wrote {rows} rows, not {total}"
    );
    let (ids, sequences, hashes): (Vec<String>, Vec<i64>, Vec<String>) = heads
        .iter()
        .map(|(account, (sequence, hash))| (account.to_string(), *sequence, hash.clone()))
        .fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |mut acc, (a, s, h)| {
                acc.0.push(a);
                acc.1.push(s);
                acc.2.push(h);
                acc
            },
        );
    sea_orm::sqlx::query(
        "INSERT INTO audit_chains (account_id, managed_by, last_sequence, last_hash, update_time) \
         SELECT account_id, NULL, last_sequence, last_hash, now() \
         FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS head(account_id, last_sequence, last_hash) \
         ON CONFLICT (account_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence, \
         last_hash = EXCLUDED.last_hash, update_time = EXCLUDED.update_time",
    )
    .bind(&ids)
    .bind(&sequences)
    .bind(&hashes)
    .execute(&mut *txn)
    .await?;
    txn.commit().await?;
    for table in ["audit_entries", "audit_chains"] {
        sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    eprintln!(
        "  loaded {total} audit entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(heads.get(partner).map_or(0, |head| head.0))
}

/// The page's statement with the same binds; returns the rows read, decoded.
async fn page_sql(pool: &PgPool, sql: &str, account: &str) -> anyhow::Result<usize> {
    let rows = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql))
        .bind(account)
        .bind(i64::from(PAGE_SIZE) + 1)
        .fetch_all(pool)
        .await?;
    let mut decoded = Vec::with_capacity(rows.len());
    for row in &rows {
        decoded.push((
            row.try_get::<i64, _>(0)?,
            row.try_get::<String, _>(1)?,
            row.try_get::<i64, _>(2)?,
            (3..5)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<Vec<_>, _>>()?,
            row.try_get::<DateTime<Utc>, _>(5)?,
            (6..17)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<Vec<_>, _>>()?,
            row.try_get::<DateTime<Utc>, _>(17)?,
        ));
    }
    Ok(decoded.len())
}
