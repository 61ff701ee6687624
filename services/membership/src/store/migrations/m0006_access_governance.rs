//! Access governance: `access_policies` (an account's own policy), `access_requests` with their
//! `access_request_approvals`, `access_request_approvers` (who was asked when a request was
//! made: the "waiting for me" list reads along it) and `access_request_mails` (one row per
//! e-mail a request causes, written in the transaction of the change, sent once by the mailer
//! under a lease).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, boolean, integer, string, string_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("access_policies")
                    .col(string("account_id").primary_key())
                    .col(string("gated_grants"))
                    .col(integer("required_approvals"))
                    .col(big_integer_null("request_lifetime_seconds"))
                    .col(string_null("short_of_approvers"))
                    .col(big_integer_null("default_duration_seconds"))
                    .col(big_integer_null("max_duration_seconds"))
                    .col(boolean("duration_required"))
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("update_time"))
                    .col(string("update_by"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("access_requests")
                    .col(string("request_id").primary_key())
                    .col(string("account_id"))
                    .col(string("subject_user_id"))
                    .col(string("subject_email"))
                    .col(string("role"))
                    .col(string("reason"))
                    .col(big_integer_null("access_duration_seconds"))
                    .col(string("state"))
                    .col(string("requester"))
                    .col(integer("required_approvals"))
                    .col(boolean("escalated"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone_null("decide_time"))
                    .col(string_null("decided_by"))
                    .col(string_null("decline_reason"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_requests_by_account")
                    .table("access_requests")
                    .col("account_id")
                    .col("create_time")
                    .col("request_id")
                    .to_owned(),
            )
            .await?;
        // One PENDING request per subject and account: two would race to grant. Partial, same
        // syntax on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX access_requests_one_pending \
                 ON access_requests (account_id, subject_user_id) WHERE state = 'PENDING'",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("access_request_approvals")
                    .col(string("request_id"))
                    .col(string("approver"))
                    .col(timestamp_with_time_zone("approve_time"))
                    .primary_key(Index::create().col("request_id").col("approver"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("access_request_approvers")
                    .col(string("user_id"))
                    .col(string("request_id"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .primary_key(Index::create().col("user_id").col("request_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("access_request_mails")
                    .col(string("request_id"))
                    .col(string("kind"))
                    .col(string("recipient"))
                    .col(string("state"))
                    .col(integer("attempts").default(0))
                    .col(string_null("lease_token"))
                    .col(timestamp_with_time_zone("lease_until"))
                    .col(timestamp_with_time_zone("update_time"))
                    .primary_key(
                        Index::create()
                            .col("request_id")
                            .col("kind")
                            .col("recipient"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_request_mails_due")
                    .table("access_request_mails")
                    .col("state")
                    .col("lease_until")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "access_request_mails",
            "access_request_approvers",
            "access_request_approvals",
            "access_requests",
            "access_policies",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
