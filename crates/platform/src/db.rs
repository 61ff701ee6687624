//! The database handle every service's store uses: SQLite files for the embedded default,
//! PostgreSQL in production, the same sea-orm code on both. Errors are classified (conflict,
//! unavailable, timeout, other) before they become API errors, so a lost connection is
//! UNAVAILABLE and a lost race is ABORTED, never INTERNAL, and no SQL reaches a caller.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlErr};
use sea_orm_migration::MigratorTrait;

use crate::error::{ApiError, ErrorChain};

/// How long [`Database::ping`] waits for an answer. A ping needs a pooled connection, and
/// while the server refuses connections (stopped, restarting) the pool keeps retrying until
/// its acquire timeout: unbounded, a ping during an outage shorter than that timeout waits for
/// the database to come back and reports it healthy, so health never leaves SERVING.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// PostgreSQL connections one process keeps per database when `TENANTRY_DATABASE_POOL_SIZE`
/// is not set.
pub const DEFAULT_POOL_SIZE: u32 = 16;
/// The largest `TENANTRY_DATABASE_POOL_SIZE` accepted.
pub const MAX_POOL_SIZE: u32 = 1000;

static POOL_SIZE: AtomicU32 = AtomicU32::new(DEFAULT_POOL_SIZE);

/// Sets the PostgreSQL pool size of every database this process connects to from now on
/// (`TENANTRY_DATABASE_POOL_SIZE`; `tenantry serve` and `tenantry migrate` set it before any
/// service starts). SQLite keeps its single connection whatever this says. Values outside
/// `1..=`[`MAX_POOL_SIZE`] are clamped; [`parse_pool_size`] refuses them first.
pub fn set_pool_size(size: u32) {
    POOL_SIZE.store(size.clamp(1, MAX_POOL_SIZE), Ordering::Relaxed);
}

/// The PostgreSQL pool size [`connect`] uses (see [`set_pool_size`]).
pub fn pool_size() -> u32 {
    POOL_SIZE.load(Ordering::Relaxed)
}

/// Reads a `TENANTRY_DATABASE_POOL_SIZE` value: a whole number from 1 to [`MAX_POOL_SIZE`]
/// (a clap `value_parser`; the error names the setting).
pub fn parse_pool_size(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(size) if (1..=MAX_POOL_SIZE).contains(&size) => Ok(size),
        _ => Err(format!(
            "TENANTRY_DATABASE_POOL_SIZE (--database-pool-size) must be a whole number from 1 to \
             {MAX_POOL_SIZE}, not `{value}`"
        )),
    }
}

/// A database that may not be reachable yet. The server starts (and answers health checks with
/// NOT_SERVING) before the database is up; [`Database::connection`] is UNAVAILABLE until then.
#[derive(Clone)]
pub struct Database {
    url: Arc<str>,
    connection: Arc<OnceLock<DatabaseConnection>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &redact(&self.url))
            .field("connected", &self.connection.get().is_some())
            .finish()
    }
}

impl Database {
    /// A handle for `url` (`sqlite://path` or `postgres://…`), not connected yet.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            connection: Arc::new(OnceLock::new()),
        }
    }

    /// A handle already connected.
    pub fn connected(url: &str, connection: DatabaseConnection) -> Self {
        let database = Self::new(url);
        let _ = database.connection.set(connection);
        database
    }

    /// The URL with any password hidden, for logs.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    /// The connection pool, or UNAVAILABLE while the database has not been reached and migrated.
    pub fn connection(&self) -> Result<&DatabaseConnection, StoreError> {
        self.connection.get().ok_or(StoreError::NotReady)
    }

    /// Whether [`Database::connect_and_migrate`] has succeeded.
    pub fn is_ready(&self) -> bool {
        self.connection.get().is_some()
    }

    /// Connects (a pool of [`pool_size`] on PostgreSQL), applies `M`'s pending migrations under
    /// the migration lock ([`with_migration_lock`]), and makes the connection available.
    pub async fn connect_and_migrate<M: MigratorTrait>(&self) -> Result<(), DbErr> {
        if self.is_ready() {
            return Ok(());
        }
        let connection = connect(&self.url).await?;
        with_migration_lock(&self.url, M::up(&connection, None)).await?;
        let _ = self.connection.set(connection);
        Ok(())
    }

    /// Whether the database answers right now, within [`PING_TIMEOUT`].
    pub async fn ping(&self) -> bool {
        match self.connection.get() {
            Some(connection) => matches!(
                tokio::time::timeout(PING_TIMEOUT, connection.ping()).await,
                Ok(Ok(()))
            ),
            None => false,
        }
    }
}

/// Opens a pool for `url`. PostgreSQL gets at most [`pool_size`] connections. SQLite gets one:
/// the embedded default is single-process, and one writer avoids SQLite's lock-upgrade failures
/// under concurrent transactions.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with_pool_size(url, pool_size()).await
}

/// [`connect`] with at most `pool_size` PostgreSQL connections (SQLite: one, whatever it says).
pub async fn connect_with_pool_size(
    url: &str,
    pool_size: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .sqlx_logging(false)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(url)
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                DbErr::Custom(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        options
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
    } else {
        options
            .max_connections(pool_size.clamp(1, MAX_POOL_SIZE))
            .min_connections(0);
        // The pool retries a failing connection until its acquire timeout and then says only
        // "pool timed out": one direct connection first reports the cause (refused, unknown
        // host, bad password) within the connect timeout.
        probe_postgres(url)
            .await
            .map_err(|error| without_raw_url(error, url))?;
    }
    sea_orm::Database::connect(options)
        .await
        .map_err(|error| without_raw_url(error, url))
}

/// The PostgreSQL advisory lock every migration of a database holds, replicas and the
/// `tenantry migrate` Job alike. PostgreSQL scopes advisory locks to the current database, and
/// each service has a database of its own, so one key serves them all.
pub const MIGRATION_LOCK_KEY: i64 = lock_key(b"tenantry.migrations");

/// An advisory lock key from a name (64-bit FNV-1a), so keys are stable and self-describing.
const fn lock_key(name: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < name.len() {
        hash ^= name[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash as i64
}

/// Runs `migrate` (the migrations of the database at `url`) while holding the database's
/// migration lock, so replicas starting together and the migration Job never apply the same
/// migration twice: the others wait, then find nothing pending.
///
/// On PostgreSQL the lock is a session-level `pg_advisory_lock(`[`MIGRATION_LOCK_KEY`]`)` taken
/// on a dedicated connection opened for this (not one of the pool's), held while `migrate` runs
/// on the pool and released on that same connection afterwards. A dedicated session keeps lock
/// and unlock on one connection whatever the pool does, and lets the migrations use the pool
/// even when it has a single connection. If the process dies or `migrate` is dropped, the
/// session ends and PostgreSQL releases the lock. SQLite needs no lock (one process, one
/// connection).
pub async fn with_migration_lock<T>(
    url: &str,
    migrate: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, DbErr> {
    if url.starts_with("sqlite:") {
        return migrate.await;
    }
    use sea_orm::sqlx::Connection;
    let mut session = connect_directly(url, "the migration lock").await?;
    let exec_error =
        |error: sea_orm::sqlx::Error| DbErr::Exec(sea_orm::RuntimeErr::SqlxError(error.into()));
    let acquired: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut session)
        .await
        .map_err(exec_error)?;
    if !acquired {
        tracing::info!("waiting for another process to finish migrating the database");
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut session)
            .await
            .map_err(exec_error)?;
    }
    let result = migrate.await;
    let unlocked = sea_orm::sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut session)
        .await;
    if let Err(error) = unlocked {
        // Closing the session below releases it all the same.
        tracing::warn!(error = %ErrorChain(&error), "releasing the migration lock failed");
    }
    let _ = session.close().await;
    result
}

/// Opens and closes one PostgreSQL connection: the server's or the network's own error if that
/// fails.
async fn probe_postgres(url: &str) -> Result<(), DbErr> {
    use sea_orm::sqlx::Connection;
    let connection = connect_directly(url, "the database").await?;
    // A failed goodbye changes nothing: the server reached us.
    let _ = connection.close().await;
    Ok(())
}

/// One PostgreSQL connection outside any pool, within [`CONNECT_TIMEOUT`]; `purpose` names what
/// it is for in the timeout's error.
async fn connect_directly(url: &str, purpose: &str) -> Result<sea_orm::sqlx::PgConnection, DbErr> {
    use sea_orm::sqlx::{Connection, PgConnection};
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into()))),
        Err(_) => Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
            "no connection for {purpose} within {CONNECT_TIMEOUT:?}"
        )))),
    }
}

/// How long opening a PostgreSQL connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// `url` fit for a log line or an error: the password of the user info and the value of every
/// query parameter that can carry a secret (`password`, `sslpassword`, … as libpq and sqlx
/// accept them) replaced by `***`. A URL that does not parse (a password with an unencoded `/`
/// or `?`, no scheme) loses everything before its last `@`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() || parsed.password().is_none() => {
            if parsed.password().is_some() {
                // Cannot fail: the URL has a host.
                let _ = parsed.set_password(Some("***"));
            }
            if let Some(query) = parsed.query().map(redact_query) {
                parsed.set_query(Some(&query));
            }
            parsed.to_string()
        }
        _ => {
            let (scheme, rest) = match url.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), url),
            };
            let rest = match rest.rsplit_once('@') {
                Some((_, after)) => format!("***@{after}"),
                None => rest.to_string(),
            };
            match rest.split_once('?') {
                Some((base, query)) => format!("{scheme}{base}?{}", redact_query(query)),
                None => format!("{scheme}{rest}"),
            }
        }
    }
}

/// A query string with the value of every secret parameter replaced by `***`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _value)) if is_secret_parameter(key) => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `error` with every copy of the raw `url` in its text replaced by [`redact`]'s (a URL the
/// driver cannot parse is quoted whole in its error).
fn without_raw_url(error: DbErr, url: &str) -> DbErr {
    let text = error.to_string();
    if text.contains(url) {
        DbErr::Custom(text.replace(url, &redact(url)))
    } else {
        error
    }
}

/// Whether a connection URL's query parameter carries a secret.
fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "sslpassword",
        "auth",
    ]
    .iter()
    .any(|secret| key.ends_with(secret))
}

/// A database failure, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database has not been reached and migrated yet.
    #[error("the database is not ready")]
    NotReady,
    /// A unique constraint refused the write (a concurrent writer won).
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A transaction lost a serialization race or a deadlock; retrying may succeed.
    #[error("transaction conflict: {0}")]
    Retryable(#[source] DbErr),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// Anything else: a defect.
    #[error("database error: {0}")]
    Other(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        classify(error)
    }
}

/// Sorts a sea-orm error into a [`StoreError`].
pub fn classify(error: DbErr) -> StoreError {
    if let Some(SqlErr::UniqueConstraintViolation(detail)) = error.sql_err() {
        return StoreError::Conflict(detail);
    }
    match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StoreError::Unavailable(error),
        DbErr::Exec(runtime) | DbErr::Query(runtime) => match runtime {
            sea_orm::RuntimeErr::SqlxError(sqlx_error) => classify_sqlx(sqlx_error, error.clone()),
            #[allow(unreachable_patterns)]
            _ => StoreError::Other(error),
        },
        _ => StoreError::Other(error),
    }
}

fn classify_sqlx(sqlx_error: &sea_orm::sqlx::Error, error: DbErr) -> StoreError {
    use sea_orm::sqlx::Error as SqlxError;
    match sqlx_error {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => StoreError::Unavailable(error),
        SqlxError::Database(database_error) => {
            let code = database_error.code().map(|code| code.to_string());
            match code.as_deref() {
                // PostgreSQL: serialization failure, deadlock.
                Some("40001") | Some("40P01") => StoreError::Retryable(error),
                // PostgreSQL: connection exceptions, shutdown, too many connections.
                Some(code)
                    if code.starts_with("08") || code.starts_with("57P") || code == "53300" =>
                {
                    StoreError::Unavailable(error)
                }
                // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
                Some("5") | Some("6") | Some("261") | Some("517") | Some("262") => {
                    StoreError::Retryable(error)
                }
                _ => StoreError::Other(error),
            }
        }
        _ => StoreError::Other(error),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotReady => ApiError::unavailable("the service's database is not ready"),
            StoreError::Conflict(_) | StoreError::Retryable(_) => {
                tracing::info!(error = %ErrorChain(&error), "write lost a race");
                ApiError::concurrent_change("a concurrent change won; retry the call")
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %ErrorChain(&error), "database unavailable");
                ApiError::unavailable("the service's database is unavailable; retry later")
            }
            StoreError::Other(_) => ApiError::internal(&error),
        }
    }
}

/// Which SQL dialect a connection speaks.
pub fn backend(connection: &impl ConnectionTrait) -> DbBackend {
    connection.get_database_backend()
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_is_reported_with_its_cause() {
        // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
        let url = "postgres://app:hunter2@127.0.0.1:1/registry?password=hunter3";
        let Err(error) = connect(url).await else {
            panic!("connected to port 1")
        };
        let text = ErrorChain(&error).to_string();
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("pool timed out"), "{text}");
        assert!(!text.contains("hunter"), "{text}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/registry"),
            "postgres://app:***@db:5432/registry"
        );
        assert_eq!(redact("sqlite://data/a.db"), "sqlite://data/a.db");
        assert_eq!(
            redact("postgres://app@db/registry?sslmode=require&password=hunter2"),
            "postgres://app@db/registry?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://db/registry?user=app&PASSWORD=hunter2&sslpassword=key"),
            "postgres://db/registry?user=app&PASSWORD=***&sslpassword=***"
        );
        // An `@` in the password (percent-encoding forgotten) does not leak its first part.
        assert_eq!(
            redact("postgres://app:p@ss@db/registry"),
            "postgres://app:***@db/registry"
        );
        assert_eq!(
            redact("postgres://db/x?options=-c%20a"),
            "postgres://db/x?options=-c%20a"
        );
    }

    #[test]
    fn pool_sizes_are_validated() {
        assert_eq!(parse_pool_size("1"), Ok(1));
        assert_eq!(parse_pool_size(" 40 "), Ok(40));
        assert_eq!(parse_pool_size("1000"), Ok(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            let error = parse_pool_size(bad).expect_err(bad);
            assert!(error.contains("TENANTRY_DATABASE_POOL_SIZE"), "{error}");
            assert!(error.contains("1 to 1000"), "{error}");
        }
    }

    #[test]
    fn the_migration_lock_key_is_stable() {
        // Replicas and the migration Job of every version must agree on it.
        assert_eq!(MIGRATION_LOCK_KEY, lock_key(b"tenantry.migrations"));
        assert_ne!(MIGRATION_LOCK_KEY, lock_key(b"tenantry.migration"));
        assert_eq!(lock_key(b""), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }

    #[test]
    fn finds_sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/a.db?mode=rwc"),
            Some("data/a.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
