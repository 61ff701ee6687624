//! The account and member event handlers: dispatch on the declared event type.

use sea_orm::TransactionTrait;
use tenantry_events::{Event, Handler, HandlerError};
use tenantry_proto::events::v1 as events;

use super::*;
use crate::store::tests::temp_store;

/// A type a handler does not handle — another service's, or a misspelt one — is refused as
/// unknown (the runtime counts and logs it), never acknowledged as handled.
#[tokio::test]
async fn unknown_types_are_refused() {
    let temp = temp_store().await;
    let connection = temp.database.connection().unwrap();
    let handlers: [(Box<dyn Handler>, &str); 2] = [
        (
            Box::new(AccountEvents::new(temp.outbox.clone())),
            "member.added",
        ),
        (
            Box::new(MemberEvents::new(temp.outbox.clone())),
            "account.deleted",
        ),
    ];
    for (handler, other) in handlers {
        for event_type in [
            other,
            "invitation.created",
            "account.delete",
            "member.added.v2",
        ] {
            let event = Event::new(event_type, "/test", &events::AccountDeleted::default());
            let txn = connection.begin().await.unwrap();
            let result = handler.handle(&txn, &event).await;
            assert!(
                matches!(&result, Err(HandlerError::UnknownType(seen)) if seen == event_type),
                "{event_type}: {result:?}"
            );
        }
    }
}

/// A member added for good closes their pending invitation to the account; time-bound access
/// (AddMyself for a while) does not: the invitation stays to make them a member for good.
#[tokio::test]
async fn only_a_permanent_member_closes_the_pending_invitation() {
    use crate::store::tests::{at, new_invitation};
    let temp = temp_store().await;
    let invitation = temp
        .store
        .create(
            &new_invitation("globex", "pat@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let connection = temp.database.connection().unwrap();
    let handler = MemberEvents::new(temp.outbox.clone());
    let added = |expire_time: Option<prost_types::Timestamp>| {
        Event::of(
            "/tenantry/membership",
            &events::MemberAdded {
                member: Some(tenantry_proto::membership::v1::Member {
                    name: "accounts/globex/members/pat".into(),
                    user: "users/pat".into(),
                    email: "Pat@Example.com".into(),
                    expire_time,
                    ..Default::default()
                }),
                actor: "users/pat".into(),
                provenance: None,
            },
        )
    };
    let state = || async {
        temp.store
            .get(&invitation.invitation_id)
            .await
            .unwrap()
            .unwrap()
            .state
    };
    let time_bound = added(Some(tenantry_platform::time::to_timestamp(at(3600))));
    let txn = connection.begin().await.unwrap();
    handler.handle(&txn, &time_bound).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(state().await, crate::domain::InvitationState::Pending);

    let txn = connection.begin().await.unwrap();
    handler.handle(&txn, &added(None)).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(state().await, crate::domain::InvitationState::Revoked);
}

/// The types each group handles are the ones the service declares it consumes.
#[test]
fn the_groups_bind_what_the_service_consumes() {
    let mut bound: Vec<_> = [MAILER_TYPES, ACCOUNT_EVENT_TYPES, MEMBER_EVENT_TYPES].concat();
    bound.sort();
    let mut consumes = crate::CONSUMES.to_vec();
    consumes.sort();
    assert_eq!(bound, consumes);
}
