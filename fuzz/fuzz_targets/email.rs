//! E-mail addresses as callers send them (`crates/platform/src/email.rs`, used by
//! CreateInvitation and AddMember). Nothing panics; every refusal says why; an accepted address
//! is trimmed, has one `@` and a dotted domain, holds no whitespace, control, bidirectional or
//! invisible character, fits 254 bytes, and is accepted again unchanged; the normal form is
//! idempotent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_platform::email::{MAX_EMAIL_LEN, normalize_email, validate_email};
use tenantry_platform::text::{is_bidi_control, is_invisible};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match validate_email(text) {
        Ok(email) => {
            assert_eq!(email.trim(), email);
            assert!(email.len() <= MAX_EMAIL_LEN);
            assert_eq!(email.matches('@').count(), 1);
            let (local, domain) = email.split_once('@').expect("one @");
            assert!(!local.is_empty() && domain.contains('.'));
            assert!(!email.chars().any(|c| {
                c.is_whitespace() || c.is_control() || is_bidi_control(c) || is_invisible(c)
            }));
            assert_eq!(validate_email(&email).as_deref(), Ok(email.as_str()));
        }
        Err(why) => assert!(!why.is_empty()),
    }
    let normal = normalize_email(text);
    assert_eq!(normalize_email(&normal), normal);
});
