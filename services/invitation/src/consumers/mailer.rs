//! The mailer: for `invitation.created` and `invitation.resent` it mints the secret, sends the
//! e-mail with the accept link and stores only the secret's SHA-256, all in the runtime's
//! transaction (a failed send rolls back; the runtime retries, and `failed` records the
//! attempt outside the rolled-back transaction).
//!
//! Superseded e-mails: the event's `invitation.resend_count` (the secret's generation) must
//! equal the row's; an older event (a resend happened since) is skipped, as is an event for
//! an invitation no longer PENDING. The generation is used rather than times, because it is
//! exact where clocks and event times are not.

use std::sync::Arc;

use lettre::message::Mailbox;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tenantry_events::{Event, Handler, HandlerError};
use tenantry_platform::metrics::Metrics;
use tenantry_platform::time::now;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as events;
use tenantry_proto::invitation::v1 as wire;

use crate::domain::secret::{Secret, accept_link};
use crate::domain::{Invitation, InvitationId, InvitationState};
use crate::mail::render::{self, InvitationEmail};
use crate::mail::{MailError, MailTransport};
use crate::peers::{AccountDirectory, AccountState};
use crate::store::{self, mailer as delivery};
use crate::wire::parse_invitation_name;

/// Sends invitation e-mails.
#[derive(Debug)]
pub struct Mailer {
    accounts: Arc<dyn AccountDirectory>,
    mail: Arc<dyn MailTransport>,
    public_url: String,
    from: Mailbox,
    metrics: Metrics,
}

impl Mailer {
    /// A mailer sending from `from` through `mail`, with links under `public_url`.
    pub fn new(
        accounts: Arc<dyn AccountDirectory>,
        mail: Arc<dyn MailTransport>,
        public_url: &str,
        from: Mailbox,
    ) -> Self {
        Self {
            accounts,
            mail,
            public_url: public_url.to_string(),
            from,
            metrics: Metrics::default(),
        }
    }

    /// Counts e-mails sent and failed in `metrics` (default: a registry nobody scrapes).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The invitation an `invitation.created` / `invitation.resent` event is about: its id and the
/// generation of the e-mail asked for. Other types are [`HandlerError::unknown_type`].
fn requested(event: &Event) -> Result<(InvitationId, i32), HandlerError> {
    let invitation: Option<wire::Invitation> = match event.known_type() {
        Some(EventType::InvitationCreated) => {
            event.decode::<events::InvitationCreated>()?.invitation
        }
        Some(EventType::InvitationResent) => event.decode::<events::InvitationResent>()?.invitation,
        _ => return Err(HandlerError::unknown_type(event)),
    };
    let invitation = invitation.ok_or_else(|| {
        HandlerError::Permanent(format!(
            "{} {} carries no invitation",
            event.event_type, event.id
        ))
    })?;
    let (_, invitation_id) =
        parse_invitation_name("invitation.name", &invitation.name).map_err(|_| {
            HandlerError::Permanent(format!(
                "{} {} names no invitation",
                event.event_type, event.id
            ))
        })?;
    Ok((invitation_id, invitation.resend_count))
}

/// Why this event needs no e-mail, if it does not.
fn skip_reason(invitation: &Invitation, generation: i32) -> Option<&'static str> {
    if invitation.state_at(now()) != InvitationState::Pending {
        Some("the invitation is no longer pending")
    } else if generation != invitation.resend_count {
        Some("a newer e-mail superseded this one")
    } else if invitation.delivery.state == crate::domain::DeliveryState::Sent {
        Some("this e-mail was already sent")
    } else {
        None
    }
}

fn mail_error(error: MailError) -> HandlerError {
    if error.permanent {
        HandlerError::Permanent(error.reason)
    } else {
        HandlerError::Transient(error.reason)
    }
}

#[async_trait::async_trait]
impl Handler for Mailer {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        let (invitation_id, generation) = requested(event)?;
        let Some(invitation) = store::load(txn, &invitation_id)
            .await
            .map_err(HandlerError::from)?
        else {
            tracing::warn!(invitation_id = %invitation_id, event = %event.id, "no such invitation; nothing to send");
            return Ok(());
        };
        if let Some(reason) = skip_reason(&invitation, generation) {
            tracing::debug!(invitation = %invitation.name(), event = %event.id, reason, "no e-mail");
            return Ok(());
        }
        let account = self
            .accounts
            .account(&invitation.account_id)
            .await
            .map_err(|error| {
                HandlerError::Transient(format!("cannot read the account: {}", error.message()))
            })?;
        let account = match account {
            Some(account) if account.state != AccountState::Deleted => account,
            _ => {
                tracing::info!(invitation = %invitation.name(), "the account is gone; no e-mail");
                return Ok(());
            }
        };
        let secret = Secret::mint();
        let email = InvitationEmail {
            to_email: invitation.email.clone(),
            to_name: [invitation.given_name.trim(), invitation.family_name.trim()]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            account_display_name: account.display_name,
            inviter_display_name: invitation.inviter_display_name.clone(),
            role: invitation.role,
            expire_time: invitation.expire_time,
            link: accept_link(&self.public_url, secret.token()),
            message_id: render::message_id(&event.id, &self.from),
        };
        let message = render::render(&email, &self.from)
            .map_err(|error| HandlerError::Permanent(error.to_string()))?;
        drop(email);
        if let Err(error) = self.mail.send(message).await {
            self.metrics.email_failed();
            return Err(mail_error(error));
        }
        self.metrics.email_sent();
        let recorded =
            delivery::record_sent(txn, &invitation_id, generation, &secret.hash(), now())
                .await
                .map_err(HandlerError::from)?;
        if recorded {
            tracing::info!(invitation = %invitation.name(), event = %event.id, "invitation e-mail sent");
        } else {
            tracing::info!(invitation = %invitation.name(), "invitation changed while its e-mail was sent; its link is void");
        }
        Ok(())
    }

    async fn failed(
        &self,
        database: &DatabaseConnection,
        event: &Event,
        attempt: u32,
        error: &HandlerError,
        dead_lettered: bool,
    ) {
        let Ok((invitation_id, generation)) = requested(event) else {
            return;
        };
        let reason = match error {
            HandlerError::Transient(reason)
            | HandlerError::Permanent(reason)
            | HandlerError::UnknownType(reason) => reason.as_str(),
        };
        let result = delivery::record_failed_attempt(
            database,
            &invitation_id,
            generation,
            reason,
            dead_lettered,
            now(),
        )
        .await;
        match result {
            Ok(_) => tracing::warn!(
                invitation_id = %invitation_id,
                event = %event.id,
                attempt,
                dead_lettered,
                reason,
                "invitation e-mail not sent"
            ),
            Err(error) => tracing::warn!(
                invitation_id = %invitation_id,
                event = %event.id,
                error = %error,
                "cannot record the failed e-mail attempt"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
