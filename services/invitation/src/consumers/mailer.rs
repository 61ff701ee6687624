//! The mailer: for `invitation.created` and `invitation.resent` it mints the secret, sends the
//! e-mail with the accept link and stores only the secret's SHA-256.
//!
//! No database transaction is open during the SMTP exchange (it can take seconds, and a pooled
//! connection idle in a transaction serves nobody). So all of it happens in
//! [`Handler::prepare`], before the runtime's transaction (see `store::mailer`): read the
//! account (named in the event), mint the secret, and *claim* the e-mail — one committed
//! statement storing the secret's hash and a lease (a random token, valid for the lease time)
//! that returns the invitation claimed — then send, then commit SENT at once (conditioned on
//! still holding the lease). A failed send
//! releases the lease; the runtime retries, and `failed` records the attempt. The invitation
//! row is the e-mail's record, so the runtime adds no processed-event transaction of its own
//! ([`Handler::prepare_is_final`]): the delivery is acked at once.
//!
//! A second copy of the event (a redelivery after a broker outage, on this replica or another)
//! finds the lease held and waits it out ([`HandlerError::Busy`], no attempt used): then the
//! e-mail is SENT and the copy does nothing. An unreachable database also waits (Busy) rather
//! than using up attempts. Only if the process dies between the SMTP server's `250` for the
//! message and the commit of SENT is the e-mail sent twice: once the lease expired, the
//! redelivered event claims it again and sends the same e-mail with the same `Message-ID`
//! (derived from the event id), so the duplicate is detectable (and mail clients that thread
//! by Message-ID show one); its secret is new, and the first e-mail's secret stays valid as the
//! previous one, so either link works. "Exactly once" therefore means: once per event, except
//! for a crash inside that window, where the second copy is the same message. Replica clocks
//! must agree to well within the lease minus the SMTP timeout (100 s by default): the lease's
//! end is written and compared with each replica's own clock.
//!
//! Superseded e-mails: the event's `invitation.resend_count` (the secret's generation) must
//! equal the row's; an older event (a resend happened since) is skipped, as is an event for
//! an invitation no longer PENDING. The generation is used rather than times, because it is
//! exact where clocks and event times are not.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tenantry_events::{Event, Handler, HandlerError, Prepared};
use tenantry_platform::metrics::Metrics;
use tenantry_platform::time::now;
use tenantry_proto::EventType;
use tenantry_proto::events::v1 as events;
use tenantry_proto::invitation::v1 as wire;

use crate::domain::secret::{Secret, accept_link};
use crate::domain::{AccountId, Invitation, InvitationId};
use crate::peers::{AccountDirectory, AccountState};
use crate::render::{self, InvitationEmail};
use crate::store::mailer::{self as delivery, Claim};
use crate::wire::parse_invitation_name;
use tenantry_mail::{MailError, MailTransport};

/// Sends invitation e-mails.
#[derive(Debug)]
pub struct Mailer {
    accounts: Arc<dyn AccountDirectory>,
    mail: Arc<dyn MailTransport>,
    public_url: String,
    from: Mailbox,
    metrics: Metrics,
    lease: Duration,
}

/// How long a claimed e-mail is reserved for the attempt that claimed it, by default: longer
/// than any SMTP exchange may take (its timeout is 20 s, plus the wait for a pooled connection).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

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
            lease: DEFAULT_LEASE,
        }
    }

    /// Records the e-mail sent under `token` as SENT, trying again while the database cannot be
    /// reached, as long as the lease lasts (past it, another attempt may claim the e-mail).
    async fn record_sent(
        &self,
        database: &DatabaseConnection,
        invitation: &Invitation,
        generation: i32,
        token: &str,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) {
        let mut wait = Duration::from_millis(100);
        loop {
            match delivery::record_sent(
                database,
                &invitation.invitation_id,
                generation,
                token,
                now(),
            )
            .await
            {
                Ok(true) => {
                    tracing::info!(invitation = %invitation.name(), "invitation e-mail sent");
                    return;
                }
                Ok(false) => {
                    tracing::info!(invitation = %invitation.name(), "invitation changed while its e-mail was sent (resent or closed); not recorded");
                    return;
                }
                Err(error)
                    if now() + chrono::Duration::from_std(wait).unwrap_or_default()
                        < lease_until =>
                {
                    tracing::warn!(invitation = %invitation.name(), error = %error, "cannot record the e-mail as sent yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    tracing::error!(invitation = %invitation.name(), error = %error, "could not record the e-mail as sent before its lease ended; it may be sent again (same Message-ID)");
                    return;
                }
            }
        }
    }

    /// Reserves a claimed e-mail for `lease` (see [`DEFAULT_LEASE`]).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Counts e-mails sent and failed in `metrics` (default: a registry nobody scrapes).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The e-mail about `invitation` (the invitation itself, or its `reminder`).
pub(crate) fn email_for(
    invitation: &Invitation,
    account_display_name: String,
    link: String,
    message_id: String,
    reminder: bool,
) -> InvitationEmail {
    InvitationEmail {
        to_email: invitation.email.clone(),
        to_name: [invitation.given_name.trim(), invitation.family_name.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        account_display_name,
        inviter_display_name: invitation.inviter_display_name.clone(),
        role: invitation.role,
        expire_time: invitation.expire_time,
        link,
        message_id,
        reminder,
    }
}

/// The invitation an `invitation.created` / `invitation.resent` event is about: its account, its
/// id and the generation of the e-mail asked for. Other types are
/// [`HandlerError::unknown_type`].
fn requested(event: &Event) -> Result<(AccountId, InvitationId, i32), HandlerError> {
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
    let (account_id, invitation_id) = parse_invitation_name("invitation.name", &invitation.name)
        .map_err(|_| {
            HandlerError::Permanent(format!(
                "{} {} names no invitation",
                event.event_type, event.id
            ))
        })?;
    Ok((account_id, invitation_id, invitation.resend_count))
}

/// How long a delivery waits before trying again while the database cannot be reached.
const DATABASE_WAIT: Duration = Duration::from_secs(1);

/// A store error in [`Mailer::prepare`] as a handler failure. The database being unreachable is
/// not the event's fault: it waits ([`HandlerError::Busy`]) without using up an attempt, as the
/// runtime's own transaction waits, instead of being retried into the dead letters.
fn store_error(error: crate::domain::InvitationError) -> HandlerError {
    use tenantry_platform::db::StoreError;
    match error {
        crate::domain::InvitationError::Store(
            StoreError::Unavailable(_) | StoreError::NotReady,
        ) => HandlerError::Busy {
            reason: format!("the invitation database is unreachable: {error}"),
            retry_after: DATABASE_WAIT,
        },
        other => HandlerError::from(other),
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
    async fn prepare(
        &self,
        database: &DatabaseConnection,
        event: &Event,
    ) -> Result<Prepared, HandlerError> {
        let (account_id, invitation_id, generation) = requested(event)?;
        // Asked before claiming: no lease is held while the registry answers (normally the
        // local view does, from memory).
        let account = self.accounts.account(&account_id).await.map_err(|error| {
            HandlerError::Transient(format!("cannot read the account: {}", error.message()))
        })?;
        let account = match account {
            Some(account) if account.state != AccountState::Deleted => account,
            _ => {
                tracing::info!(invitation_id = %invitation_id, account_id = %account_id, "the account is gone; no e-mail");
                return Ok(None);
            }
        };
        let secret = Secret::mint();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let claimed_at = now();
        let lease_until = claimed_at
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(2));
        // The claim is the first read: it takes only an e-mail still wanted as asked (the
        // invitation PENDING, this generation, not SENT) and returns the invitation it claimed.
        let claim = delivery::claim(
            database,
            &invitation_id,
            generation,
            &token,
            &secret.hash(),
            lease_until,
            claimed_at,
        )
        .await
        .map_err(store_error)?;
        let invitation = match claim {
            Claim::Claimed(invitation) => invitation,
            Claim::Moved => {
                tracing::debug!(invitation_id = %invitation_id, event = %event.id, "no e-mail: the invitation is gone, closed, superseded or its e-mail sent");
                return Ok(None);
            }
            Claim::Held(until) => {
                return Err(HandlerError::Busy {
                    reason: format!("another attempt is sending invitation {invitation_id}"),
                    retry_after: (until - claimed_at).to_std().unwrap_or_default(),
                });
            }
        };
        let email = email_for(
            &invitation,
            account.display_name,
            accept_link(&self.public_url, secret.token()),
            render::message_id(&event.id, &self.from),
            false,
        );
        let sent = match render::render(&email, &self.from) {
            Ok(message) => {
                drop(email);
                self.mail.send(message).await.map_err(|error| {
                    self.metrics.email_failed();
                    mail_error(error)
                })
            }
            Err(error) => Err(HandlerError::Permanent(error.to_string())),
        };
        if let Err(error) = sent {
            // Nothing was sent: the next attempt need not wait for the lease. If releasing
            // fails too, the lease expires on its own.
            if let Err(release) = delivery::release(database, &invitation_id, &token).await {
                tracing::warn!(invitation = %invitation.name(), error = %release, "cannot release the e-mail's lease; it expires on its own");
            }
            return Err(error);
        }
        self.metrics.email_sent();
        // SENT is committed at once, on its own, not with the consumer's transaction: whatever
        // happens to that transaction (a database error, shutdown), a later copy of the event
        // then finds the e-mail sent. Only a crash before this commit can send it twice.
        self.record_sent(database, &invitation, generation, &token, lease_until)
            .await;
        Ok(None)
    }

    async fn handle(&self, _txn: &DatabaseTransaction, event: &Event) -> Result<(), HandlerError> {
        // The e-mail's bookkeeping was committed by `prepare`; the runtimes do not call this
        // (see `prepare_is_final`).
        requested(event).map(drop)
    }

    /// The invitation row is the e-mail's record: SENT (or a skip reason) is committed by
    /// `prepare`, and a later copy of the event finds it there, so the runtime's
    /// processed-event transaction would be one more commit per e-mail for nothing.
    fn prepare_is_final(&self) -> bool {
        true
    }

    /// Each e-mail is claimed and sent before its own transaction: not batched.
    fn handles_batches(&self) -> bool {
        false
    }

    async fn failed(
        &self,
        database: &DatabaseConnection,
        event: &Event,
        attempt: u32,
        error: &HandlerError,
        dead_lettered: bool,
    ) {
        let Ok((_, invitation_id, generation)) = requested(event) else {
            return;
        };
        let reason = match error {
            HandlerError::Transient(reason)
            | HandlerError::Permanent(reason)
            | HandlerError::UnknownType(reason) => reason.as_str(),
            // Another attempt holds the e-mail: not this one's failure to record.
            HandlerError::Busy { .. } => return,
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
