//! The invitation service's schema, built with the backend-agnostic schema builder (SQLite and
//! PostgreSQL), followed by the events crate's `outbox` and `processed_events`, then the
//! unknown-secret counts (`invitation_guesses`), then the mailer's lease, then the indexes the
//! pruner uses, then who declined and when, then
//! the index ListMyInvitations finds a person's invitations by, then the reminder e-mail.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_guesses;
mod m0003_delivery_lease;
mod m0004_retention;
mod m0005_decline;
mod m0006_by_email;
mod m0007_reminder;

/// Adds `columns` to `invitations`, one ALTER TABLE each (SQLite adds one column per statement).
async fn add_columns(manager: &SchemaManager<'_>, columns: Vec<ColumnDef>) -> Result<(), DbErr> {
    for mut column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table("invitations")
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Drops `columns` from `invitations`, one ALTER TABLE each.
async fn drop_columns(manager: &SchemaManager<'_>, columns: &[&'static str]) -> Result<(), DbErr> {
    for column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table("invitations")
                    .drop_column(*column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

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
            Box::new(m0003_delivery_lease::Migration),
            tenantry_events::processed_events_retention_migration(),
            Box::new(m0004_retention::Migration),
            Box::new(m0005_decline::Migration),
            Box::new(m0006_by_email::Migration),
            Box::new(m0007_reminder::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "invitation_migrations".into_iden()
    }
}
