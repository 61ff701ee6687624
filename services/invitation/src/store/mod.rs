//! The invitation service's persistence. Every state change is one transaction that also
//! appends its `invitation.*` event to the outbox (an [`Outbox::begin`] transaction, whose
//! commit wakes the relay; consumers append in the runtime's transaction), or on PostgreSQL,
//! for the hot create, one statement doing both ([`Outbox::write_one`]).
//! Lifecycle changes are conditional updates (`WHERE invitation_id = ? AND version = ? AND
//! state = 'PENDING' AND expire_time > now`), so concurrent writers cannot both win.

#[cfg(test)]
mod create_tests;
pub mod entities;
pub mod guesses;
pub mod mailer;
pub mod migrations;
#[cfg(test)]
mod reminder_tests;
pub mod reminders;
pub mod retention;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod transition_tests;
mod transitions;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use tenantry_events::Outbox;
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::idempotency::{ReplayError, RequestIds, RequestKey};

use crate::domain::secret::hash_matches;
use crate::domain::{
    AccountId, Delivery, DeliveryState, Invitation, InvitationError, InvitationId, InvitationState,
    NewInvitation, Role, normalize_email,
};
use crate::events;
use entities::invitation;
use transitions::pending_update;

/// The request ids of CreateInvitation, written with the invitation they created.
pub const REQUEST_IDS: RequestIds = RequestIds::new("invitation_request_ids");

/// The invitation service's tables.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
    outbox: Outbox,
}

impl Store {
    /// A store over `database` (migrated with [`migrations::Migrator`]), publishing through
    /// `outbox`.
    pub fn new(database: Database, outbox: Outbox) -> Self {
        Self { database, outbox }
    }

    fn connection(&self) -> Result<&DatabaseConnection, InvitationError> {
        Ok(self.database.connection()?)
    }

    /// One invitation by id.
    pub async fn get(
        &self,
        invitation_id: &InvitationId,
    ) -> Result<Option<Invitation>, InvitationError> {
        load(self.connection()?, invitation_id).await
    }

    /// The invitation whose current secret has this hash, or whose earlier secret has it (an
    /// e-mail an interrupted attempt may have sent, see `store::mailer`), or whose reminder's
    /// secret has it (`store::reminders`). The indexes find the
    /// row; the hash it holds is then confirmed in constant time (see `domain::secret`).
    pub async fn find_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<Invitation>, InvitationError> {
        invitation::Entity::find()
            .filter(
                Condition::any()
                    .add(invitation::Column::SecretHash.eq(secret_hash))
                    .add(invitation::Column::PreviousSecretHash.eq(secret_hash))
                    .add(invitation::Column::ReminderSecretHash.eq(secret_hash))
                    .add(invitation::Column::PreviousReminderSecretHash.eq(secret_hash)),
            )
            .one(self.connection()?)
            .await?
            .filter(|row| {
                [
                    &row.secret_hash,
                    &row.previous_secret_hash,
                    &row.reminder_secret_hash,
                    &row.previous_reminder_secret_hash,
                ]
                .into_iter()
                .flatten()
                .any(|stored| hash_matches(stored, secret_hash))
            })
            .map(to_invitation)
            .transpose()
    }

    /// A page of the account's invitations, newest (highest id) first, below `before`, whose
    /// state as seen at `now` is one of `states`.
    pub async fn list(
        &self,
        account_id: &AccountId,
        states: &[InvitationState],
        before: Option<&str>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, InvitationError> {
        let mut query = invitation::Entity::find()
            .filter(invitation::Column::AccountId.eq(account_id.as_str()))
            .filter(states_at(states, now));
        if let Some(before) = before {
            query = query.filter(invitation::Column::InvitationId.lt(before));
        }
        query
            .order_by_desc(invitation::Column::InvitationId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(to_invitation)
            .collect()
    }

    /// A page of the PENDING invitations (not expired at `now`) to the normalized `email`, in
    /// any account, newest (highest id) first, below `before`.
    pub async fn pending_for_email(
        &self,
        email: &str,
        before: Option<&str>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, InvitationError> {
        let mut query = invitation::Entity::find()
            .filter(invitation::Column::EmailNormalized.eq(email))
            .filter(states_at(&[InvitationState::Pending], now));
        if let Some(before) = before {
            query = query.filter(invitation::Column::InvitationId.lt(before));
        }
        query
            .order_by_desc(invitation::Column::InvitationId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(to_invitation)
            .collect()
    }

    /// The invitation an earlier create under `key.request_id` made, if that call was this
    /// same request (a retry); [`InvitationError::RequestIdReused`] if it was another.
    pub async fn replay(&self, key: &RequestKey) -> Result<Option<Invitation>, InvitationError> {
        let connection = self.connection()?;
        let earlier = REQUEST_IDS
            .replay(connection, key)
            .await
            .map_err(|error| match error {
                ReplayError::Reused(_) => InvitationError::RequestIdReused,
                ReplayError::Database(error) => error.into(),
            })?;
        let Some(invitation_id) = earlier else {
            return Ok(None);
        };
        load(connection, &InvitationId::trusted(invitation_id))
            .await?
            .map(Some)
            .ok_or_else(|| InvitationError::Corrupt(format!("request {}", key.request_id)))
    }

    /// Creates a PENDING invitation (delivery QUEUED) with its `invitation.created` event and
    /// the request record. A PENDING invitation for the same (account, e-mail) that is already
    /// past its expiry is marked EXPIRED first (with its event), so it does not block. A lost
    /// race on the one-pending-per-e-mail index (or the request id) is
    /// [`InvitationError::AlreadyPending`]. On PostgreSQL without a request id the invitation
    /// and its event are first tried as one statement; only a conflict takes the transaction.
    pub async fn create(
        &self,
        new: &NewInvitation,
        request: Option<&RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<Invitation, InvitationError> {
        let already = || InvitationError::AlreadyPending {
            account_id: new.account_id.clone(),
            email: new.email.clone(),
        };
        let connection = self.connection()?;
        // The common case on PostgreSQL, no request id: the invitation and its event are one
        // statement, no transaction around them. A conflict on the one-pending-per-e-mail
        // index may be a PENDING invitation already past its expiry: the transaction below
        // expires it first, or says AlreadyPending.
        if request.is_none() && connection.get_database_backend() == DbBackend::Postgres {
            let row = new_row(new, InvitationId::mint(), now);
            let created = to_invitation(row.clone())?;
            let mut insert =
                invitation::Entity::insert(invitation::ActiveModel::from(row)).into_query();
            insert.returning_col(invitation::Column::InvitationId);
            let statement = DbBackend::Postgres.build(&insert);
            match self
                .outbox
                .write_one(
                    connection,
                    statement,
                    &events::created(&created, &new.inviter, now),
                )
                .await
                .map_err(|error| conflict_as(error, already))
            {
                Ok(true) => return Ok(created),
                Ok(false) | Err(InvitationError::AlreadyPending { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let tx = self.outbox.begin(connection).await?;
        let stale = invitation::Entity::find()
            .filter(invitation::Column::AccountId.eq(new.account_id.as_str()))
            .filter(invitation::Column::EmailNormalized.eq(normalize_email(&new.email)))
            .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
            .filter(invitation::Column::ExpireTime.lte(now))
            .all(&*tx)
            .await?;
        for row in stale {
            expire(&*tx, &self.outbox, &to_invitation(row)?, now).await?;
        }
        let invitation_id = InvitationId::mint();
        let row = invitation::ActiveModel::from(new_row(new, invitation_id.clone(), now));
        // RETURNING: the row as stored (times at the database's precision) without reading
        // it back in another round trip.
        let created = invitation::Entity::insert(row)
            .exec_with_returning(&*tx)
            .await
            .map_err(|error| conflict_as(error, already))?;
        let created = to_invitation(created)?;
        if let Some(request) = request {
            REQUEST_IDS
                .record(&*tx, request, &invitation_id)
                .await
                .map_err(|error| conflict_as(error, already))?;
        }
        tx.append(&events::created(&created, &new.inviter, now))
            .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Marks up to `limit` PENDING invitations past their expiry EXPIRED (one transaction,
    /// one `invitation.expired` event each). Returns how many it marked.
    pub async fn expire_due(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, InvitationError> {
        let tx = self.outbox.begin(self.connection()?).await?;
        let due = invitation::Entity::find()
            .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
            .filter(invitation::Column::ExpireTime.lte(now))
            .order_by_asc(invitation::Column::ExpireTime)
            .limit(limit)
            .all(&*tx)
            .await?;
        let mut expired = 0;
        for row in due {
            if expire(&*tx, &self.outbox, &to_invitation(row)?, now).await? {
                expired += 1;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }
}

/// `state = PENDING` for a statement that addresses one invitation by its id. Compared as
/// `UPPER(state)` (the same test: states are upper case), which no index serves, so the
/// planner always takes the primary key: with the state as a bound parameter and a table not
/// analyzed yet (a new deployment, the benchmark), PostgreSQL's generic plan preferred the
/// `(state, expire_time)` index and scanned every PENDING row on each such update.
pub(crate) fn still_pending() -> SimpleExpr {
    Expr::expr(Func::upper(Expr::col(invitation::Column::State)))
        .eq(InvitationState::Pending.as_str())
}

/// Withdraws the account's PENDING invitations (account deleted): REVOKED by
/// `services/invitation`, or EXPIRED for those already past their expiry; one event each.
/// Runs in the consumer's transaction.
pub async fn withdraw_account(
    txn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    now: DateTime<Utc>,
) -> Result<usize, InvitationError> {
    let pending = invitation::Entity::find()
        .filter(invitation::Column::AccountId.eq(account_id.as_str()))
        .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
        .all(txn)
        .await?;
    withdraw(txn, outbox, pending, now).await
}

/// Closes the account's PENDING invitation for `email` (its invitee became a member some other
/// way): REVOKED by `services/invitation` (EXPIRED if already past its expiry). Runs in the
/// consumer's transaction.
pub async fn close_for_member(
    txn: &impl ConnectionTrait,
    outbox: &Outbox,
    account_id: &AccountId,
    email: &str,
    now: DateTime<Utc>,
) -> Result<usize, InvitationError> {
    let pending = invitation::Entity::find()
        .filter(invitation::Column::AccountId.eq(account_id.as_str()))
        .filter(invitation::Column::EmailNormalized.eq(normalize_email(email)))
        .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
        .all(txn)
        .await?;
    withdraw(txn, outbox, pending, now).await
}

async fn withdraw(
    txn: &impl ConnectionTrait,
    outbox: &Outbox,
    rows: Vec<invitation::Model>,
    now: DateTime<Utc>,
) -> Result<usize, InvitationError> {
    let mut changed = 0;
    for row in rows {
        let current = to_invitation(row)?;
        let done = if current.state_at(now) == InvitationState::Expired {
            expire(txn, outbox, &current, now).await?
        } else {
            let update = pending_update(&current, now)
                .col_expr(
                    invitation::Column::State,
                    Expr::value(InvitationState::Revoked.as_str()),
                )
                .col_expr(invitation::Column::RevokeTime, Expr::value(now))
                .col_expr(
                    invitation::Column::RevokedBy,
                    Expr::value(events::SYSTEM_ACTOR),
                )
                .col_expr(
                    invitation::Column::ReminderDueTime,
                    Expr::value(Option::<DateTime<Utc>>::None),
                );
            if update.exec(txn).await?.rows_affected == 0 {
                // Changed meanwhile (accepted, revoked, resent): its new state stands.
                false
            } else {
                let revoked = load(txn, &current.invitation_id)
                    .await?
                    .ok_or(InvitationError::ConcurrentChange)?;
                outbox
                    .append(
                        txn,
                        &events::revoked(&revoked, &current, events::SYSTEM_ACTOR, now),
                    )
                    .await?;
                true
            }
        };
        changed += usize::from(done);
    }
    Ok(changed)
}

/// Marks `current` EXPIRED if it is still the PENDING version read (and past its expiry),
/// appending `invitation.expired`. Returns whether it did.
async fn expire(
    txn: &impl ConnectionTrait,
    outbox: &Outbox,
    current: &Invitation,
    now: DateTime<Utc>,
) -> Result<bool, InvitationError> {
    let result = invitation::Entity::update_many()
        .col_expr(
            invitation::Column::State,
            Expr::value(InvitationState::Expired.as_str()),
        )
        .col_expr(
            invitation::Column::ReminderDueTime,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(invitation::Column::UpdateTime, Expr::value(now))
        .col_expr(
            invitation::Column::Version,
            Expr::value(current.version + 1),
        )
        .filter(invitation::Column::InvitationId.eq(current.invitation_id.as_str()))
        .filter(invitation::Column::Version.eq(current.version))
        .filter(still_pending())
        .filter(invitation::Column::ExpireTime.lte(now))
        .exec(txn)
        .await?;
    if result.rows_affected == 0 {
        return Ok(false);
    }
    let expired = load(txn, &current.invitation_id)
        .await?
        .ok_or(InvitationError::ConcurrentChange)?;
    outbox
        .append(txn, &events::expired(&expired, current, now))
        .await?;
    Ok(true)
}

/// Rows whose state as seen at `now` is one of `states` (expiry applied on read).
fn states_at(states: &[InvitationState], now: DateTime<Utc>) -> Condition {
    let pending = InvitationState::Pending.as_str();
    states
        .iter()
        .fold(Condition::any(), |any, state| match state {
            InvitationState::Pending => any.add(
                Condition::all()
                    .add(invitation::Column::State.eq(pending))
                    .add(invitation::Column::ExpireTime.gt(now)),
            ),
            InvitationState::Expired => any
                .add(invitation::Column::State.eq(InvitationState::Expired.as_str()))
                .add(
                    Condition::all()
                        .add(invitation::Column::State.eq(pending))
                        .add(invitation::Column::ExpireTime.lte(now)),
                ),
            other => any.add(invitation::Column::State.eq(other.as_str())),
        })
}

fn conflict_as(
    error: sea_orm::DbErr,
    conflict: impl FnOnce() -> InvitationError,
) -> InvitationError {
    match StoreError::from(error) {
        StoreError::Conflict(_) => conflict(),
        other => InvitationError::Store(other),
    }
}

/// The row a create of `new` at `now` stores: PENDING, its e-mail QUEUED, version 1. Times
/// are kept to the microsecond, as both databases store them, so the invitation answered and
/// announced equals the one read back later.
fn new_row(
    new: &NewInvitation,
    invitation_id: InvitationId,
    now: DateTime<Utc>,
) -> invitation::Model {
    use tenantry_platform::time::stored_precision;
    let now = stored_precision(now);
    invitation::Model {
        invitation_id: invitation_id.to_string(),
        account_id: new.account_id.to_string(),
        email: new.email.clone(),
        email_normalized: normalize_email(&new.email),
        given_name: new.given_name.clone(),
        family_name: new.family_name.clone(),
        role: new.role.as_str().to_string(),
        state: InvitationState::Pending.as_str().to_string(),
        inviter: new.inviter.clone(),
        inviter_display_name: new.inviter_display_name.clone(),
        create_time: now,
        expire_time: stored_precision(new.expire_time),
        accept_time: None,
        accepted_by: None,
        revoke_time: None,
        revoked_by: None,
        secret_hash: None,
        delivery_state: DeliveryState::Queued.as_str().to_string(),
        delivery_attempts: 0,
        delivery_failure_reason: String::new(),
        delivery_last_attempt_time: None,
        delivery_sent_time: None,
        resend_count: 0,
        last_sent_time: now,
        update_time: now,
        version: 1,
        delivery_lease_token: None,
        delivery_lease_until: None,
        previous_secret_hash: None,
        decline_time: None,
        declined_by: None,
        reminder_due_time: new.reminder_due_time.map(stored_precision),
        reminder_sent_time: None,
        reminder_secret_hash: None,
        previous_reminder_secret_hash: None,
        reminder_lease_token: None,
        reminder_lease_until: None,
    }
}

/// One invitation by id, on any connection or transaction.
pub async fn load(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
) -> Result<Option<Invitation>, InvitationError> {
    invitation::Entity::find_by_id(invitation_id.to_string())
        .one(conn)
        .await?
        .map(to_invitation)
        .transpose()
}

fn to_invitation(row: invitation::Model) -> Result<Invitation, InvitationError> {
    let corrupt = |what: &str, value: &str| InvitationError::Corrupt(format!("{what} {value:?}"));
    Ok(Invitation {
        role: Role::parse(&row.role).ok_or_else(|| corrupt("role", &row.role))?,
        state: InvitationState::parse(&row.state).ok_or_else(|| corrupt("state", &row.state))?,
        delivery: Delivery {
            state: DeliveryState::parse(&row.delivery_state)
                .ok_or_else(|| corrupt("delivery state", &row.delivery_state))?,
            attempts: row.delivery_attempts,
            failure_reason: row.delivery_failure_reason,
            last_attempt_time: row.delivery_last_attempt_time,
            sent_time: row.delivery_sent_time,
        },
        invitation_id: InvitationId::trusted(row.invitation_id),
        account_id: AccountId::trusted(row.account_id),
        email: row.email,
        given_name: row.given_name,
        family_name: row.family_name,
        inviter: row.inviter,
        inviter_display_name: row.inviter_display_name,
        create_time: row.create_time,
        expire_time: row.expire_time,
        accept_time: row.accept_time,
        accepted_by: row.accepted_by,
        revoke_time: row.revoke_time,
        revoked_by: row.revoked_by,
        decline_time: row.decline_time,
        declined_by: row.declined_by,
        reminder_sent_time: row.reminder_sent_time,
        resend_count: row.resend_count,
        last_sent_time: row.last_sent_time,
        version: row.version,
    })
}
