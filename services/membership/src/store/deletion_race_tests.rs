//! AddMember and AddMyself racing `account.deleted` (issue 14 item 5a): their handlers check
//! the account's facts before the write transaction opens, so the deletion's consumer may
//! commit in between. The write must then be refused, or no member row may outlive the
//! deletion, on SQLite and PostgreSQL alike.

use std::time::Duration;

use sea_orm::TransactionTrait;
use tenantry_events::{Event, Handler, Outbox};
use tenantry_platform::testing::{TempDatabase, TempPostgres};
use tenantry_proto::events::v1 as pb;
use tenantry_proto::registry::v1::{Account, AccountState as WireState};

use super::*;
use crate::consumers::AccountReplicaHandler;
use crate::domain::members::self_assigned;
use crate::domain::owners::MAX_OWNERS;
use crate::domain::{AccountState, MembershipError};
use crate::store::migrations::Migrator;

/// How long a write is given to show it is waiting for the other transaction's lock.
const BLOCKED_FOR: Duration = Duration::from_millis(300);

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

fn account(id: &str, version: i64, state: WireState) -> Account {
    Account {
        name: format!("accounts/{id}"),
        account_id: id.into(),
        display_name: "Acme".into(),
        managed_by: "accounts/partner".into(),
        state: state as i32,
        update_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + version,
            nanos: 0,
        }),
        etag: version.to_string(),
        ..Default::default()
    }
}

fn account_event(id: &str, version: i64, state: WireState) -> Event {
    let (account, actor) = (
        Some(account(id, version, state)),
        "users/operator".to_string(),
    );
    let source = "/tenantry/customer-registry";
    match state {
        WireState::Deleted => Event::of(
            source,
            &pb::AccountDeleted {
                account,
                actor,
                ..Default::default()
            },
        ),
        _ => Event::of(
            source,
            &pb::AccountUpdated {
                account,
                actor,
                ..Default::default()
            },
        ),
    }
}

/// Runs the replica handler the way the consumer runtime does: in a transaction committed
/// when it succeeds.
async fn handle(database: &Database, event: &Event) {
    let txn = database.connection().unwrap().begin().await.unwrap();
    AccountReplicaHandler.handle(&txn, event).await.unwrap();
    txn.commit().await.unwrap();
}

/// The write a handler makes once its checks passed.
#[derive(Clone, Copy, Debug)]
enum Add {
    Member,
    Myself,
}

impl Add {
    async fn run(self, store: &Store, user: &str) -> Result<Member, MembershipError> {
        match self {
            Add::Member => {
                let new = NewMember {
                    account_id: a("acme"),
                    user_id: u(user),
                    role: Role::Employee,
                    source: MemberSource::Direct,
                    added_by: "users/operator".into(),
                    expire_time: None,
                };
                store.add_member(&new, MAX_OWNERS, None).await
            }
            Add::Myself => {
                let new = self_assigned(a("acme"), u(user), Role::Admin, None);
                store.add_myself(&new).await.map(|(member, _)| member)
            }
        }
    }

    /// The refusal each RPC gives for a deleted account when it sees the deletion in its
    /// checks (AddMyself finds it not joinable).
    fn refused(self, result: &Result<Member, MembershipError>) -> bool {
        match self {
            Add::Member => {
                matches!(result, Err(MembershipError::AccountDeleted(id)) if id == "acme")
            }
            Add::Myself => {
                matches!(result, Err(MembershipError::AccountNotActive(id)) if id == "acme")
            }
        }
    }
}

/// Nothing of the account is left: no member row, no counters.
async fn assert_no_members(store: &Store) {
    let connection = store.connection().unwrap();
    let members = member::Entity::find()
        .filter(member::Column::AccountId.eq("acme"))
        .all(connection)
        .await
        .unwrap();
    assert!(members.is_empty(), "orphaned members {members:?}");
    let counters = counts::Entity::find_by_id("acme".to_string())
        .one(connection)
        .await
        .unwrap();
    assert!(counters.is_none(), "orphaned counters {counters:?}");
}

/// The replica says ACTIVE when the handler checks; the deletion's consumer commits; then the
/// write transaction runs.
async fn deleted_after_the_checks(database: &Database, add: Add) {
    let store = Store::new(database.clone(), Outbox::new());
    handle(database, &account_event("acme", 1, WireState::Active)).await;
    let checked = replica::load(database.connection().unwrap(), &a("acme"))
        .await
        .unwrap()
        .expect("replicated");
    assert_eq!(checked.facts.state, AccountState::Active);

    handle(database, &account_event("acme", 2, WireState::Deleted)).await;
    let result = add.run(&store, "late").await;
    assert!(add.refused(&result), "{add:?}: {result:?}");
    assert_no_members(&store).await;
}

/// On PostgreSQL the deletion's transaction is still open when the write starts: the write
/// waits for it and then sees the deletion.
async fn deletion_in_flight(database: &Database, add: Add) {
    let store = Store::new(database.clone(), Outbox::new());
    handle(database, &account_event("acme", 1, WireState::Active)).await;
    let deletion = database.connection().unwrap().begin().await.unwrap();
    AccountReplicaHandler
        .handle(&deletion, &account_event("acme", 2, WireState::Deleted))
        .await
        .unwrap();
    let write = tokio::spawn(async move { add.run(&store, "late").await });
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !write.is_finished(),
        "{add:?} went ahead of an uncommitted deletion: {:?}",
        write.await
    );
    deletion.commit().await.unwrap();
    let result = write.await.unwrap();
    assert!(add.refused(&result), "{add:?}: {result:?}");
    assert_no_members(&Store::new(database.clone(), Outbox::new())).await;
}

/// On PostgreSQL the write is in flight (its check passed and its member row is inserted,
/// uncommitted) when the deletion's consumer runs: the consumer waits for the write's shared
/// account lock, also when its version guard skips the update or when the replica has no row
/// for the account yet (`replicated` false: the handler's read-through could not keep it), and
/// its DELETE then sees the new member. This is `Store::add_member`'s transaction, held open.
async fn add_in_flight(database: &Database, deleted_version: i64, replicated: bool) {
    let store = Store::new(database.clone(), Outbox::new());
    if replicated {
        handle(database, &account_event("acme", 2, WireState::Active)).await;
    }
    let write = store.begin().await.unwrap();
    assert!(
        !replica::deleted_for_write(&*write, &a("acme"))
            .await
            .unwrap()
    );
    let new = NewMember {
        account_id: a("acme"),
        user_id: u("late"),
        role: Role::Employee,
        source: MemberSource::Direct,
        added_by: "users/operator".into(),
        expire_time: None,
    };
    insert_member(&*write, &new, MAX_OWNERS).await.unwrap();
    let deleted = account_event("acme", deleted_version, WireState::Deleted);
    let deletion = {
        let database = database.clone();
        tokio::spawn(async move { handle(&database, &deleted).await })
    };
    tokio::time::sleep(BLOCKED_FOR).await;
    assert!(
        !deletion.is_finished(),
        "the deletion went ahead of an uncommitted write"
    );
    write.commit().await.unwrap();
    deletion.await.unwrap();
    assert_no_members(&store).await;
}

async fn postgres(purpose: &str) -> Option<(TempPostgres, Database)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database
        .connect_and_migrate::<Migrator>()
        .await
        .expect("migrated");
    Some((temp, database))
}

#[tokio::test]
async fn add_member_after_a_deletion_is_refused_on_sqlite() {
    let temp = TempDatabase::new::<Migrator>("membership-deletion-race").await;
    deleted_after_the_checks(&temp.database, Add::Member).await;
}

#[tokio::test]
async fn add_myself_after_a_deletion_is_refused_on_sqlite() {
    let temp = TempDatabase::new::<Migrator>("membership-deletion-race").await;
    deleted_after_the_checks(&temp.database, Add::Myself).await;
}

#[tokio::test]
async fn add_member_after_a_deletion_is_refused_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    deleted_after_the_checks(&database, Add::Member).await;
}

#[tokio::test]
async fn add_myself_after_a_deletion_is_refused_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    deleted_after_the_checks(&database, Add::Myself).await;
}

#[tokio::test]
async fn add_member_waits_for_a_deletion_in_flight_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    deletion_in_flight(&database, Add::Member).await;
}

#[tokio::test]
async fn add_myself_waits_for_a_deletion_in_flight_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    deletion_in_flight(&database, Add::Myself).await;
}

#[tokio::test]
async fn a_deletion_waits_for_an_add_in_flight_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    add_in_flight(&database, 3, true).await;
}

/// The replica has no row for the account when the write starts, so there is no row to lock:
/// the consumer's first insert of it must still wait for the write.
#[tokio::test]
async fn a_deletion_waits_for_an_add_in_flight_without_a_replica_row_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    add_in_flight(&database, 3, false).await;
}

/// The replica already holds a newer version: the consumer's upsert changes nothing but must
/// lock the row all the same.
#[tokio::test]
async fn a_stale_deletion_waits_for_an_add_in_flight_on_postgres() {
    let Some((_temp, database)) = postgres("membership_deletion_race").await else {
        return;
    };
    add_in_flight(&database, 1, true).await;
}
