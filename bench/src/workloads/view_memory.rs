//! The local view's memory, in-process and alone (no cluster running yet): a fresh
//! [`LocalView`] of capacity `N` and one `decisions` cache ([`ViewCache<Grant>`], as the
//! [`tenantry_platform::authz::Authorizer`] keeps it), filled with `N` distinct decisions.
//!
//! Reported: the resident memory the entries added (RSS from `/proc/self/status`; nothing else
//! allocates meanwhile, and the keys are computed before the first reading), per entry; the
//! cost of a `get` that hits, single-threaded over the `N` keys; then `2 N` more distinct
//! decisions, to show the entries stay within the capacity and the memory does not grow past
//! 1.2 × (the cache evicts). A process holds a few such caches (decisions, accounts), each
//! bounded by `TENANTRY_VIEW_CAPACITY` (default 200,000).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use tenantry_platform::authz::Grant;
use tenantry_platform::view::{CacheKey, LocalView, ViewCache, ViewSettings};
use tenantry_proto::membership::v1::{Permission, Role};

use crate::report::Row;

/// The most the memory may grow while `2 N` more decisions go in, as a multiple of what `N`
/// took.
const GROWTH_LIMIT: f64 = 1.2;

/// Fills a decisions cache of `capacity`, in a thread of its own.
pub async fn run(capacity: usize) -> anyhow::Result<Row> {
    tokio::task::spawn_blocking(move || measure(capacity))
        .await
        .context("the view-memory thread panicked")?
}

/// The decision of `user` on `account` for ACCOUNT_READ: the same key parts the authorizer
/// uses, less the claims.
fn key(cache: &ViewCache<Grant>, user: &str, account: &str) -> CacheKey {
    cache.key(&[
        user.as_bytes(),
        account.as_bytes(),
        &(Permission::AccountRead as i32).to_le_bytes(),
    ])
}

/// User and account of decision `i` (1,000 accounts, one user per decision), written into
/// reused buffers so that filling allocates nothing but the cache's own entries.
fn names(i: usize, user: &mut String, account: &mut String) {
    user.clear();
    account.clear();
    let _ = write!(user, "bench-user-{i}");
    let _ = write!(account, "bench-account-{}", i % 1_000);
}

/// Inserts decisions `from..to`; returns the time taken.
fn fill(view: &LocalView, cache: &ViewCache<Grant>, from: usize, to: usize) -> Duration {
    let grant = Grant {
        role: Some(Role::Employee),
        partner_role: None,
        granted_by: None,
    };
    let (mut user, mut account) = (String::with_capacity(32), String::with_capacity(32));
    let started = Instant::now();
    for i in from..to {
        names(i, &mut user, &mut account);
        let ticket = view
            .ticket(Some(&user), Some(&account))
            .expect("a fresh view hands out tickets");
        cache.insert(key(cache, &user, &account), grant, ticket);
    }
    started.elapsed()
}

fn measure(capacity: usize) -> anyhow::Result<Row> {
    let view = LocalView::new(ViewSettings {
        capacity,
        ..ViewSettings::default()
    });
    view.set_fresh(true);
    let cache: ViewCache<Grant> = ViewCache::new(&view, "decisions");
    let keys: Vec<CacheKey> = {
        let (mut user, mut account) = (String::new(), String::new());
        (0..capacity)
            .map(|i| {
                names(i, &mut user, &mut account);
                key(&cache, &user, &account)
            })
            .collect()
    };
    let base = rss_bytes()?;
    let filled_in = fill(&view, &cache, 0, capacity);
    let filled = rss_bytes()?;
    let entries = cache.len();
    let added = filled.saturating_sub(base);
    let per_entry = added as f64 / entries.max(1) as f64;
    eprintln!(
        "  {entries} decisions in {:.2} s ({:.0} ns per insert): RSS +{:.1} MiB, {per_entry:.0} B \
         per entry",
        filled_in.as_secs_f64(),
        filled_in.as_nanos() as f64 / capacity.max(1) as f64,
        mib(added)
    );

    let started = Instant::now();
    let hits = keys
        .iter()
        .filter(|key| black_box(cache.get(**key)).is_some())
        .count();
    let lookup_ns = started.elapsed().as_nanos() as f64 / keys.len().max(1) as f64;
    eprintln!(
        "  lookups: {hits} of {} hit, {lookup_ns:.0} ns per get",
        keys.len()
    );

    let refilled_in = fill(&view, &cache, capacity, 3 * capacity);
    let refilled = rss_bytes()?;
    let entries_after = cache.len();
    let grown = refilled.saturating_sub(base);
    let growth = grown as f64 / added.max(1) as f64;
    eprintln!(
        "  {} more decisions in {:.2} s: {entries_after} held, RSS +{:.1} MiB ({growth:.2} × the \
         first {capacity})",
        2 * capacity,
        refilled_in.as_secs_f64(),
        mib(grown)
    );
    let bounded = entries_after <= capacity && growth <= GROWTH_LIMIT;
    drop(cache);
    drop(keys);
    let hot_ns = hot_get_ns(capacity.max(1_000));
    eprintln!("  a hot cache (1,000 entries, in the CPU's caches): {hot_ns:.0} ns per get");
    Ok(Row::figures(
        &format!("local view: decisions cache, capacity {capacity}"),
        format!(
            "{:.1} MiB = {per_entry:.0} B/entry, get {lookup_ns:.0} ns; bounded by \
             TENANTRY_VIEW_CAPACITY: ≤ {capacity} entries, memory ≤ {GROWTH_LIMIT} × after {} \
             more",
            mib(added),
            2 * capacity
        ),
        Some(bounded),
        format!(
            "{entries} entries after {capacity} distinct inserts (random eviction per shard), \
             {hits} of {capacity} gets hit; after {} more: {entries_after} entries, RSS +{:.1} \
             MiB ({growth:.2} ×); insert {:.0} ns, single-threaded; get on a hot cache of 1,000 \
             entries {hot_ns:.0} ns (the rest of a get at {capacity} is memory latency); a \
             process keeps one such cache per kind (decisions, accounts), each at most \
             TENANTRY_VIEW_CAPACITY entries (default {})",
            2 * capacity,
            mib(grown),
            filled_in.as_nanos() as f64 / capacity.max(1) as f64,
            ViewSettings::default().capacity
        ),
    ))
}

/// Nanoseconds per hit of a cache of 1,000 entries looked up `gets` times in turn: the fixed
/// cost of a `get` (lock, two keyed hashes, ticket check, clock) without memory latency.
fn hot_get_ns(gets: usize) -> f64 {
    const ENTRIES: usize = 1_000;
    let view = LocalView::new(ViewSettings {
        capacity: ENTRIES * 4,
        ..ViewSettings::default()
    });
    view.set_fresh(true);
    let cache: ViewCache<Grant> = ViewCache::new(&view, "decisions");
    fill(&view, &cache, 0, ENTRIES);
    let keys: Vec<CacheKey> = {
        let (mut user, mut account) = (String::new(), String::new());
        (0..ENTRIES)
            .map(|i| {
                names(i, &mut user, &mut account);
                key(&cache, &user, &account)
            })
            .collect()
    };
    let started = Instant::now();
    let hits = keys
        .iter()
        .cycle()
        .take(gets)
        .filter(|key| black_box(cache.get(**key)).is_some())
        .count();
    debug_assert_eq!(hits, gets);
    started.elapsed().as_nanos() as f64 / gets.max(1) as f64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// This process's resident memory (`VmRSS` in `/proc/self/status`), bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}
