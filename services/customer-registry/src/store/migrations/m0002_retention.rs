//! The index of `registry_request_ids.create_time` that the pruner's batches use (request ids older than
//! `TENANTRY_REQUEST_ID_RETENTION_HOURS` are deleted).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tenantry_platform::idempotency::index_request_ids(
            manager.get_connection(),
            "registry_request_ids",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tenantry_platform::idempotency::unindex_request_ids(
            manager.get_connection(),
            "registry_request_ids",
        )
        .await
    }

    // Outside a transaction, as it was written for a concurrent build (see create_index_if_missing).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
