//! Makes the log append-only in the database itself, not only in this code:
//! - on both backends, a trigger refuses every UPDATE of `audit_entries` and every DELETE of an
//!   entry not covered by its account's purge tombstone (so even the owner cannot rewrite
//!   history without dropping the trigger first);
//! - on PostgreSQL, the role `tenantry_audit_writer` (made here if missing, and granted to the
//!   migrating login so its sessions may `SET ROLE` to it) may only SELECT and INSERT the log.
//!   The running service's transactions act as that role; retention goes through
//!   `audit_purge_account`, a SECURITY DEFINER function that checks the cut-off itself.
//!
//! Making a role needs CREATEROLE; where the migrating login lacks it, an administrator makes
//! `tenantry_audit_writer` (NOLOGIN) beforehand and grants it to that login (deploy/README.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use super::WRITER_ROLE;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: [&str; 2] = [
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
     BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
     WHEN OLD.sequence > COALESCE(
         (SELECT through_sequence FROM audit_tombstones WHERE account_id = OLD.account_id), 0)
     BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: only entries covered by a purge tombstone may be removed'); END",
];

fn postgres() -> Vec<String> {
    let role = WRITER_ROLE;
    vec![
        "CREATE FUNCTION audit_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP = 'UPDATE' THEN
             RAISE EXCEPTION 'audit entries are append-only' USING ERRCODE = 'insufficient_privilege';
           END IF;
           IF OLD.sequence > COALESCE(
               (SELECT through_sequence FROM audit_tombstones WHERE account_id = OLD.account_id), 0) THEN
             RAISE EXCEPTION 'audit entries are append-only: only entries covered by a purge tombstone may be removed'
               USING ERRCODE = 'insufficient_privilege';
           END IF;
           RETURN OLD;
         END $$"
            .to_string(),
        "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
         FOR EACH ROW EXECUTE FUNCTION audit_entries_guard()"
            .to_string(),
        format!(
            "DO $$ BEGIN
               CREATE ROLE {role} NOLOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ),
        // The migrating login's sessions switch to the role; without the right to grant it
        // (made by an administrator), the grant must already be in place.
        format!(
            "DO $$ BEGIN
               IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                 EXECUTE format('GRANT {role} TO %I', current_user);
               END IF;
             EXCEPTION WHEN OTHERS THEN
               -- Another migration granting it at the same moment.
               IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN RAISE; END IF;
             END $$"
        ),
        "REVOKE ALL ON audit_entries, audit_chains, audit_tombstones FROM PUBLIC".to_string(),
        format!("GRANT SELECT, INSERT ON audit_entries TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON audit_chains TO {role}"),
        format!("GRANT SELECT ON audit_tombstones TO {role}"),
        format!("GRANT SELECT, INSERT ON processed_events TO {role}"),
        format!("GRANT SELECT ON outbox TO {role}"),
        "CREATE FUNCTION audit_purge_account(
             p_account text, p_through bigint, p_last_hash text, p_purged bigint,
             p_before timestamptz, p_before_text text, p_operator text, p_signature text)
         RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
         DECLARE removed bigint;
         BEGIN
           IF p_before > now() - interval '24 hours' THEN
             RAISE EXCEPTION 'audit entries younger than 24 hours are never purged';
           END IF;
           IF EXISTS (SELECT 1 FROM audit_entries WHERE account_id = p_account
                      AND sequence <= p_through AND event_time >= p_before) THEN
             RAISE EXCEPTION 'only entries older than the cut-off may be purged';
           END IF;
           IF NOT EXISTS (SELECT 1 FROM audit_entries WHERE account_id = p_account
                          AND sequence = p_through AND hash = p_last_hash) THEN
             RAISE EXCEPTION 'the tombstone does not name the last purged entry';
           END IF;
           INSERT INTO audit_tombstones AS t (account_id, through_sequence, last_hash,
               purged_entries, before_time, operator, signature, purge_time)
             VALUES (p_account, p_through, p_last_hash, p_purged,
               p_before_text,
               p_operator, p_signature, now())
             ON CONFLICT (account_id) DO UPDATE SET
               through_sequence = EXCLUDED.through_sequence, last_hash = EXCLUDED.last_hash,
               purged_entries = EXCLUDED.purged_entries, before_time = EXCLUDED.before_time,
               operator = EXCLUDED.operator, signature = EXCLUDED.signature,
               purge_time = EXCLUDED.purge_time
             WHERE t.through_sequence < EXCLUDED.through_sequence;
           DELETE FROM audit_entries WHERE account_id = p_account AND sequence <= p_through;
           GET DIAGNOSTICS removed = ROW_COUNT;
           RETURN removed;
         END $$"
            .to_string(),
        // A SECURITY DEFINER function must not find tables through a path its caller controls.
        "DO $$ BEGIN
           EXECUTE format('ALTER FUNCTION audit_purge_account(text, bigint, text, bigint, timestamptz, text, text, text) SET search_path = %I, pg_temp', current_schema());
         END $$"
            .to_string(),
        "REVOKE ALL ON FUNCTION audit_purge_account(text, bigint, text, bigint, timestamptz, text, text, text) FROM PUBLIC"
            .to_string(),
        format!(
            "GRANT EXECUTE ON FUNCTION audit_purge_account(text, bigint, text, bigint, timestamptz, text, text, text) TO {role}"
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                for statement in postgres() {
                    db.execute_unprepared(&statement).await?;
                }
            }
            _ => {
                for statement in SQLITE {
                    db.execute_unprepared(statement).await?;
                }
            }
        }
        Ok(())
    }
}
