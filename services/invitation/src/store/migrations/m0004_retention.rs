//! The indexes the pruner's batches use: closed invitations by
//! their last change (a partial index: PENDING rows are never pruned), and the request ids of
//! CreateInvitation by `create_time`.

use sea_orm_migration::prelude::*;

use crate::store::retention::{CLOSED, CLOSED_INVITATIONS_INDEX};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        tenantry_platform::retention::create_index_if_missing(
            connection,
            CLOSED_INVITATIONS_INDEX,
            "invitations",
            &["update_time"],
            Some(CLOSED),
        )
        .await?;
        tenantry_platform::idempotency::index_request_ids(connection, "invitation_request_ids")
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        tenantry_platform::idempotency::unindex_request_ids(connection, "invitation_request_ids")
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(CLOSED_INVITATIONS_INDEX)
                    .table("invitations")
                    .to_owned(),
            )
            .await
    }

    // Outside a transaction, as it was written for a concurrent build (see create_index_if_missing).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
