//! The mailer's lease on an invitation's e-mail (issue 14): who is sending it and until when,
//! so the SMTP exchange runs outside any transaction and a second copy of the event, on any
//! replica, does not send it again; and the hash of a secret an interrupted attempt may have
//! mailed, which keeps that e-mail's link working if the next attempt mails another.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            string_null("delivery_lease_token"),
            timestamp_with_time_zone_null("delivery_lease_until"),
            string_null("previous_secret_hash"),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table("invitations")
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // LookupInvitation / AcceptInvitation also find an invitation by the earlier hash.
        manager
            .create_index(
                Index::create()
                    .name("invitations_by_previous_secret_hash")
                    .table("invitations")
                    .col("previous_secret_hash")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("invitations_by_previous_secret_hash")
                    .table("invitations")
                    .to_owned(),
            )
            .await?;
        for column in [
            "delivery_lease_token",
            "delivery_lease_until",
            "previous_secret_hash",
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("invitations")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
