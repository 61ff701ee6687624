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

/// The types each group handles are the ones the service declares it consumes.
#[test]
fn the_groups_bind_what_the_service_consumes() {
    let mut bound: Vec<_> = [MAILER_TYPES, ACCOUNT_EVENT_TYPES, MEMBER_EVENT_TYPES].concat();
    bound.sort();
    let mut consumes = crate::CONSUMES.to_vec();
    consumes.sort();
    assert_eq!(bound, consumes);
}
