//! Membership's schema, built with the backend-agnostic schema builder (SQLite and
//! PostgreSQL).

use sea_orm_migration::prelude::*;

mod m0001_initial;

/// Applies membership's migrations; its bookkeeping table is `membership_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m0001_initial::Migration)]
    }

    fn migration_table_name() -> DynIden {
        "membership_migrations".into_iden()
    }
}
