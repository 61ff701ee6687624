//! AddMember, AddMyself, GetMember, UpdateMember, RemoveMember, ListMembers and
//! ListMyAccounts through the handlers.

use tenantry_platform::AccountId;

use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::domain::{NewMember, Role};

#[tokio::test]
async fn add_member_follows_the_role_rules() {
    let h = harness().await;
    let op = person("op", true);
    // The operator adds the first OWNER; unknown accounts are NOT_FOUND for them only.
    h.seed("solo", "olga", wire::Role::Owner).await;
    assert_eq!(
        code(h.add(&op, add("nowhere", "x", wire::Role::Admin)).await),
        (Code::NotFound, "ACCOUNT_NOT_FOUND")
    );
    assert_eq!(
        code(
            h.add(
                &person("olga", false),
                add("nowhere", "x", wire::Role::Admin)
            )
            .await
        )
        .0,
        Code::PermissionDenied
    );
    let olga = person("olga", false);
    h.add(&olga, add("solo", "adam", wire::Role::Admin))
        .await
        .unwrap();
    let adam = person("adam", false);
    h.add(&adam, add("solo", "eve", wire::Role::Employee))
        .await
        .unwrap();
    // An ADMIN may not grant OWNER while there is one; an EMPLOYEE manages nothing.
    assert_eq!(
        code(h.add(&adam, add("solo", "x", wire::Role::Owner)).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            h.add(
                &person("eve", false),
                add("solo", "x", wire::Role::Employee)
            )
            .await
        )
        .0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(h.add(&olga, add("solo", "eve", wire::Role::Admin)).await),
        (Code::AlreadyExists, "ALREADY_MEMBER")
    );
    h.add(&olga, add("solo", "otto", wire::Role::Owner))
        .await
        .unwrap();
    assert_eq!(
        code(h.add(&olga, add("solo", "x", wire::Role::Owner)).await),
        (Code::FailedPrecondition, "OWNER_LIMIT")
    );
    // People cannot claim the invitation source; the invitation service can.
    let invited = wire::AddMemberRequest {
        source: wire::MemberSource::Invitation as i32,
        ..add("solo", "ivy", wire::Role::Employee)
    };
    assert_eq!(
        code(h.add(&olga, invited.clone()).await).0,
        Code::InvalidArgument
    );
    let member = h.add(&service(), invited).await.unwrap();
    assert_eq!(
        (member.source, member.added_by.as_str()),
        (
            crate::domain::MemberSource::Invitation,
            "services/invitation"
        )
    );
    // Unknown e-mail: NOT_FOUND, but only after the permission check.
    let by_email = wire::AddMemberRequest {
        principal: Some(wire::add_member_request::Principal::Email(
            "nobody@example.com".into(),
        )),
        ..add("solo", "x", wire::Role::Employee)
    };
    assert_eq!(
        code(h.add(&olga, by_email.clone()).await),
        (Code::NotFound, "USER_NOT_FOUND")
    );
    assert_eq!(
        code(h.add(&person("eve", false), by_email).await).0,
        Code::PermissionDenied
    );
    // Deleted accounts take no members.
    assert_eq!(
        code(h.add(&op, add("gone", "x", wire::Role::Owner)).await),
        (Code::FailedPrecondition, "ACCOUNT_DELETED")
    );
}

#[tokio::test]
async fn an_admin_of_an_ownerless_account_may_grant_owner() {
    let h = harness().await;
    h.seed("solo", "adam", wire::Role::Admin).await;
    let adam = person("adam", false);
    let first_owner = wire::AddMemberRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        ..add("solo", "olga", wire::Role::Owner)
    };
    let first = h.add(&adam, first_owner.clone()).await.unwrap();
    // The retry is answered from the request id, although ADMIN may grant no more OWNERs.
    assert_eq!(h.add(&adam, first_owner).await.unwrap(), first);
    assert_eq!(
        code(h.add(&adam, add("solo", "otto", wire::Role::Owner)).await).0,
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn request_ids_replay_the_first_result() {
    let h = harness().await;
    let op = person("op", true);
    let request = wire::AddMemberRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        ..add("solo", "olga", wire::Role::Owner)
    };
    let first = h.add(&op, request.clone()).await.unwrap();
    let again = h.add(&op, request.clone()).await.unwrap();
    assert_eq!(first, again);
    let different = wire::AddMemberRequest {
        role: wire::Role::Admin as i32,
        ..request.clone()
    };
    assert_eq!(code(h.add(&op, different).await).0, Code::InvalidArgument);
    let not_a_uuid = wire::AddMemberRequest {
        request_id: "nope".into(),
        ..request
    };
    assert_eq!(code(h.add(&op, not_a_uuid).await).0, Code::InvalidArgument);
}

#[tokio::test]
async fn add_myself_is_for_partner_members_and_idempotent() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Employee).await;
    let pam = person("pam", false);
    let me = |account: &str| wire::AddMyselfRequest {
        account: format!("accounts/{account}"),
        ..Default::default()
    };
    let first = h.api.add_myself(as_(&pam, me("acme"))).await.unwrap();
    assert!(first.created);
    let member = first.member.unwrap();
    assert_eq!(member.role, wire::Role::Admin as i32);
    assert_eq!(member.source, wire::MemberSource::SelfAssigned as i32);
    assert_eq!(
        (member.added_by.as_str(), member.email.as_str()),
        ("users/pam", "pam@Example.com")
    );
    let again = h.api.add_myself(as_(&pam, me("acme"))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.member.unwrap().etag, member.etag);

    for account in ["solo", "partner", "nowhere"] {
        assert_eq!(
            code(h.api.add_myself(as_(&pam, me(account))).await).0,
            Code::PermissionDenied,
            "{account}"
        );
    }
    assert_eq!(
        code(h.api.add_myself(as_(&person("op", true), me("acme"))).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(h.api.add_myself(as_(&pam, me("frozen"))).await),
        (Code::FailedPrecondition, "ACCOUNT_NOT_ACTIVE")
    );
}

#[tokio::test]
async fn services_neither_change_roles_nor_remove_members() {
    let h = harness().await;
    h.seed("solo", "eve", wire::Role::Employee).await;
    let name = "accounts/solo/members/eve".to_string();
    let update = wire::UpdateMemberRequest {
        member: Some(wire::Member {
            name: name.clone(),
            role: wire::Role::Admin as i32,
            ..Default::default()
        }),
        update_mask: None,
    };
    assert_eq!(
        code(h.api.update_member(as_(&service(), update)).await),
        (Code::PermissionDenied, "USER_REQUIRED")
    );
    let remove = wire::RemoveMemberRequest {
        name,
        etag: String::new(),
    };
    assert_eq!(
        code(h.api.remove_member(as_(&service(), remove)).await),
        (Code::PermissionDenied, "USER_REQUIRED")
    );
    // Eve is still an EMPLOYEE.
    let get = wire::GetMemberRequest {
        name: "accounts/solo/members/eve".into(),
    };
    let eve = h.api.get_member(as_(&service(), get)).await.unwrap();
    assert_eq!(eve.role, Role::Employee);
}

#[tokio::test]
async fn update_and_remove_protect_owners() {
    let h = harness().await;
    h.seed("solo", "olga", wire::Role::Owner).await;
    h.seed("solo", "adam", wire::Role::Admin).await;
    h.seed("solo", "eve", wire::Role::Employee).await;
    let (olga, adam, eve) = (
        person("olga", false),
        person("adam", false),
        person("eve", false),
    );
    let update = |user: &str, role: wire::Role, etag: &str| wire::UpdateMemberRequest {
        member: Some(wire::Member {
            name: format!("accounts/solo/members/{user}"),
            role: role as i32,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: None,
    };
    // ADMIN: non-OWNER changes only.
    let promoted = h
        .api
        .update_member(as_(&adam, update("eve", wire::Role::Admin, "1")))
        .await
        .unwrap();
    assert_eq!((promoted.role, promoted.version), (Role::Admin, 2));
    assert_eq!(
        code(
            h.api
                .update_member(as_(&adam, update("eve", wire::Role::Employee, "1")))
                .await
        ),
        (Code::Aborted, "ETAG_MISMATCH")
    );
    assert_eq!(
        code(
            h.api
                .update_member(as_(&adam, update("olga", wire::Role::Admin, "")))
                .await
        )
        .0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            h.api
                .update_member(as_(&olga, update("olga", wire::Role::Admin, "")))
                .await
        ),
        (Code::FailedPrecondition, "LAST_OWNER")
    );
    assert_eq!(
        code(
            h.api
                .update_member(as_(&olga, update("nobody", wire::Role::Admin, "")))
                .await
        ),
        (Code::NotFound, "MEMBER_NOT_FOUND")
    );
    let mut masked = update("eve", wire::Role::Employee, "");
    masked.update_mask = Some(prost_types::FieldMask {
        paths: vec!["email".into()],
    });
    assert_eq!(
        code(h.api.update_member(as_(&olga, masked)).await).0,
        Code::InvalidArgument
    );

    let remove = |user: &str| wire::RemoveMemberRequest {
        name: format!("accounts/solo/members/{user}"),
        etag: String::new(),
    };
    assert_eq!(
        code(h.api.remove_member(as_(&adam, remove("olga"))).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(h.api.remove_member(as_(&olga, remove("olga"))).await),
        (Code::FailedPrecondition, "LAST_OWNER")
    );
    // Anyone may leave; strangers learn nothing.
    h.api.remove_member(as_(&eve, remove("eve"))).await.unwrap();
    assert_eq!(
        code(h.api.remove_member(as_(&eve, remove("adam"))).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            h.api
                .get_member(as_(
                    &eve,
                    wire::GetMemberRequest {
                        name: "accounts/solo/members/adam".into()
                    }
                ))
                .await
        )
        .0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(h.api.remove_member(as_(&adam, remove("eve"))).await),
        (Code::NotFound, "MEMBER_NOT_FOUND")
    );
}

#[tokio::test]
async fn lists_page_and_hide_deleted_accounts() {
    let h = harness().await;
    for account in ["solo", "acme", "frozen"] {
        h.seed(account, "alice", wire::Role::Owner).await;
    }
    // A membership left in an account deleted since (the event consumer will drop it).
    let stale = NewMember {
        account_id: AccountId::trusted("gone"),
        user_id: tenantry_platform::UserId::trusted("alice"),
        role: Role::Owner,
        source: crate::domain::MemberSource::Direct,
        added_by: "users/op".into(),
        expire_time: None,
    };
    h.api
        .store
        .add_member(&stale, MAX_OWNERS, None)
        .await
        .unwrap();
    h.seed("solo", "bob", wire::Role::Employee).await;
    let alice = person("alice", false);
    let mine = h
        .api
        .list_my_accounts(as_(&alice, wire::ListMyAccountsRequest::default()))
        .await
        .unwrap();
    let ids: Vec<_> = mine
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["acme", "frozen", "solo"]);
    assert_eq!(mine.accounts[0].managed_by, "accounts/partner");
    assert_eq!(mine.accounts[0].display_name, "ACME");
    assert!(mine.next_page_token.is_empty());

    let list = |token: String, roles: Vec<i32>| wire::ListMembersRequest {
        parent: "accounts/solo".into(),
        page_size: 1,
        page_token: token,
        roles,
        email: String::new(),
    };
    let first = h
        .api
        .list_members(as_(&alice, list(String::new(), vec![])))
        .await
        .unwrap();
    assert_eq!(first.members.len(), 1);
    assert_eq!(first.members[0].email, "alice@Example.com");
    let second = h
        .api
        .list_members(as_(&alice, list(first.next_page_token.clone(), vec![])))
        .await
        .unwrap();
    assert_eq!(second.members[0].user, "users/bob");
    // A token is bound to its filters.
    let other_filter = list(first.next_page_token, vec![wire::Role::Owner as i32]);
    assert_eq!(
        code(h.api.list_members(as_(&alice, other_filter)).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            h.api
                .list_members(as_(&alice, list(String::new(), vec![0])))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            h.api
                .list_members(as_(&person("mallory", false), list(String::new(), vec![])))
                .await
        )
        .0,
        Code::PermissionDenied
    );
}

/// The invitation service hands over the invitee's e-mail and name from their token: the new
/// member is listed complete at once. Nobody else may, and a bad address is named.
#[tokio::test]
async fn an_invited_member_is_listed_with_the_profile_the_invitation_service_gave() {
    let h = harness().await;
    h.seed("solo", "olga", wire::Role::Owner).await;
    let profile = |email: &str| wire::InviteeProfile {
        email: email.into(),
        given_name: "Ivy".into(),
        family_name: "Invitee".into(),
    };
    let invited = |email: &str| wire::AddMemberRequest {
        source: wire::MemberSource::Invitation as i32,
        invitee_profile: Some(profile(email)),
        ..add("solo", "ivy", wire::Role::Employee)
    };
    let fields = |error: ApiError| -> Vec<String> {
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        error
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    };

    let from_a_person = wire::AddMemberRequest {
        source: 0,
        ..invited("ivy@example.com")
    };
    let error = h
        .add(&person("olga", false), from_a_person)
        .await
        .unwrap_err();
    assert_eq!(fields(error), ["invitee_profile"]);
    let by_email = wire::AddMemberRequest {
        principal: Some(wire::add_member_request::Principal::Email(
            "ivy@example.com".into(),
        )),
        ..invited("ivy@example.com")
    };
    let error = h.add(&service(), by_email).await.unwrap_err();
    assert_eq!(fields(error), ["invitee_profile"]);
    let error = h
        .add(&service(), invited("ivy..x@example.com"))
        .await
        .unwrap_err();
    assert_eq!(fields(error), ["invitee_profile.email"]);

    let member = h.add(&service(), invited("Ivy@Example.com")).await.unwrap();
    let expected = crate::domain::UserProfile {
        email: "Ivy@Example.com".into(),
        given_name: "Ivy".into(),
        family_name: "Invitee".into(),
    };
    assert_eq!(member.profile, expected, "answered complete");
    let listed = h
        .api
        .store
        .list_members(&AccountId::trusted("solo"), &[], None, None, 10)
        .await
        .unwrap();
    let ivy = listed
        .iter()
        .find(|member| member.user_id.as_str() == "ivy")
        .expect("listed");
    assert_eq!(ivy.profile, expected, "listed complete");
}
