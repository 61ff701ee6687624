//! The registry's schema, built with the backend-agnostic schema builder so the same
//! migrations run on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m0001_accounts;
mod m0002_retention;

/// Applies the registry's migrations; its bookkeeping table is `registry_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_accounts::Migration),
            tenantry_events::outbox_migration(),
            Box::new(m0002_retention::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "registry_migrations".into_iden()
    }
}
