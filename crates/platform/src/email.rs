//! E-mail addresses: a syntax check — the mailer's parser (lettre's `Address`, RFC 5322
//! dot-atoms) and stricter: no quoted local parts, no IP-literal domains, a dotted domain — and
//! the normal form used to compare them. One rule for every service: the invitation service
//! checks the addresses it invites, membership the addresses AddMember looks up.

use crate::text::{is_bidi_control, is_invisible};

/// Longest address (RFC 5321 path limit minus the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part.
pub const MAX_LOCAL_LEN: usize = 64;

/// The address trimmed, if it is plausible: exactly one `@`, a non-empty local part of at most
/// 64 bytes, a domain with a dot that neither starts nor ends with a dot or hyphen and has no
/// empty label, no whitespace, control, bidirectional or invisible characters, at most 254 bytes
/// in all, and an address lettre (which sends the e-mails) parses. Err is the description for a
/// `BadRequest` violation.
pub fn validate_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    if email.is_empty() {
        return Err("required: an e-mail address".into());
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!("at most {MAX_EMAIL_LEN} characters"));
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c) || is_invisible(c))
    {
        return Err("must not contain spaces, control or invisible characters".into());
    }
    let invalid = || "must be an e-mail address like name@example.com".to_string();
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if domain.contains('@') || local.is_empty() {
        return Err(invalid());
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(format!(
            "the part before @ must be at most {MAX_LOCAL_LEN} characters"
        ));
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.chars().any(|c| {
                matches!(
                    c,
                    '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '"' | '\\'
                )
            })
    });
    if !domain.contains('.') || !labels_ok {
        return Err(invalid());
    }
    if local
        .chars()
        .any(|c| matches!(c, '<' | '>' | '"' | '\\' | ','))
    {
        return Err(invalid());
    }
    // The mailer's own parser (lettre's: an RFC 5322 dot-atom or quoted local part, a valid
    // domain) must take every address let through here, or an invitation would be stored that
    // can never be sent: `jane..doe@…`, `.jane@…`, `a(b)@…` are refused now, not at sending.
    if email.parse::<lettre::Address>().is_err() {
        return Err(invalid());
    }
    Ok(email.to_string())
}

/// The form compared case-insensitively: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_trims() {
        for good in [
            "alice@example.com",
            "Alice.Admin+tenantry@Mail.Example.CO.uk",
            "x@a.io",
            "o'brien@example.org",
        ] {
            assert_eq!(validate_email(good).as_deref(), Ok(good), "{good}");
        }
        assert_eq!(
            validate_email("  bob@example.com ").as_deref(),
            Ok("bob@example.com")
        );
    }

    #[test]
    fn refuses_implausible_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "alice@@example.com",
            "a@b@example.com",
            "alice smith@example.com",
            "alice@exa mple.com",
            "alice\u{7}@example.com",
            "alice@.example.com",
            "alice@example.com.",
            "alice@example..com",
            "alice@-example.com",
            "<alice>@example.com",
            "alice\u{200b}@example.com",
            "alice@\u{202e}moc.elpmaxe",
            "jane..doe@example.com",
            ".jane@example.com",
            "jane.@example.com",
            "a(b)@example.com",
            "jane[1]@example.com",
            "jane:doe@example.com",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} should be refused");
        }
        // The local part limit is exactly 64.
        assert!(validate_email(&format!("{}@example.com", "a".repeat(64))).is_ok());
    }

    #[test]
    fn normalizes_case_and_space() {
        assert_eq!(normalize_email(" Alice@Example.COM "), "alice@example.com");
    }

    /// Addresses of the usual shape, in any case: dot-separated atoms before the `@`.
    fn address() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_%+'-]{1,20}(\\.[A-Za-z0-9_%+'-]{1,20}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\\.){1,3}[A-Za-z]{2,10}"
    }

    proptest! {
        /// Ordinary addresses are accepted as given (trimmed), and checking is idempotent.
        #[test]
        fn ordinary_addresses_are_accepted(email in address(), pad in "[ \t]{0,3}") {
            let padded = format!("{pad}{email}{pad}");
            prop_assert_eq!(validate_email(&padded), Ok(email.clone()));
            prop_assert_eq!(validate_email(&email), Ok(email.clone()));
            prop_assert_eq!(normalize_email(&normalize_email(&email)), normalize_email(&email));
        }

        /// No input panics; whatever is accepted is trimmed, has one `@`, a dotted domain, at
        /// most 254 bytes and nothing invisible, and is accepted again unchanged.
        #[test]
        fn accepted_addresses_are_plausible(raw in any::<String>(), near in "\\PC{0,20}@\\PC{0,20}") {
            for input in [raw.as_str(), near.as_str()] {
                if let Ok(email) = validate_email(input) {
                    prop_assert_eq!(email.trim(), email.as_str());
                    prop_assert_eq!(email.matches('@').count(), 1);
                    prop_assert!(email.len() <= MAX_EMAIL_LEN);
                    prop_assert!(email.split('@').nth(1).is_some_and(|domain| domain.contains('.')));
                    prop_assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()
                        || is_bidi_control(c) || is_invisible(c)));
                    prop_assert_eq!(validate_email(&email), Ok(email.clone()));
                    prop_assert!(email.parse::<lettre::Address>().is_ok(), "the mailer cannot send to {email:?}");
                }
            }
        }

        /// An invisible or bidirectional character anywhere in an address is refused.
        #[test]
        fn hidden_characters_are_refused(email in address(), at in any::<prop::sample::Index>(),
            hidden in prop::sample::select(vec!['\u{200b}', '\u{feff}', '\u{202e}', '\u{2066}', '\u{ad}', '\u{0}', '\u{9b}'])) {
            let mut chars: Vec<char> = email.chars().collect();
            chars.insert(at.index(chars.len() + 1), hidden);
            let tampered: String = chars.into_iter().collect();
            prop_assert!(validate_email(&tampered).is_err());
        }
    }
}
