//! DeclineInvitation (issue 15): when the invitee declined and who, shown to the inviter. The
//! state column takes the new value `DECLINED`; it is text, so only these two columns change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            timestamp_with_time_zone_null("decline_time"),
            string_null("declined_by"),
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["decline_time", "declined_by"] {
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
