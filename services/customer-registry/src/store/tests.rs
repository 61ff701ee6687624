//! Store tests, each on a fresh SQLite file.

use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::MigratorTrait;
use tenantry_platform::db::{self, Database};
use tenantry_platform::testing::TempDatabase;

use super::*;
use crate::Migrator;
use crate::domain::NewAccountId;

/// A store over a migrated database in a temporary file, removed when dropped.
struct TestDb {
    store: Store,
    temp: TempDatabase,
}

impl TestDb {
    async fn new() -> Self {
        let temp = TempDatabase::new::<Migrator>("registry-store").await;
        Self {
            store: Store::new(temp.database.clone(), tenantry_events::Outbox::new()),
            temp,
        }
    }
}

fn id(raw: &str) -> AccountId {
    AccountId::trusted(raw)
}

fn new_account(id: &str, managed_by: Option<&str>) -> NewAccount {
    NewAccount {
        id: NewAccountId::parse(id, 32).expect("valid id").into(),
        display_name: DisplayName::parse(&format!("  {id} Inc  ")).expect("valid name"),
        managed_by: managed_by.map(AccountId::trusted),
        creator: "users/op".into(),
    }
}

fn key(request_id: &str, fingerprint: &str) -> RequestKey {
    RequestKey {
        request_id: request_id.into(),
        caller: "users/op".into(),
        method: "CreateAccount".into(),
        fingerprint: fingerprint.into(),
    }
}

fn all() -> ListQuery {
    ListQuery {
        managed_by: None,
        states: StateFilter::NotDeleted,
        partners_only: false,
    }
}

#[tokio::test]
async fn creates_and_reads_back() {
    let db = TestDb::new().await;
    let created = db
        .store
        .create_account(new_account("acme", None), None)
        .await
        .unwrap();
    assert_eq!(created.display_name.as_str(), "acme Inc");
    assert_eq!(created.version, 1);
    assert_eq!(created.state, AccountState::Active);
    let read = db.store.get(&id("acme")).await.unwrap();
    assert_eq!(read, created);
    assert!(matches!(
        db.store.get(&id("nope")).await,
        Err(RegistryError::AccountNotFound(id)) if id == "nope"
    ));
}

#[tokio::test]
async fn migrations_use_their_own_table_and_rerun_cleanly() {
    let db = TestDb::new().await;
    let connection = db.temp.database.connection().unwrap();
    Migrator::up(connection, None)
        .await
        .expect("second run is a no-op");
    let rows = connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT version FROM registry_migrations",
        ))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        3,
        "the accounts table, the outbox and the request ids' retention index"
    );
}

#[tokio::test]
async fn duplicate_id_is_already_taken() {
    let db = TestDb::new().await;
    db.store
        .create_account(new_account("acme", None), None)
        .await
        .unwrap();
    let again = db
        .store
        .create_account(new_account("acme", None), None)
        .await;
    assert!(matches!(again, Err(RegistryError::AccountIdTaken(id)) if id == "acme"));
}

#[tokio::test]
async fn concurrent_creates_of_one_id_have_one_winner() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store.create_account(new_account("race", None), None).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(RegistryError::AccountIdTaken(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn soft_delete_keeps_the_id_taken() {
    let db = TestDb::new().await;
    db.store
        .create_account(new_account("gone", None), None)
        .await
        .unwrap();
    let deleted = db
        .store
        .delete_account(&id("gone"), "", "users/test")
        .await
        .unwrap();
    assert_eq!(deleted.state, AccountState::Deleted);
    assert!(deleted.delete_time.is_some());
    assert_eq!(deleted.version, 2);
    // Idempotent, and still readable.
    assert_eq!(
        db.store
            .delete_account(&id("gone"), "", "users/test")
            .await
            .unwrap(),
        deleted
    );
    assert_eq!(db.store.get(&id("gone")).await.unwrap(), deleted);
    let reuse = db
        .store
        .create_account(new_account("gone", None), None)
        .await;
    assert!(matches!(reuse, Err(RegistryError::AccountIdTaken(_))));
    // Deleted is final.
    assert!(matches!(
        db.store.enable_account(&id("gone"), "", "users/test").await,
        Err(RegistryError::AccountDeleted(_))
    ));
    assert!(matches!(
        db.store
            .disable_account(&id("gone"), "", "users/test")
            .await,
        Err(RegistryError::AccountDeleted(_))
    ));
}

#[tokio::test]
async fn stale_etags_and_versions_fail() {
    let db = TestDb::new().await;
    db.store
        .create_account(new_account("acme", None), None)
        .await
        .unwrap();
    let name = DisplayName::parse("Acme 2").unwrap();
    let renamed = db
        .store
        .rename_account(&id("acme"), &name, "1", "users/test")
        .await
        .unwrap();
    assert_eq!(renamed.version, 2);
    assert_eq!(renamed.etag(), "2");
    // The caller's etag is stale.
    let stale = db
        .store
        .rename_account(
            &id("acme"),
            &DisplayName::parse("Acme 3").unwrap(),
            "1",
            "users/test",
        )
        .await;
    assert!(matches!(stale, Err(RegistryError::StaleEtag(_))));
    // Same name again: unchanged, version kept.
    assert_eq!(
        db.store
            .rename_account(&id("acme"), &name, "", "users/test")
            .await
            .unwrap()
            .version,
        2
    );

    // The conditional write itself refuses a version that changed after it was read.
    let read = db.store.get(&id("acme")).await.unwrap();
    db.store
        .disable_account(&id("acme"), "", "users/test")
        .await
        .unwrap();
    let connection = db.temp.database.connection().unwrap();
    let txn = tenantry_events::Outbox::new()
        .begin(connection)
        .await
        .unwrap();
    let lost = apply(&txn, read.clone(), Update::Partner, "").await;
    assert!(matches!(lost, Err(RegistryError::ConcurrentChange(_))));
    let lost = apply(&txn, read, Update::Partner, "2").await;
    assert!(matches!(lost, Err(RegistryError::StaleEtag(_))));
    txn.rollback().await.unwrap();
    let now = db.store.get(&id("acme")).await.unwrap();
    assert!(!now.partner);
    assert_eq!(now.state, AccountState::Disabled);
    assert_eq!(now.version, 3);
}

/// The outbox rows as (event type, payload), in insertion order.
async fn outbox(db: &TestDb) -> Vec<(String, Vec<u8>)> {
    let connection = db.temp.database.connection().unwrap();
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

/// `payload` decoded as `P`, which must be the payload of `event_type`.
fn payload<P: tenantry_proto::EventPayload>((event_type, payload): &(String, Vec<u8>)) -> P {
    assert_eq!(event_type, P::TYPE.as_str());
    P::decode(payload.as_slice()).unwrap()
}

#[tokio::test]
async fn change_events_carry_the_account_as_it_was_before() {
    use tenantry_proto::events::v1 as events;
    use tenantry_proto::registry::v1 as wire;

    let db = TestDb::new().await;
    db.store
        .create_account(new_account("acme", None), None)
        .await
        .unwrap();
    let name = DisplayName::parse("Acme Corp").unwrap();
    db.store
        .rename_account(&id("acme"), &name, "1", "users/test")
        .await
        .unwrap();
    db.store
        .promote_to_partner(&id("acme"), "", "users/op")
        .await
        .unwrap();
    db.store
        .disable_account(&id("acme"), "", "users/test")
        .await
        .unwrap();
    db.store
        .enable_account(&id("acme"), "", "users/test")
        .await
        .unwrap();
    db.store
        .delete_account(&id("acme"), "", "users/test")
        .await
        .unwrap();
    // Unchanged: no event.
    db.store
        .delete_account(&id("acme"), "", "users/test")
        .await
        .unwrap();

    let rows = outbox(&db).await;
    assert_eq!(rows.len(), 6, "one event per change");
    let created: events::AccountCreated = payload(&rows[0]);
    assert_eq!(created.account.unwrap().display_name, "acme Inc");

    let updated: events::AccountUpdated = payload(&rows[1]);
    let (after, before) = (updated.account.unwrap(), updated.previous.unwrap());
    assert_eq!(
        (before.display_name.as_str(), after.display_name.as_str()),
        ("acme Inc", "Acme Corp")
    );
    assert_eq!((before.etag.as_str(), after.etag.as_str()), ("1", "2"));
    assert_eq!(updated.actor, "users/test");

    let promoted: events::AccountPromotedToPartner = payload(&rows[2]);
    let before = promoted.previous.unwrap();
    assert!(!before.partner && promoted.account.unwrap().partner);
    assert_eq!(before.display_name, "Acme Corp");

    let disabled: events::AccountDisabled = payload(&rows[3]);
    assert_eq!(
        (
            disabled.previous.unwrap().state,
            disabled.account.unwrap().state
        ),
        (
            wire::AccountState::Active as i32,
            wire::AccountState::Disabled as i32
        )
    );

    let enabled: events::AccountEnabled = payload(&rows[4]);
    assert_eq!(
        (
            enabled.previous.unwrap().state,
            enabled.account.unwrap().state
        ),
        (
            wire::AccountState::Disabled as i32,
            wire::AccountState::Active as i32
        )
    );

    let deleted: events::AccountDeleted = payload(&rows[5]);
    let (before, after) = (deleted.previous.unwrap(), deleted.account.unwrap());
    assert_eq!(
        (before.state, after.state),
        (
            wire::AccountState::Active as i32,
            wire::AccountState::Deleted as i32
        )
    );
    assert!(before.delete_time.is_none() && after.delete_time.is_some());
    assert_eq!((before.etag.as_str(), after.etag.as_str()), ("5", "6"));
}

#[tokio::test]
async fn state_changes_are_idempotent() {
    let db = TestDb::new().await;
    db.store
        .create_account(new_account("acme", None), None)
        .await
        .unwrap();
    let disabled = db
        .store
        .disable_account(&id("acme"), "1", "users/test")
        .await
        .unwrap();
    assert_eq!(
        (disabled.state, disabled.version),
        (AccountState::Disabled, 2)
    );
    assert_eq!(
        db.store
            .disable_account(&id("acme"), "", "users/test")
            .await
            .unwrap()
            .version,
        2
    );
    let enabled = db
        .store
        .enable_account(&id("acme"), "2", "users/test")
        .await
        .unwrap();
    assert_eq!((enabled.state, enabled.version), (AccountState::Active, 3));
    assert_eq!(
        db.store
            .enable_account(&id("acme"), "", "users/test")
            .await
            .unwrap()
            .version,
        3
    );
    assert!(matches!(
        db.store
            .disable_account(&id("missing"), "", "users/test")
            .await,
        Err(RegistryError::AccountNotFound(_))
    ));
}

#[tokio::test]
async fn managed_customers_need_an_active_partner() {
    let db = TestDb::new().await;
    let store = &db.store;
    store
        .create_account(new_account("partner", None), None)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_account(new_account("cust-a", Some("partner")), None)
            .await,
        Err(RegistryError::ParentNotPartner(_))
    ));
    assert!(matches!(
        store
            .create_account(new_account("cust-a", Some("nobody")), None)
            .await,
        Err(RegistryError::AccountNotFound(_))
    ));
    assert!(
        store
            .promote_to_partner(&id("partner"), "", "users/test")
            .await
            .unwrap()
            .partner
    );
    assert_eq!(
        store
            .promote_to_partner(&id("partner"), "", "users/test")
            .await
            .unwrap()
            .version,
        2
    );
    let customer = store
        .create_account(new_account("cust-a", Some("partner")), None)
        .await
        .unwrap();
    assert_eq!(
        customer.managed_by.as_ref().map(AccountId::as_str),
        Some("partner")
    );
    assert!(!customer.partner);
    assert!(matches!(
        store
            .promote_to_partner(&id("cust-a"), "", "users/test")
            .await,
        Err(RegistryError::ManagedCannotBePartner(_))
    ));
    store
        .disable_account(&id("partner"), "", "users/test")
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_account(new_account("cust-b", Some("partner")), None)
            .await,
        Err(RegistryError::ParentNotActive(_))
    ));
    // A partner with live customers cannot be deleted; once they are gone it can.
    assert!(matches!(
        store.delete_account(&id("partner"), "", "users/test").await,
        Err(RegistryError::PartnerHasCustomers { customers: 1, .. })
    ));
    store
        .delete_account(&id("cust-a"), "", "users/test")
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_account(&id("partner"), "", "users/test")
            .await
            .unwrap()
            .state,
        AccountState::Deleted
    );
}

#[tokio::test]
async fn lists_page_by_id_and_filter() {
    let db = TestDb::new().await;
    let store = &db.store;
    store
        .create_account(new_account("partner", None), None)
        .await
        .unwrap();
    store
        .promote_to_partner(&id("partner"), "", "users/test")
        .await
        .unwrap();
    for id in ["cust-c", "cust-a", "cust-b", "cust-d"] {
        store
            .create_account(new_account(id, Some("partner")), None)
            .await
            .unwrap();
    }
    store
        .create_account(new_account("loner", None), None)
        .await
        .unwrap();
    store
        .disable_account(&id("cust-b"), "", "users/test")
        .await
        .unwrap();
    store
        .delete_account(&id("cust-d"), "", "users/test")
        .await
        .unwrap();

    let customers = |states| ListQuery {
        managed_by: Some(id("partner")),
        states,
        partners_only: false,
    };
    let ids = |accounts: Vec<Account>| {
        accounts
            .into_iter()
            .map(|a| a.id.to_string())
            .collect::<Vec<_>>()
    };

    let page = store
        .list(&customers(StateFilter::NotDeleted), None, 2)
        .await
        .unwrap();
    assert_eq!(ids(page), ["cust-a", "cust-b"]);
    let page = store
        .list(&customers(StateFilter::NotDeleted), Some("cust-b"), 2)
        .await
        .unwrap();
    assert_eq!(ids(page), ["cust-c"]);
    let deleted = store
        .list(
            &customers(StateFilter::Only(AccountState::Deleted)),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(deleted), ["cust-d"]);
    let disabled = store
        .list(
            &customers(StateFilter::Only(AccountState::Disabled)),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(disabled), ["cust-b"]);

    assert_eq!(
        ids(store.list(&all(), None, 10).await.unwrap()),
        ["cust-a", "cust-b", "cust-c", "loner", "partner"]
    );
    let partners = ListQuery {
        partners_only: true,
        ..all()
    };
    assert_eq!(
        ids(store.list(&partners, None, 10).await.unwrap()),
        ["partner"]
    );
}

#[tokio::test]
async fn request_ids_replay_the_first_result() {
    let db = TestDb::new().await;
    let store = &db.store;
    let request = "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
    let first = store
        .create_account(new_account("acme", None), Some(key(request, "fp-1")))
        .await
        .unwrap();
    store
        .disable_account(&id("acme"), "", "users/test")
        .await
        .unwrap();
    // Same caller, same request: the account as it is now, not ALREADY_EXISTS.
    let retried = store
        .create_account(new_account("acme", None), Some(key(request, "fp-1")))
        .await
        .unwrap();
    assert_eq!(retried.id, first.id);
    assert_eq!(retried.state, AccountState::Disabled);
    // Same request id, different request.
    assert!(matches!(
        store
            .create_account(new_account("other", None), Some(key(request, "fp-2")))
            .await,
        Err(RegistryError::RequestIdReused(_))
    ));
    // Same request id, another caller.
    let mut foreign = key(request, "fp-1");
    foreign.caller = "users/someone-else".into();
    assert!(matches!(
        store
            .create_account(new_account("acme", None), Some(foreign))
            .await,
        Err(RegistryError::RequestIdReused(_))
    ));
    assert!(store.find(&id("other")).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_retries_with_one_request_id_return_one_account() {
    let db = TestDb::new().await;
    let request = "9d5ad1a0-0f7e-4c55-8d0b-6f1d1b2a3c4d";
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_account(new_account("twin", None), Some(key(request, "fp")))
                .await
        }));
    }
    for task in tasks {
        let account = task
            .await
            .unwrap()
            .expect("every retry sees the one account");
        assert_eq!(account.id.as_str(), "twin");
        assert_eq!(account.version, 1);
    }
}

#[tokio::test]
async fn unmigrated_database_is_not_ready() {
    let store = Store::new(
        Database::new("sqlite://never-connected.db"),
        tenantry_events::Outbox::new(),
    );
    assert!(matches!(
        store.get(&id("acme")).await,
        Err(RegistryError::Store(db::StoreError::NotReady))
    ));
}
