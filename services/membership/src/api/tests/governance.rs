//! The gate no grant of a gated role gets around: AddMyself gives a role, an invitation gives a
//! role, and accepting an old invitation must not undo the bounds the policy puts on access.

use super::*;
use crate::domain::requests::RequestState;

fn policy(
    account: &str,
    gated: &[wire::GatedGrant],
    max_hours: Option<i64>,
) -> wire::UpdateAccessPolicyRequest {
    wire::UpdateAccessPolicyRequest {
        policy: Some(wire::AccessPolicy {
            name: format!("accounts/{account}/accessPolicy"),
            gated_grants: gated.iter().map(|grant| *grant as i32).collect(),
            max_access_duration: max_hours.map(|hours| prost_types::Duration {
                seconds: hours * 3600,
                nanos: 0,
            }),
            ..Default::default()
        }),
    }
}

fn add_myself(account: &str, hours: Option<i64>) -> wire::AddMyselfRequest {
    wire::AddMyselfRequest {
        account: format!("accounts/{account}"),
        access_duration: hours.map(|hours| prost_types::Duration {
            seconds: hours * 3600,
            nanos: 0,
        }),
    }
}

/// The ErrorInfo metadata of an APPROVAL_REQUIRED refusal.
fn gated_by<T: std::fmt::Debug>(result: Result<T, ApiError>) -> (String, String) {
    let error = result.unwrap_err();
    assert_eq!(
        (error.code(), error.reason()),
        (Code::FailedPrecondition, "APPROVAL_REQUIRED")
    );
    let value = |key: &str| {
        error
            .metadata()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    (value("access_policy"), value("gated_grant"))
}

#[tokio::test]
async fn add_myself_is_gated_by_the_role_it_gives() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Owner).await;
    h.seed("partner", "eli", wire::Role::Employee).await;
    let pam = person("pam", false);
    h.api
        .update_access_policy(as_(
            &pam,
            policy("partner", &[wire::GatedGrant::AdminRole], None),
        ))
        .await
        .expect("policy set");
    // AddMyself gives ADMIN (the default role): gated by ADMIN_ROLE though ADD_MYSELF is not.
    assert_eq!(
        gated_by(
            h.api
                .add_myself(as_(&person("eli", false), add_myself("acme", None)))
                .await
        ),
        (
            "accounts/partner/accessPolicy".to_string(),
            "ADMIN_ROLE".to_string()
        )
    );
    // AddMyself acts as a partner member even for an operator (operators grant with AddMember,
    // which is not gated for them): gated too.
    h.seed("partner", "op2", wire::Role::Employee).await;
    let op2 = person("op2", true);
    gated_by(h.api.add_myself(as_(&op2, add_myself("acme", None))).await);
    assert!(
        h.add(&op2, add("acme", "op2", wire::Role::Admin))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_invitation_of_a_gated_role_needs_approval() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Owner).await;
    h.api
        .update_access_policy(as_(
            &person("pam", false),
            policy("partner", &[wire::GatedGrant::OwnerRole], None),
        ))
        .await
        .expect("policy set");
    let ask = |role: wire::Role| wire::CheckInviteeRequest {
        account: "accounts/acme".into(),
        email: "new@example.com".into(),
        role: role as i32,
    };
    let owner = h
        .api
        .check_invitee(as_(&service(), ask(wire::Role::Owner)))
        .await
        .unwrap();
    assert!(owner.approval_required);
    assert_eq!(
        (owner.access_policy.as_str(), owner.gated_grant.as_str()),
        ("accounts/partner/accessPolicy", "OWNER_ROLE")
    );
    let admin = h
        .api
        .check_invitee(as_(&service(), ask(wire::Role::Admin)))
        .await
        .unwrap();
    assert!(!admin.approval_required);
    assert!(admin.access_policy.is_empty());
}

#[tokio::test]
async fn an_accepted_invitation_keeps_access_bounded_by_the_policy() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Owner).await;
    h.seed("partner", "eli", wire::Role::Employee).await;
    let eli = person("eli", false);
    let timed = h
        .api
        .add_myself(as_(&eli, add_myself("acme", Some(8))))
        .await
        .unwrap()
        .member
        .unwrap();
    assert!(timed.expire_time.is_some());
    h.api
        .update_access_policy(as_(&person("pam", false), policy("partner", &[], Some(24))))
        .await
        .expect("policy set");
    // The invitation service adds the person who accepted an older EMPLOYEE invitation.
    let accepted = h
        .add(
            &service(),
            wire::AddMemberRequest {
                source: wire::MemberSource::Invitation as i32,
                ..add("acme", "eli", wire::Role::Employee)
            },
        )
        .await
        .expect("answered with the membership");
    assert_eq!(
        accepted.expire_time.map(|t| t.timestamp()),
        timed.expire_time.map(|t| t.seconds),
        "still time-bound"
    );
}

#[tokio::test]
async fn a_requester_who_left_no_longer_vouches_for_the_request() {
    let h = harness().await;
    h.seed("acme", "alice", wire::Role::Owner).await;
    h.seed("acme", "bob", wire::Role::Admin).await;
    h.seed("acme", "carol", wire::Role::Admin).await;
    let asked = h
        .api
        .create_access_request(as_(
            &person("bob", false),
            wire::CreateAccessRequestRequest {
                parent: "accounts/acme".into(),
                access_request: Some(wire::AccessRequest {
                    subject: "users/dan".into(),
                    role: wire::Role::Admin as i32,
                    reason: "night shift".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("request made");
    h.api
        .remove_member(as_(
            &person("op", true),
            wire::RemoveMemberRequest {
                name: "accounts/acme/members/bob".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("bob removed");
    let approve = wire::ApproveAccessRequestRequest {
        name: asked.name(),
        etag: String::new(),
    };
    assert_eq!(
        code(
            h.api
                .approve_access_request(as_(&person("carol", false), approve))
                .await
        ),
        (Code::FailedPrecondition, "REQUESTER_NOT_ENTITLED")
    );
}

#[tokio::test]
async fn approvals_of_people_who_lost_the_right_no_longer_count() {
    let h = harness().await;
    h.seed("acme", "alice", wire::Role::Owner).await;
    for admin in ["bob", "carol", "dave"] {
        h.seed("acme", admin, wire::Role::Admin).await;
    }
    let alice = person("alice", false);
    let mut three = policy("acme", &[wire::GatedGrant::AdminRole], None);
    three.policy.as_mut().unwrap().required_approvals = 3;
    h.api
        .update_access_policy(as_(&alice, three))
        .await
        .expect("policy set");
    let asked = h
        .api
        .create_access_request(as_(
            &alice,
            wire::CreateAccessRequestRequest {
                parent: "accounts/acme".into(),
                access_request: Some(wire::AccessRequest {
                    subject: "users/sam".into(),
                    role: wire::Role::Admin as i32,
                    reason: "audit season".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("request made");
    let approve = |who: &str| {
        h.api.approve_access_request(as_(
            &person(who, false),
            wire::ApproveAccessRequestRequest {
                name: asked.name(),
                etag: String::new(),
            },
        ))
    };
    approve("bob").await.expect("bob approves");
    h.api
        .remove_member(as_(
            &person("op", true),
            wire::RemoveMemberRequest {
                name: "accounts/acme/members/bob".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("bob removed");
    // Carol's would have been the third approval; Bob's no longer counts.
    let (after_carol, granted) = approve("carol").await.expect("carol approves");
    assert_eq!(after_carol.state, RequestState::Pending);
    assert!(granted.is_none());
    let (after_dave, granted) = approve("dave").await.expect("dave approves");
    assert_eq!(after_dave.state, RequestState::Approved);
    assert_eq!(granted.map(|m| m.role), Some(crate::domain::Role::Admin));
}

#[tokio::test]
async fn an_invitation_of_a_gated_role_is_not_accepted_after_the_gate() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Owner).await;
    h.api
        .update_access_policy(as_(
            &person("pam", false),
            policy("partner", &[wire::GatedGrant::AdminRole], None),
        ))
        .await
        .expect("policy set");
    // The invitation service adds whoever accepted an ADMIN invitation made before the gate.
    let accepted = h
        .add(
            &service(),
            wire::AddMemberRequest {
                source: wire::MemberSource::Invitation as i32,
                ..add("acme", "ivy", wire::Role::Admin)
            },
        )
        .await;
    assert_eq!(
        gated_by(accepted),
        (
            "accounts/partner/accessPolicy".to_string(),
            "ADMIN_ROLE".to_string()
        )
    );
    // An EMPLOYEE invitation is accepted as before.
    assert!(
        h.add(
            &service(),
            wire::AddMemberRequest {
                source: wire::MemberSource::Invitation as i32,
                ..add("acme", "ivy", wire::Role::Employee)
            },
        )
        .await
        .is_ok()
    );
}
