//! Store tests on a fresh SQLite file each.

use tenantry_platform::testing::TempDatabase;

use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::store::migrations::Migrator;

/// A migrated store on a temporary SQLite file, removed on drop.
struct TempStore {
    store: Store,
    _temp: TempDatabase,
}

async fn temp_store() -> TempStore {
    let temp = TempDatabase::new::<Migrator>("membership-store").await;
    TempStore {
        store: Store::new(temp.database.clone(), tenantry_events::Outbox::new()),
        _temp: temp,
    }
}

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

/// Who changes roles and removes members in these tests.
const ACTOR: &str = "users/admin";

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

async fn counts_of(store: &Store, account_id: &str) -> (i64, i64) {
    let row = counts::Entity::find_by_id(account_id.to_string())
        .one(store.connection().unwrap())
        .await
        .unwrap()
        .expect("counter row");
    (row.owners, row.members)
}

#[tokio::test]
async fn a_third_owner_is_refused_by_the_counter() {
    let temp = temp_store().await;
    let store = &temp.store;
    for user in ["o1", "o2"] {
        store
            .add_member(&new_member("acme", user, Role::Owner), MAX_OWNERS, None)
            .await
            .unwrap();
    }
    let third = store
        .add_member(&new_member("acme", "o3", Role::Owner), MAX_OWNERS, None)
        .await;
    assert!(
        matches!(third, Err(MembershipError::OwnerLimit(_))),
        "{third:?}"
    );
    // The refused grant left no member row behind (one transaction).
    assert!(store.member(&a("acme"), &u("o3")).await.unwrap().is_none());
    assert_eq!(counts_of(store, "acme").await, (2, 2));

    // Promoting an EMPLOYEE hits the same limit, and the role stays.
    let employee = store
        .add_member(&new_member("acme", "e1", Role::Employee), MAX_OWNERS, None)
        .await
        .unwrap();
    let promoted = store
        .update_role(&employee, Role::Owner, MAX_OWNERS, false, ACTOR)
        .await;
    assert!(matches!(promoted, Err(MembershipError::OwnerLimit(_))));
    let employee = store.member(&a("acme"), &u("e1")).await.unwrap().unwrap();
    assert_eq!((employee.role, employee.version), (Role::Employee, 1));
    assert_eq!(counts_of(store, "acme").await, (2, 3));
}

#[tokio::test]
async fn concurrent_owner_grants_let_exactly_one_win() {
    let temp = temp_store().await;
    temp.store
        .add_member(&new_member("acme", "first", Role::Owner), MAX_OWNERS, None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = temp.store.clone();
            tokio::spawn(async move {
                store
                    .add_member(
                        &new_member("acme", &format!("u{i}"), Role::Owner),
                        MAX_OWNERS,
                        None,
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(member) => {
                assert_eq!(member.role, Role::Owner);
                won += 1;
            }
            Err(MembershipError::OwnerLimit(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(counts_of(&temp.store, "acme").await, (2, 2));
}

#[tokio::test]
async fn an_admin_grants_owner_only_while_there_is_none() {
    let temp = temp_store().await;
    let store = &temp.store;
    // Ceiling 1 = "while the account has no OWNER": the first grant passes…
    store
        .add_member(&new_member("acme", "o1", Role::Owner), 1, None)
        .await
        .unwrap();
    // …the second is refused as a permission problem, not as the limit.
    let second = store
        .add_member(&new_member("acme", "o2", Role::Owner), 1, None)
        .await;
    assert!(
        matches!(second, Err(MembershipError::PermissionDenied)),
        "{second:?}"
    );
    assert!(store.member(&a("acme"), &u("o2")).await.unwrap().is_none());
}

#[tokio::test]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let temp = temp_store().await;
    let store = &temp.store;
    let owner = store
        .add_member(&new_member("acme", "o1", Role::Owner), MAX_OWNERS, None)
        .await
        .unwrap();
    let removed = store.remove_member(&owner, false, ACTOR).await;
    assert!(
        matches!(removed, Err(MembershipError::LastOwner(_))),
        "{removed:?}"
    );
    let demoted = store
        .update_role(&owner, Role::Admin, MAX_OWNERS, false, ACTOR)
        .await;
    assert!(
        matches!(demoted, Err(MembershipError::LastOwner(_))),
        "{demoted:?}"
    );
    // Both refusals rolled back: the row and the counters are untouched.
    let still = store.member(&a("acme"), &u("o1")).await.unwrap().unwrap();
    assert_eq!((still.role, still.version), (Role::Owner, 1));
    assert_eq!(counts_of(store, "acme").await, (1, 1));

    // With a second OWNER, the first may step down and then leave.
    store
        .add_member(&new_member("acme", "o2", Role::Owner), MAX_OWNERS, None)
        .await
        .unwrap();
    let demoted = store
        .update_role(&still, Role::Admin, MAX_OWNERS, false, ACTOR)
        .await
        .unwrap();
    assert_eq!((demoted.role, demoted.version), (Role::Admin, 2));
    assert_eq!(counts_of(store, "acme").await, (1, 2));
    store.remove_member(&demoted, true, ACTOR).await.unwrap();
    assert_eq!(counts_of(store, "acme").await, (1, 1));
    let o2 = store.member(&a("acme"), &u("o2")).await.unwrap().unwrap();
    assert!(matches!(
        store.remove_member(&o2, false, ACTOR).await,
        Err(MembershipError::LastOwner(_))
    ));
}

#[tokio::test]
async fn conditional_writes_refuse_stale_versions() {
    let temp = temp_store().await;
    let store = &temp.store;
    let read = store
        .add_member(&new_member("acme", "u", Role::Employee), MAX_OWNERS, None)
        .await
        .unwrap();
    store
        .update_role(&read, Role::Admin, MAX_OWNERS, false, ACTOR)
        .await
        .unwrap();
    // `read` is now stale.
    assert!(matches!(
        store
            .update_role(&read, Role::Owner, MAX_OWNERS, true, ACTOR)
            .await,
        Err(MembershipError::StaleEtag(_))
    ));
    assert!(matches!(
        store.remove_member(&read, false, ACTOR).await,
        Err(MembershipError::ConcurrentChange)
    ));
    let current = store.member(&a("acme"), &u("u")).await.unwrap().unwrap();
    assert_eq!((current.role, current.version), (Role::Admin, 2));
    store.remove_member(&current, true, ACTOR).await.unwrap();
    assert!(matches!(
        store.remove_member(&current, true, ACTOR).await,
        Err(MembershipError::MemberNotFound { .. })
    ));
}

#[tokio::test]
async fn adding_twice_is_already_member_and_request_ids_are_recorded() {
    let temp = temp_store().await;
    let store = &temp.store;
    let record = RequestRecord {
        key: RequestKey {
            request_id: uuid::Uuid::new_v4().to_string(),
            caller: "users/admin".into(),
            method: "AddMember".into(),
            fingerprint: "f".into(),
        },
        resource_key: "acme/u".into(),
    };
    store
        .add_member(
            &new_member("acme", "u", Role::Admin),
            MAX_OWNERS,
            Some(&record),
        )
        .await
        .unwrap();
    assert_eq!(
        REQUEST_IDS
            .find(store.connection().unwrap(), &record.key.request_id)
            .await
            .unwrap(),
        Some(record.clone())
    );
    let again = store
        .add_member(&new_member("acme", "u", Role::Employee), MAX_OWNERS, None)
        .await;
    assert!(
        matches!(again, Err(MembershipError::AlreadyMember { .. })),
        "{again:?}"
    );
    // A reused request id on another member is a conflict too, and nothing is written.
    let reused = store
        .add_member(
            &new_member("acme", "v", Role::Admin),
            MAX_OWNERS,
            Some(&record),
        )
        .await;
    assert!(
        matches!(reused, Err(MembershipError::AlreadyMember { .. })),
        "{reused:?}"
    );
    assert!(store.member(&a("acme"), &u("v")).await.unwrap().is_none());
    assert_eq!(counts_of(store, "acme").await, (0, 1));
}

#[tokio::test]
async fn concurrent_add_myself_creates_one_membership() {
    let temp = temp_store().await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = temp.store.clone();
            tokio::spawn(async move {
                let mut new = new_member("customer", "pat", Role::Admin);
                new.source = MemberSource::SelfAssigned;
                new.added_by = "users/pat".into();
                store.add_myself(&new).await
            })
        })
        .collect();
    let mut created = 0;
    let mut versions = Vec::new();
    for task in tasks {
        let (member, was_created) = task.await.unwrap().unwrap();
        assert_eq!(
            (member.role, member.source),
            (Role::Admin, MemberSource::SelfAssigned)
        );
        created += usize::from(was_created);
        versions.push((member.create_time, member.version));
    }
    assert_eq!(created, 1);
    versions.dedup();
    assert_eq!(versions.len(), 1, "every call returned the same membership");
    assert_eq!(counts_of(&temp.store, "customer").await, (0, 1));

    // Already a member by another source: returned unchanged.
    let temp = temp_store().await;
    temp.store
        .add_member(
            &new_member("customer", "pat", Role::Employee),
            MAX_OWNERS,
            None,
        )
        .await
        .unwrap();
    let mut new = new_member("customer", "pat", Role::Admin);
    new.source = MemberSource::SelfAssigned;
    let (member, created) = temp.store.add_myself(&new).await.unwrap();
    assert!(!created);
    assert_eq!(
        (member.role, member.source),
        (Role::Employee, MemberSource::Direct)
    );
}

#[tokio::test]
async fn directory_lists_and_lookups() {
    let temp = temp_store().await;
    let store = &temp.store;
    let profile = UserProfile {
        email: "Alice@Example.com".into(),
        given_name: "Alice".into(),
        family_name: "A".into(),
    };
    store.upsert_user(&u("alice"), &profile).await.unwrap();
    let changed = UserProfile {
        given_name: "Alicia".into(),
        ..profile.clone()
    };
    store.upsert_user(&u("alice"), &changed).await.unwrap();
    assert_eq!(
        store
            .users_with_email(" ALICE@example.COM", 2)
            .await
            .unwrap(),
        vec![u("alice")]
    );
    assert!(
        store
            .users_with_email("bob@example.com", 2)
            .await
            .unwrap()
            .is_empty()
    );

    for (account, user, role) in [
        ("acme", "carol", Role::Employee),
        ("acme", "alice", Role::Owner),
        ("acme", "bob", Role::Admin),
        ("beta", "alice", Role::Admin),
    ] {
        store
            .add_member(&new_member(account, user, role), MAX_OWNERS, None)
            .await
            .unwrap();
    }
    let first = store
        .list_members(&a("acme"), &[], None, None, 2)
        .await
        .unwrap();
    let ids: Vec<_> = first.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(first[0].profile, changed);
    assert_eq!(first[1].profile, UserProfile::default());
    let rest = store
        .list_members(&a("acme"), &[], None, Some("bob"), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].user_id, "carol");
    let managers = store
        .list_members(&a("acme"), &[Role::Owner, Role::Admin], None, None, 10)
        .await
        .unwrap();
    assert_eq!(managers.len(), 2);
    let by_email = store
        .list_members(&a("acme"), &[], Some("alice@example.com"), None, 10)
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_email[0].user_id, "alice");
    assert!(
        store
            .list_members(&a("acme"), &[], Some("nobody@example.com"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let mine = store.memberships_of(&u("alice"), None, 10).await.unwrap();
    let accounts: Vec<_> = mine.iter().map(|m| m.account_id.as_str()).collect();
    assert_eq!(accounts, ["acme", "beta"]);
    assert_eq!(
        store
            .memberships_of(&u("alice"), Some("acme"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let roles = store
        .roles_of(&u("alice"), &[&a("acme"), &a("beta"), &a("gamma")])
        .await
        .unwrap();
    assert_eq!(roles.get(&a("acme")), Some(&Role::Owner));
    assert_eq!(roles.get(&a("beta")), Some(&Role::Admin));
    assert_eq!(roles.get(&a("gamma")), None);
    assert_eq!(store.owner_count(&a("acme")).await.unwrap(), 1);
    assert_eq!(store.owner_count(&a("nowhere")).await.unwrap(), 0);
}
