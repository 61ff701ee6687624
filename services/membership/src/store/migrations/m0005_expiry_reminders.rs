//! `expiry_reminders`: one row per e-mail warning that a time-bound membership ends soon (per
//! membership end, reminder and recipient (lower-cased)), holding the lease of the attempt
//! sending it, the failed attempts, then its outcome (SENT, or FAILED for good), so each is sent
//! once across restarts and replicas.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer, string, string_null, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("expiry_reminders")
                    .col(string("account_id"))
                    .col(string("user_id"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(string("kind"))
                    .col(string("recipient"))
                    .col(string("state"))
                    .col(integer("attempts").default(0))
                    .col(string_null("lease_token"))
                    .col(timestamp_with_time_zone("lease_until"))
                    .col(timestamp_with_time_zone("update_time"))
                    .primary_key(
                        Index::create()
                            .col("account_id")
                            .col("user_id")
                            .col("expire_time")
                            .col("kind")
                            .col("recipient"),
                    )
                    .to_owned(),
            )
            .await?;
        // The sweep forgets the rows of memberships that ended long ago.
        manager
            .create_index(
                Index::create()
                    .name("expiry_reminders_by_end")
                    .table("expiry_reminders")
                    .col("expire_time")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("expiry_reminders").to_owned())
            .await
    }
}
