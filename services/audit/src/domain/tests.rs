use prost::Message;
use tenantry_proto::invitation::v1::{Invitation, InvitationState};
use tenantry_proto::membership::v1::{Member, Role};
use tenantry_proto::registry::v1::{Account, AccountState};

use super::*;

fn account(display_name: &str, state: AccountState) -> Account {
    Account {
        name: "accounts/acme".into(),
        account_id: "acme".into(),
        display_name: display_name.into(),
        managed_by: "accounts/partner".into(),
        state: state as i32,
        ..Default::default()
    }
}

#[test]
fn a_rename_records_the_old_and_the_new_name_only() {
    let payload = pb::AccountUpdated {
        account: Some(account("Acme Corp", AccountState::Active)),
        previous: Some(account("Acme", AccountState::Active)),
        actor: "users/u-1".into(),
        provenance: Some(Provenance {
            actor_kind: ActorKind::Person as i32,
            actor_role: "PARTNER_ADMIN".into(),
            request_id: "r-1".into(),
            ..Default::default()
        }),
    };
    let change = change_of(EventType::AccountUpdated, &payload.encode_to_vec()).unwrap();
    assert_eq!(change.account_id, "acme");
    assert_eq!(change.managed_by.as_deref(), Some("partner"));
    assert_eq!(change.resource, "accounts/acme");
    assert_eq!(change.actor, "users/u-1");
    assert_eq!(
        Value::Object(change.before),
        serde_json::json!({"display_name": "Acme"})
    );
    assert_eq!(
        Value::Object(change.after),
        serde_json::json!({"display_name": "Acme Corp"})
    );
    assert_eq!(change.provenance.actor_role, "PARTNER_ADMIN");
}

#[test]
fn creations_record_every_field_after_and_removals_every_field_before() {
    let created = pb::AccountCreated {
        account: Some(account("Acme", AccountState::Active)),
        actor: "users/op".into(),
        provenance: None,
    };
    let change = change_of(EventType::AccountCreated, &created.encode_to_vec()).unwrap();
    assert!(change.before.is_empty());
    assert_eq!(change.after["state"], "ACTIVE");
    let member = Member {
        name: "accounts/acme/members/u-2".into(),
        user: "users/u-2".into(),
        role: Role::Admin as i32,
        ..Default::default()
    };
    let removed = pb::MemberRemoved {
        member: Some(member.clone()),
        actor: "users/u-1".into(),
        provenance: None,
    };
    let change = change_of(EventType::MemberRemoved, &removed.encode_to_vec()).unwrap();
    assert_eq!(change.resource, "accounts/acme/members/u-2");
    assert_eq!(change.before["role"], "ADMIN");
    assert!(change.after.is_empty());
    let updated = pb::MemberUpdated {
        member: Some(Member {
            role: Role::Owner as i32,
            ..member
        }),
        previous_role: Role::Admin as i32,
        actor: "users/u-1".into(),
        previous_expire_time: None,
        provenance: None,
    };
    let change = change_of(EventType::MemberUpdated, &updated.encode_to_vec()).unwrap();
    assert_eq!(
        Value::Object(change.before),
        serde_json::json!({"role": "ADMIN"})
    );
    assert_eq!(
        Value::Object(change.after),
        serde_json::json!({"role": "OWNER"})
    );
}

/// 2025-01-02T03:04:05Z plus `days`.
fn at(days: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_735_787_045 + days * 86_400,
        nanos: 0,
    }
}

#[test]
fn an_expired_membership_is_recorded_as_a_removal_by_the_sweep() {
    let member = Member {
        name: "accounts/acme/members/u-2".into(),
        user: "users/u-2".into(),
        role: Role::Admin as i32,
        source: tenantry_proto::membership::v1::MemberSource::SelfAssigned as i32,
        expire_time: Some(at(0)),
        ..Default::default()
    };
    let expired = pb::MemberExpired {
        member: Some(member.clone()),
        actor: "services/membership".into(),
        provenance: Some(Provenance {
            actor_kind: ActorKind::Service as i32,
            ..Default::default()
        }),
    };
    let change = change_of(EventType::MemberExpired, &expired.encode_to_vec()).unwrap();
    assert_eq!(change.account_id, "acme");
    assert_eq!(change.managed_by, None);
    assert_eq!(change.resource, "accounts/acme/members/u-2");
    assert_eq!(change.actor, "services/membership");
    assert_eq!(
        Value::Object(change.before.clone()),
        serde_json::json!({"user": "users/u-2", "role": "ADMIN", "source": "SELF_ASSIGNED",
                           "expire_time": "2025-01-02T03:04:05.000000Z"})
    );
    assert!(change.after.is_empty());
    // Exactly what a removal of that membership records, but for who and the event type.
    let removed = pb::MemberRemoved {
        member: Some(member),
        actor: "users/u-1".into(),
        provenance: None,
    };
    let removal = change_of(EventType::MemberRemoved, &removed.encode_to_vec()).unwrap();
    assert_eq!(
        (removal.before, removal.after),
        (change.before, change.after)
    );
    assert!(matches!(
        change_of(
            EventType::MemberExpired,
            &pb::MemberExpired::default().encode_to_vec()
        ),
        Err(AuditError::Missing("member"))
    ));
}

#[test]
fn an_extension_records_the_expiry_before_and_after_only() {
    let member = |expire_time: Option<prost_types::Timestamp>| Member {
        name: "accounts/acme/members/u-2".into(),
        user: "users/u-2".into(),
        role: Role::Employee as i32,
        expire_time,
        ..Default::default()
    };
    let extended = pb::MemberUpdated {
        member: Some(member(Some(at(30)))),
        previous_role: Role::Employee as i32,
        actor: "users/u-1".into(),
        previous_expire_time: Some(at(7)),
        provenance: None,
    };
    let change = change_of(EventType::MemberUpdated, &extended.encode_to_vec()).unwrap();
    assert_eq!(change.resource, "accounts/acme/members/u-2");
    assert_eq!(change.actor, "users/u-1");
    assert_eq!(
        Value::Object(change.before),
        serde_json::json!({"expire_time": "2025-01-09T03:04:05.000000Z"})
    );
    assert_eq!(
        Value::Object(change.after),
        serde_json::json!({"expire_time": "2025-02-01T03:04:05.000000Z"})
    );
    // A role change of a time-bound member leaves its expiry out of the diff.
    let promoted = pb::MemberUpdated {
        member: Some(Member {
            role: Role::Admin as i32,
            ..member(Some(at(7)))
        }),
        previous_role: Role::Employee as i32,
        actor: "users/u-1".into(),
        previous_expire_time: Some(at(7)),
        provenance: None,
    };
    let change = change_of(EventType::MemberUpdated, &promoted.encode_to_vec()).unwrap();
    assert_eq!(
        (Value::Object(change.before), Value::Object(change.after)),
        (
            serde_json::json!({"role": "EMPLOYEE"}),
            serde_json::json!({"role": "ADMIN"})
        )
    );
    // An unset side reads "", as for invitations and messages; a cleared expiry is not lost.
    for (previous, now, before, after) in [
        (None, Some(at(7)), "", "2025-01-09T03:04:05.000000Z"),
        (Some(at(7)), None, "2025-01-09T03:04:05.000000Z", ""),
    ] {
        let updated = pb::MemberUpdated {
            member: Some(member(now)),
            previous_role: Role::Employee as i32,
            actor: "users/u-1".into(),
            previous_expire_time: previous,
            provenance: None,
        };
        let change = change_of(EventType::MemberUpdated, &updated.encode_to_vec()).unwrap();
        assert_eq!(
            (Value::Object(change.before), Value::Object(change.after)),
            (
                serde_json::json!({ "expire_time": before }),
                serde_json::json!({ "expire_time": after })
            )
        );
    }
}

#[test]
fn a_time_bound_membership_is_added_with_its_expiry_and_one_without_as_before() {
    let added = |expire_time: Option<prost_types::Timestamp>| pb::MemberAdded {
        member: Some(Member {
            name: "accounts/acme/members/u-2".into(),
            user: "users/u-2".into(),
            role: Role::Employee as i32,
            source: tenantry_proto::membership::v1::MemberSource::Direct as i32,
            expire_time,
            ..Default::default()
        }),
        actor: "users/u-1".into(),
        provenance: None,
    };
    let change = change_of(EventType::MemberAdded, &added(Some(at(0))).encode_to_vec()).unwrap();
    assert_eq!(change.after["expire_time"], "2025-01-02T03:04:05.000000Z");
    let change = change_of(EventType::MemberAdded, &added(None).encode_to_vec()).unwrap();
    assert_eq!(
        Value::Object(change.after),
        serde_json::json!({"user": "users/u-2", "role": "EMPLOYEE", "source": "DIRECT"})
    );
}

#[test]
fn an_expired_invitation_is_the_invitation_service_s_own_change() {
    let invitation = |state: InvitationState| Invitation {
        name: "accounts/acme/invitations/0193a000-0000-7000-8000-000000000001".into(),
        email: "a@example.com".into(),
        state: state as i32,
        ..Default::default()
    };
    let expired = pb::InvitationExpired {
        invitation: Some(invitation(InvitationState::Expired)),
        previous: Some(invitation(InvitationState::Pending)),
        provenance: None,
    };
    let change = change_of(EventType::InvitationExpired, &expired.encode_to_vec()).unwrap();
    assert_eq!(change.actor, "services/invitation");
    assert_eq!(
        Value::Object(change.before),
        serde_json::json!({"state": "PENDING"})
    );
    assert_eq!(
        Value::Object(change.after),
        serde_json::json!({"state": "EXPIRED"})
    );
}

#[test]
fn unreadable_or_incomplete_events_are_refused_not_recorded_half() {
    assert!(matches!(
        change_of(EventType::AccountUpdated, &[0xff, 0xff]),
        Err(AuditError::Undecodable(_))
    ));
    let empty = pb::MemberAdded::default().encode_to_vec();
    assert!(matches!(
        change_of(EventType::MemberAdded, &empty),
        Err(AuditError::Missing("member"))
    ));
    let outside = pb::MessageExpired {
        message: "users/u-1".into(),
        ..Default::default()
    };
    assert!(change_of(EventType::MessageExpired, &outside.encode_to_vec()).is_err());
    assert!(matches!(
        change_of(EventType::InboxChanged, &[]),
        Err(AuditError::NotAudited("inbox.changed"))
    ));
}
