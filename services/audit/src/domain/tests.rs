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
