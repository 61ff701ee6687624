//! Creates under a partner on PostgreSQL, where the check of the partner and the insert are one
//! statement ([`insert_under_parent`]): it refuses what the domain rule refuses, writes the row
//! the SQLite path writes, and racing a change of that partner (SQLite runs one transaction at
//! a time) the create holds the partner's row `FOR SHARE` from its check to its commit, a change
//! locks it `FOR UPDATE`, so neither goes ahead of the other unseen.

use std::time::Duration;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, TransactionTrait};
use tenantry_platform::testing::TempPostgres;

use super::*;
use crate::Migrator;
use crate::domain::NewAccountId;

/// How long a call is given to show it is waiting for the other transaction's lock.
const BLOCKED_FOR: Duration = Duration::from_millis(300);

fn id(raw: &str) -> AccountId {
    AccountId::trusted(raw)
}

fn new_account(id: &str, managed_by: Option<&str>) -> NewAccount {
    NewAccount {
        id: NewAccountId::parse(id, 32).expect("valid id").into(),
        display_name: DisplayName::parse(&format!("{id} Inc")).expect("valid name"),
        managed_by: managed_by.map(AccountId::trusted),
        creator: "users/op".into(),
    }
}

/// A store on a fresh PostgreSQL database holding the partner `partner`.
async fn with_partner(purpose: &str) -> Option<(TempPostgres, Database, Store)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database.connect_and_migrate::<Migrator>().await.unwrap();
    let store = Store::new(database.clone(), tenantry_events::Outbox::new());
    store
        .create_account(new_account("partner", None), None)
        .await
        .unwrap();
    store
        .promote_to_partner(&id("partner"), "", "users/op")
        .await
        .unwrap();
    Some((temp, database, store))
}

/// A create has checked the partner and written its customer, uncommitted, when the partner is
/// deleted: the delete waits for it, then counts the customer and refuses.
#[tokio::test]
async fn a_partner_delete_waits_for_a_create_in_flight_on_postgres() {
    let Some((_temp, database, store)) = with_partner("registry_parent_race").await else {
        return;
    };
    let create = database.connection().unwrap().begin().await.unwrap();
    insert_under_parent(&create, &new_account("cust", Some("partner")))
        .await
        .unwrap()
        .expect("the partner may manage customers");
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete_account(&id("partner"), "", "users/op").await }
    });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !delete.is_finished(),
        "the delete went ahead of a create in flight"
    );
    create.commit().await.unwrap();
    let deleted = delete.await.unwrap();
    assert!(
        matches!(deleted, Err(RegistryError::PartnerHasCustomers { .. })),
        "{deleted:?}"
    );
}

/// The partner is being disabled (its change has updated the row, uncommitted) when a create
/// checks it: the create waits, then sees the partner DISABLED and refuses.
#[tokio::test]
async fn a_create_waits_for_a_partner_change_in_flight_on_postgres() {
    let Some((_temp, database, store)) = with_partner("registry_parent_race").await else {
        return;
    };
    let change = database.connection().unwrap().begin().await.unwrap();
    let row = account::Entity::find_by_id("partner")
        .one(&change)
        .await
        .unwrap()
        .unwrap();
    let mut row: account::ActiveModel = row.into();
    row.state = Set(AccountState::Disabled.as_str().to_string());
    row.update(&change).await.unwrap();
    let create = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .create_account(new_account("cust", Some("partner")), None)
                .await
        }
    });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !create.is_finished(),
        "the create went ahead of a partner change in flight"
    );
    change.commit().await.unwrap();
    let created = create.await.unwrap();
    assert!(
        matches!(created, Err(RegistryError::ParentNotActive(_))),
        "{created:?}"
    );
}

/// Every parent the domain rule refuses is refused with the rule's error and no row; an
/// accepted create stores exactly the account it returns.
#[tokio::test]
async fn the_one_statement_create_refuses_what_the_rule_refuses_on_postgres() {
    let Some((_temp, _database, store)) = with_partner("registry_parent_rule").await else {
        return;
    };
    let created = store
        .create_account(new_account("cust", Some("partner")), None)
        .await
        .unwrap();
    let stored = store.get(&id("cust")).await.unwrap();
    assert_eq!(stored, created);
    assert_eq!(created.managed_by, Some(id("partner")));
    assert_eq!((created.state, created.version), (AccountState::Active, 1));

    store
        .create_account(new_account("plain", None), None)
        .await
        .unwrap();
    let refused = store
        .create_account(new_account("under-plain", Some("plain")), None)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::ParentNotPartner(_))),
        "{refused:?}"
    );
    let refused = store
        .create_account(new_account("under-nobody", Some("nobody")), None)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::AccountNotFound(_))),
        "{refused:?}"
    );
    let refused = store
        .create_account(new_account("cust", Some("partner")), None)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::AccountIdTaken(_))),
        "{refused:?}"
    );
    store
        .disable_account(&id("partner"), "", "users/op")
        .await
        .unwrap();
    let refused = store
        .create_account(new_account("cust-2", Some("partner")), None)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::ParentNotActive(_))),
        "{refused:?}"
    );
    for missing in ["under-plain", "under-nobody", "cust-2"] {
        assert!(
            matches!(
                store.get(&id(missing)).await,
                Err(RegistryError::AccountNotFound(_))
            ),
            "{missing} was stored"
        );
    }
}
