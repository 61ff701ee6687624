//! Test support: a migrated membership database on a temporary SQLite file.

use std::path::PathBuf;

use tenantry_platform::db::Database;

use crate::store::migrations::Migrator;

/// A migrated database on a temporary SQLite file, removed on drop.
pub struct TempDatabase {
    /// The database.
    pub database: Database,
    path: PathBuf,
}

impl TempDatabase {
    /// A fresh file named after `purpose`, with membership's migrations applied.
    pub async fn new(purpose: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("membership-{purpose}-{}.db", uuid::Uuid::new_v4()));
        let database = Database::new(&format!("sqlite://{}?mode=rwc", path.display()));
        database
            .connect_and_migrate::<Migrator>()
            .await
            .expect("migrate");
        Self { database, path }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}
