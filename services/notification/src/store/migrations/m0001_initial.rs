//! Messages, their recipient accounts, deliveries (the inboxes), receipts, fan-out jobs and the
//! request ids of SendMessage.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn index(name: &str, table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("messages")
                    .col(string("message_id").primary_key())
                    .col(string("partner_id"))
                    .col(text("partner_display_name"))
                    .col(string("sender"))
                    .col(text("title"))
                    .col(text("body"))
                    .col(string("read_policy"))
                    .col(boolean("all_customers"))
                    .col(string("roles"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone_null("expire_time"))
                    .col(string("state"))
                    .col(timestamp_with_time_zone("update_time"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        // ListMessages: a partner's messages, newest (highest v7 id) first.
        manager
            .create_index(index(
                "messages_by_partner",
                "messages",
                &["partner_id", "message_id"],
            ))
            .await?;
        // The expiry sweep.
        manager
            .create_index(index(
                "messages_by_state_expiry",
                "messages",
                &["state", "expire_time"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recipient_accounts")
                    .col(string("message_id"))
                    .col(string("account_id"))
                    .col(integer("position"))
                    .col(big_integer("recipient_count"))
                    .col(big_integer("acknowledged_count"))
                    .col(big_integer("withdrawn_count"))
                    .col(string_null("resolved_by"))
                    .col(timestamp_with_time_zone_null("resolve_time"))
                    .primary_key(Index::create().col("message_id").col("account_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "recipient_accounts_by_position",
                "recipient_accounts",
                &["message_id", "position"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("deliveries")
                    .col(string("message_id"))
                    .col(string("account_id"))
                    .col(string("user_id"))
                    .col(string("state"))
                    .col(timestamp_with_time_zone("message_create_time"))
                    .col(timestamp_with_time_zone_null("message_expire_time"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone_null("ack_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .primary_key(
                        Index::create()
                            .col("message_id")
                            .col("account_id")
                            .col("user_id"),
                    )
                    .to_owned(),
            )
            .await?;
        // The login inbox (ListPendingMessages, WatchInbox snapshots): one user's PENDING
        // deliveries, newest first, keyset-paged on (message_create_time, message_id).
        manager
            .create_index(
                Index::create()
                    .name("deliveries_inbox")
                    .table("deliveries")
                    .col("user_id")
                    .col("state")
                    .col((Alias::new("message_create_time"), IndexOrder::Desc))
                    .col((Alias::new("message_id"), IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        // AcknowledgeMessage: one user's deliveries of one message.
        manager
            .create_index(index(
                "deliveries_by_user_message",
                "deliveries",
                &["user_id", "message_id"],
            ))
            .await?;
        // Withdrawals when an account is deleted or disabled.
        manager
            .create_index(index(
                "deliveries_by_account",
                "deliveries",
                &["account_id", "state", "message_id"],
            ))
            .await?;
        // The expiry sweep: PENDING deliveries past their message's expiry.
        manager
            .create_index(index(
                "deliveries_by_expiry",
                "deliveries",
                &["state", "message_expire_time"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("receipts")
                    .col(big_pk_auto("seq"))
                    .col(string("message_id"))
                    .col(string("account_id"))
                    .col(string("user_id"))
                    .col(timestamp_with_time_zone("acknowledge_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "receipts_by_message",
                "receipts",
                &["message_id", "seq"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("fanout_jobs")
                    .col(string("message_id"))
                    .col(string("account_id"))
                    .col(text("page_token"))
                    .col(boolean("done"))
                    .col(big_integer("pages"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(timestamp_with_time_zone("update_time"))
                    .primary_key(Index::create().col("message_id").col("account_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "fanout_jobs_open",
                "fanout_jobs",
                &["done", "lease_until"],
            ))
            .await?;
        manager
            .create_index(index(
                "fanout_jobs_by_account",
                "fanout_jobs",
                &["account_id", "done"],
            ))
            .await?;
        manager
            .create_table(tenantry_platform::idempotency::request_ids_table(
                "notification_request_ids",
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "notification_request_ids",
            "fanout_jobs",
            "receipts",
            "deliveries",
            "recipient_accounts",
            "messages",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
