//! The guard against guessing invitation secrets: LookupInvitation and AcceptInvitation count
//! unknown secrets per caller (the token's `sub`) and, separately, per network address (the
//! peer's IP), so neither one login hammering from many addresses nor many logins from one
//! address get more than their share. Either limit answers RESOURCE_EXHAUSTED with RetryInfo.
//!
//! The counts live in the service's database ([`GuessCounter`]), so the limits hold for all
//! replicas together, not for each one; the rule (what a count allows) is
//! [`GuessLimit`](crate::domain::limits::GuessLimit).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tenantry_platform::error::ErrorChain;

use crate::domain::InvitationError;
use crate::domain::limits::{GuessLimit, GuessScope};
use crate::store::guesses::GuessCounter;

/// The two limits, counted in the service's database.
#[derive(Debug)]
pub struct GuessGuard {
    by_caller: GuessLimit,
    by_address: GuessLimit,
    counter: GuessCounter,
}

impl GuessGuard {
    /// At most `per_caller` unknown secrets per caller and `per_address` per address, each per
    /// `window`, counted in `counter`.
    pub fn new(
        per_caller: usize,
        per_address: usize,
        window: Duration,
        counter: GuessCounter,
    ) -> Self {
        Self {
            by_caller: GuessLimit::new(per_caller, window),
            by_address: GuessLimit::new(per_address, window),
            counter,
        }
    }

    fn limit(&self, scope: GuessScope) -> &GuessLimit {
        match scope {
            GuessScope::Caller => &self.by_caller,
            GuessScope::Address => &self.by_address,
        }
    }

    /// Refuses the attempt while `caller` or `address` is over its limit: the longer wait of
    /// the two. A database that cannot be read is UNAVAILABLE (the lookup would be too).
    pub async fn check(
        &self,
        caller: &str,
        address: Option<IpAddr>,
    ) -> Result<(), InvitationError> {
        self.check_at(caller, address, tenantry_platform::time::now())
            .await
    }

    /// [`GuessGuard::check`] at `now`.
    pub async fn check_at(
        &self,
        caller: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<(), InvitationError> {
        let address = address.map(|ip| ip.to_string());
        let keys = keys(caller, address.as_deref());
        // Both limits have the same window, so one read covers both.
        let counts = self
            .counter
            .counts(
                &keys,
                self.by_caller.previous_window_start(now),
                self.by_caller.window_start(now),
            )
            .await?;
        let wait = keys
            .iter()
            .zip(counts)
            .filter_map(|((scope, _), counts)| self.limit(*scope).wait(counts, now))
            .max();
        match wait {
            Some(retry_after) => Err(InvitationError::TooManyGuesses { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts an unknown secret against `caller` and `address`. A count that cannot be written
    /// is logged: the call still answers that no invitation has the secret.
    pub async fn record_failure(&self, caller: &str, address: Option<IpAddr>) {
        if let Err(error) = self
            .record_failure_at(caller, address, tenantry_platform::time::now())
            .await
        {
            tracing::warn!(error = %ErrorChain(&error), "cannot count an unknown invitation secret");
        }
    }

    /// [`GuessGuard::record_failure`] at `now`, reporting a database failure. The first count
    /// of a window also deletes the windows no limit reads any more.
    pub async fn record_failure_at(
        &self,
        caller: &str,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<(), InvitationError> {
        let address = address.map(|ip| ip.to_string());
        let window_start = self.by_caller.window_start(now);
        let mut window_opened = false;
        for (scope, key) in keys(caller, address.as_deref()) {
            window_opened |= self.counter.record(scope, key, window_start).await? == 1;
        }
        if window_opened {
            self.counter
                .delete_before(self.by_caller.previous_window_start(now))
                .await?;
        }
        Ok(())
    }
}

fn keys<'a>(caller: &'a str, address: Option<&'a str>) -> Vec<(GuessScope, &'a str)> {
    let mut keys = vec![(GuessScope::Caller, caller)];
    if let Some(address) = address {
        keys.push((GuessScope::Address, address));
    }
    keys
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};
    use tenantry_platform::db::Database;
    use tenantry_platform::testing::{TempDatabase, TempPostgres};

    use super::*;
    use crate::store::migrations::Migrator;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const ELSEWHERE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));
    const MINUTE: Duration = Duration::from_secs(60);

    /// 10 s into a one-minute window.
    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_010 + seconds, 0).unwrap()
    }

    fn guard(database: &Database, per_caller: usize, per_address: usize) -> GuessGuard {
        GuessGuard::new(
            per_caller,
            per_address,
            MINUTE,
            GuessCounter::new(database.clone()),
        )
    }

    async fn limited(guard: &GuessGuard, caller: &str, address: Option<IpAddr>) -> bool {
        match guard.check_at(caller, address, at(0)).await {
            Ok(()) => false,
            Err(InvitationError::TooManyGuesses { .. }) => true,
            Err(error) => panic!("{error}"),
        }
    }

    async fn fail(guard: &GuessGuard, caller: &str, address: Option<IpAddr>) {
        guard
            .record_failure_at(caller, address, at(0))
            .await
            .expect("counted");
    }

    async fn rows(database: &Database) -> i64 {
        let connection = database.connection().unwrap();
        let row = connection
            .query_one_raw(Statement::from_string(
                connection.get_database_backend(),
                "SELECT COUNT(*) FROM invitation_guesses",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    #[tokio::test]
    async fn a_caller_is_limited_from_every_address() {
        let temp = TempDatabase::new::<Migrator>("invitation-guesses").await;
        let guard = guard(&temp.database, 3, 100);
        for address in [HOME, ELSEWHERE, None] {
            assert!(!limited(&guard, "mallory", address).await);
            fail(&guard, "mallory", address).await;
        }
        assert!(limited(&guard, "mallory", HOME).await);
        assert!(limited(&guard, "mallory", None).await);
        assert!(!limited(&guard, "alice", HOME).await, "other callers go on");
        let Err(InvitationError::TooManyGuesses { retry_after }) =
            guard.check_at("mallory", None, at(0)).await
        else {
            panic!("limited");
        };
        assert_eq!(
            retry_after,
            Duration::from_secs(50 + 20),
            "the rest of the window, and the next until the three weigh less than three"
        );
    }

    #[tokio::test]
    async fn an_address_is_limited_whoever_logs_in() {
        let temp = TempDatabase::new::<Migrator>("invitation-guesses").await;
        let guard = guard(&temp.database, 3, 5);
        for n in 0..5 {
            let caller = format!("sock-puppet-{n}");
            assert!(!limited(&guard, &caller, HOME).await);
            fail(&guard, &caller, HOME).await;
        }
        assert!(limited(&guard, "fresh-login", HOME).await);
        assert!(!limited(&guard, "fresh-login", ELSEWHERE).await);
        assert!(
            !limited(&guard, "fresh-login", None).await,
            "no address: only the caller limit applies"
        );
    }

    #[tokio::test]
    async fn old_windows_are_deleted_as_new_ones_start() {
        let temp = TempDatabase::new::<Migrator>("invitation-guesses").await;
        let guard = guard(&temp.database, 3, 5);
        fail(&guard, "mallory", HOME).await;
        fail(&guard, "mallory", HOME).await;
        assert_eq!(rows(&temp.database).await, 2, "one row per key and window");
        // The next window still reads this one; the one after does not.
        guard
            .record_failure_at("mallory", HOME, at(60))
            .await
            .unwrap();
        assert_eq!(rows(&temp.database).await, 4);
        guard.record_failure_at("eve", None, at(120)).await.unwrap();
        assert_eq!(rows(&temp.database).await, 3);
        // And the limit forgets the old windows: mallory may try again.
        assert!(guard.check_at("mallory", HOME, at(120)).await.is_ok());
    }

    /// Two replicas (two guards, two connection pools) over one database share the counts: the
    /// limit is reached after `limit` unknown secrets in total, whichever replica saw them.
    async fn replicas_share_the_count(first: Database, second: Database) {
        let replicas = [
            std::sync::Arc::new(guard(&first, 4, 6)),
            std::sync::Arc::new(guard(&second, 4, 6)),
        ];
        for n in 0..4 {
            let replica = &replicas[n % 2];
            assert!(!limited(replica, "mallory", HOME).await, "guess {n}");
            fail(replica, "mallory", HOME).await;
        }
        for replica in &replicas {
            assert!(limited(replica, "mallory", ELSEWHERE).await);
        }
        // The address limit too: 4 of mallory's plus 2 from another login.
        for replica in &replicas {
            assert!(!limited(replica, "trudy", HOME).await);
            fail(replica, "trudy", HOME).await;
        }
        for replica in &replicas {
            assert!(limited(replica, "fresh-login", HOME).await);
            assert!(!limited(replica, "fresh-login", ELSEWHERE).await);
        }
        // Concurrent failures on both replicas are all counted (atomic upserts).
        let mut tasks = tokio::task::JoinSet::new();
        for replica in &replicas {
            for _ in 0..10 {
                let replica = replica.clone();
                tasks.spawn(async move { replica.record_failure_at("eve", None, at(0)).await });
            }
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("no panic").expect("counted");
        }
        let limit = replicas[0].by_caller;
        let counts = replicas[1]
            .counter
            .counts(
                &[(GuessScope::Caller, "eve")],
                limit.previous_window_start(at(0)),
                limit.window_start(at(0)),
            )
            .await
            .unwrap();
        assert_eq!(counts[0].current, 20);
    }

    #[tokio::test]
    async fn replicas_share_the_count_on_sqlite() {
        let temp = TempDatabase::new::<Migrator>("invitation-guesses").await;
        // SQLite is one process's database: the replicas share its one connection.
        replicas_share_the_count(temp.database.clone(), temp.database.clone()).await;
    }

    #[tokio::test]
    async fn replicas_share_the_count_on_postgres() {
        let Some(temp) = TempPostgres::create("invitation_guesses").await else {
            return;
        };
        let (first, second) = (temp.database(), temp.database());
        for database in [&first, &second] {
            database
                .connect_and_migrate::<Migrator>()
                .await
                .expect("migrated");
        }
        replicas_share_the_count(first.clone(), second.clone()).await;
        for database in [first, second] {
            let _ = database.connection().unwrap().clone().close().await;
        }
    }
}
