//! Every write path appends exactly its `member.*` event to the outbox in its transaction, and
//! refused or unchanged writes append nothing.

use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use tenantry_events::Outbox;
use tenantry_proto::events::v1 as pb;
use tenantry_proto::membership::v1 as wire;

use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::store::migrations::Migrator;
use tenantry_platform::testing::TempDatabase;

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

/// The outbox rows as (event type, source, payload), in insertion order.
async fn outbox(store: &Store) -> Vec<(String, String, Vec<u8>)> {
    let connection = store.connection().unwrap();
    let statement = Statement::from_string(
        connection.get_database_backend(),
        "SELECT event_type, source, payload FROM outbox ORDER BY seq",
    );
    connection
        .query_all_raw(statement)
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "event_type").unwrap(),
                row.try_get("", "source").unwrap(),
                row.try_get("", "payload").unwrap(),
            )
        })
        .collect()
}

/// The one row appended since the outbox had `before` rows.
async fn one_new_event(store: &Store, before: usize, event_type: &str) -> Vec<u8> {
    let mut rows = outbox(store).await;
    assert_eq!(rows.len(), before + 1, "exactly one new outbox row");
    let (found, source, payload) = rows.pop().unwrap();
    assert_eq!(found, event_type);
    assert_eq!(source, "/tenantry/membership");
    payload
}

fn new_member(account_id: &str, user_id: &str, role: Role) -> NewMember {
    NewMember {
        account_id: a(account_id),
        user_id: u(user_id),
        role,
        source: MemberSource::Direct,
        added_by: "users/operator".into(),
        expire_time: None,
    }
}

#[tokio::test]
async fn each_write_appends_its_event_and_refusals_append_nothing() {
    let temp = TempDatabase::new::<Migrator>("membership-events").await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    let alice = UserProfile {
        email: "alice@example.com".into(),
        given_name: "Alice".into(),
        family_name: "Liddell".into(),
    };
    store.upsert_user(&u("alice"), &alice).await.unwrap();

    // AddMember: member.added with the directory entry, by the caller.
    let added = store
        .add_member(&new_member("acme", "alice", Role::Owner), MAX_OWNERS, None)
        .await
        .unwrap();
    let event =
        pb::MemberAdded::decode(&one_new_event(&store, 0, "member.added").await[..]).unwrap();
    let member = event.member.unwrap();
    assert_eq!(member.name, "accounts/acme/members/alice");
    assert_eq!(member.role, wire::Role::Owner as i32);
    assert_eq!(
        (member.email.as_str(), member.given_name.as_str()),
        ("alice@example.com", "Alice")
    );
    assert_eq!(member.etag, "1");
    assert_eq!(event.actor, "users/operator");

    // Refused writes leave nothing: a duplicate, a stale role change, the last OWNER leaving.
    let duplicate = store
        .add_member(&new_member("acme", "alice", Role::Admin), MAX_OWNERS, None)
        .await;
    assert!(matches!(
        duplicate,
        Err(MembershipError::AlreadyMember { .. })
    ));
    let mut stale = added.clone();
    stale.version = 7;
    assert!(
        store
            .update_role(&stale, Role::Admin, MAX_OWNERS, true, "users/alice")
            .await
            .is_err()
    );
    assert!(matches!(
        store.remove_member(&added, false, "users/alice").await,
        Err(MembershipError::LastOwner(_))
    ));
    // An unchanged role writes nothing either.
    let same = store
        .update_role(&added, Role::Owner, MAX_OWNERS, false, "users/alice")
        .await
        .unwrap();
    assert_eq!(same.version, 1);
    assert_eq!(outbox(&store).await.len(), 1);

    // A third OWNER is refused by the counter, with no event.
    for user in ["bob", "carol"] {
        store
            .add_member(&new_member("acme", user, Role::Employee), MAX_OWNERS, None)
            .await
            .unwrap();
    }
    assert_eq!(outbox(&store).await.len(), 3);
    let bob = store.member(&a("acme"), &u("bob")).await.unwrap().unwrap();
    store
        .update_role(&bob, Role::Owner, MAX_OWNERS, false, "users/alice")
        .await
        .unwrap();
    let carol = store
        .member(&a("acme"), &u("carol"))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store
            .update_role(&carol, Role::Owner, MAX_OWNERS, false, "users/alice")
            .await,
        Err(MembershipError::OwnerLimit(_))
    ));

    // UpdateMember: member.updated with the role before and after.
    let event =
        pb::MemberUpdated::decode(&one_new_event(&store, 3, "member.updated").await[..]).unwrap();
    let member = event.member.unwrap();
    assert_eq!(member.name, "accounts/acme/members/bob");
    assert_eq!(member.role, wire::Role::Owner as i32);
    assert_eq!(member.etag, "2");
    assert_eq!(event.previous_role, wire::Role::Employee as i32);
    assert_eq!(event.actor, "users/alice");

    // RemoveMember: member.removed with the membership as it was.
    store
        .remove_member(&carol, true, "users/carol")
        .await
        .unwrap();
    let event =
        pb::MemberRemoved::decode(&one_new_event(&store, 4, "member.removed").await[..]).unwrap();
    let member = event.member.unwrap();
    assert_eq!(member.name, "accounts/acme/members/carol");
    assert_eq!(member.role, wire::Role::Employee as i32);
    assert_eq!(event.actor, "users/carol");
    // Removing it again is NOT_FOUND, with no event.
    assert!(matches!(
        store.remove_member(&carol, true, "users/carol").await,
        Err(MembershipError::MemberNotFound { .. })
    ));
    assert_eq!(outbox(&store).await.len(), 5);
}

#[tokio::test]
async fn add_myself_publishes_only_when_it_creates() {
    let temp = TempDatabase::new::<Migrator>("membership-events").await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    let mut new = new_member("customer", "pat", Role::Admin);
    new.source = MemberSource::SelfAssigned;
    new.added_by = "users/pat".into();
    let (_, created) = store.add_myself(&new).await.unwrap();
    assert!(created);
    let event =
        pb::MemberAdded::decode(&one_new_event(&store, 0, "member.added").await[..]).unwrap();
    let member = event.member.unwrap();
    assert_eq!(member.source, wire::MemberSource::SelfAssigned as i32);
    assert_eq!(event.actor, "users/pat");

    let (_, created) = store.add_myself(&new).await.unwrap();
    assert!(!created);
    assert_eq!(
        outbox(&store).await.len(),
        1,
        "no event when already a member"
    );
}
