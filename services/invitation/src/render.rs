//! The invitation e-mail: a subject naming the inviter and the account, and a text + HTML
//! multipart body with the accept link, the role and the expiry.

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use tenantry_mail::one_line;

use crate::domain::Role;

/// Everything the e-mail says.
#[derive(Clone, Debug)]
pub struct InvitationEmail {
    /// The invitee's address.
    pub to_email: String,
    /// The invitee's name ("given family"), may be empty.
    pub to_name: String,
    /// The account's display name.
    pub account_display_name: String,
    /// Who invited.
    pub inviter_display_name: String,
    /// The role on acceptance.
    pub role: Role,
    /// When the link stops working.
    pub expire_time: DateTime<Utc>,
    /// `{public_url}/invitations/accept?token=…`.
    pub link: String,
    /// The Message-ID without angle brackets, derived from the event id (for a reminder: the
    /// invitation and its generation) so a duplicate is recognisable.
    pub message_id: String,
    /// Whether this is the reminder before the expiry rather than the invitation itself.
    pub reminder: bool,
}

/// Why an e-mail could not be built (the recipient address is unusable): permanent.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the invitation e-mail: {0}")]
pub struct RenderError(String);

/// The subject, e.g. "Alice Admin invited you to Globex Corporation on Tenantry".
pub fn subject(inviter_display_name: &str, account_display_name: &str) -> String {
    format!(
        "{} invited you to {} on Tenantry",
        one_line(inviter_display_name),
        one_line(account_display_name)
    )
}

/// The subject of the reminder, e.g. "Reminder: Alice Admin invited you to Globex Corporation
/// on Tenantry".
pub fn reminder_subject(inviter_display_name: &str, account_display_name: &str) -> String {
    format!(
        "Reminder: {}",
        subject(inviter_display_name, account_display_name)
    )
}

/// The Message-ID of the reminder of `invitation_id`'s e-mail generation `generation`.
pub fn reminder_message_id(invitation_id: &str, generation: i32, from: &Mailbox) -> String {
    format!(
        "invitation-reminder-{invitation_id}-{generation}@{}",
        from.email.domain()
    )
}

/// The Message-ID for the e-mail of event `event_id`, in the sender's domain.
pub fn message_id(event_id: &uuid::Uuid, from: &Mailbox) -> String {
    format!("invitation-{event_id}@{}", from.email.domain())
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owner",
        Role::Admin => "Admin",
        Role::Employee => "Employee",
    }
}

fn expiry_label(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Escapes text for HTML content and quoted attributes (the e-mail and the invitation page).
pub(crate) fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The plain-text body.
pub fn text_body(email: &InvitationEmail) -> String {
    let greeting = match one_line(&email.to_name) {
        name if name.is_empty() => "Hello,".to_string(),
        name => format!("Hello {name},"),
    };
    let reminder = if email.reminder { "A reminder: " } else { "" };
    format!(
        "{greeting}\n\n\
         {reminder}{inviter} invited you to join {account} on Tenantry as {role}.\n\n\
         Accept the invitation here:\n\
         {link}\n\n\
         The link works once and expires on {expiry}.\n\
         If you did not expect this invitation, ignore this e-mail.\n",
        inviter = one_line(&email.inviter_display_name),
        account = one_line(&email.account_display_name),
        role = role_label(email.role),
        link = email.link,
        expiry = expiry_label(email.expire_time),
    )
}

/// The HTML body.
pub fn html_body(email: &InvitationEmail) -> String {
    let greeting = match one_line(&email.to_name) {
        name if name.is_empty() => "Hello,".to_string(),
        name => format!("Hello {},", html_escape(&name)),
    };
    let link = html_escape(&email.link);
    let reminder = if email.reminder { "A reminder: " } else { "" };
    format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>{greeting}</p>\n\
         <p>{reminder}<strong>{inviter}</strong> invited you to join <strong>{account}</strong> on \
         Tenantry as <strong>{role}</strong>.</p>\n\
         <p><a href=\"{link}\">Accept the invitation</a></p>\n\
         <p>Or open this link:<br>{link}</p>\n\
         <p>The link works once and expires on {expiry}.<br>\
         If you did not expect this invitation, ignore this e-mail.</p>\n\
         </body></html>\n",
        inviter = html_escape(&one_line(&email.inviter_display_name)),
        account = html_escape(&one_line(&email.account_display_name)),
        role = role_label(email.role),
        expiry = expiry_label(email.expire_time),
    )
}

/// The whole message from `from` to the invitee.
pub fn render(email: &InvitationEmail, from: &Mailbox) -> Result<Message, RenderError> {
    let address = email
        .to_email
        .parse()
        .map_err(|error| RenderError(format!("recipient address: {error}")))?;
    let name = one_line(&email.to_name);
    let to = Mailbox::new((!name.is_empty()).then_some(name), address);
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(if email.reminder {
            reminder_subject(&email.inviter_display_name, &email.account_display_name)
        } else {
            subject(&email.inviter_display_name, &email.account_display_name)
        })
        .message_id(Some(format!("<{}>", email.message_id)))
        .multipart(MultiPart::alternative_plain_html(
            text_body(email),
            html_body(email),
        ))
        .map_err(|error| RenderError(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> InvitationEmail {
        InvitationEmail {
            to_email: "bob@example.com".into(),
            to_name: "Bob Builder".into(),
            account_display_name: "Globex <Corporation>".into(),
            inviter_display_name: "Alice Admin".into(),
            role: Role::Admin,
            expire_time: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
            link: "https://app.example.com/invitations/accept?token=abc_DEF-123".into(),
            message_id: "invitation-0190f7a4-0000-7000-8000-000000000001@tenantry.invalid".into(),
            reminder: false,
        }
    }

    #[test]
    fn subject_names_inviter_and_account() {
        assert_eq!(
            subject("Alice Admin", "Globex Corporation"),
            "Alice Admin invited you to Globex Corporation on Tenantry"
        );
        assert_eq!(
            subject("Eve\r\nBcc: x", "A"),
            "Eve  Bcc: x invited you to A on Tenantry"
        );
    }

    #[test]
    fn bodies_carry_link_role_and_expiry() {
        let email = email();
        let text = text_body(&email);
        assert!(text.starts_with("Hello Bob Builder,"));
        assert!(text.contains(&email.link));
        assert!(text.contains("as Admin"));
        assert!(text.contains("expires on 2026-01-01 00:00 UTC"));
        assert!(text.contains("Globex <Corporation>"));
        let html = html_body(&email);
        assert!(
            html.contains(
                "<a href=\"https://app.example.com/invitations/accept?token=abc_DEF-123\">"
            )
        );
        assert!(html.contains("Globex &lt;Corporation&gt;"));
        assert!(!html.contains("Globex <Corporation>"));
        assert!(html.contains("2026-01-01 00:00 UTC"));
    }

    #[test]
    fn renders_a_multipart_message_with_headers() {
        let from: Mailbox = "Tenantry <no-reply@tenantry.invalid>".parse().unwrap();
        let message = render(&email(), &from).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(
            raw.contains("Subject: Alice Admin invited you to Globex <Corporation> on Tenantry")
                || raw.contains("Subject: =?utf-8?"),
            "{raw}"
        );
        assert!(raw.contains(
            "Message-ID: <invitation-0190f7a4-0000-7000-8000-000000000001@tenantry.invalid>"
        ));
        assert!(
            raw.contains("To: \"Bob Builder\" <bob@example.com>")
                || raw.contains("To: Bob Builder <bob@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        let bad = InvitationEmail {
            to_email: "not an address".into(),
            ..email()
        };
        assert!(render(&bad, &from).is_err());
    }

    #[test]
    fn message_ids_use_the_sender_domain() {
        let from: Mailbox = "Tenantry <no-reply@mail.example.com>".parse().unwrap();
        let id = uuid::Uuid::nil();
        assert_eq!(
            message_id(&id, &from),
            "invitation-00000000-0000-0000-0000-000000000000@mail.example.com"
        );
    }

    #[test]
    fn a_reminder_says_so() {
        let from: Mailbox = "Tenantry <no-reply@mail.example.com>".parse().unwrap();
        let email = InvitationEmail {
            reminder: true,
            ..email()
        };
        assert!(text_body(&email).contains("A reminder: Alice Admin invited you"));
        assert!(html_body(&email).contains("A reminder: <strong>Alice Admin</strong>"));
        assert_eq!(
            reminder_subject("Alice Admin", "Globex"),
            "Reminder: Alice Admin invited you to Globex on Tenantry"
        );
        assert_eq!(
            reminder_message_id("abc", 2, &from),
            "invitation-reminder-abc-2@mail.example.com"
        );
    }
}
