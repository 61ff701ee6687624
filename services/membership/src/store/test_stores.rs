//! A fresh store on each backend for the store's tests (PostgreSQL only when configured; under
//! `CI=true` its absence fails the test).

use tenantry_events::Outbox;
use tenantry_platform::testing::{TempDatabase, TempPostgres};

use super::Store;
use super::migrations::Migrator;

/// A store over a fresh, migrated SQLite database named for `purpose`.
pub(super) async fn sqlite(purpose: &str) -> (TempDatabase, Store) {
    let temp = TempDatabase::new::<Migrator>(purpose).await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    (temp, store)
}

/// A store over a fresh, migrated PostgreSQL database named for `purpose`; `None` when no
/// server is configured (outside CI).
pub(super) async fn postgres(purpose: &str) -> Option<(TempPostgres, Store)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database
        .connect_and_migrate::<Migrator>()
        .await
        .expect("migrated");
    Some((temp, Store::new(database, Outbox::new())))
}
