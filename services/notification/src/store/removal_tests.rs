//! A member removed while a fan-out page is in flight (issue 14, 5b): the worker read the page
//! from membership before the removal and the `member.removed` consumer withdrew the user's
//! pending deliveries before the page was written, so nothing would withdraw the page's
//! delivery later. The page must leave that user out, and keep one added again since. A
//! membership that expired (`member.expired`) is a removal like any other. On SQLite and on
//! PostgreSQL (`TENANTRY_TEST_POSTGRES_URL`), where the two transactions also overlap.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, TransactionTrait};
use tenantry_events::{Event, Handler, Outbox};
use tenantry_platform::db::Database;
use tenantry_platform::retention::{Pruner, RetentionSettings};
use tenantry_platform::server::Shutdown;
use tenantry_platform::testing::{TempDatabase, TempPostgres};
use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{AccountId, UserId};
use tenantry_proto::events::v1 as events;
use tenantry_proto::membership::v1 as membership;

use super::entities::removed_member;
use super::fanout::{self, Job, PageOutcome};
use super::migrations::Migrator;
use super::{Store, prune_targets};
use crate::consumers::MembershipEvents;
use crate::domain::{ListedMember, NewMessage, ReadPolicy};

async fn on_sqlite() -> (TempDatabase, Store) {
    let temp = TempDatabase::new::<Migrator>("notification-removal").await;
    let store = Store::new(temp.database.clone(), Outbox::new());
    (temp, store)
}

async fn on_postgres(purpose: &str) -> Option<(TempPostgres, Database, Store)> {
    let temp = TempPostgres::create(purpose).await?;
    let database = temp.database();
    database.connect_and_migrate::<Migrator>().await.unwrap();
    let store = Store::new(database.clone(), Outbox::new());
    Some((temp, database, store))
}

/// A page as the worker read it from membership: users and when their memberships began.
fn page(members: &[(&str, DateTime<Utc>)]) -> Vec<ListedMember> {
    members
        .iter()
        .map(|(user, added_time)| ListedMember {
            user_id: user.to_string(),
            added_time: *added_time,
        })
        .collect()
}

/// Sends an ALL_MUST_READ message to `acme`, records its job and claims it.
async fn send_and_claim(store: &Store, database: &Database) -> (String, Job) {
    let new = NewMessage {
        partner_id: AccountId::trusted("partner"),
        partner_display_name: "Partner".into(),
        sender: "users/sender".into(),
        title: "Maintenance".into(),
        body: "Tonight.".into(),
        read_policy: ReadPolicy::AllMustRead,
        recipients: vec![AccountId::trusted("acme")],
        all_customers: false,
        roles: vec![],
        expire_time: None,
    };
    let view = store.send(&new, None, now()).await.unwrap();
    let id = view.message.message_id;
    fanout::record_jobs(database.connection().unwrap(), &id, &new.recipients, now())
        .await
        .unwrap();
    let job = store.claim_job(now()).await.unwrap().unwrap();
    (id, job)
}

/// membership's `member.removed` for `user` of `acme`, whose membership began at `added`,
/// removed at `removed` (membership's clock).
fn removal(user: &str, added: DateTime<Utc>, removed: DateTime<Utc>) -> Event {
    let member = membership::Member {
        name: format!("accounts/acme/members/{user}"),
        user: format!("users/{user}"),
        create_time: Some(to_timestamp(added)),
        ..Default::default()
    };
    let mut event = Event::of(
        "/tenantry/membership",
        &events::MemberRemoved {
            member: Some(member),
            actor: "users/admin".into(),
            provenance: None,
        },
    );
    event.time = removed;
    event
}

/// membership's `member.expired` for `user` of `acme` (the expiry sweep's removal): the same
/// member as [`removal`] reports, from the sweep.
fn expiry(user: &str, added: DateTime<Utc>, expired: DateTime<Utc>) -> Event {
    let removed: events::MemberRemoved = removal(user, added, expired).decode().unwrap();
    let mut event = Event::of(
        "/tenantry/membership",
        &events::MemberExpired {
            member: removed.member,
            actor: "services/membership".into(),
            provenance: None,
        },
    );
    event.time = expired;
    event
}

/// Handles `event` as the `member.removed` consumer does, committed.
async fn consume(database: &Database, event: &Event) {
    let txn = database.connection().unwrap().begin().await.unwrap();
    MembershipEvents::new(Outbox::new())
        .handle(&txn, event)
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

async fn pending(store: &Store, user: &str) -> usize {
    store
        .pending_inbox(&UserId::trusted(user), None, 10, now())
        .await
        .unwrap()
        .len()
}

/// The page lists alice and uma; uma's removal is consumed before the page is written: only
/// alice gets the message, and acme resolves once she acknowledged.
async fn removed_between_read_and_write(store: &Store, database: &Database) {
    let added = now() - Duration::days(30);
    let (id, job) = send_and_claim(store, database).await;
    let read = page(&[("alice", added), ("uma", added)]);
    consume(
        database,
        &removal("uma", added, now() - Duration::seconds(1)),
    )
    .await;
    let outcome = store.apply_page(&job, &read, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 1,
            done: true
        }
    );
    assert_eq!(pending(store, "uma").await, 0, "uma was removed");
    assert_eq!(pending(store, "alice").await, 1);
    let view = store.view(&id).await.unwrap().unwrap();
    assert_eq!(
        (view.stats[0].recipient_count, view.stats[0].withdrawn_count),
        (1, 0)
    );
    store
        .acknowledge(
            &UserId::trusted("alice"),
            &AccountId::trusted("partner"),
            &id,
            now(),
        )
        .await
        .unwrap();
    let view = store.view(&id).await.unwrap().unwrap();
    assert!(view.stats[0].resolve_time.is_some(), "nobody else has it");
}

/// rita was removed and added again before the page was read: the listed membership is the
/// new one, and she gets the message. uma's removals arrive out of order: the later one counts.
async fn re_added_before_the_read(store: &Store, database: &Database) {
    let start = now() - Duration::days(30);
    let at = |hours: i64| start + Duration::hours(hours);
    let (_, job) = send_and_claim(store, database).await;
    consume(database, &removal("rita", at(0), at(1))).await;
    // uma: added at 0, removed at 1, added at 2, removed at 4; the first removal comes last.
    consume(database, &removal("uma", at(2), at(4))).await;
    consume(database, &removal("uma", at(0), at(1))).await;
    // Read while uma's second membership still existed, written after its removal.
    let read = page(&[("rita", at(2)), ("uma", at(2))]);
    let outcome = store.apply_page(&job, &read, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 1,
            done: true
        }
    );
    assert_eq!(pending(store, "rita").await, 1, "rita's membership is new");
    assert_eq!(pending(store, "uma").await, 0, "uma's was removed");
}

/// Two membership replicas whose clocks differ: rita was removed on one whose clock is ahead
/// (the event's time is hour 3) and added again on one whose clock is behind (her new
/// membership began at hour 2). The page lists the new membership: she gets the message, since
/// the removed membership began at hour 0. Comparing the removal's time with the listed start
/// would have left her out.
async fn re_added_on_a_replica_whose_clock_is_behind(store: &Store, database: &Database) {
    let start = now() - Duration::days(30);
    let at = |hours: i64| start + Duration::hours(hours);
    let (_, job) = send_and_claim(store, database).await;
    consume(database, &removal("rita", at(0), at(3))).await;
    let read = page(&[("rita", at(2))]);
    let outcome = store.apply_page(&job, &read, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 1,
            done: true
        }
    );
    assert_eq!(pending(store, "rita").await, 1, "rita's membership is new");
}

/// A record written before `member_since` existed still leaves out a membership that began
/// before its removal, and the next removal of that user replaces it.
async fn records_of_an_older_build(store: &Store, database: &Database) {
    let start = now() - Duration::days(30);
    let at = |hours: i64| start + Duration::hours(hours);
    let (_, job) = send_and_claim(store, database).await;
    let connection = database.connection().unwrap();
    let backend = connection.get_database_backend();
    for (user, removed) in [("olga", at(1)), ("rita", at(1))] {
        connection
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                "INSERT INTO removed_members (account_id, user_id, remove_time) \
                 VALUES ('acme', $1, $2)",
                [user.into(), removed.into()],
            ))
            .await
            .unwrap();
    }
    // rita was added again at 2 and removed again (that membership began at 2).
    consume(database, &removal("rita", at(2), at(4))).await;
    let read = page(&[("olga", at(0)), ("rita", at(2))]);
    let outcome = store.apply_page(&job, &read, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 0,
            done: true
        }
    );
}

/// uma's time-bound membership expires after the message reached her: `member.expired`
/// withdraws her pending delivery as a removal would (alice keeps hers), and records the
/// removal, so a page of a later message read before the expiry leaves her out too.
async fn expired_member_loses_pending_deliveries(store: &Store, database: &Database) {
    let added = now() - Duration::days(30);
    let (id, job) = send_and_claim(store, database).await;
    let listed = page(&[("alice", added), ("uma", added)]);
    let outcome = store.apply_page(&job, &listed, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 2,
            done: true
        }
    );
    assert_eq!(pending(store, "uma").await, 1);
    consume(
        database,
        &expiry("uma", added, now() - Duration::seconds(1)),
    )
    .await;
    assert_eq!(pending(store, "uma").await, 0, "uma's membership expired");
    assert_eq!(pending(store, "alice").await, 1);
    let view = store.view(&id).await.unwrap().unwrap();
    assert_eq!(
        (view.stats[0].recipient_count, view.stats[0].withdrawn_count),
        (2, 1)
    );
    assert!(
        view.stats[0].resolve_time.is_none(),
        "alice has not read it"
    );
    let recorded: Vec<(String, Option<DateTime<Utc>>)> = removed_member::Entity::find()
        .all(database.connection().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.user_id, row.member_since))
        .collect();
    assert_eq!(recorded, [("uma".to_string(), Some(added))]);
    let (_, later) = send_and_claim(store, database).await;
    let outcome = store.apply_page(&later, &listed, "", now()).await.unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 1,
            done: true
        }
    );
    assert_eq!(
        pending(store, "uma").await,
        0,
        "not after the expiry either"
    );
}

#[tokio::test]
async fn an_expired_member_loses_pending_deliveries_on_sqlite() {
    let (temp, store) = on_sqlite().await;
    expired_member_loses_pending_deliveries(&store, &temp.database).await;
}

#[tokio::test]
async fn an_expired_member_loses_pending_deliveries_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_member_expired").await else {
        return;
    };
    expired_member_loses_pending_deliveries(&store, &database).await;
}

#[tokio::test]
async fn records_of_an_older_build_still_count_on_sqlite() {
    let (temp, store) = on_sqlite().await;
    records_of_an_older_build(&store, &temp.database).await;
}

#[tokio::test]
async fn records_of_an_older_build_still_count_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_removal_old").await else {
        return;
    };
    records_of_an_older_build(&store, &database).await;
}

#[tokio::test]
async fn a_member_re_added_on_a_replica_behind_gets_the_message_on_sqlite() {
    let (temp, store) = on_sqlite().await;
    re_added_on_a_replica_whose_clock_is_behind(&store, &temp.database).await;
}

#[tokio::test]
async fn a_member_re_added_on_a_replica_behind_gets_the_message_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_removal_skew").await else {
        return;
    };
    re_added_on_a_replica_whose_clock_is_behind(&store, &database).await;
}

#[tokio::test]
async fn a_member_removed_between_page_read_and_write_gets_nothing_on_sqlite() {
    let (temp, store) = on_sqlite().await;
    removed_between_read_and_write(&store, &temp.database).await;
}

#[tokio::test]
async fn a_member_removed_between_page_read_and_write_gets_nothing_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_removal_race").await else {
        return;
    };
    removed_between_read_and_write(&store, &database).await;
}

#[tokio::test]
async fn a_member_re_added_after_a_removal_gets_the_message_on_sqlite() {
    let (temp, store) = on_sqlite().await;
    re_added_before_the_read(&store, &temp.database).await;
}

#[tokio::test]
async fn a_member_re_added_after_a_removal_gets_the_message_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_removal_readd").await else {
        return;
    };
    re_added_before_the_read(&store, &database).await;
}

/// PostgreSQL, removal first: while the consumer's transaction is open, the page's transaction
/// waits for it, then sees the removal.
#[tokio::test]
async fn a_page_waits_for_a_removal_in_progress_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_removal_first").await else {
        return;
    };
    let added = now() - Duration::days(30);
    let (_, job) = send_and_claim(&store, &database).await;
    let read = page(&[("alice", added), ("uma", added)]);
    let txn = database.connection().unwrap().begin().await.unwrap();
    MembershipEvents::new(Outbox::new())
        .handle(&txn, &removal("uma", added, now()))
        .await
        .unwrap();
    let apply = tokio::spawn({
        let store = store.clone();
        async move { store.apply_page(&job, &read, "", now()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!apply.is_finished(), "the page waits for the removal");
    txn.commit().await.unwrap();
    let outcome = apply.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 1,
            done: true
        }
    );
    assert_eq!(pending(&store, "uma").await, 0);
    assert_eq!(pending(&store, "alice").await, 1);
}

/// PostgreSQL, page first: a transaction holding the job as `apply_page` does (its row
/// updated, uma's delivery inserted) makes the removal wait; once it commits, the removal
/// withdraws that delivery.
#[tokio::test]
async fn a_removal_waits_for_a_page_in_progress_on_postgres() {
    let Some((_temp, database, store)) = on_postgres("notification_page_first").await else {
        return;
    };
    let added = now() - Duration::days(30);
    let (id, _job) = send_and_claim(&store, &database).await;
    let page_txn = database.connection().unwrap().begin().await.unwrap();
    let backend = page_txn.get_database_backend();
    page_txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            "UPDATE fanout_jobs SET pages = pages + 1 WHERE message_id = $1",
            [id.clone().into()],
        ))
        .await
        .unwrap();
    page_txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            "INSERT INTO deliveries (message_id, account_id, user_id, state, \
             message_create_time, message_expire_time, create_time, ack_time, update_time) \
             SELECT message_id, 'acme', 'uma', 'PENDING', create_time, NULL, $2, NULL, $2 \
             FROM messages WHERE message_id = $1",
            [id.clone().into(), now().into()],
        ))
        .await
        .unwrap();
    page_txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            "UPDATE recipient_accounts SET recipient_count = recipient_count + 1 \
             WHERE message_id = $1",
            [id.clone().into()],
        ))
        .await
        .unwrap();
    let removal = tokio::spawn({
        let database = database.clone();
        async move { consume(&database, &removal("uma", added, now())).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!removal.is_finished(), "the removal waits for the page");
    page_txn.commit().await.unwrap();
    removal.await.unwrap();
    assert_eq!(pending(&store, "uma").await, 0);
    let view = store.view(&id).await.unwrap().unwrap();
    assert_eq!(view.stats[0].withdrawn_count, 1);
}

/// Removal records go with the processed-events retention (a week by default); the service's
/// pruner keeps the recent ones.
async fn prunes_old_removals(database: &Database) {
    let start = now() - Duration::days(30);
    consume(database, &removal("old", start, now() - Duration::days(8))).await;
    consume(database, &removal("new", start, now() - Duration::hours(1))).await;
    let pruner = Pruner::new(
        "notification",
        database.clone(),
        prune_targets(&RetentionSettings::DEFAULT),
    );
    for result in pruner.prune_once(now(), &Shutdown::new()).await {
        result.unwrap();
    }
    let kept: Vec<String> = removed_member::Entity::find()
        .order_by_asc(removed_member::Column::UserId)
        .all(database.connection().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.user_id)
        .collect();
    assert_eq!(kept, ["new"]);
}

#[tokio::test]
async fn removal_records_are_pruned_after_the_processed_events_retention_on_sqlite() {
    let (temp, _store) = on_sqlite().await;
    prunes_old_removals(&temp.database).await;
}

#[tokio::test]
async fn removal_records_are_pruned_after_the_processed_events_retention_on_postgres() {
    let Some((_temp, database, _store)) = on_postgres("notification_removal_prune").await else {
        return;
    };
    prunes_old_removals(&database).await;
}
