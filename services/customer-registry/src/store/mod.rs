//! The registry's storage. Every state change is one database transaction in one function
//! (`create_account`, `promote_to_partner`, `rename_account`, `disable_account`,
//! `enable_account`, `delete_account`) that also appends the change's `account.*` event to the
//! outbox, so an event is published if and only if its change committed. Reads never run inside a transaction they did not open:
//! the SQLite pool has one connection.

pub mod entities;
pub mod migrations;

#[cfg(test)]
mod tests;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tenantry_events::Outbox;
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::idempotency::RequestKey;

use crate::domain::{
    self, Account, AccountId, AccountState, Change, DisplayName, RegistryError, StateFilter,
};
use crate::events::{AccountChange, account_event};
use entities::{account, request_id};

/// A new account to insert.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Its identifier.
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
    pub managed_by: Option<String>,
    /// Which states.
    pub states: StateFilter,
    /// Only partner accounts.
    pub partners_only: bool,
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
}

impl Store {
    /// A store over `database`.
    pub fn new(database: Database, outbox: Outbox) -> Self {
        Self { database, outbox }
    }

    /// Appends the event of a change that happened (nothing for an unchanged account).
    async fn publish(
        &self,
        txn: &DatabaseTransaction,
        change: Option<(AccountChange, &Account)>,
        actor: &str,
    ) -> Result<(), RegistryError> {
        if let Some((change, account)) = change {
            self.outbox
                .append(txn, &account_event(change, account, actor))
                .await?;
        }
        Ok(())
    }

    /// Applies a planned change (if any) to the locked `account`, appends its event, commits,
    /// and returns the account as it now is: the common tail of every update path.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        account: Account,
        planned: Option<(Update, AccountChange)>,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let result = match planned {
            None => account,
            Some((update, change)) => {
                let updated = apply(&txn, account, update, etag).await?;
                self.publish(&txn, Some((change, &updated)), actor).await?;
                updated
            }
        };
        self.commit(txn).await?;
        Ok(result)
    }

    /// Commits `txn` and wakes the relay.
    async fn commit(&self, txn: DatabaseTransaction) -> Result<(), RegistryError> {
        txn.commit().await?;
        self.outbox.committed();
        Ok(())
    }

    fn connection(&self) -> Result<&DatabaseConnection, RegistryError> {
        Ok(self.database.connection()?)
    }

    async fn begin(&self) -> Result<DatabaseTransaction, RegistryError> {
        Ok(self.connection()?.begin().await?)
    }

    /// The account `id`, or `None`.
    pub async fn find(&self, id: &str) -> Result<Option<Account>, RegistryError> {
        account::Entity::find_by_id(id.to_string())
            .one(self.connection()?)
            .await?
            .map(to_domain)
            .transpose()
    }

    /// The account `id`, or [`RegistryError::AccountNotFound`].
    pub async fn get(&self, id: &str) -> Result<Account, RegistryError> {
        self.find(id)
            .await?
            .ok_or_else(|| RegistryError::AccountNotFound(id.to_string()))
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
            .map(AccountState::as_db_str)
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
        match self.create_account_txn(&new, key.as_ref()).await {
            Err(
                error @ (RegistryError::AccountIdTaken(_)
                | RegistryError::Store(StoreError::Conflict(_))),
            ) if key.is_some() => {
                // A concurrent call with the same request_id may have won the race: answer as
                // its retry would be answered.
                let Some(key) = key else { return Err(error) };
                let txn = self.begin().await?;
                let replayed = replay(&txn, &key).await?;
                txn.commit().await?;
                replayed.ok_or(error)
            }
            other => other,
        }
    }

    async fn create_account_txn(
        &self,
        new: &NewAccount,
        key: Option<&RequestKey>,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        if let Some(key) = key
            && let Some(account) = replay(&txn, key).await?
        {
            txn.commit().await?;
            return Ok(account);
        }
        if let Some(parent) = &new.managed_by {
            // Share-locked so a concurrent DeleteAccount/DisableAccount of the parent (an
            // UPDATE, which waits for share locks) serializes with this create, while creates
            // under the same partner do not wait for each other (PostgreSQL; SQLite has a
            // single writer anyway). An exclusive lock here made every create of a partner
            // queue behind the previous one's commit.
            let parent = load_shared(&txn, parent.as_str()).await?;
            domain::check_can_manage_customers(&parent)?;
        }
        let now = tenantry_platform::time::now();
        let row = account::ActiveModel {
            account_id: Set(new.id.to_string()),
            display_name: Set(new.display_name.to_string()),
            partner: Set(false),
            managed_by: Set(new.managed_by.as_ref().map(ToString::to_string)),
            state: Set(AccountState::Active.as_db_str().to_string()),
            creator: Set(new.creator.clone()),
            version: Set(1),
            create_time: Set(now),
            update_time: Set(now),
            delete_time: Set(None),
        };
        account::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(|error| match StoreError::from(error) {
                StoreError::Conflict(_) => RegistryError::AccountIdTaken(new.id.to_string()),
                other => RegistryError::Store(other),
            })?;
        if let Some(key) = key {
            request_id::Entity::insert(request_id::ActiveModel {
                request_id: Set(key.request_id.clone()),
                caller: Set(key.caller.clone()),
                method: Set(key.method.clone()),
                fingerprint: Set(key.fingerprint.clone()),
                resource_key: Set(new.id.to_string()),
                create_time: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        let created = Account {
            id: new.id.clone(),
            display_name: new.display_name.clone(),
            partner: false,
            managed_by: new.managed_by.clone(),
            state: AccountState::Active,
            creator: new.creator.clone(),
            version: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
        };
        self.publish(&txn, Some((AccountChange::Created, &created)), &new.creator)
            .await?;
        self.commit(txn).await?;
        Ok(created)
    }

    /// Makes the account a partner (idempotent).
    pub async fn promote_to_partner(
        &self,
        id: &str,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        let account = load_locked(&txn, id).await?;
        account.check_etag(etag)?;
        let planned = match domain::promote(&account)? {
            Change::Unchanged => None,
            Change::To(_) => Some((Update::Partner, AccountChange::PromotedToPartner)),
        };
        self.finish(txn, account, planned, etag, actor).await
    }

    /// Changes the display name (unchanged when equal).
    pub async fn rename_account(
        &self,
        id: &str,
        name: &DisplayName,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        let account = load_locked(&txn, id).await?;
        account.check_etag(etag)?;
        let planned = match domain::rename(&account, name)? {
            Change::Unchanged => None,
            Change::To(name) => Some((Update::DisplayName(name), AccountChange::Updated)),
        };
        self.finish(txn, account, planned, etag, actor).await
    }

    /// ACTIVE → DISABLED (idempotent).
    pub async fn disable_account(
        &self,
        id: &str,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        let account = load_locked(&txn, id).await?;
        account.check_etag(etag)?;
        let planned = match domain::disable(&account)? {
            Change::Unchanged => None,
            Change::To(state) => Some((Update::State(state), AccountChange::Disabled)),
        };
        self.finish(txn, account, planned, etag, actor).await
    }

    /// DISABLED → ACTIVE (idempotent).
    pub async fn enable_account(
        &self,
        id: &str,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        let account = load_locked(&txn, id).await?;
        account.check_etag(etag)?;
        let planned = match domain::enable(&account)? {
            Change::Unchanged => None,
            Change::To(state) => Some((Update::State(state), AccountChange::Enabled)),
        };
        self.finish(txn, account, planned, etag, actor).await
    }

    /// Soft-deletes the account (idempotent); refused for a partner with live customers.
    pub async fn delete_account(
        &self,
        id: &str,
        etag: &str,
        actor: &str,
    ) -> Result<Account, RegistryError> {
        let txn = self.begin().await?;
        let account = load_locked(&txn, id).await?;
        account.check_etag(etag)?;
        let live_customers = if account.state == AccountState::Deleted {
            0
        } else {
            account::Entity::find()
                .filter(account::Column::ManagedBy.eq(id))
                .filter(account::Column::State.ne(AccountState::Deleted.as_db_str()))
                .count(&txn)
                .await?
        };
        let planned = match domain::delete(&account, live_customers)? {
            Change::Unchanged => None,
            Change::To(state) => Some((Update::State(state), AccountChange::Deleted)),
        };
        self.finish(txn, account, planned, etag, actor).await
    }
}

/// Reads an account inside `txn`, locking its row where the database can (PostgreSQL).
/// The account `id` under a share lock (`FOR SHARE` on PostgreSQL): it cannot change until
/// the transaction ends, and other share lockers are not blocked.
async fn load_shared(txn: &DatabaseTransaction, id: &str) -> Result<Account, RegistryError> {
    account::Entity::find_by_id(id.to_string())
        .lock_shared()
        .one(txn)
        .await?
        .map(to_domain)
        .transpose()?
        .ok_or_else(|| RegistryError::AccountNotFound(id.to_string()))
}

async fn load_locked(txn: &DatabaseTransaction, id: &str) -> Result<Account, RegistryError> {
    account::Entity::find_by_id(id.to_string())
        .lock_exclusive()
        .one(txn)
        .await?
        .map(to_domain)
        .transpose()?
        .ok_or_else(|| RegistryError::AccountNotFound(id.to_string()))
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
            statement = statement.col_expr(account::Column::State, Expr::value(state.as_db_str()));
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
        let id = account.id.to_string();
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
async fn replay(
    txn: &DatabaseTransaction,
    key: &RequestKey,
) -> Result<Option<Account>, RegistryError> {
    let Some(seen) = request_id::Entity::find_by_id(key.request_id.clone())
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let request_id::Model {
        request_id,
        caller,
        method,
        fingerprint,
        resource_key,
        create_time: _,
    } = seen;
    let earlier = RequestKey {
        request_id,
        caller,
        method,
        fingerprint,
    };
    key.check_retry_of(&earlier)
        .map_err(|_| RegistryError::RequestIdReused(key.request_id.clone()))?;
    account::Entity::find_by_id(resource_key.clone())
        .one(txn)
        .await?
        .map(to_domain)
        .transpose()?
        .map(Some)
        .ok_or(RegistryError::CorruptRow(format!(
            "request {} points at missing account {resource_key}",
            earlier.request_id
        )))
}

fn to_domain(row: account::Model) -> Result<Account, RegistryError> {
    let state = AccountState::from_db_str(&row.state).ok_or_else(|| {
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
