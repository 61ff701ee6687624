//! `removed_members`: the latest removal of each (account, user) that `member.removed` brought,
//! so a fan-out page read from membership before a removal but written after it leaves that
//! member out (see `store/removals.rs`). Pruned after the processed-events retention.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("removed_members")
                    .col(string("account_id"))
                    .col(string("user_id"))
                    .col(timestamp_with_time_zone("remove_time"))
                    .primary_key(Index::create().col("account_id").col("user_id"))
                    .to_owned(),
            )
            .await?;
        // The pruner's batches.
        manager
            .create_index(
                Index::create()
                    .name("removed_members_by_remove_time")
                    .table("removed_members")
                    .col("remove_time")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("removed_members").to_owned())
            .await
    }
}
