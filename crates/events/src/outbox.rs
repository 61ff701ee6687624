//! The write side: events go into the `outbox` table in the transaction of the state change
//! they announce, and the relay is woken once that transaction committed.
//!
//! A service writes through [`Outbox::write`] (or [`Outbox::begin`] … [`OutboxTransaction::commit`]),
//! which owns begin, append, commit and the wake-up; a consumer's handler appends in the
//! runtime's transaction, and the runtime wakes the outbox after its own commit
//! ([`crate::ConsumerSpec::outbox`]). Nobody wakes the relay by hand, and never before a commit.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::Utc;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, Set, Statement, TransactionTrait,
};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use tenantry_platform::view::LocalView;

use crate::entities::outbox;
use crate::view_feed::{Invalidation, invalidation};
use crate::{Event, Revocations};

/// The longest routing key AMQP allows (a short string).
const MAX_EVENT_TYPE_LEN: usize = 255;

/// Appends events to the `outbox` table in the caller's transaction, and wakes the relay.
#[derive(Clone, Debug)]
pub struct Outbox {
    notify: Arc<Notify>,
    /// Events appended so far (by any transaction): a writer that appended none has nothing
    /// to wake the relay for, and a relay pass is a database round trip.
    appended: Arc<AtomicU64>,
    /// Bumped after every batch this process's relay published and deleted.
    published: Arc<watch::Sender<u64>>,
    /// How revocations are announced ([`OutboxTransaction::append_revocation`]).
    revocations: Revocations,
    /// The process's local view: a writer voids what its own events change right at commit,
    /// before any event comes back from the broker.
    view: Option<LocalView>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            notify: Arc::default(),
            appended: Arc::default(),
            published: Arc::new(watch::channel(0).0),
            revocations: Revocations::default(),
            view: None,
        }
    }
}

impl Outbox {
    /// An outbox with nobody waiting on it yet; give a clone to the service's [`crate::Relay`].
    /// Revocations commit without waiting until [`Outbox::with_revocations`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Announces revocations through `revocations` (the node's, shared by its services).
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// How this outbox's revocations are announced (for [`Revocations::reannounce`]).
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Voids in `view` what this outbox's events change, as soon as their transaction commits.
    pub fn with_view(mut self, view: LocalView) -> Self {
        self.view = Some(view);
        self
    }

    /// Begins a transaction on `connection` whose events are relayed once it commits.
    pub async fn begin(&self, connection: &DatabaseConnection) -> Result<OutboxTransaction, DbErr> {
        Ok(OutboxTransaction {
            txn: connection.begin().await?,
            connection: connection.clone(),
            outbox: self.clone(),
            appended: AtomicBool::new(false),
            revocations: Mutex::new(Vec::new()),
            invalidations: Mutex::new(Vec::new()),
        })
    }

    /// Runs `work` in one transaction on `connection` and commits it if `work` succeeded, then
    /// wakes the relay; rolls back (dropping the events `work` appended) if it failed.
    ///
    /// The work gets the transaction and must own what it uses (the future may outlive the
    /// caller's borrows); work that borrows the caller's data uses [`Outbox::begin`] instead.
    ///
    /// ```no_run
    /// # use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
    /// # use tenantry_events::{Event, Outbox};
    /// # async fn example(outbox: Outbox, connection: DatabaseConnection, event: Event) -> Result<(), DbErr> {
    /// let updated = outbox
    ///     .write(&connection, |tx| {
    ///         Box::pin(async move {
    ///             let result = tx.execute_unprepared("UPDATE accounts SET version = version + 1").await?;
    ///             tx.append(&event).await?;
    ///             Ok::<_, DbErr>(result.rows_affected())
    ///         })
    ///     })
    ///     .await?;
    /// # let _ = updated;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write<T, E, F>(&self, connection: &DatabaseConnection, work: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t OutboxTransaction) -> WriteFuture<'t, T, E>,
        E: From<DbErr>,
    {
        let tx = self.begin(connection).await?;
        match work(&tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                // An explicit rollback reports a broken connection; the work's error matters more.
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    /// Inserts `event` using `txn` (the same transaction as the state change). Nothing is
    /// published until the transaction commits and the relay picks the row up. Outside a
    /// consumer's handler, use [`OutboxTransaction::append`], which also wakes the relay.
    pub async fn append<C: ConnectionTrait>(&self, txn: &C, event: &Event) -> Result<(), DbErr> {
        check_publishable(event)?;
        let row = outbox::ActiveModel {
            seq: NotSet,
            event_id: Set(event.id.to_string()),
            event_type: Set(event.event_type.clone()),
            source: Set(event.source.clone()),
            time: Set(event.time),
            payload: Set(event.payload.clone()),
            traceparent: Set(event.traceparent.clone()),
            tracestate: Set(event.tracestate.clone()),
            create_time: Set(Utc::now()),
        };
        outbox::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// PostgreSQL: runs `change` — one data-modifying statement with a `RETURNING` clause —
    /// and appends `event` in the same statement if `change` returned a row, outside any
    /// transaction (the statement is its own); true if it did. Then, as after
    /// [`OutboxTransaction::commit`], the relay is woken and the local view voids what `event`
    /// changes. One round trip for a change and its event, where [`Outbox::write`] takes four.
    ///
    /// Not for events that take access away: those commit only once announced
    /// ([`OutboxTransaction::append_revocation`]). Refused on other databases (no
    /// data-modifying `WITH` there): use [`Outbox::write`].
    pub async fn write_one(
        &self,
        connection: &DatabaseConnection,
        change: Statement,
        event: &Event,
    ) -> Result<bool, DbErr> {
        check_publishable(event)?;
        if connection.get_database_backend() != DbBackend::Postgres
            || change.db_backend != DbBackend::Postgres
        {
            return Err(DbErr::Custom(
                "Outbox::write_one needs PostgreSQL; use Outbox::write".into(),
            ));
        }
        let mut values = change.values.map(|values| values.0).unwrap_or_default();
        // The event's values follow the change's own: $n+1 … $n+8.
        let placeholders: Vec<String> = (values.len() + 1..=values.len() + 8)
            .map(|index| format!("${index}"))
            .collect();
        let sql = format!(
            "WITH change AS ({change}) \
             INSERT INTO outbox (event_id, event_type, source, time, payload, traceparent, \
             tracestate, create_time) \
             SELECT {placeholders} WHERE EXISTS (SELECT 1 FROM change)",
            change = change.sql,
            placeholders = placeholders.join(", "),
        );
        values.extend([
            event.id.to_string().into(),
            event.event_type.as_str().into(),
            event.source.as_str().into(),
            event.time.into(),
            event.payload.clone().into(),
            event.traceparent.clone().into(),
            event.tracestate.clone().into(),
            Utc::now().into(),
        ]);
        let appended = connection
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?
            .rows_affected()
            == 1;
        if appended {
            self.appended.fetch_add(1, Ordering::Relaxed);
            self.wake();
            if let Some(view) = &self.view
                && let Some(invalidation) = invalidation(event)
            {
                invalidation.apply(view);
            }
        }
        Ok(appended)
    }

    /// How many events were appended so far, by any transaction: a consumer's runtime compares
    /// it around a handler to know whether the handler appended (another transaction's append
    /// in between only costs a needless wake-up, never a missed one).
    pub(crate) fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Wakes the relay at once (no multi-second poll); called after a commit only.
    pub(crate) fn wake(&self) {
        // notify_one stores a permit when the relay is busy, so a commit during a batch is not
        // missed: the relay looks again right after the batch.
        self.notify.notify_one();
    }

    /// Completes at the next wake-up (or at once if one happened since the last wait).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Called by the relay after a batch was confirmed and deleted.
    pub(crate) fn published(&self) {
        self.published.send_modify(|batches| *batches += 1);
    }

    /// Waits until none of the events `ids` is left in the outbox (the relay deletes a row only
    /// once the broker confirmed it, whichever replica's relay took it), or until `deadline`;
    /// true if they all were. Looks again after each batch of this process's relay, and every
    /// 50 ms for the other replicas'.
    pub(crate) async fn wait_published(
        &self,
        connection: &DatabaseConnection,
        ids: &[Uuid],
        deadline: Option<tokio::time::Instant>,
    ) -> bool {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let mut batches = self.published.subscribe();
        loop {
            batches.borrow_and_update();
            let left = outbox::Entity::find()
                .filter(outbox::Column::EventId.is_in(ids.clone()))
                .count(connection)
                .await;
            match left {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cannot look at the outbox; trying again"),
            }
            let poll = tokio::time::sleep(std::time::Duration::from_millis(50));
            let until = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = batches.changed() => {},
                () = poll => {},
                () = until => return false,
            }
        }
    }
}

/// What [`Outbox::write`]'s work returns: a boxed future borrowing the transaction.
pub type WriteFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

/// A transaction whose appended events are relayed once it commits. It dereferences to the
/// [`DatabaseTransaction`], so queries run on it as on any connection; dropped without
/// [`OutboxTransaction::commit`] it rolls back, events included.
#[derive(Debug)]
pub struct OutboxTransaction {
    txn: DatabaseTransaction,
    connection: DatabaseConnection,
    outbox: Outbox,
    /// Whether this transaction appended an event (only then does its commit wake the relay).
    appended: AtomicBool,
    /// The events that take access away, announced before the commit returns.
    revocations: Mutex<Vec<Uuid>>,
    /// What the appended events void in the process's local view, applied at commit.
    invalidations: Mutex<Vec<Invalidation>>,
}

impl OutboxTransaction {
    /// Appends `event` in this transaction.
    pub async fn append(&self, event: &Event) -> Result<(), DbErr> {
        self.outbox.append(&self.txn, event).await?;
        self.appended.store(true, Ordering::Relaxed);
        if self.outbox.view.is_some()
            && let Some(invalidation) = invalidation(event)
        {
            self.invalidations
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(invalidation);
        }
        Ok(())
    }

    /// Appends `event`, which takes access away (a member removed, expired or demoted, an
    /// account disabled or deleted): [`OutboxTransaction::commit`] then returns only once no
    /// replica's local view can still serve the access it removes (see [`Revocations`]).
    pub async fn append_revocation(&self, event: &Event) -> Result<(), DbErr> {
        self.append(event).await?;
        self.outbox.revocations.expect(event.id);
        self.revocations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.id);
        Ok(())
    }

    /// Commits, then wakes the relay; with revocations appended, returns once they are
    /// announced.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        if self.appended.load(Ordering::Relaxed) {
            self.outbox.wake();
        }
        if let Some(view) = &self.outbox.view {
            let invalidations = self
                .invalidations
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for invalidation in invalidations {
                invalidation.apply(view);
            }
        }
        let revocations = self
            .revocations
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !revocations.is_empty() {
            self.outbox
                .revocations
                .announce(&self.outbox, &self.connection, revocations)
                .await;
        }
        Ok(())
    }

    /// Rolls back: nothing written in it, events included, remains.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Deref for OutboxTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Refused here, in the writer's transaction, rather than by the broker later: a row the relay
/// can never publish would block every row behind it.
fn check_publishable(event: &Event) -> Result<(), DbErr> {
    if crate::view_feed::is_control(&event.event_type) {
        return Err(DbErr::Custom(format!(
            "event type {:?} is reserved for control messages (`tenantry.…`), which \
             never reach event consumers",
            event.event_type
        )));
    }
    if event.event_type.is_empty() || event.event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(DbErr::Custom(format!(
            "event type {:?} must be 1 to {MAX_EVENT_TYPE_LEN} bytes (an AMQP routing key)",
            event.event_type
        )));
    }
    Ok(())
}
