//! Small pieces every service's templates need: text made safe for one line, and a Message-ID
//! that is the same however often one e-mail is attempted.

use lettre::message::Mailbox;
use sha2::{Digest, Sha256};

/// `text` on one line: control characters (line breaks included) become spaces and the ends are
/// trimmed. Names and reasons come from tokens and requests and must not add header lines or
/// shape the text layout.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `<{prefix}-{id}@{sender's domain}>`, `id` derived from `key` (the e-mail's identity, e.g.
/// its request and recipient): the same e-mail gets the same Message-ID on every attempt, so a
/// copy sent again after a crash between the server's answer and the recorded outcome can be
/// recognised.
pub fn stable_message_id(prefix: &str, key: &str, sender: &Mailbox) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{prefix}-{id}@{}>", sender.email.domain())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_line_breaks_and_controls() {
        assert_eq!(one_line("  Acme\r\nBcc: x@y \t"), "Acme  Bcc: x@y");
    }

    #[test]
    fn message_ids_follow_the_key() {
        let sender: Mailbox = "Tenantry <no-reply@tenantry.example>".parse().unwrap();
        let one = stable_message_id("access-request", "r|WAITING|a@b", &sender);
        assert_eq!(
            one,
            stable_message_id("access-request", "r|WAITING|a@b", &sender)
        );
        assert_ne!(
            one,
            stable_message_id("access-request", "r|DECIDED|a@b", &sender)
        );
        assert!(one.starts_with("<access-request-") && one.ends_with("@tenantry.example>"));
    }
}
