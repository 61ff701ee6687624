//! `account_replica`: membership's copy of the registry's account facts, kept from the
//! `account.*` events and filled on a miss by reading through to the registry.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("account_replica")
                    .col(string("account_id").primary_key())
                    .col(text("display_name"))
                    .col(boolean("partner"))
                    .col(string_null("managed_by"))
                    .col(string("state"))
                    .col(big_integer("registry_version"))
                    .col(timestamp_with_time_zone("update_time"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("account_replica").to_owned())
            .await
    }
}
