//! `invitations`: one row per invitation, in every state.

use sea_orm::entity::prelude::*;

/// An invitation row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    /// A UUID v7 (time-ordered: newest first = highest first).
    #[sea_orm(primary_key, auto_increment = false)]
    pub invitation_id: String,
    /// The account the invitee joins.
    pub account_id: String,
    /// The e-mail as given (trimmed).
    pub email: String,
    /// Lower-cased e-mail: the comparison key of the one-pending-per-e-mail index.
    pub email_normalized: String,
    /// Optional first name.
    pub given_name: String,
    /// Optional last name.
    pub family_name: String,
    /// `OWNER`, `ADMIN` or `EMPLOYEE`.
    pub role: String,
    /// `PENDING`, `ACCEPTED`, `DECLINED`, `REVOKED` or `EXPIRED` (a PENDING row past its expiry reads as
    /// EXPIRED until the sweep marks it).
    pub state: String,
    /// `users/{sub}` of the creator.
    pub inviter: String,
    /// The creator's name at creation.
    pub inviter_display_name: String,
    /// When it was created.
    pub create_time: DateTimeUtc,
    /// When a PENDING invitation expires.
    pub expire_time: DateTimeUtc,
    /// When it was accepted.
    pub accept_time: Option<DateTimeUtc>,
    /// `users/{sub}` who accepted it.
    pub accepted_by: Option<String>,
    /// When it was revoked.
    pub revoke_time: Option<DateTimeUtc>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// SHA-256 hex of the current secret; NULL until the mailer claims the e-mail (stored just
    /// before the send) and again from a resend until the next claim. The secret itself is
    /// never stored.
    pub secret_hash: Option<String>,
    /// `QUEUED`, `SENT` or `FAILED`.
    pub delivery_state: String,
    /// Send attempts of the current e-mail.
    pub delivery_attempts: i32,
    /// The last delivery error (no secrets), empty if none.
    pub delivery_failure_reason: String,
    /// When the last attempt was made.
    pub delivery_last_attempt_time: Option<DateTimeUtc>,
    /// When the current e-mail was sent.
    pub delivery_sent_time: Option<DateTimeUtc>,
    /// How often it was resent (the secret's generation).
    pub resend_count: i32,
    /// When the latest e-mail was requested.
    pub last_sent_time: DateTimeUtc,
    /// When the row last changed.
    pub update_time: DateTimeUtc,
    /// Starts at 1, +1 on every lifecycle change; the etag.
    pub version: i64,
    /// A random token naming the mailer attempt that claimed the current e-mail; NULL when no
    /// attempt holds it.
    pub delivery_lease_token: Option<String>,
    /// Until when that attempt may send; past it, any replica may claim the e-mail again.
    pub delivery_lease_until: Option<DateTimeUtc>,
    /// SHA-256 hex of the secret of an earlier attempt at the current e-mail whose outcome is
    /// unknown (it may have been mailed before its process died): accepted like `secret_hash`.
    pub previous_secret_hash: Option<String>,
    /// When the invitee declined it.
    pub decline_time: Option<DateTimeUtc>,
    /// `users/{sub}` who declined it.
    pub declined_by: Option<String>,
    /// When the reminder e-mail is due (NULL: none will be sent); set with each e-mail
    /// generation from the reminder setting of the time.
    pub reminder_due_time: Option<DateTimeUtc>,
    /// When the reminder e-mail was sent.
    pub reminder_sent_time: Option<DateTimeUtc>,
    /// SHA-256 hex of the reminder's link secret (accepted like `secret_hash`).
    pub reminder_secret_hash: Option<String>,
    /// SHA-256 hex of an earlier reminder attempt's secret whose outcome is unknown (accepted
    /// too: that attempt may have mailed it).
    pub previous_reminder_secret_hash: Option<String>,
    /// The attempt sending the reminder; NULL when none holds it.
    pub reminder_lease_token: Option<String>,
    /// Until when that attempt may send; closing changes wait for it.
    pub reminder_lease_until: Option<DateTimeUtc>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
