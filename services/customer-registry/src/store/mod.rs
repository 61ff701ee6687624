//! The registry's storage. Every state change is one database transaction, written through
//! the outbox's writer ([`Outbox::write`]; for a managed customer on PostgreSQL one statement,
//! [`Outbox::write_one`]), that also appends the change's `account.*` event, so an event is
//! published if and only if its change committed: creates in
//! [`Store::create_account`], every other change in one path ([`Store::change`]) that locks the
//! account, checks its etag, asks the domain rule, and writes the result. Reads never run
//! inside a transaction they did not open: the SQLite pool has one connection.

pub mod entities;
pub mod migrations;

#[cfg(test)]
mod parent_race_tests;
#[cfg(test)]
mod tests;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use tenantry_events::{Outbox, Revoked};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::idempotency::{ReplayError, RequestIds, RequestKey};
use tenantry_platform::view::{LocalView, ViewCache};

use crate::domain::{
    self, Account, AccountId, AccountState, Change, DisplayName, RegistryError, StateFilter,
};
use crate::events::{AccountChange, account_event};
use entities::account;

/// The `request_id`s of creates, remembered in the transaction of the created account so a
/// retried create returns the first result.
const REQUEST_IDS: RequestIds = RequestIds::new("registry_request_ids");

/// The tables the service's pruner keeps bounded (see [`tenantry_platform::retention`]): the
/// request ids of creates, kept for `retention.request_ids`.
pub fn prune_targets(
    retention: &tenantry_platform::retention::RetentionSettings,
) -> Vec<tenantry_platform::retention::PruneTarget> {
    vec![REQUEST_IDS.prune_target(retention.request_ids)]
}

/// A new account to insert.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Its identifier (accepted by the creation rules, [`domain::NewAccountId`]).
    pub id: AccountId,
    /// Its display name.
    pub display_name: DisplayName,
    /// The managing partner, for a managed customer (must be an ACTIVE partner).
    pub managed_by: Option<AccountId>,
    /// `users/{sub}` of the creator.
    pub creator: String,
}

/// What a list returns.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only the customers of this partner, if set.
    pub managed_by: Option<AccountId>,
    /// Which states.
    pub states: StateFilter,
    /// Only partner accounts.
    pub partners_only: bool,
}

/// A change of an existing account, decided by its domain rule on the locked account.
enum Operation {
    Promote,
    Rename(DisplayName),
    Disable,
    Enable,
    Delete,
}

impl Operation {
    /// The row update and event of the change, `None` when the account already is as asked
    /// (`live_customers`: how many of its customers are not deleted, counted for deletes).
    fn plan(
        self,
        account: &Account,
        live_customers: u64,
    ) -> Result<Option<(Update, AccountChange)>, RegistryError> {
        fn changed<T>(change: Change<T>) -> Option<T> {
            match change {
                Change::Unchanged => None,
                Change::To(value) => Some(value),
            }
        }
        let state = |state| Update::State(state);
        Ok(match self {
            Operation::Promote => changed(domain::promote(account)?)
                .map(|_| (Update::Partner, AccountChange::PromotedToPartner)),
            Operation::Rename(name) => changed(domain::rename(account, &name)?)
                .map(|name| (Update::DisplayName(name), AccountChange::Updated)),
            Operation::Disable => {
                changed(domain::disable(account)?).map(|s| (state(s), AccountChange::Disabled))
            }
            Operation::Enable => {
                changed(domain::enable(account)?).map(|s| (state(s), AccountChange::Enabled))
            }
            Operation::Delete => changed(domain::delete(account, live_customers)?)
                .map(|s| (state(s), AccountChange::Deleted)),
        })
    }
}

/// One change to an account row (besides the version and update time every change bumps).
enum Update {
    State(AccountState),
    Partner,
    DisplayName(DisplayName),
}

/// Account storage over the service's database.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
    outbox: Outbox,
    /// Accounts kept in memory under the local view's rules (DESIGN.md §9): this replica drops
    /// its copy at commit, the others on the `account.*` event; the next read refills it.
    accounts: Option<Arc<ViewCache<Account>>>,
}

impl Store {
    /// A store over `database`, appending its events to `outbox`.
    pub fn new(database: Database, outbox: Outbox) -> Self {
        Self {
            database,
            outbox,
            accounts: None,
        }
    }

    /// Serves [`Store::find`] from memory under `view`'s rules.
    pub fn with_view(mut self, view: &LocalView) -> Self {
        self.accounts = Some(Arc::new(ViewCache::new(view, "accounts")));
        self
    }

    fn connection(&self) -> Result<&DatabaseConnection, RegistryError> {
        Ok(self.database.connection()?)
    }

    /// The account `id`, or `None`: from the local view when it keeps it.
    pub async fn find(&self, id: &AccountId) -> Result<Option<Account>, RegistryError> {
        let Some(cache) = &self.accounts else {
            return find(self.connection()?, id).await;
        };
        let key = cache.key(&[id.as_str().as_bytes()]);
        if let Some(account) = cache.get(key) {
            return Ok(Some(account));
        }
        let ticket = cache.view().ticket(None, Some(id.as_str()));
        let found = find(self.connection()?, id).await?;
        if let (Some(ticket), Some(account)) = (ticket, &found) {
            cache.insert(key, account.clone(), ticket);
        }
        Ok(found)
    }

    /// The account `id` as the database has it now, or `None`: for peers filling their own
    /// views (membership's account replica), which must never fill from this one.
    pub async fn find_in_database(&self, id: &AccountId) -> Result<Option<Account>, RegistryError> {
        find(self.connection()?, id).await
    }

    /// Those of `ids` that exist, as the database has them now, in `ids`' order: one query,
    /// for peers (never from the local view, like [`Store::find_in_database`]).
    pub async fn find_many_in_database(
        &self,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, RegistryError> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        // Bounded IN lists: the API allows 1,024 names, well under every backend's limit on
        // bound parameters, but a caller inside the crate might pass more.
        for chunk in ids.chunks(1024) {
            let rows = account::Entity::find()
                .filter(account::Column::AccountId.is_in(chunk.iter().map(|id| id.as_str())))
                .all(self.connection()?)
                .await?;
            for row in rows {
                let account = to_domain(row)?;
                found.insert(account.id.clone(), account);
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// The account `id`, or [`RegistryError::AccountNotFound`].
    pub async fn get(&self, id: &AccountId) -> Result<Account, RegistryError> {
        self.find(id)
            .await?
            .ok_or_else(|| RegistryError::AccountNotFound(id.clone()))
    }

    /// Up to `limit` accounts matching `query` with an id after `after`, ordered by id.
    pub async fn list(
        &self,
        query: &ListQuery,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Account>, RegistryError> {
        let states: Vec<&str> = query
            .states
            .states()
            .into_iter()
            .map(AccountState::as_str)
            .collect();
        let mut select = account::Entity::find().filter(account::Column::State.is_in(states));
        if let Some(parent) = &query.managed_by {
            select = select.filter(account::Column::ManagedBy.eq(parent.as_str()));
        }
        if query.partners_only {
            select = select.filter(account::Column::Partner.eq(true));
        }
        if let Some(after) = after {
            select = select.filter(account::Column::AccountId.gt(after));
        }
        select
            .order_by_asc(account::Column::AccountId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    /// Creates an account (a managed customer when `managed_by` is set, after checking that the
    /// parent is an ACTIVE partner), remembering `key` in the same transaction. A retry under
    /// the same key returns the account as it is now.
    pub async fn create_account(
        &self,
        new: NewAccount,
        key: Option<RequestKey>,
    ) -> Result<Account, RegistryError> {
        match self.insert_account(new, key.clone()).await {
            Err(
                error @ (RegistryError::AccountIdTaken(_)
                | RegistryError::Store(StoreError::Conflict(_))),
            ) => {
                // A concurrent call with the same request_id may have won the race: answer as
                // its retry would be answered. (The record and the account it points at were
                // committed together and are never removed, so no transaction is needed.)
                let Some(key) = key else { return Err(error) };
                replay(self.connection()?, &key).await?.ok_or(error)
            }
            other => other,
        }
    }

    async fn insert_account(
        &self,
        new: NewAccount,
        key: Option<RequestKey>,
    ) -> Result<Account, RegistryError> {
        let connection = self.connection()?;
        // The common case on PostgreSQL, a managed customer without a request id: the check
        // and lock of the parent, the account and its event are one statement, no transaction
        // around it. Anything else, and a parent it refused, takes the transaction below.
        let now = tenantry_platform::time::now();
        if key.is_none()
            && let Some(statement) =
                insert_under_parent_statement(connection.get_database_backend(), &new, now)
        {
            let created = created_account(new.clone(), now);
            let event = account_event(AccountChange::Created, &created, None, &created.creator);
            if self
                .outbox
                .write_one(connection, statement, &event)
                .await
                .map_err(|error| insert_error(error, &new))?
            {
                return Ok(created);
            }
        }
        self.outbox
            .write(self.connection()?, move |tx| {
                Box::pin(async move {
                    if let Some(key) = &key
                        && let Some(account) = replay(&**tx, key).await?
                    {
                        return Ok(account);
                    }
                    // On PostgreSQL one statement checks and locks the parent and inserts the
                    // customer.
                    let created = match insert_under_parent(tx, &new).await? {
                        Some(created) => created,
                        None => {
                            if let Some(parent) = &new.managed_by {
                                // Share-locked so a concurrent DeleteAccount/DisableAccount of
                                // the parent (an UPDATE, which waits for share locks)
                                // serializes with this create, while creates under the same
                                // partner do not wait for each other (PostgreSQL; SQLite has a
                                // single writer anyway). An exclusive lock here made every
                                // create of a partner queue behind the previous one's commit.
                                // The domain rule says why a parent is refused.
                                let parent = load_shared(tx, parent).await?;
                                domain::check_can_manage_customers(&parent)?;
                            }
                            insert(tx, new).await?
                        }
                    };
                    if let Some(key) = &key {
                        REQUEST_IDS.record(&**tx, key, created.id.as_str()).await?;
                    }
                    tx.append(&account_event(
                        AccountChange::Created,
                        &created,
                        None,
                        &created.creator,
                    ))
                    .await?;
                    Ok(created)
                })
            })
            .await
    }

    /// Makes the account a partner (idempotent).
    pub async fn promote_to_partner(
        &self,
        id: &AccountId,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        self.change(id, Operation::Promote, etag, actor).await
    }

    /// Changes the display name (unchanged when equal).
    pub async fn rename_account(
        &self,
        id: &AccountId,
        name: &DisplayName,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        self.change(id, Operation::Rename(name.clone()), etag, actor)
            .await
    }

    /// ACTIVE → DISABLED (idempotent).
    pub async fn disable_account(
        &self,
        id: &AccountId,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        self.change(id, Operation::Disable, etag, actor).await
    }

    /// DISABLED → ACTIVE (idempotent).
    pub async fn enable_account(
        &self,
        id: &AccountId,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        self.change(id, Operation::Enable, etag, actor).await
    }

    /// Soft-deletes the account (idempotent); refused for a partner with live customers.
    pub async fn delete_account(
        &self,
        id: &AccountId,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        self.change(id, Operation::Delete, etag, actor).await
    }

    /// In one transaction: locks the account, checks `etag`, plans `operation` with its domain
    /// rule, and applies the planned change (if any) with its event. Returns the account as it
    /// now is.
    async fn change(
        &self,
        id: &AccountId,
        operation: Operation,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let revokes = matches!(operation, Operation::Disable | Operation::Delete);
        let (id, etag, actor) = (id.clone(), etag.to_string(), actor.to_string());
        let (account, changed): (Account, bool) = self
            .outbox
            .write::<_, RegistryError, _>(self.connection()?, move |tx| {
                Box::pin(async move {
                    let account = load_locked(tx, &id).await?;
                    account.check_etag(&etag)?;
                    let live_customers = match operation {
                        Operation::Delete if account.state != AccountState::Deleted => {
                            live_customers(tx, &id).await?
                        }
                        _ => 0,
                    };
                    let Some((update, change)) = operation.plan(&account, live_customers)? else {
                        return Ok((account, false));
                    };
                    // The event carries the account as loaded (locked) before the change too.
                    let previous = account.clone();
                    let updated = apply(tx, account, update, &etag).await?;
                    let event = account_event(change, &updated, Some(&previous), &actor);
                    if change.takes_access_away() {
                        // The call answers once no replica's local view can serve the account
                        // as it was (see `Revocations`).
                        tx.append_revocation(&event).await?;
                    } else {
                        tx.append(&event).await?;
                    }
                    Ok((updated, true))
                })
            })
            .await?;
        if revokes && !changed {
            // Already as asked: perhaps by a concurrent call still announcing it. This one
            // answers no sooner than that one may (see `Revocations::reannounce`).
            self.outbox
                .revocations()
                .reannounce(Revoked::Account(account.id.to_string()))
                .await;
        }
        // Not kept here: the commit voided this replica's copy, and a ticket taken now could
        // not tell this write from a later one on another replica; the next read refills it.
        Ok(account)
    }
}

/// The account `id`, or `None`.
async fn find<C: ConnectionTrait>(
    connection: &C,
    id: &AccountId,
) -> Result<Option<Account>, RegistryError> {
    account::Entity::find_by_id(id.as_str())
        .one(connection)
        .await?
        .map(to_domain)
        .transpose()
}

/// The account `id` under a share lock (`FOR SHARE` on PostgreSQL): it cannot change until
/// the transaction ends, and other share lockers are not blocked.
async fn load_shared(txn: &DatabaseTransaction, id: &AccountId) -> Result<Account, RegistryError> {
    account::Entity::find_by_id(id.as_str())
        .lock_shared()
        .one(txn)
        .await?
        .map(to_domain)
        .transpose()?
        .ok_or_else(|| RegistryError::AccountNotFound(id.clone()))
}

/// The account `id` inside `txn`, its row locked where the database can (PostgreSQL).
async fn load_locked(txn: &DatabaseTransaction, id: &AccountId) -> Result<Account, RegistryError> {
    account::Entity::find_by_id(id.as_str())
        .lock_exclusive()
        .one(txn)
        .await?
        .map(to_domain)
        .transpose()?
        .ok_or_else(|| RegistryError::AccountNotFound(id.clone()))
}

/// How many customers of the partner `id` are not deleted.
async fn live_customers(txn: &DatabaseTransaction, id: &AccountId) -> Result<u64, RegistryError> {
    Ok(account::Entity::find()
        .filter(account::Column::ManagedBy.eq(id.as_str()))
        .filter(account::Column::State.ne(AccountState::Deleted.as_str()))
        .count(txn)
        .await?)
}

/// Inserts the row of `new`, ACTIVE at version 1, and returns the account;
/// [`RegistryError::AccountIdTaken`] when its id is or was in use.
async fn insert(txn: &DatabaseTransaction, new: NewAccount) -> Result<Account, RegistryError> {
    let now = tenantry_platform::time::now();
    let row = account::ActiveModel {
        account_id: Set(new.id.to_string()),
        display_name: Set(new.display_name.to_string()),
        partner: Set(false),
        managed_by: Set(new.managed_by.as_ref().map(ToString::to_string)),
        state: Set(AccountState::Active.as_str().to_string()),
        creator: Set(new.creator.clone()),
        version: Set(1),
        create_time: Set(now),
        update_time: Set(now),
        delete_time: Set(None),
    };
    account::Entity::insert(row)
        .exec_without_returning(txn)
        .await
        .map_err(|error| insert_error(error, &new))?;
    Ok(created_account(new, now))
}

/// PostgreSQL: the statement inserting the managed customer `new` that share-locks its parent
/// (as [`load_shared`] does) and inserts only if the parent may manage customers, returning the
/// new id; `None` for an account with no parent or on SQLite. When it inserts nothing (no such
/// parent, or a parent refused), the caller checks the parent the long way, where
/// [`domain::check_can_manage_customers`] says why.
///
/// This `WHERE` is the one place the rule is restated: it must admit no parent that rule
/// refuses (`parent_race_tests` checks every refusal on PostgreSQL). If a concurrent change of
/// the parent commits first, the share lock waits for it and PostgreSQL re-evaluates the
/// `WHERE` against the row as it is then.
fn insert_under_parent_statement(
    backend: DbBackend,
    new: &NewAccount,
    now: DateTime<Utc>,
) -> Option<Statement> {
    let parent = new.managed_by.as_ref()?;
    (backend == DbBackend::Postgres).then(|| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO accounts (account_id, display_name, partner, managed_by, state, creator, \
             version, create_time, update_time, delete_time) \
             SELECT $1, $2, FALSE, parent.account_id, $3, $4, 1, $5, $5, NULL \
             FROM accounts AS parent \
             WHERE parent.account_id = $6 AND parent.partner AND parent.state = $3 \
             FOR SHARE OF parent \
             RETURNING account_id",
            [
                new.id.as_str().into(),
                new.display_name.as_str().into(),
                AccountState::Active.as_str().into(),
                new.creator.as_str().into(),
                now.into(),
                parent.as_str().into(),
            ],
        )
    })
}

/// [`insert_under_parent_statement`] in `txn`: the account if it inserted it.
async fn insert_under_parent(
    txn: &DatabaseTransaction,
    new: &NewAccount,
) -> Result<Option<Account>, RegistryError> {
    let now = tenantry_platform::time::now();
    let Some(statement) = insert_under_parent_statement(txn.get_database_backend(), new, now)
    else {
        return Ok(None);
    };
    let inserted = txn
        .execute_raw(statement)
        .await
        .map_err(|error| insert_error(error, new))?
        .rows_affected();
    Ok((inserted == 1).then(|| created_account(new.clone(), now)))
}

/// An insert's error: the id in use, or the store's.
fn insert_error(error: DbErr, new: &NewAccount) -> RegistryError {
    match StoreError::from(error) {
        StoreError::Conflict(_) => RegistryError::AccountIdTaken(new.id.clone()),
        other => RegistryError::Store(other),
    }
}

/// The account a create of `new` at `now` stores: ACTIVE, version 1.
fn created_account(new: NewAccount, now: DateTime<Utc>) -> Account {
    Account {
        id: new.id,
        display_name: new.display_name,
        partner: false,
        managed_by: new.managed_by,
        state: AccountState::Active,
        creator: new.creator,
        version: 1,
        create_time: now,
        update_time: now,
        delete_time: None,
    }
}

/// Writes `update` to `account` if its version is still the one read, and returns the result.
async fn apply(
    txn: &DatabaseTransaction,
    mut account: Account,
    update: Update,
    etag: &str,
) -> Result<Account, RegistryError> {
    let now = tenantry_platform::time::now();
    let mut statement = account::Entity::update_many()
        .col_expr(
            account::Column::Version,
            Expr::col(account::Column::Version).add(1),
        )
        .col_expr(account::Column::UpdateTime, Expr::value(now));
    match &update {
        Update::State(state) => {
            statement = statement.col_expr(account::Column::State, Expr::value(state.as_str()));
            if *state == AccountState::Deleted {
                statement = statement.col_expr(account::Column::DeleteTime, Expr::value(Some(now)));
            }
        }
        Update::Partner => {
            statement = statement.col_expr(account::Column::Partner, Expr::value(true));
        }
        Update::DisplayName(name) => {
            statement =
                statement.col_expr(account::Column::DisplayName, Expr::value(name.as_str()));
        }
    }
    let result = statement
        .filter(account::Column::AccountId.eq(account.id.as_str()))
        .filter(account::Column::Version.eq(account.version))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        let id = account.id.clone();
        return Err(if etag.is_empty() {
            RegistryError::ConcurrentChange(id)
        } else {
            RegistryError::StaleEtag(id)
        });
    }
    account.version += 1;
    account.update_time = now;
    match update {
        Update::State(state) => {
            account.state = state;
            if state == AccountState::Deleted {
                account.delete_time = Some(now);
            }
        }
        Update::Partner => account.partner = true,
        Update::DisplayName(name) => account.display_name = name,
    }
    Ok(account)
}

/// The account a remembered request created, if `key.request_id` was seen before; an error if
/// it was used by another caller or for another request.
async fn replay<C: ConnectionTrait>(
    connection: &C,
    key: &RequestKey,
) -> Result<Option<Account>, RegistryError> {
    let resource_key = match REQUEST_IDS.replay(connection, key).await {
        Ok(Some(resource_key)) => resource_key,
        Ok(None) => return Ok(None),
        Err(ReplayError::Reused(_)) => {
            return Err(RegistryError::RequestIdReused(key.request_id.clone()));
        }
        Err(ReplayError::Database(error)) => return Err(error.into()),
    };
    let id = AccountId::trusted(resource_key);
    find(connection, &id).await?.map(Some).ok_or_else(|| {
        RegistryError::CorruptRow(format!(
            "request {} points at missing account {id}",
            key.request_id
        ))
    })
}

fn to_domain(row: account::Model) -> Result<Account, RegistryError> {
    let state = AccountState::parse(&row.state).ok_or_else(|| {
        RegistryError::CorruptRow(format!(
            "account {} has unknown state {:?}",
            row.account_id, row.state
        ))
    })?;
    Ok(Account {
        id: AccountId::trusted(row.account_id),
        display_name: DisplayName::trusted(row.display_name),
        partner: row.partner,
        managed_by: row.managed_by.map(AccountId::trusted),
        state,
        creator: row.creator,
        version: row.version,
        create_time: row.create_time,
        update_time: row.update_time,
        delete_time: row.delete_time,
    })
}
