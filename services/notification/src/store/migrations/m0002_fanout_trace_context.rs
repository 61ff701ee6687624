//! The W3C trace context of the consumer that recorded a fan-out job, so the worker's pages
//! (and the ListMembers calls they make) join the trace of the SendMessage that caused them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in ["traceparent", "tracestate"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("fanout_jobs")
                        .add_column(string_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["tracestate", "traceparent"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("fanout_jobs")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
