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
        partner_id: "p".into(),
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
