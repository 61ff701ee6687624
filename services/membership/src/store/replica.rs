//! The account replica: account facts copied from the registry's `account.*` events (and from
//! reads through to the registry on a miss). A row is only ever replaced by a newer registry
//! version, so late or repeated deliveries cannot bring back old facts.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tenantry_platform::key_locks::KeyLock;

use tenantry_platform::AccountId;

use super::entities::{account_member_count as counts, account_replica, member};
use crate::domain::{AccountFacts, AccountState, MembershipError, VersionedFacts};

/// The replicated facts of `account_id`, `None` if the replica does not know the account.
pub async fn load(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
) -> Result<Option<VersionedFacts>, MembershipError> {
    let Some(row) = account_replica::Entity::find_by_id(account_id.to_string())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let state = AccountState::parse(&row.state)
        .ok_or_else(|| MembershipError::Corrupt(format!("account state {:?}", row.state)))?;
    Ok(Some(VersionedFacts {
        facts: AccountFacts {
            account_id: AccountId::trusted(row.account_id),
            display_name: row.display_name,
            partner: row.partner,
            managed_by: row.managed_by.map(AccountId::trusted),
            state,
        },
        version: row.registry_version,
        update_time: row.update_time,
    }))
}

/// Whether the replica holds `account_id` as DELETED, read inside a write transaction that
/// must not add a member to a deleted account: its handler's checks ran before the
/// transaction, and `account.deleted` may have committed since. No row (the read-through
/// could not keep the facts) is not deleted, as the handler's checks already decided.
///
/// On PostgreSQL the write first takes the account's membership lock shared
/// ([`ACCOUNT_LOCK`]); the deletion's consumer takes it exclusively before it stores DELETED
/// and drops the members ([`lock_for_deletion`]). Either this read waits for the deletion to
/// commit and sees DELETED, or the deletion waits for this transaction to commit and its
/// DELETE (a later statement) removes the new member. The lock is not a row's, so this holds
/// also when the replica has no row for the account yet (a row lock would have nothing to
/// lock, and the consumer's first insert of the row could slip past), and it writes nothing
/// (a `FOR SHARE` row lock writes the row). Writes to one account share the lock and do not
/// wait for each other. SQLite serializes transactions.
pub async fn deleted_for_write(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
) -> Result<bool, MembershipError> {
    ACCOUNT_LOCK.shared(conn, account_id.as_str()).await?;
    let row = account_replica::Entity::find_by_id(account_id.to_string())
        .one(conn)
        .await?;
    Ok(row.is_some_and(|row| row.state == AccountState::Deleted.as_str()))
}

/// Takes the account's membership lock exclusively for the rest of the transaction, which
/// then stores the deletion and drops the members (see [`deleted_for_write`]). PostgreSQL
/// only; SQLite serializes transactions.
pub async fn lock_for_deletion(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
) -> Result<(), MembershipError> {
    ACCOUNT_LOCK.exclusive(conn, account_id.as_str()).await?;
    Ok(())
}

/// The lock AddMember/AddMyself (shared) and the deletion (exclusive) meet on, per account.
const ACCOUNT_LOCK: KeyLock = KeyLock::named("membership.account");

/// Stores `account` unless the replica already holds this or a newer version of it, in one
/// statement (an upsert whose update is conditional on the stored version), so concurrent
/// writers cannot interleave. Returns whether the row was written.
pub async fn save(
    conn: &impl ConnectionTrait,
    account: &VersionedFacts,
) -> Result<bool, MembershipError> {
    let facts = &account.facts;
    let row = account_replica::ActiveModel {
        account_id: Set(facts.account_id.to_string()),
        display_name: Set(facts.display_name.clone()),
        partner: Set(facts.partner),
        managed_by: Set(facts.managed_by.as_ref().map(AccountId::to_string)),
        state: Set(facts.state.as_str().to_string()),
        registry_version: Set(account.version),
        update_time: Set(account.update_time),
    };
    let written = account_replica::Entity::insert(row)
        .on_conflict(
            OnConflict::column(account_replica::Column::AccountId)
                .update_columns([
                    account_replica::Column::DisplayName,
                    account_replica::Column::Partner,
                    account_replica::Column::ManagedBy,
                    account_replica::Column::State,
                    account_replica::Column::RegistryVersion,
                    account_replica::Column::UpdateTime,
                ])
                .action_and_where(
                    Expr::col((
                        account_replica::Entity,
                        account_replica::Column::RegistryVersion,
                    ))
                    .lt(account.version),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(written > 0)
}

/// Drops every membership of `account_id` and its counters (the account was deleted).
/// Returns how many memberships were dropped.
pub async fn drop_members(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
) -> Result<u64, MembershipError> {
    let dropped = member::Entity::delete_many()
        .filter(member::Column::AccountId.eq(account_id.as_str()))
        .exec(conn)
        .await?
        .rows_affected;
    counts::Entity::delete_many()
        .filter(counts::Column::AccountId.eq(account_id.as_str()))
        .exec(conn)
        .await?;
    Ok(dropped)
}
