//! Store tests on a fresh SQLite file each.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use tenantry_platform::db::Database;
use tenantry_platform::testing::TempDatabase;
use tenantry_proto::events::v1 as wire_events;

use super::*;
use crate::domain::UserId;
use crate::store::migrations::Migrator;

/// A migrated store on a temporary SQLite file, removed on drop.
pub(crate) struct TempStore {
    pub(crate) store: Store,
    pub(crate) database: Database,
    pub(crate) outbox: Outbox,
    temp: TempDatabase,
}

impl TempStore {
    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }
}

pub(crate) async fn temp_store() -> TempStore {
    let temp = TempDatabase::new::<Migrator>("invitation-test").await;
    let database = temp.database.clone();
    let outbox = Outbox::new();
    TempStore {
        store: Store::new(database.clone(), outbox.clone()),
        database,
        outbox,
        temp,
    }
}

/// The account `id`.
pub(crate) fn account(id: &str) -> AccountId {
    AccountId::trusted(id)
}

/// The user `id`.
pub(crate) fn user(id: &str) -> UserId {
    UserId::trusted(id)
}

pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

pub(crate) fn new_invitation(account_id: &str, email: &str, now: DateTime<Utc>) -> NewInvitation {
    NewInvitation {
        account_id: account(account_id),
        email: email.into(),
        given_name: "Bob".into(),
        family_name: "Builder".into(),
        role: Role::Admin,
        inviter: "users/alice".into(),
        inviter_display_name: "Alice Admin".into(),
        expire_time: now + Duration::days(7),
        reminder_due_time: None,
    }
}

/// The outbox as (event type, payload), oldest first.
pub(crate) async fn outbox_rows(database: &Database) -> Vec<(String, Vec<u8>)> {
    let connection = database.connection().unwrap();
    let rows = connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT event_type, payload FROM outbox ORDER BY seq",
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            (
                row.try_get::<String>("", "event_type").unwrap(),
                row.try_get::<Vec<u8>>("", "payload").unwrap(),
            )
        })
        .collect()
}

/// A stand-in for a successful AddMember answering `member`.
pub(crate) async fn add_ok(member: &str) -> Result<(String, String), InvitationError> {
    Ok((member.to_string(), member.to_string()))
}

pub(crate) async fn outbox_types(database: &Database) -> Vec<String> {
    outbox_rows(database)
        .await
        .into_iter()
        .map(|(event_type, _)| event_type)
        .collect()
}

#[tokio::test]
async fn one_pending_invitation_per_account_and_email() {
    let temp = temp_store().await;
    let store = &temp.store;
    let first = store
        .create(
            &new_invitation("globex", "Bob@Example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(first.state, InvitationState::Pending);
    assert_eq!(first.email, "Bob@Example.com", "stored as given");
    assert_eq!(first.delivery.state, DeliveryState::Queued);
    assert_eq!((first.version, first.resend_count), (1, 0));
    assert_eq!(first.last_sent_time, at(0));

    // Another case of the same address in the same account: refused.
    let again = store
        .create(
            &new_invitation("globex", "bob@EXAMPLE.com", at(1)),
            None,
            at(1),
        )
        .await;
    assert!(
        matches!(again, Err(InvitationError::AlreadyPending { .. })),
        "{again:?}"
    );
    // Another account is independent.
    store
        .create(
            &new_invitation("initech", "bob@example.com", at(1)),
            None,
            at(1),
        )
        .await
        .unwrap();
    // Once the first is no longer pending, the address can be invited again.
    store
        .revoke(&first, "users/alice", at(2))
        .await
        .unwrap()
        .expect("revoked");
    store
        .create(
            &new_invitation("globex", "bob@example.com", at(3)),
            None,
            at(3),
        )
        .await
        .unwrap();
    assert_eq!(
        outbox_types(&temp.database).await,
        [
            "invitation.created",
            "invitation.created",
            "invitation.revoked",
            "invitation.created"
        ]
    );
}

#[tokio::test]
async fn concurrent_creates_for_one_email_make_one_invitation() {
    let temp = temp_store().await;
    let store = Arc::new(temp.store.clone());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let email = if i % 2 == 0 {
                    "carol@example.com"
                } else {
                    "CAROL@example.com"
                };
                store
                    .create(&new_invitation("globex", email, at(0)), None, at(0))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(InvitationError::AlreadyPending { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
    let pending = store
        .list(
            &account("globex"),
            &[InvitationState::Pending],
            None,
            10,
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(outbox_types(&temp.database).await, ["invitation.created"]);
}

#[tokio::test]
async fn an_expired_pending_invitation_does_not_block_a_new_one() {
    let temp = temp_store().await;
    let store = &temp.store;
    let old = store
        .create(
            &new_invitation("globex", "dan@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let later = old.expire_time + Duration::seconds(1);
    // Not swept yet, but expired on read ...
    let seen = store.get(&old.invitation_id).await.unwrap().unwrap();
    assert_eq!(seen.state, InvitationState::Pending);
    assert_eq!(seen.state_at(later), InvitationState::Expired);
    // ... so a new invitation is allowed, and the old one is marked EXPIRED on the way.
    let new = store
        .create(
            &new_invitation("globex", "dan@example.com", later),
            None,
            later,
        )
        .await
        .unwrap();
    assert_ne!(new.invitation_id, old.invitation_id);
    let old = store.get(&old.invitation_id).await.unwrap().unwrap();
    assert_eq!(old.state, InvitationState::Expired);
    assert_eq!(old.version, 2);
    assert_eq!(
        outbox_types(&temp.database).await,
        [
            "invitation.created",
            "invitation.expired",
            "invitation.created"
        ]
    );
}

#[tokio::test]
async fn request_ids_are_recorded_with_the_invitation() {
    let temp = temp_store().await;
    let key = RequestKey {
        request_id: "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into(),
        caller: "users/alice".into(),
        method: "CreateInvitation".into(),
        fingerprint: "fp".into(),
    };
    let created = temp
        .store
        .create(
            &new_invitation("globex", "eve@example.com", at(0)),
            Some(&key),
            at(0),
        )
        .await
        .unwrap();
    let record = REQUEST_IDS
        .find(temp.database.connection().unwrap(), &key.request_id)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(record.key, key);
    assert_eq!(record.resource_key, created.invitation_id.as_str());
    assert_eq!(
        temp.store.replay(&key).await.unwrap(),
        Some(created.clone()),
        "a retry finds the invitation"
    );
    let reused = RequestKey {
        fingerprint: "another".into(),
        ..key.clone()
    };
    assert!(matches!(
        temp.store.replay(&reused).await,
        Err(InvitationError::RequestIdReused)
    ));
    // The same request id cannot create a second invitation.
    let again = temp
        .store
        .create(
            &new_invitation("globex", "frank@example.com", at(0)),
            Some(&key),
            at(0),
        )
        .await;
    assert!(matches!(again, Err(InvitationError::AlreadyPending { .. })));
    assert!(
        temp.store
            .list(
                &account("globex"),
                &[InvitationState::Pending],
                None,
                10,
                at(1)
            )
            .await
            .unwrap()
            .iter()
            .all(|invitation| invitation.email != "frank@example.com"),
        "the refused create left no row"
    );
}

#[tokio::test]
async fn the_sweep_expires_what_is_due() {
    let temp = temp_store().await;
    let store = &temp.store;
    let mut short = new_invitation("globex", "short@example.com", at(0));
    short.expire_time = at(60);
    let short = store.create(&short, None, at(0)).await.unwrap();
    let long = store
        .create(
            &new_invitation("globex", "long@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let accepted = store
        .create(
            &new_invitation("globex", "acc@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    store
        .accept(&accepted, &user("acc"), at(1), || add_ok("m"))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(store.expire_due(at(59), 100).await.unwrap(), 0);
    // Expired on read before the sweep: listed as EXPIRED, not PENDING.
    let pending = store
        .list(
            &account("globex"),
            &[InvitationState::Pending],
            None,
            10,
            at(61),
        )
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|i| i.email.as_str()).collect::<Vec<_>>(),
        ["long@example.com"]
    );
    let expired = store
        .list(
            &account("globex"),
            &[InvitationState::Expired],
            None,
            10,
            at(61),
        )
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].invitation_id, short.invitation_id);

    assert_eq!(store.expire_due(at(61), 100).await.unwrap(), 1);
    assert_eq!(
        store.expire_due(at(62), 100).await.unwrap(),
        0,
        "idempotent"
    );
    let short = store.get(&short.invitation_id).await.unwrap().unwrap();
    assert_eq!(short.state, InvitationState::Expired);
    let long = store.get(&long.invitation_id).await.unwrap().unwrap();
    assert_eq!(long.state, InvitationState::Pending);
    let rows = outbox_rows(&temp.database).await;
    let (event_type, payload) = rows.last().unwrap();
    assert_eq!(event_type, "invitation.expired");
    let event = wire_events::InvitationExpired::decode(payload.as_slice()).unwrap();
    assert_eq!(
        event.invitation.unwrap().state,
        tenantry_proto::invitation::v1::InvitationState::Expired as i32
    );
    // Before the sweep it was stored PENDING (though already past its expiry).
    let before = event.previous.unwrap();
    assert_eq!(
        before.state,
        tenantry_proto::invitation::v1::InvitationState::Pending as i32
    );
    assert_eq!(before.name, short.name());
    assert_eq!(before.etag, "1");
}

#[tokio::test]
async fn lists_newest_first_with_pages_and_state_filters() {
    let temp = temp_store().await;
    let store = &temp.store;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = store
            .create(
                &new_invitation("globex", &format!("p{i}@example.com"), at(i)),
                None,
                at(i),
            )
            .await
            .unwrap();
        ids.push(created.invitation_id);
    }
    let revoked = store.get(&ids[1]).await.unwrap().unwrap();
    store
        .revoke(&revoked, "users/alice", at(10))
        .await
        .unwrap()
        .unwrap();
    let first = store
        .list(
            &account("globex"),
            &[InvitationState::Pending],
            None,
            2,
            at(20),
        )
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|i| &i.invitation_id).collect::<Vec<_>>(),
        [&ids[4], &ids[3]]
    );
    let second = store
        .list(
            &account("globex"),
            &[InvitationState::Pending],
            Some(ids[3].as_str()),
            10,
            at(20),
        )
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|i| &i.invitation_id).collect::<Vec<_>>(),
        [&ids[2], &ids[0]]
    );
    let all = store
        .list(
            &account("globex"),
            &[InvitationState::Pending, InvitationState::Revoked],
            None,
            10,
            at(20),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(
        store
            .list(
                &account("initech"),
                &[InvitationState::Pending],
                None,
                10,
                at(20)
            )
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn withdrawals_by_the_system() {
    let temp = temp_store().await;
    let store = &temp.store;
    let a = store
        .create(
            &new_invitation("globex", "a@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let b = store
        .create(
            &new_invitation("globex", "b@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let other = store
        .create(
            &new_invitation("initech", "a@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let connection = temp.database.connection().unwrap();

    // member.added for A@example.com in globex closes only that invitation.
    let txn = connection.begin().await.unwrap();
    let closed = close_for_member(
        &txn,
        &temp.outbox,
        &account("globex"),
        "A@Example.com",
        at(5),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(closed, 1);
    let a = store.get(&a.invitation_id).await.unwrap().unwrap();
    assert_eq!(a.state, InvitationState::Revoked);
    assert_eq!(a.revoked_by.as_deref(), Some("services/invitation"));
    assert_eq!(
        store
            .get(&other.invitation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        InvitationState::Pending
    );

    // account.deleted withdraws the rest of globex, once.
    for expected in [1, 0] {
        let txn = connection.begin().await.unwrap();
        let withdrawn = withdraw_account(&txn, &temp.outbox, &account("globex"), at(6))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(withdrawn, expected);
    }
    assert_eq!(
        store.get(&b.invitation_id).await.unwrap().unwrap().state,
        InvitationState::Revoked
    );
    assert_eq!(
        outbox_types(&temp.database).await[3..],
        ["invitation.revoked", "invitation.revoked"]
    );
    // Each withdrawal carries the invitation as it was: PENDING, revoked by nobody.
    for (_, payload) in &outbox_rows(&temp.database).await[3..] {
        let event = wire_events::InvitationRevoked::decode(payload.as_slice()).unwrap();
        assert_eq!(event.actor, "services/invitation");
        let (before, after) = (event.previous.unwrap(), event.invitation.unwrap());
        assert_eq!(
            (before.state, after.state),
            (
                tenantry_proto::invitation::v1::InvitationState::Pending as i32,
                tenantry_proto::invitation::v1::InvitationState::Revoked as i32
            )
        );
        assert_eq!(
            (before.revoked_by.as_str(), after.revoked_by.as_str()),
            ("", "services/invitation")
        );
    }
}
