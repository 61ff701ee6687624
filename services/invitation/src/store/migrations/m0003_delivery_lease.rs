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
        super::add_columns(
            manager,
            vec![
                string_null("delivery_lease_token"),
                timestamp_with_time_zone_null("delivery_lease_until"),
                string_null("previous_secret_hash"),
            ],
        )
        .await?;
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
        super::drop_columns(
            manager,
            &[
                "delivery_lease_token",
                "delivery_lease_until",
                "previous_secret_hash",
            ],
        )
        .await?;
        Ok(())
    }
}
