//! Unit tests of the lifecycle rules.

use chrono::{DateTime, Duration, Utc};

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn pending(expire_in: i64) -> Invitation {
    Invitation {
        invitation_id: InvitationId::trusted("0190f7a4-0000-7000-8000-000000000001"),
        account_id: AccountId::trusted("globex"),
        email: "Bob@Example.com".into(),
        given_name: "Bob".into(),
        family_name: String::new(),
        role: Role::Admin,
        state: InvitationState::Pending,
        inviter: "users/alice".into(),
        inviter_display_name: "Alice Admin".into(),
        create_time: at(0),
        expire_time: at(expire_in),
        accept_time: None,
        accepted_by: None,
        revoke_time: None,
        revoked_by: None,
        decline_time: None,
        declined_by: None,
        reminder_sent_time: None,
        delivery: Delivery::queued(),
        resend_count: 0,
        last_sent_time: at(0),
        version: 1,
    }
}

#[test]
fn expiry_is_applied_on_read() {
    let invitation = pending(100);
    assert_eq!(invitation.state_at(at(99)), InvitationState::Pending);
    assert_eq!(invitation.state_at(at(100)), InvitationState::Expired);
    assert_eq!(invitation.state_at(at(1000)), InvitationState::Expired);
    // Final states stay what they are after the expiry.
    for state in [
        InvitationState::Accepted,
        InvitationState::Declined,
        InvitationState::Revoked,
        InvitationState::Expired,
    ] {
        let invitation = Invitation {
            state,
            ..pending(100)
        };
        assert_eq!(invitation.state_at(at(1000)), state);
    }
}

#[test]
fn revoke_is_idempotent_and_refuses_final_states() {
    assert_eq!(
        revoke_decision(&pending(100), at(1)).unwrap(),
        RevokeDecision::Revoke
    );
    let revoked = Invitation {
        state: InvitationState::Revoked,
        ..pending(100)
    };
    assert_eq!(
        revoke_decision(&revoked, at(1)).unwrap(),
        RevokeDecision::Unchanged
    );
    let accepted = Invitation {
        state: InvitationState::Accepted,
        ..pending(100)
    };
    assert!(matches!(
        revoke_decision(&accepted, at(1)),
        Err(InvitationError::NotPending {
            state: InvitationState::Accepted,
            ..
        })
    ));
    // Expired on read counts as EXPIRED.
    assert!(matches!(
        revoke_decision(&pending(100), at(200)),
        Err(InvitationError::NotPending {
            state: InvitationState::Expired,
            ..
        })
    ));
}

#[test]
fn only_pending_unexpired_invitations_are_acceptable() {
    assert!(check_acceptable(&pending(100), at(50)).is_ok());
    assert!(matches!(
        check_acceptable(&pending(100), at(100)),
        Err(InvitationError::NotPending {
            state: InvitationState::Expired,
            ..
        })
    ));
    for state in [InvitationState::Accepted, InvitationState::Revoked] {
        let invitation = Invitation {
            state,
            ..pending(100)
        };
        assert!(check_acceptable(&invitation, at(1)).is_err(), "{state:?}");
    }
}

#[test]
fn requests_check_the_etag_in_their_order() {
    let invitation = pending(10_000);
    // A retried revoke succeeds whatever the etag; otherwise the etag comes first.
    let revoked = Invitation {
        state: InvitationState::Revoked,
        ..pending(10_000)
    };
    assert_eq!(
        decide_revoke(&revoked, "7", at(1)).unwrap(),
        RevokeDecision::Unchanged
    );
    assert_eq!(
        decide_revoke(&invitation, "1", at(1)).unwrap(),
        RevokeDecision::Revoke
    );
    assert!(matches!(
        decide_revoke(&invitation, "2", at(1)),
        Err(InvitationError::StaleEtag(_))
    ));
    assert!(matches!(
        check_resend_request(&invitation, "2", Duration::seconds(60), at(600)),
        Err(InvitationError::StaleEtag(_))
    ));
    assert!(check_resend_request(&invitation, "", Duration::seconds(60), at(600)).is_ok());
    // Accepted by someone else is told apart from other final states.
    let accepted = Invitation {
        state: InvitationState::Accepted,
        accepted_by: Some("users/bob".into()),
        ..pending(10_000)
    };
    assert!(matches!(
        check_accept(&accepted, at(1)),
        Err(InvitationError::AcceptedByAnother(_))
    ));
    assert!(accepted.accepted_by_user(&UserId::trusted("bob")));
    assert!(!accepted.accepted_by_user(&UserId::trusted("mallory")));
    assert!(check_accept(&invitation, at(1)).is_ok());
}

#[test]
fn resend_is_rate_limited_and_needs_pending() {
    let minute = Duration::seconds(60);
    let invitation = pending(10_000);
    match check_resend(&invitation, minute, at(15)) {
        Err(InvitationError::ResendTooSoon { retry_after, name }) => {
            assert_eq!(retry_after.as_secs(), 45);
            assert_eq!(name, invitation.name());
        }
        other => panic!("expected ResendTooSoon, got {other:?}"),
    }
    assert!(check_resend(&invitation, minute, at(60)).is_ok());
    let revoked = Invitation {
        state: InvitationState::Revoked,
        ..pending(10_000)
    };
    assert!(matches!(
        check_resend(&revoked, minute, at(600)),
        Err(InvitationError::NotPending { .. })
    ));
    assert!(matches!(
        check_resend(&pending(100), minute, at(600)),
        Err(InvitationError::NotPending {
            state: InvitationState::Expired,
            ..
        })
    ));
}

#[test]
fn emails_match_case_insensitively_and_never_without_a_claim() {
    assert!(email_matches("Bob@Example.com", Some("bob@example.COM")));
    assert!(!email_matches("bob@example.com", Some("rob@example.com")));
    assert!(!email_matches("bob@example.com", None));
    assert!(!email_matches("bob@example.com", Some("  ")));
}

#[test]
fn names_and_expiry_of_new_invitations() {
    assert_eq!(validate_name("  Bob ").unwrap(), "Bob");
    assert_eq!(validate_name("").unwrap(), "");
    assert!(validate_name(&"x".repeat(121)).is_err());
    assert!(validate_name(&"é".repeat(120)).is_ok());
    assert!(validate_name("Bo\nb").is_err());
    for hidden in ["Bob \u{202e}nitraM", "Bo\u{200b}b", "Bob\u{2028}Martin"] {
        assert!(validate_name(hidden).is_err(), "{hidden:?}");
    }
    assert_eq!(validate_name("Борис").unwrap(), "Борис");

    let week = Duration::days(7);
    assert_eq!(expiry_of_new(None, week, at(0)).unwrap(), at(0) + week);
    assert_eq!(expiry_of_new(Some(at(60)), week, at(0)).unwrap(), at(60));
    assert!(expiry_of_new(Some(at(0)), week, at(0)).is_err());
    assert!(expiry_of_new(Some(at(-5)), week, at(0)).is_err());
    assert!(expiry_of_new(Some(at(0) + Duration::days(30)), week, at(0)).is_ok());
    assert!(expiry_of_new(Some(at(1) + Duration::days(30)), week, at(0)).is_err());
}

#[test]
fn inviter_names_fall_back_to_email_then_user() {
    assert_eq!(
        inviter_display_name(Some("Alice"), Some("Admin"), Some("a@x.io"), "users/a"),
        "Alice Admin"
    );
    assert_eq!(
        inviter_display_name(None, Some("Admin"), None, "users/a"),
        "Admin"
    );
    assert_eq!(
        inviter_display_name(Some(" "), None, Some("a@x.io"), "users/a"),
        "a@x.io"
    );
    assert_eq!(inviter_display_name(None, None, None, "users/a"), "users/a");
}

#[test]
fn only_owner_invitations_need_owners_manage() {
    assert_eq!(
        permissions_to_manage(Some(Role::Owner)),
        [Permission::InvitationsManage, Permission::OwnersManage]
    );
    for role in [None, Some(Role::Admin), Some(Role::Employee)] {
        assert_eq!(permissions_to_manage(role), [Permission::InvitationsManage]);
    }
}

#[test]
fn stored_forms_round_trip() {
    for role in [Role::Owner, Role::Admin, Role::Employee] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    for state in [
        InvitationState::Pending,
        InvitationState::Accepted,
        InvitationState::Revoked,
        InvitationState::Expired,
    ] {
        assert_eq!(InvitationState::parse(state.as_str()), Some(state));
    }
    for state in [
        DeliveryState::Queued,
        DeliveryState::Sent,
        DeliveryState::Failed,
    ] {
        assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
    }
    assert_eq!(Role::parse("owner"), None);
}

proptest::proptest! {
    /// An accepted name is trimmed, at most 120 characters, holds nothing the platform forbids
    /// in a line, and is accepted again unchanged.
    #[test]
    fn names_are_normalised_once(raw in "\\s{0,2}\\PC{0,125}\\s{0,2}") {
        if let Ok(name) = validate_name(&raw) {
            proptest::prop_assert_eq!(name.trim(), name.as_str());
            proptest::prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
            proptest::prop_assert!(!name.chars().any(tenantry_platform::text::is_forbidden_in_line));
            proptest::prop_assert_eq!(validate_name(&name), Ok(name.clone()));
        }
    }

    /// A requested expiry is taken as is when it lies in (now, now + 30 days], refused
    /// otherwise; without one the lifetime applies.
    #[test]
    fn requested_expiries_lie_within_thirty_days(offset in -100_000_000i64..100_000_000, lifetime_hours in 1i64..10_000) {
        let now = at(0);
        let lifetime = Duration::hours(lifetime_hours);
        let requested = now + Duration::seconds(offset);
        let within = offset > 0 && Duration::seconds(offset) <= MAX_REQUESTED_LIFETIME;
        proptest::prop_assert_eq!(expiry_of_new(Some(requested), lifetime, now).is_ok(), within);
        proptest::prop_assert_eq!(expiry_of_new(None, lifetime, now), Ok(now + lifetime));
    }
}

#[test]
fn only_a_pending_invitation_can_be_declined() {
    assert!(check_decline(&pending(100), at(0)).is_ok());
    assert!(matches!(
        check_decline(&pending(100), at(100)),
        Err(InvitationError::NotPending {
            state: InvitationState::Expired,
            ..
        })
    ));
    let bob = UserId::trusted("bob".to_string());
    let declined = Invitation {
        state: InvitationState::Declined,
        decline_time: Some(at(5)),
        declined_by: Some(bob.name()),
        ..pending(100)
    };
    assert!(declined.declined_by_user(&bob));
    assert!(!declined.declined_by_user(&UserId::trusted("eve".to_string())));
    assert!(matches!(
        check_decline(&declined, at(6)),
        Err(InvitationError::NotPending {
            state: InvitationState::Declined,
            ..
        })
    ));
    let accepted = Invitation {
        state: InvitationState::Accepted,
        ..pending(100)
    };
    assert!(matches!(
        check_decline(&accepted, at(6)),
        Err(InvitationError::AcceptedByAnother(_))
    ));
    // An acceptance of a declined invitation is refused as not PENDING.
    assert!(matches!(
        check_accept(&declined, at(6)),
        Err(InvitationError::NotPending {
            state: InvitationState::Declined,
            ..
        })
    ));
}

#[test]
fn a_reminder_is_due_before_the_expiry_of_an_invitation_long_enough() {
    let day = Duration::days(1);
    assert_eq!(
        reminder_due(at(0), at(0) + day * 7, day),
        Some(at(0) + day * 6)
    );
    // Shorter than the reminder's lead: the first e-mail is recent enough.
    assert_eq!(reminder_due(at(0), at(0) + Duration::hours(20), day), None);
    assert_eq!(reminder_due(at(0), at(0) + day, day), None);
    // Reminders off.
    assert_eq!(reminder_due(at(0), at(0) + day * 7, Duration::zero()), None);
}
