//! Appending to the log, in the consumer's transaction: one event ([`append`]) or a whole
//! batch of them ([`append_batch`], PostgreSQL).
//!
//! Appending locks the account's chain head (`audit_chains`) for the rest of the transaction,
//! so competing replicas and batches number an account's entries 1, 2, 3, … without a gap and
//! commit them in that order (a watcher that read entry N never sees N-1 appear later). A batch
//! takes all its heads in one statement, in account order, so batches that touch several
//! chains never wait on each other in a cycle.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Statement,
    TryInsertResult,
};
use serde_json::json;

use super::entities::{chain as chain_head, entry};
use super::migrations::WRITER_ROLE;
use crate::domain::chain::{self, Hashed};
use crate::domain::{AuditError, NewEntry, actor_kind_name};

/// On PostgreSQL, makes the rest of `txn` act as [`WRITER_ROLE`] (SELECT and INSERT on the log,
/// no UPDATE or DELETE); SQLite has no roles, and its triggers guard the log.
pub async fn act_as_writer(txn: &impl ConnectionTrait) -> Result<(), AuditError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SET LOCAL ROLE {WRITER_ROLE}"))
            .await?;
    }
    Ok(())
}

/// What appending an event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// A new entry with this sequence number in the account's log.
    Entry {
        /// The account.
        account_id: String,
        /// Its number.
        sequence: i64,
    },
    /// The event was already recorded (a redelivery).
    AlreadyRecorded,
}

/// An entry as stored, computed from the event and the chain before it.
struct Chained<'a> {
    new: &'a NewEntry,
    sequence: i64,
    event_time: DateTime<Utc>,
    actor_kind: &'static str,
    before: String,
    after: String,
    previous_hash: String,
    hash: String,
}

impl<'a> Chained<'a> {
    /// `new` as entry `sequence` of its account, after the entry whose hash is `previous_hash`.
    fn after(new: &'a NewEntry, sequence: i64, previous_hash: &str) -> Self {
        let change = &new.change;
        let provenance = &change.provenance;
        let event_time = chain::to_micros(new.event_time);
        let before = chain::stored_json(&change.before);
        let after = chain::stored_json(&change.after);
        let actor_kind = actor_kind_name(provenance.actor_kind);
        let hash = Hashed {
            account: &change.account_id,
            sequence,
            event_id: &new.event_id,
            event_type: &new.event_type,
            event_time,
            actor: &change.actor,
            actor_kind,
            via: &provenance.via,
            actor_role: &provenance.actor_role,
            resource: &change.resource,
            before: &before,
            after: &after,
            request_id: &provenance.request_id,
            trace_id: &provenance.trace_id,
            previous_hash,
        }
        .hash();
        Self {
            new,
            sequence,
            event_time,
            actor_kind,
            before,
            after,
            previous_hash: previous_hash.to_string(),
            hash,
        }
    }
}

/// Appends `new` to its account's chain inside `txn` (the consumer's transaction), unless its
/// event is already recorded.
pub async fn append(
    txn: &DatabaseTransaction,
    new: &NewEntry,
    now: DateTime<Utc>,
) -> Result<Appended, AuditError> {
    act_as_writer(txn).await?;
    let change = &new.change;
    let account_id = change.account_id.as_str();
    let head = lock_head(txn, account_id, change.managed_by.as_deref(), now).await?;
    let sequence = head.last_sequence + 1;
    let row = Chained::after(new, sequence, &head.last_hash);
    let provenance = &change.provenance;
    let inserted = entry::Entity::insert(entry::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        account_id: Set(account_id.to_string()),
        sequence: Set(sequence),
        event_id: Set(new.event_id.clone()),
        event_type: Set(new.event_type.clone()),
        event_time: Set(row.event_time),
        actor: Set(change.actor.clone()),
        actor_kind: Set(row.actor_kind.to_string()),
        via: Set(provenance.via.clone()),
        actor_role: Set(provenance.actor_role.clone()),
        resource: Set(change.resource.clone()),
        before_json: Set(row.before),
        after_json: Set(row.after),
        request_id: Set(provenance.request_id.clone()),
        trace_id: Set(provenance.trace_id.clone()),
        previous_hash: Set(row.previous_hash),
        hash: Set(row.hash.clone()),
        record_time: Set(chain::to_micros(now)),
    })
    .on_conflict_do_nothing_on([entry::Column::EventId])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        // The event is already recorded (a redelivery the consumer's own record missed).
        return Ok(Appended::AlreadyRecorded);
    }
    chain_head::Entity::update(chain_head::ActiveModel {
        account_id: Set(account_id.to_string()),
        managed_by: Set(change.managed_by.clone().or(head.managed_by.clone())),
        last_sequence: Set(sequence),
        last_hash: Set(row.hash),
        update_time: Set(now),
    })
    .exec(txn)
    .await?;
    Ok(Appended::Entry {
        account_id: account_id.to_string(),
        sequence,
    })
}

/// The head of `account_id`'s chain, made if missing and locked for the rest of `txn`, in one
/// statement (an upsert that returns the row).
async fn lock_head(
    txn: &DatabaseTransaction,
    account_id: &str,
    managed_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<chain_head::Model, AuditError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO audit_chains (account_id, managed_by, last_sequence, last_hash, update_time) \
             VALUES ($1, $2, 0, '', $3) \
             ON CONFLICT (account_id) DO UPDATE SET account_id = EXCLUDED.account_id \
             RETURNING account_id, managed_by, last_sequence, last_hash, update_time"
        }
        _ => {
            "INSERT INTO audit_chains (account_id, managed_by, last_sequence, last_hash, update_time) \
             VALUES (?1, ?2, 0, '', ?3) \
             ON CONFLICT (account_id) DO UPDATE SET account_id = excluded.account_id \
             RETURNING account_id, managed_by, last_sequence, last_hash, update_time"
        }
    };
    let statement = Statement::from_sql_and_values(
        backend,
        sql,
        [
            account_id.into(),
            managed_by.map(str::to_string).into(),
            now.into(),
        ],
    );
    chain_head::Entity::find()
        .from_raw_sql(statement)
        .one(txn)
        .await?
        .ok_or_else(|| AuditError::Corrupt(format!("no chain head for accounts/{account_id}")))
}

/// What appending a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchAppended {
    /// What became of each entry, in batch order.
    Entries(Vec<Appended>),
    /// The event at this position is already in the log (a redelivery whose processed-event
    /// record was pruned): the transaction must be rolled back, since the entries numbered
    /// after it in the same chain would leave a gap; append that event on its own.
    AlreadyRecorded(usize),
}

/// Appends `entries`, in order, to their accounts' chains inside `txn` (the consumer's
/// batch transaction) in two statements whatever their number: one takes the heads (made if
/// missing; locked in account order) and the writer role, then the entries are hashed here,
/// and one inserts them and moves the heads. SQLite appends them one by one (it runs one
/// writing transaction at a time anyway, and a round trip is a function call).
pub async fn append_batch(
    txn: &DatabaseTransaction,
    entries: &[NewEntry],
    now: DateTime<Utc>,
) -> Result<BatchAppended, AuditError> {
    if entries.is_empty() {
        return Ok(BatchAppended::Entries(Vec::new()));
    }
    if txn.get_database_backend() != DbBackend::Postgres {
        let mut appended = Vec::with_capacity(entries.len());
        for new in entries {
            appended.push(append(txn, new, now).await?);
        }
        return Ok(BatchAppended::Entries(appended));
    }
    let mut heads = lock_heads(txn, entries, now).await?;

    // Number and hash in batch order, each entry after the one before it in its chain.
    let mut rows = Vec::with_capacity(entries.len());
    for new in entries {
        let head = heads
            .get_mut(new.change.account_id.as_str())
            .ok_or_else(|| {
                AuditError::Corrupt(format!(
                    "no chain head for accounts/{}",
                    new.change.account_id
                ))
            })?;
        let row = Chained::after(new, head.last_sequence + 1, &head.last_hash);
        head.last_sequence = row.sequence;
        head.last_hash.clone_from(&row.hash);
        if new.change.managed_by.is_some() {
            head.managed_by.clone_from(&new.change.managed_by);
        }
        rows.push(row);
    }

    let inserted = insert_entries_and_move_heads(txn, &rows, &heads, now).await?;
    if let Some(position) = rows
        .iter()
        .position(|row| !inserted.contains(row.new.event_id.as_str()))
    {
        return Ok(BatchAppended::AlreadyRecorded(position));
    }
    Ok(BatchAppended::Entries(
        rows.iter()
            .map(|row| Appended::Entry {
                account_id: row.new.change.account_id.clone(),
                sequence: row.sequence,
            })
            .collect(),
    ))
}

/// A chain head as a batch reads it.
struct Head {
    managed_by: Option<String>,
    last_sequence: i64,
    last_hash: String,
}

/// The heads of the chains `entries` append to, made if missing and locked for the rest of
/// `txn`, in account order, in one statement, which also makes the rest of `txn` act as
/// [`WRITER_ROLE`] (as [`act_as_writer`] does, without a round trip of its own:
/// `set_config(…, true)` is `SET LOCAL`, and it applies from the next statement on, this one's
/// privileges having been checked when it started).
async fn lock_heads(
    txn: &DatabaseTransaction,
    entries: &[NewEntry],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Head>, AuditError> {
    let mut accounts: Vec<&str> = entries
        .iter()
        .map(|new| new.change.account_id.as_str())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    // The upsert takes each row as it comes, i.e. in the order of the SELECT: account order.
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO audit_chains (account_id, managed_by, last_sequence, last_hash, update_time) \
             SELECT id, NULL, 0, '', $2 FROM json_array_elements_text($1::json) AS id, \
               (SELECT set_config('role', $3, true)) AS writer ORDER BY id \
             ON CONFLICT (account_id) DO UPDATE SET account_id = EXCLUDED.account_id \
             RETURNING account_id, managed_by, last_sequence, last_hash",
            [
                serde_json::to_string(&accounts)
                    .map_err(|error| AuditError::Corrupt(error.to_string()))?
                    .into(),
                now.into(),
                WRITER_ROLE.into(),
            ],
        ))
        .await?;
    let mut heads = BTreeMap::new();
    for row in rows {
        heads.insert(
            row.try_get_by_index::<String>(0)?,
            Head {
                managed_by: row.try_get_by_index(1)?,
                last_sequence: row.try_get_by_index(2)?,
                last_hash: row.try_get_by_index(3)?,
            },
        );
    }
    Ok(heads)
}

/// Inserts `rows` in their order (so ids follow the append order) unless their event is
/// recorded already, and moves the chains' heads to `heads` if every row was inserted, in one
/// statement; returns the event ids inserted.
async fn insert_entries_and_move_heads(
    txn: &DatabaseTransaction,
    rows: &[Chained<'_>],
    heads: &BTreeMap<String, Head>,
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<String>, AuditError> {
    let records: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(position, row)| {
            let (new, change) = (row.new, &row.new.change);
            let provenance = &change.provenance;
            json!({
                "position": position,
                "account_id": change.account_id,
                "sequence": row.sequence,
                "event_id": new.event_id,
                "event_type": new.event_type,
                "event_time": row.event_time,
                "actor": change.actor,
                "actor_kind": row.actor_kind,
                "via": provenance.via,
                "actor_role": provenance.actor_role,
                "resource": change.resource,
                "before_json": row.before,
                "after_json": row.after,
                "request_id": provenance.request_id,
                "trace_id": provenance.trace_id,
                "previous_hash": row.previous_hash,
                "hash": row.hash,
            })
        })
        .collect();
    let moved: Vec<_> = heads
        .iter()
        .map(|(account_id, head)| {
            json!({
                "account_id": account_id,
                "managed_by": head.managed_by,
                "last_sequence": head.last_sequence,
                "last_hash": head.last_hash,
            })
        })
        .collect();
    // The heads move only if every entry went in (`$5` = their number): otherwise the caller
    // rolls back. A data-modifying WITH runs whether or not the final SELECT reads it.
    let inserted = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH inserted AS ( \
               INSERT INTO audit_entries (account_id, sequence, event_id, event_type, \
                 event_time, actor, actor_kind, via, actor_role, resource, before_json, \
                 after_json, request_id, trace_id, previous_hash, hash, record_time) \
               SELECT account_id, sequence, event_id, event_type, event_time, actor, \
                 actor_kind, via, actor_role, resource, before_json, after_json, request_id, \
                 trace_id, previous_hash, hash, $2 \
               FROM json_to_recordset($1::json) AS r(position int, account_id text, \
                 sequence bigint, event_id text, event_type text, event_time timestamptz, \
                 actor text, actor_kind text, via text, actor_role text, resource text, \
                 before_json text, after_json text, request_id text, trace_id text, \
                 previous_hash text, hash text) \
               ORDER BY position \
               ON CONFLICT (event_id) DO NOTHING RETURNING event_id \
             ), moved AS ( \
               UPDATE audit_chains AS c SET last_sequence = h.last_sequence, \
                 last_hash = h.last_hash, managed_by = h.managed_by, update_time = $4 \
               FROM json_to_recordset($3::json) \
                 AS h(account_id text, managed_by text, last_sequence bigint, last_hash text) \
               WHERE c.account_id = h.account_id \
                 AND (SELECT count(*) FROM inserted) = $5 \
             ) \
             SELECT event_id FROM inserted",
            [
                serde_json::Value::Array(records).to_string().into(),
                chain::to_micros(now).into(),
                serde_json::Value::Array(moved).to_string().into(),
                now.into(),
                (rows.len() as i64).into(),
            ],
        ))
        .await?;
    inserted
        .into_iter()
        .map(|row| Ok(row.try_get_by_index::<String>(0)?))
        .collect()
}
