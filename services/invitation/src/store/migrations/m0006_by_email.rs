//! ListMyInvitations finds a person's invitations by their normalized e-mail in every account;
//! the one-pending-per-e-mail index starts with the account, so it cannot serve that.

use sea_orm_migration::prelude::*;

/// The index of invitations by normalized e-mail.
const BY_EMAIL: &str = "invitations_by_email";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        tenantry_platform::retention::create_index_if_missing(
            manager.get_connection(),
            BY_EMAIL,
            "invitations",
            &["email_normalized", "invitation_id"],
            None,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(BY_EMAIL).table("invitations").to_owned())
            .await
    }

    // Outside a transaction, so PostgreSQL can build it concurrently (see create_index_if_missing).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
