//! The mailer's writes: the delivery bookkeeping of the current e-mail. They are conditioned on
//! the secret's generation (`resend_count`) and on PENDING, so an e-mail superseded by a resend
//! (or an invitation closed meanwhile) leaves no trace, and they do not bump the etag: delivery
//! status is output-only bookkeeping, and an administrator's etag should not go stale because
//! the mailer ran.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entities::invitation;
use crate::domain::{DeliveryState, InvitationError, InvitationId, InvitationState};

/// Records the e-mail of generation `resend_count` as SENT and stores the hash of the secret it
/// carried (the secret itself is never stored). Returns false if the invitation moved on.
pub async fn record_sent(
    conn: &impl ConnectionTrait,
    invitation_id: &InvitationId,
    resend_count: i32,
    secret_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, InvitationError> {
    let result = invitation::Entity::update_many()
        .col_expr(invitation::Column::SecretHash, Expr::value(secret_hash))
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
        .col_expr(invitation::Column::UpdateTime, Expr::value(now))
        .filter(invitation::Column::InvitationId.eq(invitation_id.as_str()))
        .filter(invitation::Column::ResendCount.eq(resend_count))
        .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
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
        .filter(invitation::Column::State.eq(InvitationState::Pending.as_str()))
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
