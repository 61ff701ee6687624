//! The e-mails access requests cause: to each person asked to approve when a request is made,
//! and to the requester when it is approved or declined. The rows are written in the
//! transaction of the change (`store/requests.rs`); this sends them once across restarts and
//! replicas (claim under a lease, send outside any transaction, record the outcome), woken at
//! once by the change in this process and every sweep interval otherwise. The templates are
//! this service's own; the transport is the shared one (`tenantry-mail`).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lettre::Message;
use lettre::message::{Mailbox, header::ContentType};
use tenantry_mail::{MailTransport, one_line, stable_message_id};

use crate::domain::MembershipError;
use crate::domain::requests::{AccessRequest, RequestState};
use crate::store::{DueMail, MailKind, MailOutcome, Store};

/// E-mails looked at per run.
const BATCH: u64 = 100;

/// How long one attempt may take to send one e-mail before another may try.
const LEASE: Duration = Duration::minutes(2);

/// The wait before the next try of an e-mail whose send failed.
const RETRY_AFTER: Duration = Duration::minutes(1);

/// Sends the queued access-request e-mails.
#[derive(Clone)]
pub struct RequestMailer {
    store: Store,
    mail: Arc<dyn MailTransport>,
    sender: Mailbox,
}

impl std::fmt::Debug for RequestMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMailer").finish_non_exhaustive()
    }
}

impl RequestMailer {
    /// A mailer over `store` sending through `mail` from `sender`.
    pub fn new(store: Store, mail: Arc<dyn MailTransport>, sender: Mailbox) -> Self {
        Self {
            store,
            mail,
            sender,
        }
    }

    /// Sends what is due now; returns how many e-mails went out.
    pub async fn run(&self) -> Result<u64, MembershipError> {
        let mut sent = 0;
        let now = tenantry_platform::time::now();
        for due in self.store.due_request_mails(now, BATCH).await? {
            let token = uuid::Uuid::new_v4().to_string();
            let claimed_at = tenantry_platform::time::now();
            if !self
                .store
                .claim_request_mail(&due, &token, claimed_at, claimed_at + LEASE)
                .await?
            {
                continue;
            }
            let outcome = match self.store.request_by_id(&due.request_id).await? {
                Some(request) => {
                    let names = self.store.request_mail_names(&request).await?;
                    self.send(&due, &request, &names).await
                }
                None => MailOutcome::Failed,
            };
            if outcome == MailOutcome::Sent {
                sent += 1;
            }
            self.store
                .finish_request_mail(&due, &token, outcome, tenantry_platform::time::now())
                .await?;
        }
        Ok(sent)
    }

    async fn send(
        &self,
        due: &DueMail,
        request: &AccessRequest,
        names: &(String, Option<String>),
    ) -> MailOutcome {
        let now = tenantry_platform::time::now();
        if due.kind == MailKind::Waiting && request.state_at(now) != RequestState::Pending {
            // Decided (or lapsed) before the e-mail went: nobody need look at it any more.
            tracing::debug!(request = %request.name(), "access request no longer pending; its approver e-mail is not sent");
            return MailOutcome::Skipped;
        }
        if due.kind == MailKind::Waiting
            && self
                .store
                .approved_by_address(request, &due.recipient)
                .await
                .unwrap_or(false)
        {
            // The approver acted before their e-mail went.
            return MailOutcome::Skipped;
        }
        let message = match self.message(due, request, names, now) {
            Ok(message) => message,
            Err(reason) => {
                tracing::warn!(request = %request.name(), reason, "an access-request e-mail cannot be sent to this address; given up");
                return MailOutcome::Failed;
            }
        };
        match self.mail.send(message).await {
            Ok(()) => MailOutcome::Sent,
            Err(error) if error.permanent => {
                tracing::warn!(request = %request.name(), reason = %error.reason, "the server refused an access-request e-mail for good");
                MailOutcome::Failed
            }
            Err(error) => {
                tracing::warn!(request = %request.name(), reason = %error.reason, "an access-request e-mail could not be sent; tried again later");
                MailOutcome::Retry {
                    retry_at: tenantry_platform::time::now() + RETRY_AFTER,
                }
            }
        }
    }

    fn message(
        &self,
        due: &DueMail,
        request: &AccessRequest,
        names: &(String, Option<String>),
        now: DateTime<Utc>,
    ) -> Result<Message, String> {
        let to: Mailbox = due
            .recipient
            .parse()
            .map_err(|error| format!("the address does not parse: {error}"))?;
        let (subject, body) = render(due.kind, request, &names.0, names.1.as_deref(), now);
        // The same e-mail has the same id however often it is attempted.
        let key = format!("{}|{}|{}", due.request_id, due.kind.as_str(), due.recipient);
        Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(stable_message_id(
                "access-request",
                &key,
                &self.sender,
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| format!("the e-mail could not be built: {error}"))
    }
}

/// Subject and text of the e-mail `kind` about `request` at `now`, naming the account by
/// `account_name` and the requester by `requester_email` when the directory has it.
pub fn render(
    kind: MailKind,
    request: &AccessRequest,
    account_name: &str,
    requester_email: Option<&str>,
    now: DateTime<Utc>,
) -> (String, String) {
    let subject_person = if request.subject_email.is_empty() {
        request.subject.name()
    } else {
        one_line(&request.subject_email)
    };
    let role = request.role.as_str();
    let account = format!("{} ({})", one_line(account_name), request.account_id);
    let requester = requester_email.map_or_else(|| request.requester.name(), one_line);
    let how_long = request.access_duration.map_or_else(
        || "without end".to_string(),
        |duration| format!("for {} hours", duration.num_hours().max(1)),
    );
    match kind {
        MailKind::Waiting => (
            format!("Approval needed: {role} for {subject_person} on {account}"),
            format!(
                "{requester} asks for {subject_person} to be {role} of {account} ({how_long}).\n\n\
                 Reason: {}\n\n\
                 The request needs {} approvals and has {}. It lapses on {}.\n\
                 Approve or decline it (ApproveAccessRequest, DeclineAccessRequest): {}\n",
                one_line(&request.reason),
                request.required_approvals,
                request.approvals.len(),
                request.expire_time.format("%Y-%m-%d %H:%M UTC"),
                request.name(),
            ),
        ),
        MailKind::Decided => {
            let state = request.state_at(now);
            let verdict = match state {
                RequestState::Approved => "approved".to_string(),
                RequestState::Declined => "declined".to_string(),
                other => other.as_str().to_ascii_lowercase(),
            };
            let by = request.decided_by.clone().unwrap_or_default();
            let why = request
                .decline_reason
                .as_deref()
                .map(|why| format!("\nReason: {}\n", one_line(why)))
                .unwrap_or_default();
            (
                format!(
                    "Your access request was {verdict}: {role} for {subject_person} on {account}"
                ),
                format!(
                    "Your request {} for {subject_person} to be {role} of {account} was \
                     {verdict} by {by}.\n{why}",
                    request.name()
                ),
            )
        }
    }
}
