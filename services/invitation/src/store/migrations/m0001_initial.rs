//! Invitations and the request ids of CreateInvitation.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// At most one PENDING invitation per (account, e-mail), race-free: a partial unique index.
/// The same statement works on SQLite (≥ 3.8) and PostgreSQL; the schema builder has no
/// partial indexes, so it is plain SQL.
const ONE_PENDING_PER_EMAIL: &str = "CREATE UNIQUE INDEX invitations_one_pending_per_email \
     ON invitations (account_id, email_normalized) WHERE state = 'PENDING'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("invitations")
                    .col(string("invitation_id").primary_key())
                    .col(string("account_id"))
                    .col(text("email"))
                    .col(text("email_normalized"))
                    .col(text("given_name"))
                    .col(text("family_name"))
                    .col(string("role"))
                    .col(string("state"))
                    .col(string("inviter"))
                    .col(text("inviter_display_name"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone_null("accept_time"))
                    .col(string_null("accepted_by"))
                    .col(timestamp_with_time_zone_null("revoke_time"))
                    .col(string_null("revoked_by"))
                    .col(string_null("secret_hash"))
                    .col(string("delivery_state"))
                    .col(integer("delivery_attempts"))
                    .col(text("delivery_failure_reason"))
                    .col(timestamp_with_time_zone_null("delivery_last_attempt_time"))
                    .col(timestamp_with_time_zone_null("delivery_sent_time"))
                    .col(integer("resend_count"))
                    .col(timestamp_with_time_zone("last_sent_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(ONE_PENDING_PER_EMAIL)
            .await?;
        // LookupInvitation / AcceptInvitation find the invitation by the secret's hash (NULLs,
        // i.e. not yet mailed, may repeat).
        manager
            .create_index(
                Index::create()
                    .name("invitations_by_secret_hash")
                    .table("invitations")
                    .col("secret_hash")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // ListInvitations: an account's invitations, newest (highest v7 id) first.
        manager
            .create_index(
                Index::create()
                    .name("invitations_by_account")
                    .table("invitations")
                    .col("account_id")
                    .col("invitation_id")
                    .to_owned(),
            )
            .await?;
        // The expiry sweep: PENDING rows by expiry.
        manager
            .create_index(
                Index::create()
                    .name("invitations_by_state_expiry")
                    .table("invitations")
                    .col("state")
                    .col("expire_time")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(tenantry_platform::idempotency::request_ids_table(
                "invitation_request_ids",
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["invitation_request_ids", "invitations"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
