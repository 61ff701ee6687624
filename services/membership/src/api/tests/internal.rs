//! The internal RPCs other services call: Authorize and GetOwnerCapacity.

use super::*;

#[tokio::test]
async fn authorize_is_internal_and_reports_roles() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Employee).await;
    let ask = |user: &str, account: &str, operator: bool| wire::AuthorizeRequest {
        subject: Some(wire::Subject {
            user: format!("users/{user}"),
            email: format!("{user}@example.com"),
            platform_operator: operator,
            ..Default::default()
        }),
        account: format!("accounts/{account}"),
        permission: wire::Permission::AccountRead as i32,
        bypass_view: false,
    };
    let refused = h
        .api
        .authorize(as_(&person("op", true), ask("pam", "acme", false)))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);

    let answer = h
        .api
        .authorize(as_(&service(), ask("pam", "acme", false)))
        .await
        .unwrap();
    assert!(answer.allowed && answer.account_exists);
    assert_eq!(answer.role, wire::Role::Unspecified as i32);
    assert_eq!(answer.partner_role, wire::Role::Employee as i32);

    let answer = h
        .api
        .authorize(as_(&service(), ask("pam", "nowhere", false)))
        .await
        .unwrap();
    assert!(!answer.allowed && !answer.account_exists);
    let answer = h
        .api
        .authorize(as_(&service(), ask("op", "nowhere", true)))
        .await
        .unwrap();
    assert!(answer.allowed && !answer.account_exists);

    let mut bad = ask("pam", "acme", false);
    bad.permission = 0;
    assert_eq!(
        code(h.api.authorize(as_(&service(), bad)).await),
        (Code::InvalidArgument, "INVALID_ARGUMENT")
    );
    // The subject landed in the directory, so AddMember can find them by e-mail.
    let by_email = wire::AddMemberRequest {
        principal: Some(wire::add_member_request::Principal::Email(
            "PAM@example.com".into(),
        )),
        ..add("solo", "x", wire::Role::Employee)
    };
    let member = h.add(&person("op", true), by_email).await.unwrap();
    assert_eq!(member.user_id, "pam");
}

/// The replica lags behind a promotion: Authorize checks a refusal against the registry, so a
/// partner's OWNER may create customers right after the operator promoted the account.
#[tokio::test]
async fn a_lagging_replica_does_not_refuse_a_fresh_partner() {
    let h = harness().await;
    h.seed("partner", "pam", wire::Role::Owner).await;
    h.stale.lock().unwrap().insert(
        "partner".into(),
        account("partner", false, None, AccountState::Active),
    );
    let ask = wire::AuthorizeRequest {
        subject: Some(wire::Subject {
            user: "users/pam".into(),
            ..Default::default()
        }),
        account: "accounts/partner".into(),
        permission: wire::Permission::CustomersCreate as i32,
        bypass_view: false,
    };
    let answer = h.api.authorize(as_(&service(), ask.clone())).await.unwrap();
    assert!(answer.allowed, "{answer:?}");
    assert!(
        answer.keepable,
        "depends only on pam's roles and the account"
    );
    let owners = wire::AuthorizeRequest {
        permission: wire::Permission::OwnersManage as i32,
        ..ask
    };
    let answer = h.api.authorize(as_(&service(), owners)).await.unwrap();
    assert!(answer.allowed, "{answer:?}");
    assert!(
        !answer.keepable,
        "OWNERS_MANAGE also depends on the other OWNERs: never kept"
    );
    // A customer the replica still believes DISABLED can be joined once the registry says ACTIVE.
    h.stale.lock().unwrap().insert(
        "acme".into(),
        account("acme", false, Some("partner"), AccountState::Disabled),
    );
    let added = h
        .api
        .add_myself(as_(
            &person("pam", false),
            wire::AddMyselfRequest {
                account: "accounts/acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(added.created);
}

/// GetOwnerCapacity answers service identities only, with the count against the one limit.
#[tokio::test]
async fn owner_capacity_is_for_services() {
    let h = harness().await;
    h.seed("solo", "olga", wire::Role::Owner).await;
    let ask = |account: &str| wire::GetOwnerCapacityRequest {
        account: account.into(),
    };
    let solo = h
        .api
        .get_owner_capacity(as_(&service(), ask("accounts/solo")))
        .await
        .unwrap();
    assert_eq!(
        (solo.owner_count, solo.max_owners, solo.has_room),
        (1, 2, true)
    );
    h.seed("solo", "otto", wire::Role::Owner).await;
    let full = h
        .api
        .get_owner_capacity(as_(&service(), ask("accounts/solo")))
        .await
        .unwrap();
    assert_eq!(
        (full.owner_count, full.max_owners, full.has_room),
        (2, 2, false)
    );
    // An account membership does not know has no OWNERs.
    let unknown = h
        .api
        .get_owner_capacity(as_(&service(), ask("accounts/nowhere")))
        .await
        .unwrap();
    assert_eq!(
        (unknown.owner_count, unknown.max_owners, unknown.has_room),
        (0, 2, true)
    );
    // People, operators included, may not ask.
    for who in [person("olga", false), person("op", true)] {
        assert_eq!(
            code(
                h.api
                    .get_owner_capacity(as_(&who, ask("accounts/solo")))
                    .await
            )
            .0,
            Code::PermissionDenied
        );
    }
    // A malformed account is INVALID_ARGUMENT naming `account`.
    for bad in ["", "solo", "accounts/NOPE"] {
        let error = h
            .api
            .get_owner_capacity(as_(&service(), ask(bad)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}");
        let fields: Vec<String> = error
            .field_violations()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["account"], "{bad:?}");
    }
}
