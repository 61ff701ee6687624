//! The unknown-secret counts of LookupInvitation and AcceptInvitation, shared by the replicas.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per (scope, key, window): counted by an atomic upsert.
        manager
            .create_table(
                Table::create()
                    .table("invitation_guesses")
                    .col(string("scope"))
                    .col(text("key"))
                    .col(big_integer("window_start"))
                    .col(big_integer("failures"))
                    .primary_key(Index::create().col("scope").col("key").col("window_start"))
                    .to_owned(),
            )
            .await?;
        // Deleting the windows nobody reads any more.
        manager
            .create_index(
                Index::create()
                    .name("invitation_guesses_by_window")
                    .table("invitation_guesses")
                    .col("window_start")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("invitation_guesses").to_owned())
            .await
    }
}
