//! The audit service's schema, followed by the events crate's `outbox` (the node relays every
//! service's outbox; the audit service appends none) and `processed_events`.

use sea_orm_migration::prelude::*;

mod m0001_log;
mod m0002_append_only;

/// The role the running service's transactions act as on PostgreSQL: it may SELECT and INSERT
/// the log, never UPDATE or DELETE it.
pub const WRITER_ROLE: &str = "tenantry_audit_writer";

/// Applies the audit service's migrations; its bookkeeping table is `audit_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_log::Migration),
            tenantry_events::outbox_migration(),
            tenantry_events::processed_events_migration(),
            tenantry_events::processed_events_retention_migration(),
            Box::new(m0002_append_only::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "audit_migrations".into_iden()
    }
}
