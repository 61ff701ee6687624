//! Identifiers and resource names as callers send them: the registry's identifier and
//! display-name rules (`services/customer-registry/src/domain/identifier.rs`) and the platform's
//! name parsers (`crates/platform/src/names.rs`). Nothing panics; the identifier rules and the
//! name parser agree; whatever a parser accepts renders back to the very same name; an accepted
//! display name is trimmed, within its limit, free of what the platform forbids in a line, and
//! accepted again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_platform::names;
use tenantry_platform::text::is_forbidden_in_line;
use tenantry_registry::domain::identifier::{
    AccountId, DisplayName, MAX_ACCOUNT_ID_LENGTH, MAX_DISPLAY_NAME_CHARS,
    MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    for max in [
        MIN_CONFIGURABLE_MAX_ACCOUNT_ID_LENGTH,
        MAX_ACCOUNT_ID_LENGTH,
    ] {
        match AccountId::parse(text, max) {
            Ok(id) => {
                assert!(names::is_account_id(id.as_str()) && text.len() <= max);
                let name = names::account_name(id.as_str());
                assert_eq!(
                    names::parse_account("name", &name).ok().as_deref(),
                    Some(text)
                );
            }
            Err(invalid) => {
                assert!(!invalid.problems.is_empty());
                assert!(!names::is_account_id(text) || text.len() > max);
            }
        }
    }

    if let Ok(id) = names::parse_account("name", text) {
        assert_eq!(names::account_name(&id), text);
        assert!(AccountId::parse(&id, MAX_ACCOUNT_ID_LENGTH).is_ok());
    }
    if let Ok(user) = names::parse_user("user", text) {
        assert_eq!(names::user_name(&user), text);
    }
    if let Ok((account, user)) = names::parse_member("name", text) {
        assert_eq!(names::member_name(&account, &user), text);
    }
    for collection in ["invitations", "messages"] {
        if let Ok((account, id)) = names::parse_account_child("name", text, collection) {
            assert_eq!(format!("accounts/{account}/{collection}/{id}"), text);
        }
    }

    if let Ok(name) = DisplayName::parse(text) {
        let shown = name.as_str();
        assert_eq!(shown.trim(), shown);
        assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&shown.chars().count()));
        assert!(!shown.chars().any(is_forbidden_in_line));
        assert_eq!(DisplayName::parse(shown).ok(), Some(name.clone()));
    }
});
