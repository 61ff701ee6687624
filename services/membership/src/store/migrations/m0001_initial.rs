//! Members, the user directory, the per-account counters and the request ids.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("members")
                    .col(string("account_id"))
                    .col(string("user_id"))
                    .col(string("role"))
                    .col(string("source"))
                    .col(string("added_by"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .col(big_integer("version"))
                    .primary_key(Index::create().col("account_id").col("user_id"))
                    .to_owned(),
            )
            .await?;
        // ListMyAccounts: a user's memberships in account order.
        manager
            .create_index(
                Index::create()
                    .name("members_by_user")
                    .table("members")
                    .col("user_id")
                    .col("account_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(string("user_id").primary_key())
                    .col(text("email"))
                    .col(text("email_normalized"))
                    .col(text("given_name"))
                    .col(text("family_name"))
                    .col(timestamp_with_time_zone("update_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_by_email")
                    .table("users")
                    .col("email_normalized")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("account_member_counts")
                    .col(string("account_id").primary_key())
                    .col(big_integer("owners"))
                    .col(big_integer("members"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(tenantry_platform::idempotency::request_ids_table(
                "membership_request_ids",
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "membership_request_ids",
            "account_member_counts",
            "users",
            "members",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
