//! The reminder e-mail (issue 15): when it is due and when it went out, the hash of its link's
//! secret and of an earlier attempt's (accepted like the first e-mail's), and the lease of the attempt sending it, which
//! closing changes wait for so no reminder goes out after them.

use sea_orm_migration::{prelude::*, schema::*};

/// Due reminders, by due time: the sweep's query.
const DUE: &str = "invitations_by_reminder_due_time";
/// Lookups by a reminder's secret.
const BY_SECRET: &str = "invitations_by_reminder_secret_hash";
/// Lookups by the secret of an earlier reminder attempt whose outcome is unknown.
const BY_PREVIOUS_SECRET: &str = "invitations_by_previous_reminder_secret_hash";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::add_columns(
            manager,
            vec![
                timestamp_with_time_zone_null("reminder_due_time"),
                timestamp_with_time_zone_null("reminder_sent_time"),
                string_null("reminder_secret_hash"),
                string_null("previous_reminder_secret_hash"),
                string_null("reminder_lease_token"),
                timestamp_with_time_zone_null("reminder_lease_until"),
            ],
        )
        .await?;
        for (name, column) in [
            (DUE, "reminder_due_time"),
            (BY_SECRET, "reminder_secret_hash"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("invitations")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [DUE, BY_SECRET, BY_PREVIOUS_SECRET] {
            manager
                .drop_index(Index::drop().name(name).table("invitations").to_owned())
                .await?;
        }
        super::drop_columns(
            manager,
            &[
                "reminder_due_time",
                "reminder_sent_time",
                "reminder_secret_hash",
                "previous_reminder_secret_hash",
                "reminder_lease_token",
                "reminder_lease_until",
            ],
        )
        .await?;
        Ok(())
    }
}
