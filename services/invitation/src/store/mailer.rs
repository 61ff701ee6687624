//! The mailer's writes: the lease on the current e-mail and its delivery bookkeeping. They are
//! conditioned on the secret's generation (`resend_count`) and on PENDING, so an e-mail
//! superseded by a resend (or an invitation closed meanwhile) leaves no trace, and they do not
//! bump the etag: delivery status is output-only bookkeeping, and an administrator's etag should
//! not go stale because the mailer ran.
//!
//! The lease: [`claim`] commits, on its own, "attempt `token` sends this e-mail until `until`"
//! together with the hash of the secret that attempt mails; the SMTP exchange then runs with no
//! transaction open; [`record_sent`] (in the consumer's transaction) or [`release`] ends the
//! lease. A second copy of the event finds the lease held and waits; once a lease expired (its
//! process died), any replica may claim the e-mail again. A hash that an expired or failed
//! attempt stored moves to `previous_secret_hash`, still accepted: that attempt may have mailed
//! its link before it died.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};

use super::entities::invitation;
use crate::domain::{DeliveryState, Invitation, InvitationError, InvitationId, InvitationState};

/// What [`claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The lease is this attempt's, and the row holds its secret's hash: the invitation as
    /// claimed (what the e-mail says).
    Claimed(Box<Invitation>),
    /// Another attempt holds the lease until this time.
    Held(DateTime<Utc>),
    /// The e-mail is no longer wanted as asked: sent, superseded by a resend, or the
    /// invitation closed (or gone).
    Moved,
}

/// Claims the e-mail of generation `resend_count` for the attempt `token` until `until`,
/// storing `secret_hash` as the current secret's (an earlier attempt's hash, if any, becomes
/// the previous one). Claims only the unsent e-mail of an invitation PENDING and not past its
/// expiry at `now`, whose lease is free or expired at `now`. One statement (on PostgreSQL it
/// also returns the row, so the mailer reads nothing before it): on its own connection it
/// commits at once.
pub async fn claim(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    resend_count: i32,
    token: &str,
    secret_hash: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Claim, InvitationError> {
    let update = invitation::Entity::update_many()
        .col_expr(invitation::Column::DeliveryLeaseToken, Expr::value(token))
        .col_expr(invitation::Column::DeliveryLeaseUntil, Expr::value(until))
        // SET reads the row as it was: the hash an earlier attempt stored moves along.
        .col_expr(
            invitation::Column::PreviousSecretHash,
            Expr::col(invitation::Column::SecretHash)
                .if_null(Expr::col(invitation::Column::PreviousSecretHash)),
        )
        .col_expr(invitation::Column::SecretHash, Expr::value(secret_hash))
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ResendCount.eq(resend_count))
        .filter(super::still_pending())
        .filter(invitation::Column::ExpireTime.gt(now))
        .filter(invitation::Column::DeliveryState.ne(DeliveryState::Sent.as_str()))
        .filter(
            Condition::any()
                .add(invitation::Column::DeliveryLeaseUntil.is_null())
                .add(invitation::Column::DeliveryLeaseUntil.lt(now)),
        );
    let claimed = if conn.support_returning() {
        update
            .exec_with_returning(conn)
            .await?
            .into_iter()
            .next()
            .map(super::to_invitation)
            .transpose()?
    } else if update.exec(conn).await?.rows_affected == 1 {
        // SQLite: the lease is this attempt's now, so reading the row after is as good.
        super::load(conn, invitation_id).await?
    } else {
        None
    };
    if let Some(invitation) = claimed {
        return Ok(Claim::Claimed(Box::new(invitation)));
    }
    let row = invitation::Entity::find_by_id(invitation_id.to_string())
        .one(conn)
        .await?;
    Ok(match row {
        Some(row)
            if row.resend_count == resend_count
                && row.state == InvitationState::Pending.as_str()
                && row.expire_time > now
                && row.delivery_state != DeliveryState::Sent.as_str() =>
        {
            match row.delivery_lease_until {
                Some(until) if until >= now => Claim::Held(until),
                // Freed or expired since the update: the caller tries again later.
                _ => Claim::Held(now),
            }
        }
        _ => Claim::Moved,
    })
}

/// Ends the lease of attempt `token` without recording anything (the send failed).
pub async fn release(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    token: &str,
) -> Result<(), InvitationError> {
    invitation::Entity::update_many()
        .col_expr(
            invitation::Column::DeliveryLeaseToken,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            invitation::Column::DeliveryLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::DeliveryLeaseToken.eq(token))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records the e-mail of generation `resend_count`, sent by the attempt `token`, as SENT and
/// ends the lease. Returns false if the invitation moved on or the lease was lost (it expired
/// and another attempt claimed the e-mail: that attempt records its own).
pub async fn record_sent(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    resend_count: i32,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool, InvitationError> {
    let result = invitation::Entity::update_many()
        .col_expr(
            invitation::Column::DeliveryState,
            Expr::value(DeliveryState::Sent.as_str()),
        )
        .col_expr(
            invitation::Column::DeliveryAttempts,
            Expr::col(invitation::Column::DeliveryAttempts).add(1),
        )
        .col_expr(
            invitation::Column::DeliveryFailureReason,
            Expr::value(String::new()),
        )
        .col_expr(
            invitation::Column::DeliveryLastAttemptTime,
            Expr::value(now),
        )
        .col_expr(invitation::Column::DeliverySentTime, Expr::value(now))
        .col_expr(
            invitation::Column::DeliveryLeaseToken,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            invitation::Column::DeliveryLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(invitation::Column::UpdateTime, Expr::value(now))
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ResendCount.eq(resend_count))
        .filter(super::still_pending())
        .filter(invitation::Column::DeliveryLeaseToken.eq(token))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a failed attempt at the e-mail of generation `resend_count`: attempts + 1, the
/// reason, and FAILED when no retry follows (else still QUEUED). Returns false if the
/// invitation moved on or the e-mail was sent meanwhile.
pub async fn record_failed_attempt(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    resend_count: i32,
    reason: &str,
    gave_up: bool,
    now: DateTime<Utc>,
) -> Result<bool, InvitationError> {
    let state = if gave_up {
        DeliveryState::Failed
    } else {
        DeliveryState::Queued
    };
    let result = invitation::Entity::update_many()
        .col_expr(
            invitation::Column::DeliveryState,
            Expr::value(state.as_str()),
        )
        .col_expr(
            invitation::Column::DeliveryAttempts,
            Expr::col(invitation::Column::DeliveryAttempts).add(1),
        )
        .col_expr(
            invitation::Column::DeliveryFailureReason,
            Expr::value(reason.to_string()),
        )
        .col_expr(
            invitation::Column::DeliveryLastAttemptTime,
            Expr::value(now),
        )
        .col_expr(invitation::Column::UpdateTime, Expr::value(now))
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ResendCount.eq(resend_count))
        .filter(super::still_pending())
        .filter(invitation::Column::DeliveryState.ne(DeliveryState::Sent.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The stored secret hash of an invitation (tests and diagnostics; never returned by the API).
pub async fn secret_hash(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
) -> Result<Option<String>, InvitationError> {
    Ok(invitation::Entity::find_by_id(invitation_id.to_string())
        .one(conn)
        .await?
        .and_then(|row| row.secret_hash))
}
