//! The account replica handler on a temporary SQLite file, called the way the consumer
//! runtime calls it: inside a transaction that is committed when it succeeds.

use std::sync::Arc;

use prost_types::Timestamp;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use tenantry_events::Outbox;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::testing::TempDatabase;
use tenantry_platform::{AccountId, UserId};
use tenantry_proto::registry::v1::AccountState as WireState;

use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::domain::{AccountState, MemberSource, NewMember, Role};
use crate::store::Store;
use crate::store::entities::member;
use crate::store::migrations::Migrator;

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

/// A migrated membership database on a temporary SQLite file.
async fn temp_database() -> TempDatabase {
    TempDatabase::new::<Migrator>("membership-consumer").await
}

fn account(id: &str, version: i64, name: &str, state: WireState) -> Account {
    Account {
        name: format!("accounts/{id}"),
        account_id: id.into(),
        display_name: name.into(),
        partner: false,
        managed_by: "accounts/partner".into(),
        state: state as i32,
        update_time: Some(Timestamp {
            seconds: 1_700_000_000 + version,
            nanos: 0,
        }),
        etag: version.to_string(),
        ..Default::default()
    }
}

fn event(event_type: &str, account: Account) -> Event {
    let account = Some(account);
    let actor = "users/operator".to_string();
    let source = "/tenantry/customer-registry";
    match event_type {
        "account.created" => Event::new(
            event_type,
            source,
            &pb::AccountCreated {
                account,
                actor,
                ..Default::default()
            },
        ),
        "account.updated" => Event::new(
            event_type,
            source,
            &pb::AccountUpdated {
                account,
                actor,
                ..Default::default()
            },
        ),
        "account.disabled" => Event::new(
            event_type,
            source,
            &pb::AccountDisabled {
                account,
                actor,
                ..Default::default()
            },
        ),
        "account.deleted" => Event::new(
            event_type,
            source,
            &pb::AccountDeleted {
                account,
                actor,
                ..Default::default()
            },
        ),
        other => panic!("no test event {other}"),
    }
}

/// Runs the handler in a transaction and commits it when it succeeded.
async fn handle(temp: &TempDatabase, event: &Event) -> Result<(), HandlerError> {
    let txn = temp.database.connection().unwrap().begin().await.unwrap();
    AccountReplicaHandler.handle(&txn, event).await?;
    txn.commit().await.unwrap();
    Ok(())
}

async fn replicated(temp: &TempDatabase, id: &str) -> Option<crate::domain::VersionedFacts> {
    replica::load(temp.database.connection().unwrap(), &a(id))
        .await
        .unwrap()
}

#[tokio::test]
async fn out_of_order_versions_keep_the_newest() {
    let temp = temp_database().await;
    handle(
        &temp,
        &event(
            "account.created",
            account("acme", 1, "Acme", WireState::Active),
        ),
    )
    .await
    .unwrap();
    let first = replicated(&temp, "acme").await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.facts.display_name, "Acme");
    assert_eq!(first.facts.managed_by.as_deref(), Some("partner"));
    assert_eq!(first.facts.state, AccountState::Active);

    // Version 3 overtakes version 2 (e.g. 2 failed once and came back through the retry
    // queue): the late 2 is acknowledged but changes nothing.
    handle(
        &temp,
        &event(
            "account.disabled",
            account("acme", 3, "Acme Two", WireState::Disabled),
        ),
    )
    .await
    .unwrap();
    handle(
        &temp,
        &event(
            "account.updated",
            account("acme", 2, "Acme Two", WireState::Active),
        ),
    )
    .await
    .unwrap();
    let newest = replicated(&temp, "acme").await.unwrap();
    assert_eq!(newest.version, 3);
    assert_eq!(newest.facts.state, AccountState::Disabled);
    assert_eq!(newest.facts.display_name, "Acme Two");
    assert_eq!(newest.update_time.timestamp(), 1_700_000_003);

    // A late creation event does not bring the first name back.
    handle(
        &temp,
        &event(
            "account.created",
            account("acme", 1, "Acme", WireState::Active),
        ),
    )
    .await
    .unwrap();
    assert_eq!(replicated(&temp, "acme").await.unwrap(), newest);
}

#[tokio::test]
async fn account_deleted_drops_its_members_only() {
    let temp = temp_database().await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    for (account_id, user_id, role) in [
        ("acme", "alice", Role::Owner),
        ("acme", "bob", Role::Employee),
        ("other", "alice", Role::Owner),
    ] {
        let new = NewMember {
            account_id: a(account_id),
            user_id: u(user_id),
            role,
            source: MemberSource::Direct,
            added_by: "users/operator".into(),
            expire_time: None,
        };
        store.add_member(&new, MAX_OWNERS, None).await.unwrap();
    }
    handle(
        &temp,
        &event(
            "account.deleted",
            account("acme", 4, "Acme", WireState::Deleted),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        replicated(&temp, "acme").await.unwrap().facts.state,
        AccountState::Deleted
    );
    assert!(
        store
            .member(&a("acme"), &u("alice"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.member(&a("acme"), &u("bob")).await.unwrap().is_none());
    assert_eq!(store.owner_count(&a("acme")).await.unwrap(), 0);
    assert!(
        store
            .memberships_of(&u("bob"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The other account keeps its members and counters.
    assert!(
        store
            .member(&a("other"), &u("alice"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.owner_count(&a("other")).await.unwrap(), 1);

    // An update that was overtaken by the deletion does not revive the account.
    handle(
        &temp,
        &event(
            "account.updated",
            account("acme", 3, "Acme", WireState::Active),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        replicated(&temp, "acme").await.unwrap().facts.state,
        AccountState::Deleted
    );
}

#[tokio::test]
async fn replaying_an_event_is_harmless() {
    let temp = temp_database().await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    let created = event(
        "account.created",
        account("acme", 1, "Acme", WireState::Active),
    );
    handle(&temp, &created).await.unwrap();
    handle(&temp, &created).await.unwrap();
    let once = replicated(&temp, "acme").await.unwrap();
    assert_eq!(
        (once.version, once.facts.display_name.as_str()),
        (1, "Acme")
    );

    let deleted = event(
        "account.deleted",
        account("acme", 2, "Acme", WireState::Deleted),
    );
    handle(&temp, &deleted).await.unwrap();
    // A member added after the deletion is refused (AddMember's transaction reads the
    // replica); one that got in anyway (e.g. when the replica had no row) is dropped by a
    // redelivery.
    let new = NewMember {
        account_id: a("acme"),
        user_id: u("late"),
        role: Role::Admin,
        source: MemberSource::Direct,
        added_by: "users/operator".into(),
        expire_time: None,
    };
    let refused = store.add_member(&new, MAX_OWNERS, None).await;
    assert!(
        matches!(refused, Err(MembershipError::AccountDeleted(_))),
        "{refused:?}"
    );
    let now = tenantry_platform::time::now();
    member::Entity::insert(member::ActiveModel {
        account_id: Set("acme".into()),
        user_id: Set("late".into()),
        role: Set(Role::Admin.as_str().into()),
        source: Set(MemberSource::Direct.as_str().into()),
        added_by: Set("users/operator".into()),
        create_time: Set(now),
        update_time: Set(now),
        version: Set(1),
        expire_time: Set(None),
    })
    .exec_without_returning(temp.database.connection().unwrap())
    .await
    .unwrap();
    assert!(
        store
            .member(&a("acme"), &u("late"))
            .await
            .unwrap()
            .is_some()
    );
    handle(&temp, &deleted).await.unwrap();
    assert!(
        store
            .member(&a("acme"), &u("late"))
            .await
            .unwrap()
            .is_none()
    );
    let after = replicated(&temp, "acme").await.unwrap();
    assert_eq!(
        (after.version, after.facts.state),
        (2, AccountState::Deleted)
    );
}

#[tokio::test]
async fn unusable_events_are_permanent_failures() {
    let temp = temp_database().await;
    let mut garbled = event(
        "account.updated",
        account("acme", 1, "Acme", WireState::Active),
    );
    garbled.payload = vec![0xff, 0xff, 0xff];
    let mut no_version = account("acme", 1, "Acme", WireState::Active);
    no_version.etag = "W/\"1\"".into();
    let mut unspecified = account("acme", 1, "Acme", WireState::Active);
    unspecified.state = 0;
    let empty = Event::new(
        "account.created",
        "/tenantry/customer-registry",
        &pb::AccountCreated::default(),
    );
    for bad in [
        garbled,
        event("account.updated", no_version),
        event("account.updated", unspecified),
        empty,
    ] {
        let error = handle(&temp, &bad).await.unwrap_err();
        assert!(matches!(error, HandlerError::Permanent(_)), "{error:?}");
    }
    assert!(replicated(&temp, "acme").await.is_none());
}

#[tokio::test]
async fn the_consumer_group_binds_every_account_event() {
    #[derive(Debug)]
    struct NoAccounts;
    #[async_trait::async_trait]
    impl crate::AccountDirectory for NoAccounts {
        async fn account(
            &self,
            _: &AccountId,
        ) -> Result<Option<crate::AccountFacts>, tenantry_platform::ApiError> {
            Ok(None)
        }
    }
    let temp = temp_database().await;
    let deps = crate::Deps {
        database: temp.database.clone(),
        accounts: Arc::new(NoAccounts),
        page_tokens: PageTokens::new(b"test"),
        outbox: Outbox::new(),
        view: None,
        request_mail: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    let specs = crate::consumers(&deps);
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].group, "tenantry.membership.accounts");
    assert_eq!(
        specs[0].bindings,
        [
            "account.created",
            "account.updated",
            "account.promoted_to_partner",
            "account.disabled",
            "account.enabled",
            "account.deleted",
        ]
    );
    assert_eq!(crate::CONSUMES, ACCOUNT_EVENTS);
}

/// A type the group does not handle (bound by mistake, or published by a newer registry) is
/// refused as an unknown type, never acknowledged as handled, and changes nothing.
#[tokio::test]
async fn unknown_event_types_are_refused_as_such() {
    let temp = temp_database().await;
    let mut renamed = event(
        "account.updated",
        account("acme", 1, "Acme", WireState::Active),
    );
    renamed.event_type = "account.renamed".into();
    let member_added = Event::of(
        "/tenantry/membership",
        &pb::MemberAdded {
            member: None,
            actor: "users/operator".into(),
            provenance: None,
        },
    );
    for unknown in [renamed, member_added] {
        let error = handle(&temp, &unknown).await.unwrap_err();
        assert!(
            matches!(&error, HandlerError::UnknownType(event_type) if *event_type == unknown.event_type),
            "{error:?}"
        );
    }
    assert!(replicated(&temp, "acme").await.is_none());
}
