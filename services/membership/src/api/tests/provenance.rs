//! Membership decides access to its own RPCs itself, so each change records the role that let
//! its caller make it: in the call's context, and from there in its event's `provenance`.

use std::sync::Arc;

use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use tenantry_platform::call_context::{self, ACTOR_ROLE_HEADER, CallContext, REQUEST_ID_HEADER};
use tenantry_proto::events::v1 as events;
use tonic::codegen::http::HeaderMap;

use super::*;

/// A call from `principal` with `headers`.
fn call_with(principal: &Principal, headers: &[(&'static str, &str)]) -> Arc<CallContext> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().unwrap());
    }
    Arc::new(CallContext::of_call(&map, principal))
}

fn call(principal: &Principal) -> Arc<CallContext> {
    call_with(principal, &[])
}

/// The outbox rows as (event type, payload), oldest first.
async fn outbox(h: &Harness) -> Vec<(String, Vec<u8>)> {
    let connection = h.temp.database.connection().unwrap();
    connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT event_type, payload FROM outbox ORDER BY seq",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "event_type").unwrap(),
                row.try_get("", "payload").unwrap(),
            )
        })
        .collect()
}

/// The provenance of the newest event, which must be of `event_type`.
async fn last_provenance(h: &Harness, event_type: &str) -> events::Provenance {
    let rows = outbox(h).await;
    let (found, payload) = rows.last().expect("an event");
    assert_eq!(found, event_type);
    let provenance = match event_type {
        "member.added" => {
            events::MemberAdded::decode(payload.as_slice())
                .unwrap()
                .provenance
        }
        "member.updated" => {
            events::MemberUpdated::decode(payload.as_slice())
                .unwrap()
                .provenance
        }
        "member.removed" => {
            events::MemberRemoved::decode(payload.as_slice())
                .unwrap()
                .provenance
        }
        other => panic!("not a member event: {other}"),
    };
    provenance.expect("every event has its provenance")
}

fn update(account: &str, user: &str, role: wire::Role) -> wire::UpdateMemberRequest {
    wire::UpdateMemberRequest {
        member: Some(wire::Member {
            name: format!("accounts/{account}/members/{user}"),
            role: role as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn remove(account: &str, user: &str) -> wire::RemoveMemberRequest {
    wire::RemoveMemberRequest {
        name: format!("accounts/{account}/members/{user}"),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_change_records_the_role_that_let_its_caller_make_it() {
    let h = harness().await;
    let (op, olga, adam, erin) = (
        person("op", true),
        person("olga", false),
        person("adam", false),
        person("erin", false),
    );

    // An operator with no membership: OPERATOR.
    let context = call_with(&op, &[(REQUEST_ID_HEADER, "req-1")]);
    call_context::scope(
        context.clone(),
        h.add(&op, add("solo", "olga", wire::Role::Owner)),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("OPERATOR"));
    let provenance = last_provenance(&h, "member.added").await;
    assert_eq!(
        (
            provenance.actor_kind,
            provenance.actor_role.as_str(),
            provenance.request_id.as_str(),
            provenance.via.as_str()
        ),
        (events::ActorKind::Person as i32, "OPERATOR", "req-1", "")
    );

    // The account's OWNER: OWNER.
    let context = call(&olga);
    call_context::scope(
        context.clone(),
        h.add(&olga, add("solo", "adam", wire::Role::Admin)),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("OWNER"));
    assert_eq!(
        last_provenance(&h, "member.added").await.actor_role,
        "OWNER"
    );

    // An ADMIN changing a role: ADMIN.
    h.seed("solo", "erin", wire::Role::Employee).await;
    let context = call(&adam);
    call_context::scope(
        context.clone(),
        h.api
            .update_member(as_(&adam, update("solo", "erin", wire::Role::Admin))),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("ADMIN"));
    assert_eq!(
        last_provenance(&h, "member.updated").await.actor_role,
        "ADMIN"
    );

    // A member leaving: their own role.
    let context = call(&erin);
    call_context::scope(
        context.clone(),
        h.api.remove_member(as_(&erin, remove("solo", "erin"))),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("ADMIN"));
    assert_eq!(
        last_provenance(&h, "member.removed").await.actor_role,
        "ADMIN"
    );

    // An OWNER removing someone else: OWNER.
    let context = call(&olga);
    call_context::scope(
        context.clone(),
        h.api.remove_member(as_(&olga, remove("solo", "adam"))),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("OWNER"));

    // A member of the managing partner joining a customer: PARTNER_EMPLOYEE.
    h.seed("partner", "pam", wire::Role::Employee).await;
    let pam = person("pam", false);
    let context = call(&pam);
    call_context::scope(
        context.clone(),
        h.api.add_myself(as_(
            &pam,
            wire::AddMyselfRequest {
                account: "accounts/acme".into(),
                ..Default::default()
            },
        )),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("PARTNER_EMPLOYEE"));
    assert_eq!(
        last_provenance(&h, "member.added").await.actor_role,
        "PARTNER_EMPLOYEE"
    );
}

#[tokio::test]
async fn the_role_recorded_is_the_one_the_change_needed() {
    let h = harness().await;
    // Vera is an ADMIN of `solo` and an operator; `solo` has an OWNER, so her ADMIN role lets
    // her add members but not grant OWNER: that takes the operator role.
    h.seed("solo", "olga", wire::Role::Owner).await;
    h.seed("solo", "vera", wire::Role::Admin).await;
    let vera = person("vera", true);
    let context = call(&vera);
    call_context::scope(
        context.clone(),
        h.add(&vera, add("solo", "ed", wire::Role::Employee)),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("ADMIN"));
    let context = call(&vera);
    call_context::scope(
        context.clone(),
        h.add(&vera, add("solo", "otto", wire::Role::Owner)),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("OPERATOR"));
    assert_eq!(
        last_provenance(&h, "member.added").await.actor_role,
        "OPERATOR"
    );

    // A refused change records nothing.
    let ed = person("ed", false);
    let context = call(&ed);
    let refused = call_context::scope(
        context.clone(),
        h.api.remove_member(as_(&ed, remove("solo", "olga"))),
    )
    .await;
    assert_eq!(code(refused).0, Code::PermissionDenied);
    assert_eq!(context.role(), None);
}

#[tokio::test]
async fn a_service_records_nothing_and_its_persons_role_comes_with_its_call() {
    let h = harness().await;
    // The invitation service adding the person who accepted: the role it forwarded stands.
    let context = call_with(
        &service(),
        &[(ACTOR_ROLE_HEADER, "INVITEE"), (REQUEST_ID_HEADER, "req-7")],
    );
    call_context::scope(
        context.clone(),
        h.add(
            &service(),
            wire::AddMemberRequest {
                source: wire::MemberSource::Invitation as i32,
                ..add("solo", "ivy", wire::Role::Employee)
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(context.role().as_deref(), Some("INVITEE"));
    let provenance = last_provenance(&h, "member.added").await;
    assert_eq!(
        (
            provenance.actor_kind,
            provenance.via.as_str(),
            provenance.actor_role.as_str(),
            provenance.request_id.as_str()
        ),
        (
            events::ActorKind::ServiceForPerson as i32,
            "services/invitation",
            "INVITEE",
            "req-7"
        )
    );

    // On its own (no person behind the call): nothing recorded, SERVICE in the event.
    let context = call(&service());
    call_context::scope(
        context.clone(),
        h.add(&service(), add("solo", "sam", wire::Role::Employee)),
    )
    .await
    .unwrap();
    assert_eq!(context.role(), None);
    let provenance = last_provenance(&h, "member.added").await;
    assert_eq!(
        (provenance.actor_kind, provenance.actor_role.as_str()),
        (events::ActorKind::Service as i32, "SERVICE")
    );
}
