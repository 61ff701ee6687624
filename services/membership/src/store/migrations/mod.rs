//! Membership's schema, built with the backend-agnostic schema builder (SQLite and
//! PostgreSQL).

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_account_replica;
mod m0003_retention;
mod m0004_member_expiry;
mod m0005_expiry_reminders;
mod m0006_access_governance;
mod m0007_operator_approvals;

/// Applies membership's migrations (and the events crate's `outbox` and `processed_events`,
/// with the index that prunes it); its bookkeeping table is `membership_migrations`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_account_replica::Migration),
            tenantry_events::outbox_migration(),
            tenantry_events::processed_events_migration(),
            tenantry_events::processed_events_retention_migration(),
            Box::new(m0003_retention::Migration),
            Box::new(m0004_member_expiry::Migration),
            Box::new(m0005_expiry_reminders::Migration),
            Box::new(m0006_access_governance::Migration),
            Box::new(m0007_operator_approvals::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "membership_migrations".into_iden()
    }
}
