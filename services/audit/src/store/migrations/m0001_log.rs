//! The log (`audit_entries`), the head of each account's chain (`audit_chains`: the last
//! sequence number and hash, and the partner managing the account), and purge tombstones.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const ENTRY_COLUMNS: &str = "
    account_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_time TIMESTAMPTZ_TYPE NOT NULL,
    actor TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    via TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    resource TEXT NOT NULL,
    before_json TEXT NOT NULL,
    after_json TEXT NOT NULL,
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    previous_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record_time TIMESTAMPTZ_TYPE NOT NULL,
    UNIQUE (account_id, sequence),
    UNIQUE (event_id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let (id, time) = match db.get_database_backend() {
            DbBackend::Postgres => (
                "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "TIMESTAMPTZ",
            ),
            // AUTOINCREMENT: an id is never reused, even after a purge removed the newest rows.
            _ => ("id INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
        };
        let columns = ENTRY_COLUMNS.replace("TIMESTAMPTZ_TYPE", time);
        db.execute_unprepared(&format!("CREATE TABLE audit_entries ({id},{columns})"))
            .await?;
        // Listing one account (newest or oldest first, keyset on id), and by actor, resource
        // or type within it.
        for (name, columns) in [
            ("audit_entries_by_account", "account_id, id"),
            ("audit_entries_by_actor", "account_id, actor, id"),
            ("audit_entries_by_resource", "account_id, resource, id"),
        ] {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON audit_entries ({columns})"))
                .await?;
        }
        db.execute_unprepared(&format!(
            "CREATE TABLE audit_chains (
                account_id TEXT PRIMARY KEY,
                managed_by TEXT,
                last_sequence BIGINT NOT NULL,
                last_hash TEXT NOT NULL,
                update_time {time} NOT NULL)"
        ))
        .await?;
        db.execute_unprepared("CREATE INDEX audit_chains_by_partner ON audit_chains (managed_by)")
            .await?;
        db.execute_unprepared(&format!(
            "CREATE TABLE audit_tombstones (
                account_id TEXT PRIMARY KEY,
                through_sequence BIGINT NOT NULL,
                last_hash TEXT NOT NULL,
                purged_entries BIGINT NOT NULL,
                before_time TEXT NOT NULL,
                operator TEXT NOT NULL,
                signature TEXT NOT NULL,
                purge_time {time} NOT NULL)"
        ))
        .await?;
        Ok(())
    }
}
