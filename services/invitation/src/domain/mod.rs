//! The invitation rules, without I/O: value types, the lifecycle with expiry applied on read,
//! e-mail and name validation, the secret, and the rate limits.

pub mod create;
pub mod error;
pub mod limits;
pub mod secret;

use chrono::{DateTime, Duration, Utc};
use tenantry_platform::etag::etag_allows;
use tenantry_proto::membership::v1::Permission;

pub use create::CreateInvitation;
pub use error::InvitationError;
pub use tenantry_platform::email::{normalize_email, validate_email};
pub use tenantry_platform::{AccountId, Role, UserId};

/// The longest a caller may ask an invitation to live (CreateInvitationRequest.expire_time).
pub const MAX_REQUESTED_LIFETIME: Duration = Duration::days(30);
/// The longest given or family name, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// An invitation's id: a UUID v7 this service assigned (time-ordered, so "newest first" is
/// "highest id first"), or one parsed from a name in the form it issues.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvitationId(String);

impl InvitationId {
    /// A fresh id for a new invitation.
    pub fn mint() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// An id read back from this service's own table or events, or one a name parser checked.
    pub fn trusted(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for InvitationId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InvitationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<InvitationId> for String {
    fn from(id: InvitationId) -> String {
        id.0
    }
}

/// Lifecycle state: PENDING → ACCEPTED | DECLINED | REVOKED | EXPIRED, all final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvitationState {
    /// Waiting for acceptance; the link works.
    Pending,
    /// Accepted; the invitee is a member.
    Accepted,
    /// Revoked by an administrator or withdrawn by the system.
    Revoked,
    /// Not accepted before its expiry.
    Expired,
    /// Declined by the invitee.
    Declined,
}

impl InvitationState {
    /// The stored form (also used in the partial unique index `WHERE state = 'PENDING'`).
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "PENDING",
            InvitationState::Accepted => "ACCEPTED",
            InvitationState::Revoked => "REVOKED",
            InvitationState::Expired => "EXPIRED",
            InvitationState::Declined => "DECLINED",
        }
    }

    /// The state stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "PENDING" => Some(InvitationState::Pending),
            "ACCEPTED" => Some(InvitationState::Accepted),
            "REVOKED" => Some(InvitationState::Revoked),
            "EXPIRED" => Some(InvitationState::Expired),
            "DECLINED" => Some(InvitationState::Declined),
            _ => None,
        }
    }
}

/// State of the latest invitation e-mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting to be sent, or to be retried after a transient failure.
    Queued,
    /// Handed to the mail server (or written as a file).
    Sent,
    /// Given up after the last attempt.
    Failed,
}

impl DeliveryState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "QUEUED",
            DeliveryState::Sent => "SENT",
            DeliveryState::Failed => "FAILED",
        }
    }

    /// The delivery state stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "QUEUED" => Some(DeliveryState::Queued),
            "SENT" => Some(DeliveryState::Sent),
            "FAILED" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// Delivery status of the latest invitation e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Current delivery state.
    pub state: DeliveryState,
    /// Send attempts for the current e-mail (reset by a resend).
    pub attempts: i32,
    /// The last error (no secrets), empty if none.
    pub failure_reason: String,
    /// When the last attempt was made.
    pub last_attempt_time: Option<DateTime<Utc>>,
    /// When the e-mail was sent; set only while SENT.
    pub sent_time: Option<DateTime<Utc>>,
}

impl Delivery {
    /// A fresh e-mail waiting for the mailer.
    pub fn queued() -> Self {
        Self {
            state: DeliveryState::Queued,
            attempts: 0,
            failure_reason: String::new(),
            last_attempt_time: None,
            sent_time: None,
        }
    }
}

/// An invitation as stored. The secret's hash is deliberately not part of it, so it cannot
/// travel into an API response or an event by accident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// A UUID v7: time-ordered, so "newest first" is "highest id first".
    pub invitation_id: InvitationId,
    /// The account the invitee joins.
    pub account_id: AccountId,
    /// The e-mail address as given (trimmed).
    pub email: String,
    /// Optional first name.
    pub given_name: String,
    /// Optional last name.
    pub family_name: String,
    /// The role on acceptance.
    pub role: Role,
    /// The stored state; see [`Invitation::state_at`] for the state callers see.
    pub state: InvitationState,
    /// `users/{sub}` of the creator.
    pub inviter: String,
    /// The creator's name at creation.
    pub inviter_display_name: String,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When a PENDING invitation becomes EXPIRED.
    pub expire_time: DateTime<Utc>,
    /// When it was accepted.
    pub accept_time: Option<DateTime<Utc>>,
    /// `users/{sub}` who accepted it.
    pub accepted_by: Option<String>,
    /// When it was revoked.
    pub revoke_time: Option<DateTime<Utc>>,
    /// `users/{sub}`, or `services/invitation` for a system withdrawal.
    pub revoked_by: Option<String>,
    /// When the invitee declined it.
    pub decline_time: Option<DateTime<Utc>>,
    /// `users/{sub}` who declined it.
    pub declined_by: Option<String>,
    /// When the reminder e-mail of the current generation was sent.
    pub reminder_sent_time: Option<DateTime<Utc>>,
    /// Status of the latest e-mail.
    pub delivery: Delivery,
    /// How often ResendInvitation was used; also the "generation" of the secret that the
    /// mailer compares with the event it handles.
    pub resend_count: i32,
    /// When the latest e-mail (first or resent) was requested.
    pub last_sent_time: DateTime<Utc>,
    /// Starts at 1, +1 on every lifecycle change (not on delivery bookkeeping); the etag.
    pub version: i64,
}

impl Invitation {
    /// The state callers see at `now`: a PENDING invitation past its expiry is EXPIRED, whether
    /// or not the sweep has marked it yet.
    pub fn state_at(&self, now: DateTime<Utc>) -> InvitationState {
        effective_state(self.state, self.expire_time, now)
    }

    /// `accounts/{account_id}/invitations/{invitation_id}`.
    pub fn name(&self) -> String {
        invitation_name(&self.account_id, &self.invitation_id)
    }

    /// Whether `user` declined it (a retried decline).
    pub fn declined_by_user(&self, user: &UserId) -> bool {
        self.state == InvitationState::Declined
            && self.declined_by.as_deref() == Some(user.name().as_str())
    }

    /// Whether `user` accepted it (a retried acceptance).
    pub fn accepted_by_user(&self, user: &UserId) -> bool {
        self.state == InvitationState::Accepted
            && self.accepted_by.as_deref() == Some(user.name().as_str())
    }
}

/// `accounts/{account_id}/invitations/{invitation_id}`.
pub fn invitation_name(account_id: &str, invitation_id: &str) -> String {
    format!("accounts/{account_id}/invitations/{invitation_id}")
}

/// Expiry applied on read.
pub fn effective_state(
    stored: InvitationState,
    expire_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> InvitationState {
    if stored == InvitationState::Pending && expire_time <= now {
        InvitationState::Expired
    } else {
        stored
    }
}

/// The permissions a caller needs on the account to manage its invitations for `role`:
/// INVITATIONS_MANAGE, and for an OWNER invitation also OWNERS_MANAGE (only an OWNER invites,
/// revokes or resends an OWNER invitation).
pub fn permissions_to_manage(role: Option<Role>) -> &'static [Permission] {
    if role == Some(Role::Owner) {
        &[Permission::InvitationsManage, Permission::OwnersManage]
    } else {
        &[Permission::InvitationsManage]
    }
}

/// What RevokeInvitation does with an invitation in `state` (as seen now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeDecision {
    /// Revoke it.
    Revoke,
    /// Already revoked: return it unchanged (idempotent).
    Unchanged,
}

/// RevokeInvitation's rule: PENDING is revoked, REVOKED stays, ACCEPTED and EXPIRED refuse.
pub fn revoke_decision(
    invitation: &Invitation,
    now: DateTime<Utc>,
) -> Result<RevokeDecision, InvitationError> {
    match invitation.state_at(now) {
        InvitationState::Pending => Ok(RevokeDecision::Revoke),
        InvitationState::Revoked => Ok(RevokeDecision::Unchanged),
        state => Err(InvitationError::NotPending {
            name: invitation.name(),
            state,
        }),
    }
}

/// AcceptInvitation's rule on the state: only PENDING (as seen now) can be accepted.
pub fn check_acceptable(
    invitation: &Invitation,
    now: DateTime<Utc>,
) -> Result<(), InvitationError> {
    match invitation.state_at(now) {
        InvitationState::Pending => Ok(()),
        state => Err(InvitationError::NotPending {
            name: invitation.name(),
            state,
        }),
    }
}

/// AcceptInvitation's state rule, told apart: accepted by someone else, or not PENDING.
pub fn check_accept(invitation: &Invitation, now: DateTime<Utc>) -> Result<(), InvitationError> {
    if invitation.state == InvitationState::Accepted {
        return Err(InvitationError::AcceptedByAnother(invitation.name()));
    }
    check_acceptable(invitation, now)
}

/// DeclineInvitation's state rule: only PENDING (as seen now); one accepted by anyone is told
/// apart, as for acceptance. (A retry by the user who declined is answered before this.)
pub fn check_decline(invitation: &Invitation, now: DateTime<Utc>) -> Result<(), InvitationError> {
    check_accept(invitation, now)
}

/// RevokeInvitation's order: an already REVOKED invitation is returned whatever the etag (a
/// retried revoke succeeds), then the etag, then the state.
pub fn decide_revoke(
    invitation: &Invitation,
    etag: &str,
    now: DateTime<Utc>,
) -> Result<RevokeDecision, InvitationError> {
    let decision = revoke_decision(invitation, now);
    if matches!(decision, Ok(RevokeDecision::Unchanged)) {
        return decision;
    }
    if !etag_allows(etag, invitation.version) {
        return Err(InvitationError::StaleEtag(invitation.name()));
    }
    decision
}

/// ResendInvitation's order: the etag, then [`check_resend`].
pub fn check_resend_request(
    invitation: &Invitation,
    etag: &str,
    interval: Duration,
    now: DateTime<Utc>,
) -> Result<(), InvitationError> {
    if !etag_allows(etag, invitation.version) {
        return Err(InvitationError::StaleEtag(invitation.name()));
    }
    check_resend(invitation, interval, now)
}

/// ResendInvitation's rules: only PENDING (as seen now), and not sooner than `interval` after
/// the last e-mail was requested.
pub fn check_resend(
    invitation: &Invitation,
    interval: Duration,
    now: DateTime<Utc>,
) -> Result<(), InvitationError> {
    let state = invitation.state_at(now);
    if state != InvitationState::Pending {
        return Err(InvitationError::NotPending {
            name: invitation.name(),
            state,
        });
    }
    if let Some(retry_after) = limits::resend_wait(invitation.last_sent_time, interval, now) {
        return Err(InvitationError::ResendTooSoon {
            name: invitation.name(),
            retry_after,
        });
    }
    Ok(())
}

/// Whether a token e-mail matches the invitation's (case-insensitively); no e-mail never does.
pub fn email_matches(invitation_email: &str, token_email: Option<&str>) -> bool {
    token_email.is_some_and(|email| {
        !email.trim().is_empty() && normalize_email(email) == normalize_email(invitation_email)
    })
}

/// An optional given or family name: trimmed, at most [`MAX_NAME_CHARS`] characters, in any
/// script, without control characters, line separators, bidirectional controls or invisible
/// characters ([`tenantry_platform::text::is_forbidden_in_line`]).
pub fn validate_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("at most {MAX_NAME_CHARS} characters"));
    }
    if name
        .chars()
        .any(tenantry_platform::text::is_forbidden_in_line)
    {
        return Err(
            "must not contain control characters, bidirectional controls or invisible characters"
                .into(),
        );
    }
    Ok(name.to_string())
}

/// The expiry of a new invitation: `requested` if given (in the future, at most
/// [`MAX_REQUESTED_LIFETIME`] ahead), else `now + lifetime`.
pub fn expiry_of_new(
    requested: Option<DateTime<Utc>>,
    lifetime: Duration,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    match requested {
        None => Ok(now + lifetime),
        Some(time) if time <= now => Err("must be in the future".into()),
        Some(time) if time > now + MAX_REQUESTED_LIFETIME => Err(format!(
            "must be at most {} days ahead",
            MAX_REQUESTED_LIFETIME.num_days()
        )),
        Some(time) => Ok(time),
    }
}

/// When an e-mail sent at `sent` for an invitation expiring at `expire_time` is followed by a
/// reminder, `before` the expiry: only if the e-mail goes out before that moment (an invitation
/// shorter than `before` needs none), and never with `before` zero (reminders off).
pub fn reminder_due(
    sent: DateTime<Utc>,
    expire_time: DateTime<Utc>,
    before: Duration,
) -> Option<DateTime<Utc>> {
    let due = expire_time - before;
    (before > Duration::zero() && sent < due).then_some(due)
}

/// The inviter's name as the e-mail and the accept page show it: given + family name from the
/// token, else the token e-mail, else the user name.
pub fn inviter_display_name(
    given_name: Option<&str>,
    family_name: Option<&str>,
    email: Option<&str>,
    user: &str,
) -> String {
    let full = [given_name, family_name]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !full.is_empty() {
        return full;
    }
    email
        .map(str::trim)
        .filter(|email| !email.is_empty())
        .unwrap_or(user)
        .to_string()
}

/// What CreateInvitation stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvitation {
    /// The account.
    pub account_id: AccountId,
    /// Validated, trimmed e-mail.
    pub email: String,
    /// Validated given name (may be empty).
    pub given_name: String,
    /// Validated family name (may be empty).
    pub family_name: String,
    /// The role.
    pub role: Role,
    /// `users/{sub}` of the inviter.
    pub inviter: String,
    /// The inviter's display name.
    pub inviter_display_name: String,
    /// When it expires.
    pub expire_time: DateTime<Utc>,
    /// When its reminder e-mail is due; `None`: no reminder (see [`reminder_due`]).
    pub reminder_due_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests;
