//! E-mail addresses: a pragmatic syntax check (not RFC 5322), and the normal form used to
//! compare them.

/// Longest address (RFC 5321 path limit minus the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part.
pub const MAX_LOCAL_LEN: usize = 64;

/// The address trimmed, if it is plausible: exactly one `@`, a non-empty local part of at most
/// 64 bytes, a domain with a dot that neither starts nor ends with a dot or hyphen and has no
/// empty label, no whitespace or control characters, at most 254 bytes in all.
pub fn validate_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    if email.is_empty() {
        return Err("required: an e-mail address".into());
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!("at most {MAX_EMAIL_LEN} characters"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
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
    Ok(email.to_string())
}

/// The form compared case-insensitively: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
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
}
