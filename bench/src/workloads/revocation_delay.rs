//! How long a removed member keeps access once RemoveMember answered OK, across two replicas
//! with warm local views (DESIGN.md §9): the cluster plus [`TestCluster::start_replica`] (a
//! second node on the same databases and broker), both views fresh.
//!
//! Each round adds an EMPLOYEE to an account, warms both replicas (GetAccount as that member
//! until each replica's `decisions` hit counter rises), removes the member through either
//! replica in turn, and from the moment the OK arrives calls GetAccount as the removed member
//! on both replicas at once, repeatedly, until each refuses. A round's delay is the largest,
//! over the replicas, of (start of the first refused call − OK); a delay of about zero means
//! the first call after the OK was refused. An allowed call after the OK is a correctness
//! violation: the workload then fails (the run exits non-zero).
//!
//! [`TestCluster::start_replica`]: tenantry_testkit::TestCluster::start_replica

use std::time::{Duration, Instant};

use anyhow::Context;
use tenantry_proto::membership::v1::{
    AddMemberRequest, RemoveMemberRequest, Role, add_member_request,
};
use tenantry_proto::registry::v1::{CreateAccountRequest, GetAccountRequest};
use tenantry_testkit::{RegistryClient, Replica, TestCluster, TestUser};
use tonic::Code;

use crate::cluster::{Bench, sample, wait_fresh};
use crate::report::Row;

/// The goal: a round's delay at p99.
const GOAL_P99: Duration = Duration::from_millis(50);
/// How long one replica may keep serving the removed member before the round fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
/// GetAccount calls per replica to warm its view before the round fails.
const MOST_WARMING_CALLS: usize = 20;

/// What one replica showed after the OK.
struct Probe {
    /// From the OK to the start of the first refused call.
    delay: Duration,
    /// Calls that were allowed after the OK (a violation when > 0).
    allowed: usize,
}

/// Measures the delay of `rounds` removals; the rows are the delay and RemoveMember's latency.
pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    eprintln!("  starting a second replica…");
    let started = Instant::now();
    // The first replica's pools are open already (16 connections per service after the
    // workloads before this one); the second gets smaller ones, so the two stay within
    // PostgreSQL's default 100 connections. The pool size does not matter to what is timed.
    let pool_size = tenantry_platform::db::pool_size();
    tenantry_platform::db::set_pool_size(4);
    let replica = bench.cluster.start_replica().await;
    tenantry_platform::db::set_pool_size(pool_size);
    let outcome = async {
        wait_fresh("first replica", || bench.cluster.metrics()).await?;
        wait_fresh("second replica", || replica.metrics()).await?;
        eprintln!(
            "  both views fresh after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        measure(bench, &replica).await
    }
    .await;
    replica.stop().await;
    outcome
}

async fn measure(bench: &Bench, replica: &Replica) -> anyhow::Result<Vec<Row>> {
    let cluster = &bench.cluster;
    let rounds = bench.settings.revocation_rounds;
    let operator = TestUser::operator("bench-ops");
    let owner = TestUser::new(&format!("bench-rv-owner-{}", bench.tag));
    let account = cluster
        .registry_as(&operator)
        .create_account(CreateAccountRequest {
            account_id: format!("rv-{}", bench.tag),
            display_name: "Bench Revocation".into(),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .account
        .context("CreateAccount returned no account")?
        .name;
    add_member(cluster, &operator, &account, &owner, Role::Owner).await?;

    let mut delays = Vec::with_capacity(rounds);
    let mut removals = Vec::with_capacity(rounds);
    let mut violations = Vec::new();
    let mut first_call_refused = 0;
    let mut ticker = Instant::now();
    for round in 0..rounds {
        let member = TestUser::new(&format!("bench-rv-{}-{round}", bench.tag));
        let member_name = add_member(cluster, &owner, &account, &member, Role::Employee).await?;
        let mut first = cluster.registry_as(&member);
        let mut second = replica.registry_as(&member);
        warm(&mut first, || cluster.metrics(), &account, "first").await?;
        warm(&mut second, || replica.metrics(), &account, "second").await?;

        let mut membership = if round % 2 == 0 {
            cluster.membership_as(&owner)
        } else {
            replica.membership_as(&owner)
        };
        let asked = Instant::now();
        membership
            .remove_member(RemoveMemberRequest {
                name: member_name,
                etag: String::new(),
            })
            .await
            .with_context(|| format!("round {round}: RemoveMember"))?;
        let ok = Instant::now();
        removals.push(ok - asked);
        let (on_first, on_second) = tokio::try_join!(
            probe(&mut first, &account, ok),
            probe(&mut second, &account, ok)
        )
        .with_context(|| format!("round {round}"))?;
        if on_first.allowed + on_second.allowed > 0 {
            violations.push(format!(
                "round {round}: {} allowed on the first replica, {} on the second",
                on_first.allowed, on_second.allowed
            ));
        } else {
            first_call_refused += 1;
        }
        delays.push(on_first.delay.max(on_second.delay));
        if ticker.elapsed() >= Duration::from_secs(1) {
            ticker = Instant::now();
            eprintln!("  revocation: {} of {rounds} rounds", round + 1);
        }
    }

    let mut sorted = delays.clone();
    sorted.sort_unstable();
    let p99 = crate::load::quantile_of_sorted(&sorted, 0.99).unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    let met = p99 <= GOAL_P99 && violations.is_empty();
    let mut delay = Row::latencies(
        &format!("revocation delay, 2 replicas ({rounds} removals)"),
        &delays,
        &format!(
            "p99 ≤ {} ms; 0 rounds with an allowed call after OK",
            GOAL_P99.as_millis()
        ),
        Some(met),
        format!(
            "max {:.2} ms; rounds with an allowed call after OK: {} of {rounds}; rounds whose \
             first call after OK was refused on both replicas: {first_call_refused} of {rounds} \
             (a delay of ~0 is that first call)",
            max.as_secs_f64() * 1e3,
            violations.len()
        ),
    );
    if !violations.is_empty() {
        delay.failure = Some(format!(
            "a removed member was allowed after RemoveMember's OK in {} of {rounds} rounds ({})",
            violations.len(),
            violations.join("; ")
        ));
    }
    let removal = Row::latencies(
        "RemoveMember (confirm + every replica's acknowledgement)",
        &removals,
        "none",
        None,
        "alternating replicas".to_string(),
    );
    eprintln!(
        "  {rounds} rounds: delay p99 {:.2} ms, max {:.2} ms, {} violations",
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        violations.len()
    );
    Ok(vec![delay, removal])
}

/// Adds `user` to `account` with `role` as `by`; returns the member's resource name.
async fn add_member(
    cluster: &TestCluster,
    by: &TestUser,
    account: &str,
    user: &TestUser,
    role: Role,
) -> anyhow::Result<String> {
    Ok(cluster
        .membership_as(by)
        .add_member(AddMemberRequest {
            parent: account.to_string(),
            principal: Some(add_member_request::Principal::User(user.resource_name())),
            role: role as i32,
            source: 0,
            request_id: String::new(),
            invitee_profile: None,
        })
        .await
        .context("AddMember")?
        .into_inner()
        .member
        .context("AddMember returned no member")?
        .name)
}

async fn get_account(client: &mut RegistryClient, account: &str) -> Result<(), tonic::Status> {
    client
        .get_account(GetAccountRequest {
            name: account.to_string(),
        })
        .await
        .map(drop)
}

fn decision_hits(metrics: &str) -> f64 {
    sample(
        metrics,
        "tenantry_view_lookups_total{cache=\"decisions\",outcome=\"hit\"} ",
    )
}

/// Calls GetAccount through `client` until its replica served the decision from its view.
async fn warm(
    client: &mut RegistryClient,
    metrics: impl Fn() -> String,
    account: &str,
    which: &str,
) -> anyhow::Result<()> {
    let before = decision_hits(&metrics());
    for _ in 0..MOST_WARMING_CALLS {
        get_account(client, account)
            .await
            .with_context(|| format!("the member reads the account on the {which} replica"))?;
        if decision_hits(&metrics()) > before {
            return Ok(());
        }
    }
    anyhow::bail!(
        "the {which} replica never served the decision from its view ({MOST_WARMING_CALLS} calls)"
    )
}

/// Calls GetAccount as the removed member until it is refused; counts what was allowed.
async fn probe(client: &mut RegistryClient, account: &str, ok: Instant) -> anyhow::Result<Probe> {
    let mut allowed = 0;
    loop {
        let started = Instant::now();
        match get_account(client, account).await {
            Err(status) if status.code() == Code::PermissionDenied => {
                return Ok(Probe {
                    delay: started - ok,
                    allowed,
                });
            }
            Err(status) => anyhow::bail!("GetAccount after the removal failed: {status}"),
            Ok(()) => {
                allowed += 1;
                anyhow::ensure!(
                    ok.elapsed() < GIVE_UP_AFTER,
                    "the removed member was still allowed {} s after the OK",
                    GIVE_UP_AFTER.as_secs()
                );
            }
        }
    }
}
