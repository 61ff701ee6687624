//! The database handle every service's store uses: SQLite files for the embedded default,
//! PostgreSQL in production, the same sea-orm code on both. Errors are classified (conflict,
//! unavailable, timeout, other) before they become API errors, so a lost connection is
//! UNAVAILABLE and a lost race is ABORTED, never INTERNAL, and no SQL reaches a caller.

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

    /// Connects, applies `M`'s pending migrations, and makes the connection available.
    pub async fn connect_and_migrate<M: MigratorTrait>(&self) -> Result<(), DbErr> {
        if self.is_ready() {
            return Ok(());
        }
        let connection = connect(&self.url).await?;
        M::up(&connection, None).await?;
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

/// Opens a pool for `url`. SQLite gets one connection: the embedded default is single-process,
/// and one writer avoids SQLite's lock-upgrade failures under concurrent transactions.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
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
        options.max_connections(16).min_connections(0);
    }
    sea_orm::Database::connect(options).await
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn redact(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((credentials, host)) = rest.split_once('@')
        && let Some((user, _password)) = credentials.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
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

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/registry"),
            "postgres://app:***@db:5432/registry"
        );
        assert_eq!(redact("sqlite://data/a.db"), "sqlite://data/a.db");
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
