//! Time-bound memberships: `members.expire_time` (NULL: no end), and the index the expiry
//! sweep and ListExpiringMembers read along (only time-bound rows are in it).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("members")
                    .add_column(
                        ColumnDef::new("expire_time")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Partial: the sweep and the warning list only ever look at time-bound rows, and most
        // memberships have no end. Same syntax on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX members_by_expiry ON members (expire_time, account_id, user_id) \
                 WHERE expire_time IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX members_by_expiry")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("members")
                    .drop_column("expire_time")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
