//! `access_request_approvals.operator`: whether an approval was an operator's (their right
//! does not come from a role in the account, so the last approval's re-check of the earlier
//! approvers' rights leaves it as it is).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("access_request_approvals")
                    .add_column(
                        ColumnDef::new("operator")
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("access_request_approvals")
                    .drop_column("operator")
                    .to_owned(),
            )
            .await
    }
}
