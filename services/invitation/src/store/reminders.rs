//! The reminder e-mail's writes. A reminder is due at `reminder_due_time` (set with each e-mail
//! generation, see `domain::reminder_due`); the sender ([`crate::consumers::reminders`]) claims
//! it with one conditional statement — PENDING, not expired, the first e-mail SENT, no reminder
//! sent yet for this generation, no live lease — storing its link's secret hash and a lease,
//! sends it with no transaction open, then records it sent (or releases the lease). So across
//! replicas and restarts one attempt at a time holds a reminder, and a sent one is recorded
//! once; a process dying between the SMTP server's `250` and that record sends it again once
//! the lease expired (the same Message-ID), as for the first e-mail (`store::mailer`).
//!
//! Never after acceptance, decline or revocation: the claim requires PENDING, and those changes
//! (and resends) are conditioned on no live reminder lease — they wait for an e-mail being sent
//! ([`wait_while_sending`]) instead of racing it. System withdrawals (account deleted, invitee
//! added directly) and expiry do not wait (a consumer must not stall on a mail server): the
//! claim checks the expiry, the sender skips accounts that are gone, and at most the one
//! reminder already being handed over can cross such a withdrawal.
//!
//! A link an attempt may have mailed keeps working: an attempt whose outcome is unknown (the
//! SMTP exchange failed transiently, or its process died) leaves its secret's hash, and the next
//! claim moves it to `previous_reminder_secret_hash`, as the mailer does for the first e-mail.
//! Reminders that cannot go out now (account disabled or unreadable, a transient failure) are
//! postponed by [`RETRY_AFTER`], so they never hold up the ones behind them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::invitation;
use crate::domain::{DeliveryState, Invitation, InvitationError, InvitationId};

/// How long a reminder that could not go out now waits before it is tried again.
pub const RETRY_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// How long a closing change waits at most for a reminder being sent (longer than the SMTP
/// timeout, shorter than an RPC deadline should be).
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The deadline of a closing change's wait, from now.
pub fn wait_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + WAIT
}

/// No reminder lease is live at `now`.
pub fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(invitation::Column::ReminderLeaseUntil.is_null())
        .add(invitation::Column::ReminderLeaseUntil.lt(now))
}

/// What a claim needs besides the lease: PENDING, before its expiry, the reminder due and not
/// sent, the current e-mail SENT.
fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(super::still_pending())
        .add(invitation::Column::ExpireTime.gt(now))
        .add(invitation::Column::ReminderDueTime.lte(now))
        .add(invitation::Column::ReminderSentTime.is_null())
        .add(invitation::Column::DeliveryState.eq(DeliveryState::Sent.as_str()))
}

/// Up to `limit` invitations whose reminder is due and free at `now`, soonest expiry first.
pub async fn due(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Invitation>, InvitationError> {
    invitation::Entity::find()
        .filter(claimable(now))
        .filter(lease_free(now))
        .order_by_asc(invitation::Column::ExpireTime)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(super::to_invitation)
        .collect()
}

/// Claims the reminder of `current` (generation `current.resend_count`) for attempt `token`
/// until `until`, storing `secret_hash` as its link's. The invitation as claimed, or `None` if
/// it moved on (closed, resent, reminded) or another attempt holds it. One statement.
pub async fn claim(
    conn: &impl ConnectionTrait,
    current: &Invitation,
    token: &str,
    secret_hash: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Invitation>, InvitationError> {
    let update = invitation::Entity::update_many()
        .col_expr(invitation::Column::ReminderLeaseToken, Expr::value(token))
        .col_expr(invitation::Column::ReminderLeaseUntil, Expr::value(until))
        // SET reads the row as it was: the hash an earlier attempt left moves along.
        .col_expr(
            invitation::Column::PreviousReminderSecretHash,
            Expr::col(invitation::Column::ReminderSecretHash)
                .if_null(Expr::col(invitation::Column::PreviousReminderSecretHash)),
        )
        .col_expr(
            invitation::Column::ReminderSecretHash,
            Expr::value(secret_hash),
        )
        .filter(invitation::Column::InvitationId.eq(current.invitation_id.as_str()))
        .filter(invitation::Column::ResendCount.eq(current.resend_count))
        .filter(claimable(now))
        .filter(lease_free(now));
    if conn.support_returning() {
        return update
            .exec_with_returning(conn)
            .await?
            .into_iter()
            .next()
            .map(super::to_invitation)
            .transpose();
    }
    if update.exec(conn).await?.rows_affected == 1 {
        // SQLite: the lease is this attempt's now, so reading the row after is as good.
        return super::load(conn, &current.invitation_id).await;
    }
    Ok(None)
}

/// Records the reminder sent by attempt `token` and ends its lease (no longer due). False if
/// the lease was lost meanwhile (it expired and another attempt claimed the reminder).
pub async fn record_sent(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool, InvitationError> {
    let result = invitation::Entity::update_many()
        .col_expr(invitation::Column::ReminderSentTime, Expr::value(now))
        .col_expr(
            invitation::Column::ReminderDueTime,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            invitation::Column::ReminderLeaseToken,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            invitation::Column::ReminderLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ReminderLeaseToken.eq(token))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Ends attempt `token`'s lease without recording a send. `give_up` (the address refuses mail
/// for good) cancels the reminder; otherwise it is due again after [`RETRY_AFTER`]. The
/// attempt's link hash stays: a transient failure may still have delivered the e-mail.
pub async fn release(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    token: &str,
    give_up: bool,
    now: DateTime<Utc>,
) -> Result<(), InvitationError> {
    let due = (!give_up).then(|| now + RETRY_AFTER);
    invitation::Entity::update_many()
        .col_expr(
            invitation::Column::ReminderLeaseToken,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            invitation::Column::ReminderLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(invitation::Column::ReminderDueTime, Expr::value(due))
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ReminderLeaseToken.eq(token))
        .exec(conn)
        .await?;
    Ok(())
}

/// Puts off a due reminder that cannot go out now (its account disabled or unreadable) by
/// [`RETRY_AFTER`], unless an attempt holds it.
pub async fn postpone(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    now: DateTime<Utc>,
) -> Result<(), InvitationError> {
    invitation::Entity::update_many()
        .col_expr(
            invitation::Column::ReminderDueTime,
            Expr::value(now + RETRY_AFTER),
        )
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ReminderSentTime.is_null())
        .filter(invitation::Column::ReminderDueTime.is_not_null())
        .filter(lease_free(now))
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether a reminder of `invitation_id` is being sent now; if so (and before `deadline`),
/// sleeps a moment first, so the caller can try its change again.
pub async fn wait_while_sending(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    deadline: tokio::time::Instant,
) -> Result<bool, InvitationError> {
    if tokio::time::Instant::now() >= deadline {
        return Ok(false);
    }
    let now = tenantry_platform::time::now();
    let sending = invitation::Entity::find_by_id(invitation_id.to_string())
        .filter(invitation::Column::ReminderLeaseUntil.gte(now))
        .one(conn)
        .await?
        .is_some();
    if sending {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(sending)
}

/// The reminder's link-secret hash of an invitation (tests; never returned by the API).
pub async fn secret_hash(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
) -> Result<Option<String>, InvitationError> {
    Ok(invitation::Entity::find_by_id(invitation_id.to_string())
        .one(conn)
        .await?
        .and_then(|row| row.reminder_secret_hash))
}
