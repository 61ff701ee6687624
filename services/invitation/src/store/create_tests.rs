//! CreateInvitation's store on PostgreSQL, where a create without a request id is one statement
//! (the invitation and its event, [`Outbox::write_one`]) and a conflict falls back to the
//! transaction that expires a stale invitation or says AlreadyPending.

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use tenantry_platform::testing::TempPostgres;
use tenantry_proto::events::v1 as wire_events;

use super::*;
use crate::store::migrations::Migrator;
use crate::store::tests::{new_invitation, outbox_rows, outbox_types};

async fn postgres_store(purpose: &str) -> Option<(TempPostgres, Database, Store)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database.connect_and_migrate::<Migrator>().await.unwrap();
    let store = Store::new(database.clone(), Outbox::new());
    Some((temp, database, store))
}

/// A time with nanoseconds, which neither database keeps.
fn with_nanos(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 123_456_789).unwrap()
}

#[tokio::test]
async fn a_create_is_answered_announced_and_stored_alike_on_postgres() {
    let Some((_temp, database, store)) = postgres_store("invitation_create").await else {
        return;
    };
    let now = with_nanos(0);
    let mut new = new_invitation("acme", "Bob@Example.com", now);
    new.expire_time = with_nanos(3_600);
    let created = store.create(&new, None, now).await.unwrap();
    let stored = load(database.connection().unwrap(), &created.invitation_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored, created, "answered as stored");
    assert_eq!(created.expire_time.timestamp_subsec_nanos(), 123_456_000);

    let rows = outbox_rows(&database).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "invitation.created");
    let announced = wire_events::InvitationCreated::decode(rows[0].1.as_slice())
        .unwrap()
        .invitation
        .expect("the invitation");
    assert_eq!(announced.name, created.name());
    assert_eq!(
        announced.expire_time,
        Some(tenantry_platform::time::to_timestamp(stored.expire_time))
    );

    // The same e-mail again (any case): refused, nothing written.
    let again = store
        .create(&new_invitation("acme", "bob@example.com", now), None, now)
        .await;
    assert!(
        matches!(again, Err(InvitationError::AlreadyPending { .. })),
        "{again:?}"
    );
    assert_eq!(outbox_types(&database).await, ["invitation.created"]);
}

#[tokio::test]
async fn a_create_expires_a_stale_pending_invitation_first_on_postgres() {
    let Some((_temp, database, store)) = postgres_store("invitation_create").await else {
        return;
    };
    let start = with_nanos(0);
    let mut first = new_invitation("acme", "bob@example.com", start);
    first.expire_time = start + Duration::seconds(10);
    let first = store.create(&first, None, start).await.unwrap();

    // Past the first one's expiry, still PENDING in its row: the one-statement insert
    // conflicts, and the transaction expires it, then creates.
    let later = start + Duration::seconds(20);
    let second = store
        .create(
            &new_invitation("acme", "bob@example.com", later),
            None,
            later,
        )
        .await
        .unwrap();
    let connection = database.connection().unwrap();
    let first = load(connection, &first.invitation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.state, InvitationState::Expired);
    assert_eq!(
        load(connection, &second.invitation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        InvitationState::Pending
    );
    assert_eq!(
        outbox_types(&database).await,
        [
            "invitation.created",
            "invitation.expired",
            "invitation.created"
        ]
    );
}
