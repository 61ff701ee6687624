//! DeclineInvitation (issue 15): when the invitee declined and who, shown to the inviter. The
//! state column takes the new value `DECLINED`; it is text, so only these two columns change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::add_columns(
            manager,
            vec![
                timestamp_with_time_zone_null("decline_time"),
                string_null("declined_by"),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::drop_columns(manager, &["decline_time", "declined_by"]).await
    }
}
