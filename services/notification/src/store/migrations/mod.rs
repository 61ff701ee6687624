//! The notification service's schema, built with the backend-agnostic schema builder (SQLite
//! and PostgreSQL), followed by the events crate's `outbox` and `processed_events`.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_fanout_trace_context;
mod m0003_retention;
mod m0004_removed_members;
mod m0005_removed_member_since;

/// Applies the notification service's migrations; its bookkeeping table is
/// `notification_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            tenantry_events::outbox_migration(),
            tenantry_events::processed_events_migration(),
            Box::new(m0002_fanout_trace_context::Migration),
            tenantry_events::processed_events_retention_migration(),
            Box::new(m0003_retention::Migration),
            Box::new(m0004_removed_members::Migration),
            Box::new(m0005_removed_member_since::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "notification_migrations".into_iden()
    }
}
