//! `removed_members.member_since`: the start of the removed membership, so a fan-out page
//! compares two values of the same membership column instead of one replica's removal time
//! with another's creation time (see `store/removals.rs`). Nullable: rows written before it
//! keep comparing with `remove_time`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("removed_members")
                    .add_column(timestamp_with_time_zone_null("member_since"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("removed_members")
                    .drop_column("member_since")
                    .to_owned(),
            )
            .await
    }
}
