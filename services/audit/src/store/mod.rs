//! The audit log's persistence: appending entries to accounts' chains (in the consumer's
//! transaction; see `append.rs`), reading entries, verifying a chain and purging under a signed
//! tombstone.

mod append;
pub mod entities;
pub mod migrations;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, IsolationLevel, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement, TransactionTrait,
};
use tenantry_platform::db::Database;

use crate::domain::AuditError;
use crate::domain::chain::{self, Hashed, Tombstone};
use entities::{chain as chain_head, entry, tombstone};

pub use append::{Appended, BatchAppended, act_as_writer, append, append_batch};

/// The tables the service's pruner keeps bounded: the consumer's records of handled events
/// (the log itself is only ever shortened by PurgeAuditEntries).
pub fn prune_targets(
    retention: &tenantry_platform::retention::RetentionSettings,
) -> Vec<tenantry_platform::retention::PruneTarget> {
    vec![tenantry_events::retention::processed_events_target(
        retention.processed_events,
    )]
}

/// What a listing reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// The account.
    pub account_id: String,
    /// Also the accounts it manages.
    pub include_customers: bool,
    /// Only these types (all when empty).
    pub event_types: Vec<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only at or after.
    pub start_time: Option<DateTime<Utc>>,
    /// Only before.
    pub end_time: Option<DateTime<Utc>>,
    /// Oldest first (default newest first).
    pub oldest_first: bool,
}

impl ListQuery {
    /// The key pages of this listing continue after: the sequence number within one account's
    /// log, the append order (id) across a partner and its customers.
    pub fn page_key(&self, row: &entry::Model) -> i64 {
        if self.include_customers {
            row.id
        } else {
            row.sequence
        }
    }
}

/// The statement [`Store::list`] sends (public so the benchmark's ceiling sends exactly it):
/// every column of `audit_entries`, in declaration order ([`entry::Model::from_row`]).
pub fn list_statement(
    backend: DbBackend,
    query: &ListQuery,
    after: Option<i64>,
    limit: u64,
) -> Statement {
    let mut select = entry::Entity::find();
    if query.include_customers {
        // The customers are those whose account events named this partner as managing them.
        let customers = Query::select()
            .column(chain_head::Column::AccountId)
            .from(chain_head::Entity)
            .and_where(chain_head::Column::ManagedBy.eq(query.account_id.as_str()))
            .to_owned();
        select = select.filter(
            Condition::any()
                .add(entry::Column::AccountId.eq(query.account_id.as_str()))
                .add(entry::Column::AccountId.in_subquery(customers)),
        );
    } else {
        select = select.filter(entry::Column::AccountId.eq(query.account_id.as_str()));
    }
    if !query.event_types.is_empty() {
        select = select.filter(entry::Column::EventType.is_in(query.event_types.clone()));
    }
    if let Some(actor) = &query.actor {
        select = select.filter(entry::Column::Actor.eq(actor.as_str()));
    }
    if let Some(resource) = &query.resource {
        select = select.filter(entry::Column::Resource.eq(resource.as_str()));
    }
    if let Some(start) = query.start_time {
        select = select.filter(entry::Column::EventTime.gte(start));
    }
    if let Some(end) = query.end_time {
        select = select.filter(entry::Column::EventTime.lt(end));
    }
    // One account's log is read along (account_id, sequence), the order of its chain (a
    // planner may otherwise walk the whole id index backwards for an account whose entries
    // are all old); several accounts interleave by id, the order of appending.
    let key = if query.include_customers {
        entry::Column::Id
    } else {
        entry::Column::Sequence
    };
    select = match (query.oldest_first, after) {
        (true, Some(after)) => select.filter(key.gt(after)),
        (false, Some(after)) => select.filter(key.lt(after)),
        (_, None) => select,
    };
    let select = if query.oldest_first {
        select.order_by_asc(key)
    } else {
        select.order_by_desc(key)
    };
    select.limit(limit).build(backend)
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub checked: i64,
    /// The first entry that does not match, and why.
    pub mismatch: Option<(i64, String)>,
    /// Purged through this sequence number (0: nothing purged).
    pub purged_through: i64,
    /// The last sequence number checked.
    pub last_sequence: i64,
}

/// Entries read per statement while verifying.
const VERIFY_CHUNK: u64 = 1000;

/// The audit service's tables.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
}

impl Store {
    /// The store on `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    fn connection(&self) -> Result<&DatabaseConnection, AuditError> {
        Ok(self.database.connection()?)
    }

    /// At most `limit` entries matching `query` after the entry whose [`ListQuery::page_key`]
    /// is `after` (in the query's order).
    pub async fn list(
        &self,
        query: &ListQuery,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<entry::Model>, AuditError> {
        let db = self.connection()?;
        let rows = db
            .query_all_raw(list_statement(
                db.get_database_backend(),
                query,
                after,
                limit,
            ))
            .await?;
        Ok(rows
            .iter()
            .map(entry::Model::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The entry `sequence` of `account_id`'s log.
    pub async fn get(
        &self,
        account_id: &str,
        sequence: i64,
    ) -> Result<Option<entry::Model>, AuditError> {
        Ok(entry::Entity::find()
            .filter(entry::Column::AccountId.eq(account_id))
            .filter(entry::Column::Sequence.eq(sequence))
            .one(self.connection()?)
            .await?)
    }

    /// At most `limit` entries of `account_id` after `after_sequence`, oldest first.
    pub async fn after(
        &self,
        account_id: &str,
        after_sequence: i64,
        limit: u64,
    ) -> Result<Vec<entry::Model>, AuditError> {
        entries_after(self.connection()?, account_id, after_sequence, limit).await
    }

    /// The account's purge tombstone, if it has one.
    pub async fn tombstone(
        &self,
        account_id: &str,
    ) -> Result<Option<tombstone::Model>, AuditError> {
        Ok(tombstone::Entity::find_by_id(account_id)
            .one(self.connection()?)
            .await?)
    }

    /// Recomputes `account_id`'s chain (see [`Verification`]); a tombstone must be signed with
    /// one of `keys` (the current one first, then the one before a rotation).
    pub async fn verify(
        &self,
        account_id: &str,
        keys: &[&[u8]],
    ) -> Result<Verification, AuditError> {
        // One snapshot: an entry appended or a purge committed while the walk runs must not
        // read as a gap.
        let txn = self
            .connection()?
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?;
        let verification = verify_in(&txn, account_id, keys).await;
        txn.rollback().await?;
        verification
    }

    /// Removes every account's entries older than `before` (a prefix of each chain), leaving a
    /// tombstone signed with `key`; returns (entries removed, accounts touched).
    pub async fn purge(
        &self,
        before: DateTime<Utc>,
        operator: &str,
        key: &[u8],
    ) -> Result<(i64, i64), AuditError> {
        let db = self.connection()?;
        let accounts: Vec<String> = chain_head::Entity::find()
            .select_only()
            .column(chain_head::Column::AccountId)
            .order_by_asc(chain_head::Column::AccountId)
            .into_tuple()
            .all(db)
            .await?;
        let (mut removed, mut touched) = (0, 0);
        for account_id in accounts {
            let txn = db.begin().await?;
            act_as_writer(&txn).await?;
            let count = purge_account(&txn, &account_id, before, operator, key).await?;
            txn.commit().await?;
            if count > 0 {
                removed += count;
                touched += 1;
            }
        }
        Ok((removed, touched))
    }
}

/// [`Store::verify`] inside one read-only snapshot.
async fn verify_in(
    txn: &DatabaseTransaction,
    account_id: &str,
    keys: &[&[u8]],
) -> Result<Verification, AuditError> {
    let mut verification = Verification::default();
    let mut previous_hash = String::new();
    let mut expected = 1;
    let head = chain_head::Entity::find_by_id(account_id).one(txn).await?;
    let last_appended = head.map_or(0, |head| head.last_sequence);
    if let Some(stone) = tombstone::Entity::find_by_id(account_id).one(txn).await? {
        verification.purged_through = stone.through_sequence;
        let signed = Tombstone {
            account: stone.account_id.clone(),
            through_sequence: stone.through_sequence,
            last_hash: stone.last_hash.clone(),
            purged_entries: stone.purged_entries,
            before_time: stone.before_time.clone(),
            operator: stone.operator.clone(),
        };
        if !keys.iter().any(|key| signed.verify(key, &stone.signature)) {
            verification.mismatch = Some((
                stone.through_sequence,
                "the purge tombstone's signature does not match: it was altered".to_string(),
            ));
            return Ok(verification);
        }
        previous_hash = stone.last_hash;
        expected = stone.through_sequence + 1;
    }
    loop {
        let chunk = entries_after(txn, account_id, expected - 1, VERIFY_CHUNK).await?;
        if chunk.is_empty() {
            // Entries removed from the end are missed by the walk; the head still counts them.
            if last_appended >= expected {
                verification.mismatch = Some((
                    expected,
                    format!("entries {expected} to {last_appended} are missing from the log"),
                ));
            }
            return Ok(verification);
        }
        for row in &chunk {
            verification.checked += 1;
            if let Some(reason) = mismatch(row, expected, &previous_hash) {
                verification.mismatch = Some((row.sequence.min(expected), reason));
                return Ok(verification);
            }
            verification.last_sequence = row.sequence;
            previous_hash = row.hash.clone();
            expected += 1;
        }
    }
}

/// At most `limit` entries of `account_id` after `after_sequence`, oldest first.
async fn entries_after(
    db: &impl ConnectionTrait,
    account_id: &str,
    after_sequence: i64,
    limit: u64,
) -> Result<Vec<entry::Model>, AuditError> {
    Ok(entry::Entity::find()
        .filter(entry::Column::AccountId.eq(account_id))
        .filter(entry::Column::Sequence.gt(after_sequence))
        .order_by_asc(entry::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?)
}

/// Why `row` breaks the chain, if it does: expected `sequence`, chained to `previous_hash`.
fn mismatch(row: &entry::Model, sequence: i64, previous_hash: &str) -> Option<String> {
    if row.sequence != sequence {
        return Some(format!(
            "sequence {sequence} is missing: the next stored entry is {}",
            row.sequence
        ));
    }
    if row.previous_hash != previous_hash {
        return Some("previous_hash is not the hash of the entry before it".to_string());
    }
    let recomputed = hashed(row).hash();
    (recomputed != row.hash).then(|| "hash differs: the stored row was altered".to_string())
}

/// The hashed fields of a stored row.
pub fn hashed(row: &entry::Model) -> Hashed<'_> {
    Hashed {
        account: &row.account_id,
        sequence: row.sequence,
        event_id: &row.event_id,
        event_type: &row.event_type,
        event_time: row.event_time,
        actor: &row.actor,
        actor_kind: &row.actor_kind,
        via: &row.via,
        actor_role: &row.actor_role,
        resource: &row.resource,
        before: &row.before_json,
        after: &row.after_json,
        request_id: &row.request_id,
        trace_id: &row.trace_id,
        previous_hash: &row.previous_hash,
    }
}

/// Purges one account's prefix older than `before` in `txn`; the number of entries removed.
async fn purge_account(
    txn: &DatabaseTransaction,
    account_id: &str,
    before: DateTime<Utc>,
    operator: &str,
    key: &[u8],
) -> Result<i64, AuditError> {
    // The prefix ends before the first entry at or after the cut-off.
    let first_kept: Option<i64> = entry::Entity::find()
        .select_only()
        .column_as(entry::Column::Sequence.min(), "first")
        .filter(entry::Column::AccountId.eq(account_id))
        .filter(entry::Column::EventTime.gte(before))
        .into_tuple::<Option<i64>>()
        .one(txn)
        .await?
        .flatten();
    let through = match first_kept {
        Some(first) => first - 1,
        None => entry::Entity::find()
            .select_only()
            .column_as(entry::Column::Sequence.max(), "last")
            .filter(entry::Column::AccountId.eq(account_id))
            .into_tuple::<Option<i64>>()
            .one(txn)
            .await?
            .flatten()
            .unwrap_or(0),
    };
    let previous = tombstone::Entity::find_by_id(account_id).one(txn).await?;
    let already = previous.as_ref().map_or(0, |stone| stone.through_sequence);
    if through <= already {
        return Ok(0);
    }
    let Some(last) = entry::Entity::find()
        .filter(entry::Column::AccountId.eq(account_id))
        .filter(entry::Column::Sequence.eq(through))
        .one(txn)
        .await?
    else {
        return Ok(0);
    };
    let stone = Tombstone {
        account: account_id.to_string(),
        through_sequence: through,
        last_hash: last.hash.clone(),
        purged_entries: previous.as_ref().map_or(0, |stone| stone.purged_entries)
            + (through - already),
        before_time: chain::canonical_time(before),
        operator: operator.to_string(),
    };
    let signature = stone.signature(key);
    if txn.get_database_backend() == DbBackend::Postgres {
        // The role may not delete: the owner's function does, after checking the cut-off.
        let removed: Option<i64> = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT audit_purge_account($1, $2, $3, $4, $5, $6, $7, $8) AS removed",
                [
                    stone.account.clone().into(),
                    stone.through_sequence.into(),
                    stone.last_hash.clone().into(),
                    stone.purged_entries.into(),
                    before.into(),
                    stone.before_time.clone().into(),
                    stone.operator.clone().into(),
                    signature.into(),
                ],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "removed"))
            .transpose()?;
        return Ok(removed.unwrap_or(0));
    }
    let row = tombstone::ActiveModel {
        account_id: Set(stone.account.clone()),
        through_sequence: Set(stone.through_sequence),
        last_hash: Set(stone.last_hash.clone()),
        purged_entries: Set(stone.purged_entries),
        before_time: Set(stone.before_time.clone()),
        operator: Set(stone.operator.clone()),
        signature: Set(signature),
        purge_time: Set(tenantry_platform::time::now()),
    };
    if previous.is_some() {
        tombstone::Entity::update(row).exec(txn).await?;
    } else {
        tombstone::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
    }
    let deleted = entry::Entity::delete_many()
        .filter(entry::Column::AccountId.eq(account_id))
        .filter(entry::Column::Sequence.lte(through))
        .exec(txn)
        .await?;
    Ok(deleted.rows_affected as i64)
}
