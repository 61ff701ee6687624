use chrono::{Duration, TimeZone, Utc};

use super::*;

#[test]
fn titles_count_characters_not_bytes() {
    assert_eq!(validate_title("  Hello  ").unwrap(), "Hello");
    assert!(validate_title("").is_err());
    assert!(validate_title("   ").is_err());
    let umlauts = "ü".repeat(120);
    assert_eq!(umlauts.len(), 240, "two bytes each");
    assert_eq!(validate_title(&umlauts).unwrap(), umlauts);
    assert!(validate_title(&"ü".repeat(121)).is_err());
    let emoji = "🚀".repeat(120);
    assert!(validate_title(&emoji).is_ok());
    assert!(validate_title(&format!("{emoji}x")).is_err());
    assert!(validate_title("a\nb").is_err());
    assert!(validate_title("a\u{7}b").is_err());
    for hidden in ["Update \u{202e}etadpu", "Up\u{200b}date", "Up\u{2028}date"] {
        assert!(validate_title(hidden).is_err(), "{hidden:?}");
    }
}

#[test]
fn bodies_keep_line_breaks_and_count_characters() {
    let body = "Line one\n\tLine two\r\nLine three";
    assert_eq!(validate_body(body).unwrap(), body);
    assert!(validate_body("").is_err());
    assert!(validate_body(" \n ").is_err());
    assert!(validate_body(&"é".repeat(2000)).is_ok());
    assert!(validate_body(&"é".repeat(2001)).is_err());
    assert!(validate_body(&"x".repeat(2001)).is_err());
    assert!(validate_body("bell\u{7}").is_err());
    assert!(validate_body("nul\0").is_err());
    assert!(validate_body("escape \u{1b}[2J").is_err());
    assert!(validate_body("read \u{202e}ylno").is_err());
    assert_eq!(
        validate_body("para\u{2028}graph").unwrap(),
        "para\u{2028}graph"
    );
}

#[test]
fn expiry_must_be_in_the_future() {
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
    assert_eq!(validate_expiry(None, now).unwrap(), None);
    let later = now + Duration::seconds(1);
    assert_eq!(validate_expiry(Some(later), now).unwrap(), Some(later));
    assert!(validate_expiry(Some(now), now).is_err());
    assert!(validate_expiry(Some(now - Duration::hours(1)), now).is_err());
}

#[test]
fn messages_read_as_expired_past_their_expiry() {
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
    let mut message = Message {
        message_id: "m".into(),
        partner_id: tenantry_platform::AccountId::trusted("p"),
        partner_display_name: "P".into(),
        sender: "users/u".into(),
        title: "t".into(),
        body: "b".into(),
        read_policy: ReadPolicy::AllMustRead,
        all_customers: false,
        roles: vec![],
        create_time: now,
        expire_time: None,
        state: MessageState::Delivered,
    };
    assert_eq!(message.state_at(now), MessageState::Delivered);
    message.expire_time = Some(now + Duration::minutes(1));
    assert_eq!(message.state_at(now), MessageState::Delivered);
    assert_eq!(
        message.state_at(now + Duration::minutes(1)),
        MessageState::Expired
    );
    assert!(!is_expired(None, now));
}

#[test]
fn stored_forms_round_trip() {
    for policy in [ReadPolicy::AllMustRead, ReadPolicy::SingleReadOnly] {
        assert_eq!(ReadPolicy::parse(policy.as_str()), Some(policy));
    }
    for state in [
        DeliveryState::Pending,
        DeliveryState::Acknowledged,
        DeliveryState::Resolved,
        DeliveryState::Withdrawn,
        DeliveryState::Expired,
    ] {
        assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
    }
    for state in [
        MessageState::Queued,
        MessageState::Delivered,
        MessageState::Expired,
    ] {
        assert_eq!(MessageState::parse(state.as_str()), Some(state));
    }
    for role in [Role::Owner, Role::Admin, Role::Employee] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert_eq!(ReadPolicy::parse("UNSPECIFIED"), None);
}

#[test]
fn all_must_read_resolves_when_nobody_is_left() {
    assert!(all_must_read_resolved(true, 3, 0));
    assert!(!all_must_read_resolved(true, 3, 1));
    assert!(
        !all_must_read_resolved(false, 3, 0),
        "fan-out still running"
    );
    assert!(!all_must_read_resolved(true, 0, 0), "reached nobody");
}

proptest::proptest! {
    /// An accepted title is trimmed, 1 to 120 characters, holds nothing forbidden in a line and
    /// is accepted again unchanged.
    #[test]
    fn titles_are_normalised_once(raw in "\\s{0,2}\\PC{0,125}\\s{0,2}") {
        if let Ok(title) = validate_title(&raw) {
            proptest::prop_assert_eq!(title.trim(), title.as_str());
            proptest::prop_assert!((1..=MAX_TITLE_CHARS).contains(&title.chars().count()));
            proptest::prop_assert!(!title.chars().any(tenantry_platform::text::is_forbidden_in_line));
            proptest::prop_assert_eq!(validate_title(&title), Ok(title.clone()));
        }
    }

    /// A body is kept exactly as given (line breaks and all) or refused; never more than 2000
    /// characters, never blank.
    #[test]
    fn bodies_are_kept_as_given(raw in "[\\PC\n\r\t]{0,40}", long in 1990usize..2010) {
        for body in [raw.clone(), "é".repeat(long)] {
            match validate_body(&body) {
                Ok(kept) => {
                    proptest::prop_assert_eq!(&kept, &body);
                    proptest::prop_assert!(!kept.trim().is_empty());
                    proptest::prop_assert!(kept.chars().count() <= MAX_BODY_CHARS);
                }
                Err(_) => proptest::prop_assert!(
                    body.trim().is_empty()
                        || body.chars().count() > MAX_BODY_CHARS
                        || body.chars().any(tenantry_platform::text::is_forbidden_in_text)
                ),
            }
        }
    }
}
