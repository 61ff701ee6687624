//! The log on both backends: numbering without gaps, redeliveries, verification of altered and
//! removed rows, purges under a signed tombstone, and the database refusing to rewrite entries.

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Map;
use tenantry_platform::db::Database;
use tenantry_platform::testing::{TempDatabase, TempPostgres};
use tenantry_proto::events::v1::{ActorKind, Provenance};

use super::*;
use crate::domain::{Change, NewEntry};

const KEY: &[u8] = b"tombstone key";

fn new_entry(account: &str, n: usize, age: Duration) -> NewEntry {
    let mut after = Map::new();
    after.insert("display_name".into(), format!("Name {n}").into());
    NewEntry {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: "account.updated".into(),
        event_time: Utc::now() - age,
        change: Change {
            account_id: account.into(),
            managed_by: (account != "partner").then(|| "partner".to_string()),
            resource: format!("accounts/{account}"),
            actor: "users/u-1".into(),
            before: Map::new(),
            after,
            provenance: Provenance {
                actor_kind: ActorKind::Person as i32,
                actor_role: "OWNER".into(),
                request_id: format!("r-{n}"),
                ..Default::default()
            },
        },
    }
}

async fn append_all(database: &Database, entries: &[NewEntry]) {
    let db = database.connection().unwrap();
    for entry in entries {
        let txn = db.begin().await.unwrap();
        append(&txn, entry, Utc::now()).await.unwrap();
        txn.commit().await.unwrap();
    }
}

async fn the_log_is_numbered_chained_and_verifiable(database: Database) {
    let store = Store::new(database.clone());
    let entries: Vec<NewEntry> = (0..5)
        .map(|n| {
            new_entry(
                if n % 2 == 0 { "acme" } else { "partner" },
                n,
                Duration::zero(),
            )
        })
        .collect();
    append_all(&database, &entries).await;
    // A redelivery is recorded once.
    let db = database.connection().unwrap();
    let txn = db.begin().await.unwrap();
    assert_eq!(
        append(&txn, &entries[0], Utc::now()).await.unwrap(),
        Appended::AlreadyRecorded
    );
    txn.commit().await.unwrap();
    let acme = store.after("acme", 0, 100).await.unwrap();
    assert_eq!(
        acme.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(acme[0].previous_hash, "");
    assert_eq!(acme[1].previous_hash, acme[0].hash);
    let verified = store.verify("acme", &[KEY]).await.unwrap();
    assert_eq!((verified.checked, verified.mismatch), (3, None));
    // A partner's listing with its customers interleaves both logs, newest first.
    let query = ListQuery {
        account_id: "partner".into(),
        include_customers: true,
        ..Default::default()
    };
    let listed = store.list(&query, None, 10).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.windows(2).all(|pair| pair[0].id > pair[1].id));
    let page = store
        .list(&query, Some(query.page_key(&listed[1])), 2)
        .await
        .unwrap();
    assert_eq!(page[0].id, listed[2].id);
    // One account's log pages along its sequence numbers.
    let acme_only = ListQuery {
        account_id: "acme".into(),
        ..Default::default()
    };
    let first = store.list(&acme_only, None, 1).await.unwrap();
    assert_eq!(first[0].sequence, 3);
    let rest = store
        .list(&acme_only, Some(acme_only.page_key(&first[0])), 10)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 1]);
}

/// The row as an attacker with the database's superuser would alter it: past the trigger.
async fn tamper(database: &Database, statement: &str) {
    let db = database.connection().unwrap();
    let txn = db.begin().await.unwrap();
    match db.get_database_backend() {
        DbBackend::Postgres => {
            txn.execute_unprepared("SET LOCAL session_replication_role = replica")
                .await
                .unwrap();
            txn.execute_unprepared(statement).await.unwrap();
        }
        _ => {
            txn.execute_unprepared("DROP TRIGGER IF EXISTS audit_entries_no_update")
                .await
                .unwrap();
            txn.execute_unprepared("DROP TRIGGER IF EXISTS audit_entries_no_delete")
                .await
                .unwrap();
            txn.execute_unprepared(statement).await.unwrap();
        }
    }
    txn.commit().await.unwrap();
}

async fn an_altered_or_removed_row_is_named(database: Database) {
    let store = Store::new(database.clone());
    let entries: Vec<NewEntry> = (0..6)
        .map(|n| new_entry("acme", n, Duration::zero()))
        .collect();
    append_all(&database, &entries).await;
    tamper(
        &database,
        r#"UPDATE audit_entries SET after_json = '{"display_name":"Evil"}' WHERE account_id = 'acme' AND sequence = 4"#,
    )
    .await;
    let verified = store.verify("acme", &[KEY]).await.unwrap();
    let (sequence, reason) = verified.mismatch.unwrap();
    assert_eq!(sequence, 4);
    assert!(reason.contains("altered"), "{reason}");
    assert_eq!(verified.last_sequence, 3);
    tamper(&database, "DELETE FROM audit_entries WHERE sequence = 2").await;
    let (sequence, reason) = store
        .verify("acme", &[KEY])
        .await
        .unwrap()
        .mismatch
        .unwrap();
    assert_eq!(sequence, 2, "{reason}");
    tamper(&database, "DELETE FROM audit_entries WHERE sequence >= 2").await;
    let (sequence, reason) = store
        .verify("acme", &[KEY])
        .await
        .unwrap()
        .mismatch
        .unwrap();
    assert_eq!(sequence, 2, "{reason}");
    assert!(reason.contains("missing"), "{reason}");
}

async fn the_database_refuses_to_rewrite_entries(database: Database) {
    let entries: Vec<NewEntry> = (0..2)
        .map(|n| new_entry("acme", n, Duration::zero()))
        .collect();
    append_all(&database, &entries).await;
    let db = database.connection().unwrap();
    for statement in [
        "UPDATE audit_entries SET actor = 'users/nobody'",
        "DELETE FROM audit_entries",
    ] {
        // As the service's transactions act…
        let txn = db.begin().await.unwrap();
        act_as_writer(&txn).await.unwrap();
        let refused = txn.execute_unprepared(statement).await;
        assert!(refused.is_err(), "{statement} was allowed to the writer");
        txn.rollback().await.unwrap();
        // …and even as the owner: the trigger stands.
        let refused = db.execute_unprepared(statement).await;
        assert!(refused.is_err(), "{statement} was allowed to the owner");
    }
    let store = Store::new(database.clone());
    assert_eq!(store.after("acme", 0, 10).await.unwrap().len(), 2);
}

async fn a_purge_leaves_a_signed_tombstone_and_a_verifiable_chain(database: Database) {
    let store = Store::new(database.clone());
    let mut entries: Vec<NewEntry> = (0..4)
        .map(|n| new_entry("acme", n, Duration::days(40)))
        .collect();
    entries.extend((4..7).map(|n| new_entry("acme", n, Duration::zero())));
    append_all(&database, &entries).await;
    let cut_off = Utc::now() - Duration::days(30);
    assert_eq!(store.purge(cut_off, "users/op", KEY).await.unwrap(), (4, 1));
    // Idempotent.
    assert_eq!(store.purge(cut_off, "users/op", KEY).await.unwrap(), (0, 0));
    let verified = store.verify("acme", &[KEY]).await.unwrap();
    assert_eq!(verified.mismatch, None);
    assert_eq!(
        (
            verified.purged_through,
            verified.checked,
            verified.last_sequence
        ),
        (4, 3, 7)
    );
    // The chain goes on after the purge.
    append_all(&database, &[new_entry("acme", 8, Duration::zero())]).await;
    assert_eq!(store.verify("acme", &[KEY]).await.unwrap().last_sequence, 8);
    // Under another key the tombstone is not accepted; with the previous key it is.
    let (sequence, reason) = store
        .verify("acme", &[b"other"])
        .await
        .unwrap()
        .mismatch
        .unwrap();
    assert_eq!(sequence, 4);
    assert!(reason.contains("signature"), "{reason}");
    assert!(
        store
            .verify("acme", &[b"other", KEY])
            .await
            .unwrap()
            .mismatch
            .is_none()
    );
    // Entries not covered by the tombstone stay undeletable.
    let db = database.connection().unwrap();
    assert!(
        db.execute_unprepared("DELETE FROM audit_entries WHERE sequence = 5")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sqlite_log_is_numbered_chained_and_verifiable() {
    let temp = TempDatabase::new::<migrations::Migrator>("audit-log").await;
    the_log_is_numbered_chained_and_verifiable(temp.database.clone()).await;
}

#[tokio::test]
async fn sqlite_altered_or_removed_rows_are_named() {
    let temp = TempDatabase::new::<migrations::Migrator>("audit-tamper").await;
    an_altered_or_removed_row_is_named(temp.database.clone()).await;
}

#[tokio::test]
async fn sqlite_refuses_to_rewrite_entries() {
    let temp = TempDatabase::new::<migrations::Migrator>("audit-append-only").await;
    the_database_refuses_to_rewrite_entries(temp.database.clone()).await;
}

#[tokio::test]
async fn sqlite_purge_leaves_a_signed_tombstone() {
    let temp = TempDatabase::new::<migrations::Migrator>("audit-purge").await;
    a_purge_leaves_a_signed_tombstone_and_a_verifiable_chain(temp.database.clone()).await;
}

async fn postgres(purpose: &str) -> Option<(TempPostgres, Database)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database
        .connect_and_migrate::<migrations::Migrator>()
        .await
        .expect("migrating the audit database");
    Some((temp, database))
}

#[tokio::test]
async fn postgres_log_is_numbered_chained_and_verifiable() {
    let Some((_temp, database)) = postgres("audit_log").await else {
        return;
    };
    the_log_is_numbered_chained_and_verifiable(database).await;
}

#[tokio::test]
async fn postgres_altered_or_removed_rows_are_named() {
    let Some((_temp, database)) = postgres("audit_tamper").await else {
        return;
    };
    an_altered_or_removed_row_is_named(database).await;
}

#[tokio::test]
async fn postgres_refuses_to_rewrite_entries() {
    let Some((_temp, database)) = postgres("audit_append_only").await else {
        return;
    };
    the_database_refuses_to_rewrite_entries(database).await;
}

#[tokio::test]
async fn postgres_purge_leaves_a_signed_tombstone() {
    let Some((_temp, database)) = postgres("audit_purge").await else {
        return;
    };
    a_purge_leaves_a_signed_tombstone_and_a_verifiable_chain(database).await;
}

#[tokio::test]
async fn postgres_competing_appenders_number_without_gaps() {
    let Some((_temp, database)) = postgres("audit_race").await else {
        return;
    };
    let store = Store::new(database.clone());
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let database = database.clone();
            tokio::spawn(async move {
                let entries: Vec<NewEntry> = (0..25)
                    .map(|n| new_entry("acme", worker * 100 + n, Duration::zero()))
                    .collect();
                append_all(&database, &entries).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.after("acme", 0, 1000).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<i64>>()
    );
    assert!(
        store
            .verify("acme", &[KEY])
            .await
            .unwrap()
            .mismatch
            .is_none()
    );
}

/// Appends `entries` as one batch, committed.
async fn append_batch_committed(database: &Database, entries: &[NewEntry]) -> BatchAppended {
    let txn = database.connection().unwrap().begin().await.unwrap();
    let appended = append_batch(&txn, entries, Utc::now()).await.unwrap();
    txn.commit().await.unwrap();
    appended
}

/// Batches interleaving three chains, between single appends, number each chain 1, 2, 3, …,
/// keep the partner a customer's chain names, list in the same order as single appends do
/// (ids follow sequences within a chain) and verify.
async fn batches_chain_like_single_appends(database: Database) {
    let store = Store::new(database.clone());
    let accounts = ["acme", "partner", "globex"];
    let entries: Vec<NewEntry> = (0..30)
        .map(|n| new_entry(accounts[n % 3], n, Duration::zero()))
        .collect();
    append_all(&database, &entries[..2]).await;
    for chunk in entries[2..20].chunks(7) {
        let BatchAppended::Entries(appended) = append_batch_committed(&database, chunk).await
        else {
            panic!("a batch of new events is appended whole");
        };
        assert_eq!(appended.len(), chunk.len());
        assert!(
            appended
                .iter()
                .all(|entry| matches!(entry, Appended::Entry { .. }))
        );
    }
    append_all(&database, &entries[20..22]).await;
    append_batch_committed(&database, &entries[22..]).await;
    for account in accounts {
        let log = store.after(account, 0, 100).await.unwrap();
        assert_eq!(
            log.iter().map(|entry| entry.sequence).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<i64>>(),
            "{account}"
        );
        let expected: Vec<&str> = entries
            .iter()
            .filter(|new| new.change.account_id == account)
            .map(|new| new.event_id.as_str())
            .collect();
        assert_eq!(
            log.iter()
                .map(|entry| entry.event_id.as_str())
                .collect::<Vec<_>>(),
            expected,
            "{account}: in event order"
        );
        assert!(log.windows(2).all(|pair| pair[0].id < pair[1].id));
        let verification = store.verify(account, &[KEY]).await.unwrap();
        assert_eq!(verification.mismatch, None, "{account}");
        assert_eq!(verification.last_sequence, 10);
    }
    // The partner's listing with its customers sees every entry, newest first, decoded by
    // position exactly as the derived decoder reads them.
    let query = ListQuery {
        account_id: "partner".into(),
        include_customers: true,
        ..Default::default()
    };
    let listed = store.list(&query, None, 100).await.unwrap();
    assert_eq!(listed.len(), 30);
    let mut by_entity = entry::Entity::find()
        .all(database.connection().unwrap())
        .await
        .unwrap();
    by_entity.sort_by_key(|entry| std::cmp::Reverse(entry.id));
    assert_eq!(listed, by_entity);
}

#[tokio::test]
async fn sqlite_batches_chain_like_single_appends() {
    let temp = TempDatabase::new::<migrations::Migrator>("audit-batch").await;
    batches_chain_like_single_appends(temp.database.clone()).await;
}

#[tokio::test]
async fn postgres_batches_chain_like_single_appends() {
    let Some((_temp, database)) = postgres("audit_batch").await else {
        return;
    };
    batches_chain_like_single_appends(database).await;
}

/// A batch holding an event already in the log names it and must be rolled back (the entries
/// after it in its chain were numbered as if it were new); alone, it is recorded once.
#[tokio::test]
async fn postgres_a_batch_with_a_recorded_event_names_it() {
    let Some((_temp, database)) = postgres("audit_batch_redelivery").await else {
        return;
    };
    let store = Store::new(database.clone());
    let entries: Vec<NewEntry> = (0..4)
        .map(|n| new_entry("acme", n, Duration::zero()))
        .collect();
    append_all(&database, &entries[1..2]).await;
    let txn = database.connection().unwrap().begin().await.unwrap();
    assert_eq!(
        append_batch(&txn, &entries, Utc::now()).await.unwrap(),
        BatchAppended::AlreadyRecorded(1)
    );
    // The batch's transaction acts as the writer role from its first statement on.
    let role = txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_user::text",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(role, migrations::WRITER_ROLE);
    txn.rollback().await.unwrap();
    assert_eq!(store.after("acme", 0, 100).await.unwrap().len(), 1);
    let without: Vec<NewEntry> = [0, 2, 3].map(|n| entries[n].clone()).into();
    append_batch_committed(&database, &without).await;
    let log = store.after("acme", 0, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|entry| entry.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(store.verify("acme", &[KEY]).await.unwrap().mismatch, None);
}

/// Batches touching the same chains in opposite orders, side by side: none waits on another in
/// a cycle (PostgreSQL would abort one with a deadlock error), and no chain has a gap.
#[tokio::test]
async fn postgres_competing_batches_never_deadlock() {
    let Some((_temp, database)) = postgres("audit_batch_race").await else {
        return;
    };
    let store = Store::new(database.clone());
    let accounts = ["a", "b", "c", "d", "e"];
    let tasks: Vec<_> = (0..6)
        .map(|worker| {
            let database = database.clone();
            tokio::spawn(async move {
                for round in 0..15 {
                    let mut order = accounts.to_vec();
                    if worker % 2 == 1 {
                        order.reverse();
                    }
                    order.rotate_left(round % accounts.len());
                    let batch: Vec<NewEntry> = (0..10)
                        .map(|n| {
                            new_entry(
                                order[n % order.len()],
                                worker * 1000 + round * 10 + n,
                                Duration::zero(),
                            )
                        })
                        .collect();
                    append_batch_committed(&database, &batch).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for account in accounts {
        let log = store.after(account, 0, 1000).await.unwrap();
        assert_eq!(
            log.iter().map(|entry| entry.sequence).collect::<Vec<_>>(),
            (1..=180).collect::<Vec<i64>>(),
            "{account}"
        );
        assert_eq!(store.verify(account, &[KEY]).await.unwrap().mismatch, None);
    }
}
