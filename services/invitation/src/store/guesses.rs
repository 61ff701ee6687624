//! The unknown-secret counters of LookupInvitation and AcceptInvitation, in the service's own
//! database so that every replica adds to and reads the same counts (one row per key and
//! window; see `domain::limits::GuessLimit` for what is counted and how it limits). Old windows
//! are deleted as new ones start.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
};
use tenantry_platform::db::Database;

use crate::domain::InvitationError;
use crate::domain::limits::{GuessScope, WindowCounts};
use crate::store::entities::guess;

/// Counts unknown secrets per (scope, key, window).
#[derive(Clone, Debug)]
pub struct GuessCounter {
    database: Database,
}

impl GuessCounter {
    /// Counters in `database` (migrated with [`super::migrations::Migrator`]).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    fn connection(&self) -> Result<&DatabaseConnection, InvitationError> {
        Ok(self.database.connection()?)
    }

    /// The counts of each of `keys` in the windows starting at `previous` and `current` (Unix
    /// seconds), in the order of `keys`: one query.
    pub async fn counts(
        &self,
        keys: &[(GuessScope, &str)],
        previous: i64,
        current: i64,
    ) -> Result<Vec<WindowCounts>, InvitationError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut any = Condition::any();
        for (scope, key) in keys {
            any = any.add(
                Condition::all()
                    .add(guess::Column::Scope.eq(scope.as_str()))
                    .add(guess::Column::Key.eq(*key)),
            );
        }
        let rows = guess::Entity::find()
            .filter(any)
            .filter(guess::Column::WindowStart.is_in([previous, current]))
            .all(self.connection()?)
            .await?;
        Ok(keys
            .iter()
            .map(|(scope, key)| {
                let mut counts = WindowCounts::default();
                for row in rows
                    .iter()
                    .filter(|row| row.scope == scope.as_str() && row.key == *key)
                {
                    let failures = u64::try_from(row.failures).unwrap_or(0);
                    if row.window_start == current {
                        counts.current = failures;
                    } else if row.window_start == previous {
                        counts.previous = failures;
                    }
                }
                counts
            })
            .collect())
    }

    /// Counts one more unknown secret for `key` in the window starting at `window_start`, in
    /// one atomic statement (`INSERT … ON CONFLICT (scope, key, window_start) DO UPDATE SET
    /// failures = failures + 1 RETURNING …`, on PostgreSQL and SQLite alike), so concurrent
    /// replicas never lose a count. Returns the window's count after it.
    pub async fn record(
        &self,
        scope: GuessScope,
        key: &str,
        window_start: i64,
    ) -> Result<u64, InvitationError> {
        let row = guess::Entity::insert(guess::ActiveModel {
            scope: Set(scope.as_str().to_string()),
            key: Set(key.to_string()),
            window_start: Set(window_start),
            failures: Set(1),
        })
        .on_conflict(
            OnConflict::columns([
                guess::Column::Scope,
                guess::Column::Key,
                guess::Column::WindowStart,
            ])
            .value(
                guess::Column::Failures,
                Expr::col((guess::Entity, guess::Column::Failures)).add(1),
            )
            .to_owned(),
        )
        .exec_with_returning(self.connection()?)
        .await?;
        Ok(u64::try_from(row.failures).unwrap_or(0))
    }

    /// Deletes the counts of windows that start before `before` (Unix seconds); returns how
    /// many rows went.
    pub async fn delete_before(&self, before: i64) -> Result<u64, InvitationError> {
        let deleted = guess::Entity::delete_many()
            .filter(guess::Column::WindowStart.lt(before))
            .exec(self.connection()?)
            .await?;
        Ok(deleted.rows_affected)
    }
}
