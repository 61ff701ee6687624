//! Test support below the services: a migrated database on a temporary SQLite file, and a fresh
//! PostgreSQL database on the server `TENANTRY_TEST_POSTGRES_URL` names. The services' own unit
//! tests use it (they cannot depend on `tenantry-testkit`, which starts whole clusters of
//! them); `tenantry-testkit` re-exports it for everyone else.

use std::path::{Path, PathBuf};

use sea_orm_migration::MigratorTrait;

use crate::db::Database;

/// A database on a fresh temporary SQLite file with `M`'s migrations applied; the file (and its
/// WAL and shared-memory files) is removed on drop.
#[derive(Debug)]
pub struct TempDatabase {
    /// The database.
    pub database: Database,
    path: PathBuf,
}

impl TempDatabase {
    /// A fresh file whose name starts with `purpose` (so a leftover says who left it), migrated
    /// with `M`. Panics when the migrations fail: a test cannot go on without its schema.
    pub async fn new<M: MigratorTrait>(purpose: &str) -> Self {
        let temp = Self::unmigrated(purpose);
        temp.database
            .connect_and_migrate::<M>()
            .await
            .unwrap_or_else(|error| panic!("migrating {}: {error}", temp.path.display()));
        temp
    }

    /// A fresh file, not connected or migrated yet (for tests of start-up and migration).
    pub fn unmigrated(purpose: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tenantry-{purpose}-{}.db", uuid::Uuid::new_v4()));
        let database = Database::new(&format!("sqlite://{}?mode=rwc", path.display()));
        Self { database, path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// The variable naming the PostgreSQL server of the PostgreSQL suite (as in `tenantry-testkit`):
/// a database URL the tests may connect to and create databases from, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "TENANTRY_TEST_POSTGRES_URL";

/// A fresh, empty PostgreSQL database, dropped (`WITH (FORCE)`) on drop.
#[derive(Debug)]
pub struct TempPostgres {
    url: String,
    admin_url: String,
    name: String,
}

impl TempPostgres {
    /// Creates a database whose name starts with `purpose` on the server
    /// `TENANTRY_TEST_POSTGRES_URL` names; `None` when it is not set, so the test returns early
    /// (the first such test of a binary says so on the terminal). Under `CI=true` a missing
    /// variable panics: the PostgreSQL suite must run there. A server that is set but does not
    /// answer panics too.
    pub async fn create(purpose: &str) -> Option<Self> {
        let admin_url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!(
                    "{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL suite must run in CI"
                )
            }
            _ => {
                note_postgres_not_run();
                return None;
            }
        };
        let name = format!(
            "t_{}_{}",
            purpose.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = sea_orm::Database::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("connecting to {POSTGRES_URL_VAR}: {error}"));
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|error| panic!("creating the test database {name}: {error}"));
        let _ = admin.close().await;
        Some(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A handle on the database, not connected or migrated yet.
    pub fn database(&self) -> Database {
        Database::new(&self.url)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while a test panics): drop the database from a
        // thread of its own with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Says once per test binary, on the terminal, that tests needing PostgreSQL did not run (a
/// skipped test still passes; straight to stderr, which libtest does not capture).
fn note_postgres_not_run() {
    use std::io::Write;
    static NOTED: std::sync::Once = std::sync::Once::new();
    NOTED.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: the PostgreSQL suite did not run in this test binary; set \
             {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres to run it"
        );
    });
}

/// `admin_url` with its database name replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}
