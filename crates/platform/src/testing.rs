//! Test support below the services: a migrated database on a temporary SQLite file. The
//! services' own unit tests use it (they cannot depend on `tenantry-testkit`, which starts
//! whole clusters of them); `tenantry-testkit` re-exports it for everyone else.

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
