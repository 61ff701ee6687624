//! The lifecycle changes after creation that a person asks for: accept, decline, revoke,
//! resend. Each is one conditional update of the version read (PENDING, not expired, no
//! reminder e-mail being sent) with its event in the same transaction; while a reminder is
//! being sent the change waits for it (`store::reminders`), so none goes out after it.

use chrono::{DateTime, Duration, Utc};
use sea_orm::UpdateMany;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::future::Future;

use super::entities::invitation;
use super::{Store, load, reminders, still_pending};
use crate::domain::{Delivery, Invitation, InvitationError, InvitationState, UserId};
use crate::events;
use tenantry_events::OutboxTransaction;

impl Store {
    /// Revokes `current` (read and authorized by the caller, PENDING as seen at `now`).
    pub async fn revoke(
        &self,
        current: &Invitation,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>, InvitationError> {
        let Some(tx) = self
            .apply_waiting(current, || {
                final_update(current, now)
                    .col_expr(
                        invitation::Column::State,
                        Expr::value(InvitationState::Revoked.as_str()),
                    )
                    .col_expr(invitation::Column::RevokeTime, Expr::value(now))
                    .col_expr(invitation::Column::RevokedBy, Expr::value(actor))
            })
            .await?
        else {
            return Ok(None);
        };
        let revoked = load(&*tx, &current.invitation_id)
            .await?
            .ok_or(InvitationError::ConcurrentChange)?;
        tx.append(&events::revoked(&revoked, current, actor, now))
            .await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Declines `current` for the invitee `user` (PENDING as seen at `now`, checked by the
    /// caller): DECLINED with its time and decliner, and `invitation.declined`. `None` if
    /// `current` changed meanwhile.
    pub async fn decline(
        &self,
        current: &Invitation,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>, InvitationError> {
        let actor = user.name();
        let Some(tx) = self
            .apply_waiting(current, || {
                final_update(current, now)
                    .col_expr(
                        invitation::Column::State,
                        Expr::value(InvitationState::Declined.as_str()),
                    )
                    .col_expr(invitation::Column::DeclineTime, Expr::value(now))
                    .col_expr(invitation::Column::DeclinedBy, Expr::value(actor.as_str()))
            })
            .await?
        else {
            return Ok(None);
        };
        let declined = load(&*tx, &current.invitation_id)
            .await?
            .ok_or(InvitationError::ConcurrentChange)?;
        tx.append(&events::declined(&declined, current, &actor, now))
            .await?;
        tx.commit().await?;
        Ok(Some(declined))
    }

    /// Resends `current` (read, authorized and rate-checked by the caller): the stored hash is
    /// cleared at once (the old link dies), the lifetime restarts at `now`, resend_count + 1,
    /// delivery QUEUED again, and `invitation.resent` asks the mailer for a new secret.
    /// `None` if `current` changed meanwhile.
    pub async fn resend(
        &self,
        current: &Invitation,
        actor: &str,
        lifetime: Duration,
        reminder_before: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>, InvitationError> {
        let Some(tx) = self
            .apply_waiting(current, || {
                resend_update(current, lifetime, reminder_before, now)
            })
            .await?
        else {
            return Ok(None);
        };
        let resent = load(&*tx, &current.invitation_id)
            .await?
            .ok_or(InvitationError::ConcurrentChange)?;
        tx.append(&events::resent(&resent, current, actor, now))
            .await?;
        tx.commit().await?;
        Ok(Some(resent))
    }

    /// Opens a transaction and applies `update`, a change of `current` a person asked for;
    /// while a reminder e-mail of it is being sent (its lease held), waits a moment and tries
    /// again (until [`reminders::wait_deadline`]), so no reminder goes out after the change (see
    /// `store::reminders`). The open transaction, or `None` if `current` changed meanwhile.
    async fn apply_waiting(
        &self,
        current: &Invitation,
        update: impl Fn() -> UpdateMany<invitation::Entity>,
    ) -> Result<Option<OutboxTransaction>, InvitationError> {
        let deadline = reminders::wait_deadline();
        loop {
            let tx = self.outbox.begin(self.connection()?).await?;
            if update().exec(&*tx).await?.rows_affected == 1 {
                return Ok(Some(tx));
            }
            drop(tx);
            let connection = self.connection()?;
            if !reminders::wait_while_sending(connection, &current.invitation_id, deadline).await? {
                return Ok(None);
            }
        }
    }
}

impl Store {
    /// Accepts `current` for `user`, single use and race-safe: in ONE
    /// transaction the conditional update PENDING → ACCEPTED, then `add_member` (the
    /// synchronous AddMember, returning the membership's name and whatever the caller wants
    /// back), then the `invitation.accepted` event; the transaction commits only if
    /// `add_member` succeeded. `None` if the conditional update matched nothing (someone else
    /// accepted, revoked, resent or it expired): the caller re-reads and explains.
    pub async fn accept<T, F, Fut>(
        &self,
        current: &Invitation,
        user: &UserId,
        now: DateTime<Utc>,
        add_member: F,
    ) -> Result<Option<(Invitation, T)>, InvitationError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, T), InvitationError>>,
    {
        let user = user.name();
        let Some(tx) = self
            .apply_waiting(current, || {
                final_update(current, now)
                    .col_expr(
                        invitation::Column::State,
                        Expr::value(InvitationState::Accepted.as_str()),
                    )
                    .col_expr(invitation::Column::AcceptTime, Expr::value(now))
                    .col_expr(invitation::Column::AcceptedBy, Expr::value(user.as_str()))
            })
            .await?
        else {
            return Ok(None);
        };
        // Dropping `tx` on an error rolls the acceptance back.
        let (member, answer) = add_member().await?;
        let accepted = load(&*tx, &current.invitation_id)
            .await?
            .ok_or(InvitationError::ConcurrentChange)?;
        tx.append(&events::accepted(&accepted, current, &member, &user, now))
            .await?;
        tx.commit().await?;
        Ok(Some((accepted, answer)))
    }
}

/// ResendInvitation's change (see [`Store::resend`]), a new reminder due with the new expiry.
fn resend_update(
    current: &Invitation,
    lifetime: Duration,
    reminder_before: Duration,
    now: DateTime<Utc>,
) -> UpdateMany<invitation::Entity> {
    {
        let queued = Delivery::queued();
        let expire_time = now + lifetime;
        closing_update(current, now)
            .col_expr(
                invitation::Column::ReminderDueTime,
                Expr::value(crate::domain::reminder_due(
                    now,
                    expire_time,
                    reminder_before,
                )),
            )
            .col_expr(
                invitation::Column::ReminderSentTime,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                invitation::Column::ReminderSecretHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                invitation::Column::PreviousReminderSecretHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                invitation::Column::SecretHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                invitation::Column::PreviousSecretHash,
                Expr::value(Option::<String>::None),
            )
            // An attempt still sending the old e-mail finds its lease gone and records nothing.
            .col_expr(
                invitation::Column::DeliveryLeaseToken,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                invitation::Column::DeliveryLeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(invitation::Column::ExpireTime, Expr::value(expire_time))
            .col_expr(
                invitation::Column::ResendCount,
                Expr::value(current.resend_count + 1),
            )
            .col_expr(invitation::Column::LastSentTime, Expr::value(now))
            .col_expr(
                invitation::Column::DeliveryState,
                Expr::value(queued.state.as_str()),
            )
            .col_expr(invitation::Column::DeliveryAttempts, Expr::value(0))
            .col_expr(
                invitation::Column::DeliveryFailureReason,
                Expr::value(String::new()),
            )
            .col_expr(
                invitation::Column::DeliveryLastAttemptTime,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                invitation::Column::DeliverySentTime,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
    }
}

/// The conditional update of a lifecycle change: only the version read, only while PENDING and
/// not yet expired at `now`; bumps version and update_time. System closes (expiry, withdrawals)
/// use it as is: they do not wait for a reminder being sent (`store::reminders`).
pub(super) fn pending_update(
    current: &Invitation,
    now: DateTime<Utc>,
) -> UpdateMany<invitation::Entity> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::UpdateTime, Expr::value(now))
        .col_expr(
            invitation::Column::Version,
            Expr::value(current.version + 1),
        )
        .filter(invitation::Column::InvitationId.eq(current.invitation_id.as_str()))
        .filter(invitation::Column::Version.eq(current.version))
        .filter(still_pending())
        .filter(invitation::Column::ExpireTime.gt(now))
}

/// A change a person asks for (accept, decline, revoke, resend): [`pending_update`], and not
/// while a reminder e-mail is being sent — the change waits for it ([`Store::apply_waiting`]).
/// The lease is judged by the clock of each attempt, so a lease that ends during the wait
/// stops blocking.
fn closing_update(current: &Invitation, now: DateTime<Utc>) -> UpdateMany<invitation::Entity> {
    pending_update(current, now).filter(reminders::lease_free(tenantry_platform::time::now()))
}

/// A change that closes the invitation for good: [`closing_update`], its reminder no longer due.
fn final_update(current: &Invitation, now: DateTime<Utc>) -> UpdateMany<invitation::Entity> {
    closing_update(current, now).col_expr(
        invitation::Column::ReminderDueTime,
        Expr::value(Option::<DateTime<Utc>>::None),
    )
}
