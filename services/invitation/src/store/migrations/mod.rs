//! The invitation service's schema, built with the backend-agnostic schema builder (SQLite and
//! PostgreSQL), followed by the events crate's `outbox` and `processed_events`, then the
//! unknown-secret counts (`invitation_guesses`).

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_guesses;

/// Applies the invitation service's migrations; its bookkeeping table is
/// `invitation_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            tenantry_events::outbox_migration(),
            tenantry_events::processed_events_migration(),
            Box::new(m0002_guesses::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "invitation_migrations".into_iden()
    }
}
