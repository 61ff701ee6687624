//! Accounts and remembered create requests.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `accounts` and `registry_request_ids`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    AccountId,
    DisplayName,
    Partner,
    ManagedBy,
    State,
    Creator,
    Version,
    CreateTime,
    UpdateTime,
    DeleteTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(string_len(Accounts::AccountId, 64).primary_key())
                    .col(string_len(Accounts::DisplayName, 512))
                    .col(boolean(Accounts::Partner))
                    .col(string_len_null(Accounts::ManagedBy, 64))
                    .col(string_len(Accounts::State, 16))
                    .col(string_len(Accounts::Creator, 300))
                    .col(big_integer(Accounts::Version))
                    .col(timestamp_with_time_zone(Accounts::CreateTime))
                    .col(timestamp_with_time_zone(Accounts::UpdateTime))
                    .col(timestamp_with_time_zone_null(Accounts::DeleteTime))
                    .to_owned(),
            )
            .await?;
        // ListManagedCustomers and the "partner still manages customers" check.
        manager
            .create_index(
                Index::create()
                    .name("idx_accounts_managed_by")
                    .table(Accounts::Table)
                    .col(Accounts::ManagedBy)
                    .col(Accounts::AccountId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(tenantry_platform::idempotency::request_ids_table(
                "registry_request_ids",
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("registry_request_ids").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}
