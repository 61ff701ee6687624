//! Store tests on fresh SQLite files.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, Statement};
use tenantry_events::Outbox;
use tenantry_platform::server::Shutdown;
use tenantry_platform::testing::TempDatabase;
use tenantry_platform::{AccountId, Role, UserId};

use super::Store;
use super::fanout::{self, PageOutcome};
use super::migrations::Migrator;
use super::withdraw;
use crate::domain::{
    DeliveryState, ListedMember, MessageState, NewMessage, NotificationError, ReadPolicy,
};
use crate::peers::{MemberPage, MemberPageError, MemberSource};
use crate::worker::run_job;

struct TestDb {
    store: Store,
    database: TempDatabase,
}

async fn test_db() -> TestDb {
    let database = TempDatabase::new::<Migrator>("notification").await;
    TestDb {
        store: Store::new(database.database.clone(), Outbox::new()),
        database,
    }
}

fn account_id(id: &str) -> AccountId {
    AccountId::trusted(id)
}

fn user_id(id: &str) -> UserId {
    UserId::trusted(id)
}

/// Members per account, served in pages keyed by position.
#[derive(Debug, Default)]
struct FakeMembers {
    accounts: BTreeMap<String, Vec<String>>,
}

impl FakeMembers {
    fn with(accounts: &[(&str, Vec<String>)]) -> Self {
        Self {
            accounts: accounts
                .iter()
                .map(|(account, users)| (account.to_string(), users.clone()))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl MemberSource for FakeMembers {
    async fn page(
        &self,
        account_id: &str,
        _roles: &[Role],
        page_size: i32,
        page_token: &str,
    ) -> Result<MemberPage, MemberPageError> {
        let Some(users) = self.accounts.get(account_id) else {
            return Err(MemberPageError::Gone("no such account".into()));
        };
        let start: usize = if page_token.is_empty() {
            0
        } else {
            page_token.parse().unwrap()
        };
        let end = (start + page_size as usize).min(users.len());
        Ok(MemberPage {
            // Members since long ago (no removal is recorded in these tests).
            members: users[start..end]
                .iter()
                .map(|user| ListedMember {
                    user_id: user.clone(),
                    added_time: DateTime::UNIX_EPOCH,
                })
                .collect(),
            next_page_token: if end < users.len() {
                end.to_string()
            } else {
                String::new()
            },
        })
    }
}

fn users(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:05}")).collect()
}

fn new_message(recipients: &[&str], policy: ReadPolicy) -> NewMessage {
    NewMessage {
        partner_id: account_id("partner"),
        partner_display_name: "Partner".into(),
        sender: "users/sender".into(),
        title: "Maintenance".into(),
        body: "Tonight.".into(),
        read_policy: policy,
        recipients: recipients.iter().map(|r| account_id(r)).collect(),
        all_customers: false,
        roles: vec![],
        expire_time: None,
    }
}

/// Sends, records the jobs as the consumer would, and fans out completely.
async fn send_and_fan_out(
    db: &TestDb,
    new: &NewMessage,
    members: &FakeMembers,
    now: DateTime<Utc>,
) -> String {
    let view = db.store.send(new, None, now).await.unwrap();
    let id = view.message.message_id.clone();
    let conn = db.database.database.connection().unwrap();
    fanout::record_jobs(conn, &id, &new.recipients, now)
        .await
        .unwrap();
    drain(db, members, 10).await;
    id
}

async fn drain(db: &TestDb, members: &FakeMembers, batch: i32) {
    let shutdown = Shutdown::new();
    while let Some(job) = db.store.claim_job(Utc::now()).await.unwrap() {
        run_job(&db.store, members, job, batch, &shutdown)
            .await
            .unwrap();
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let conn = db.database.database.connection().unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn fan_out_resumes_from_its_cursor_without_duplicates() {
    let db = test_db().await;
    let now = tenantry_platform::time::now();
    let everyone = users("u", 25);
    let members = FakeMembers::with(&[("acme", everyone.clone())]);
    let new = new_message(&["acme"], ReadPolicy::AllMustRead);
    let view = db.store.send(&new, None, now).await.unwrap();
    let id = view.message.message_id.clone();
    let conn = db.database.database.connection().unwrap();
    fanout::record_jobs(conn, &id, &new.recipients, now)
        .await
        .unwrap();
    // Recording again (a redelivered message.sent) adds no job.
    fanout::record_jobs(conn, &id, &new.recipients, now)
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM fanout_jobs").await, 1);

    // The first page is written, then the worker "crashes" (its lease is dropped).
    let job = db.store.claim_job(now).await.unwrap().unwrap();
    let first = members.page("acme", &[], 10, "").await.unwrap();
    let outcome = db
        .store
        .apply_page(&job, &first.members, &first.next_page_token, now)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PageOutcome::Applied {
            inserted: 10,
            done: false
        }
    );
    // Replaying the same page from the old cursor writes nothing.
    assert_eq!(
        db.store
            .apply_page(&job, &first.members, &first.next_page_token, now)
            .await
            .unwrap(),
        PageOutcome::Stale
    );
    db.store.release_job(&job).await.unwrap();
    assert_eq!(
        db.store.message(&id).await.unwrap().unwrap().state,
        MessageState::Queued
    );
    // One inbox.changed event for the whole page.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'inbox.changed'"
        )
        .await,
        1
    );

    // A restart resumes from the stored cursor.
    drain(&db, &members, 10).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries").await, 25);
    let view = db.store.view(&id).await.unwrap().unwrap();
    assert_eq!(view.stats[0].recipient_count, 25);
    assert_eq!(view.message.state, MessageState::Delivered);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'inbox.changed'"
        )
        .await,
        3
    );

    // Even a job rewound to the start (pages written twice) adds no delivery and no count.
    conn.execute_unprepared(
        "UPDATE fanout_jobs SET page_token = '', done = false, lease_until = NULL",
    )
    .await
    .unwrap();
    drain(&db, &members, 7).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries").await, 25);
    let view = db.store.view(&id).await.unwrap().unwrap();
    assert_eq!(view.stats[0].recipient_count, 25);
}

/// The context of a call by the person `alice`.
fn alices_call() -> Arc<tenantry_platform::call_context::CallContext> {
    let alice = tenantry_platform::Principal::User(tenantry_platform::UserIdentity {
        sub: "alice".into(),
        email: None,
        email_verified: false,
        given_name: None,
        family_name: None,
        operator: false,
    });
    Arc::new(tenantry_platform::call_context::CallContext::of_call(
        &tonic::codegen::http::HeaderMap::new(),
        &alice,
    ))
}

#[tokio::test]
async fn a_user_reached_through_two_accounts_sees_the_message_once() {
    let db = test_db().await;
    let now = tenantry_platform::time::now();
    let members = FakeMembers::with(&[
        ("acme", vec!["alice".into(), "bob".into()]),
        ("beta", vec!["alice".into()]),
    ]);
    let id = send_and_fan_out(
        &db,
        &new_message(&["acme", "beta"], ReadPolicy::AllMustRead),
        &members,
        now,
    )
    .await;
    let inbox = db
        .store
        .pending_inbox(&user_id("alice"), None, 10, now)
        .await
        .unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].accounts, [account_id("acme"), account_id("beta")]);

    // Inside Alice's call: receiving the message is what let her acknowledge it.
    let call = alices_call();
    let outcome = tenantry_platform::call_context::scope(
        call.clone(),
        db.store
            .acknowledge(&user_id("alice"), &account_id("partner"), &id, now),
    )
    .await
    .unwrap();
    assert_eq!(call.role().as_deref(), Some("RECIPIENT"));
    assert_eq!(
        outcome.acknowledged_accounts,
        [account_id("acme"), account_id("beta")]
    );
    assert_eq!(outcome.acknowledge_time, Some(now));
    assert!(
        db.store
            .pending_inbox(&user_id("alice"), None, 10, now)
            .await
            .unwrap()
            .is_empty()
    );
    // Idempotent: a repeat returns the first acknowledgement.
    let later = now + Duration::seconds(5);
    let again = db
        .store
        .acknowledge(&user_id("alice"), &account_id("partner"), &id, later)
        .await
        .unwrap();
    assert_eq!(again, outcome);
    let view = db.store.view(&id).await.unwrap().unwrap();
    let stats: Vec<_> = view
        .stats
        .iter()
        .map(|s| {
            (
                s.account_id.as_str(),
                s.recipient_count,
                s.acknowledged_count,
                s.resolve_time.is_some(),
            )
        })
        .collect();
    // beta: its only recipient acknowledged → resolved; acme: bob still has it.
    assert_eq!(stats, vec![("acme", 2, 1, false), ("beta", 1, 1, true)]);
    assert_eq!(db.store.receipts(&id, None, 10).await.unwrap().len(), 2);
    // Someone who did not receive it: PERMISSION_DENIED, whether it exists or not (and no
    // role is recorded for the call).
    for (user, message) in [
        ("mallory", id.as_str()),
        ("alice", "0190a6a8-7c2b-7d3e-8f40-1234567890ab"),
    ] {
        let call = alices_call();
        assert!(matches!(
            tenantry_platform::call_context::scope(
                call.clone(),
                db.store
                    .acknowledge(&user_id(user), &account_id("partner"), message, now),
            )
            .await,
            Err(NotificationError::PermissionDenied)
        ));
        assert_eq!(call.role(), None);
    }
    assert!(matches!(
        db.store
            .acknowledge(&user_id("bob"), &account_id("other-partner"), &id, now)
            .await,
        Err(NotificationError::PermissionDenied)
    ));
}

#[tokio::test]
async fn fifty_concurrent_single_read_acks_have_exactly_one_resolver() {
    let db = test_db().await;
    let now = tenantry_platform::time::now();
    let everyone = users("m", 50);
    let members = FakeMembers::with(&[("acme", everyone.clone()), ("beta", vec!["x".into()])]);
    let id = send_and_fan_out(
        &db,
        &new_message(&["acme", "beta"], ReadPolicy::SingleReadOnly),
        &members,
        now,
    )
    .await;
    let store = Arc::new(db.store.clone());
    let tasks: Vec<_> = everyone
        .iter()
        .map(|user| {
            let (store, user, id) = (store.clone(), user.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .acknowledge(&user_id(&user), &account_id("partner"), &id, now)
                    .await
            })
        })
        .collect();
    let mut resolvers = 0;
    let mut already = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        if outcome.acknowledged_accounts == [account_id("acme")] {
            resolvers += 1;
        } else {
            assert_eq!(outcome.already_resolved_accounts, [account_id("acme")]);
            assert_eq!(outcome.acknowledge_time, None);
            already += 1;
        }
    }
    assert_eq!((resolvers, already), (1, 49));
    let view = db.store.view(&id).await.unwrap().unwrap();
    let acme = &view.stats[0];
    assert_eq!(acme.acknowledged_count, 1);
    assert!(acme.resolved_by.is_some());
    assert!(acme.resolve_time.is_some());
    // One customer's ack does not resolve it for another.
    let beta = &view.stats[1];
    assert!(beta.resolved_by.is_none());
    assert_eq!(
        db.store
            .pending_inbox(&user_id("x"), None, 10, now)
            .await
            .unwrap()
            .len(),
        1
    );
    for user in &everyone {
        assert!(
            db.store
                .pending_inbox(&user_id(user), None, 10, now)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE account_id = 'acme' AND state = 'RESOLVED'"
        )
        .await,
        49
    );
    assert_eq!(db.store.receipts(&id, None, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn removed_members_and_deleted_accounts_lose_pending_deliveries() {
    let db = test_db().await;
    let now = tenantry_platform::time::now();
    let members = FakeMembers::with(&[
        ("acme", vec!["u1".into(), "u2".into()]),
        ("beta", vec!["u1".into(), "u3".into()]),
    ]);
    let id = send_and_fan_out(
        &db,
        &new_message(&["acme", "beta"], ReadPolicy::AllMustRead),
        &members,
        now,
    )
    .await;
    let conn = db.database.database.connection().unwrap();
    let outbox = Outbox::new();
    assert_eq!(
        withdraw::withdraw_member(conn, &outbox, &account_id("acme"), &user_id("u1"), now)
            .await
            .unwrap(),
        1
    );
    let inbox = db
        .store
        .pending_inbox(&user_id("u1"), None, 10, now)
        .await
        .unwrap();
    assert_eq!(
        inbox[0].accounts,
        [account_id("beta")],
        "still pending through beta"
    );
    assert_eq!(
        withdraw::withdraw_account(conn, &outbox, &account_id("beta"), now)
            .await
            .unwrap(),
        2
    );
    for user in ["u1", "u3"] {
        assert!(
            db.store
                .pending_inbox(&user_id(user), None, 10, now)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            db.store
                .acknowledge(&user_id(user), &account_id("partner"), &id, now)
                .await,
            Err(NotificationError::PermissionDenied)
        ));
    }
    assert_eq!(
        db.store
            .pending_inbox(&user_id("u2"), None, 10, now)
            .await
            .unwrap()
            .len(),
        1
    );
    let view = db.store.view(&id).await.unwrap().unwrap();
    assert_eq!(view.stats[0].withdrawn_count, 1);
    assert_eq!(view.stats[1].withdrawn_count, 2);
    // ALL_MUST_READ: everyone in beta is withdrawn → resolved; acme waits for u2.
    assert!(view.stats[1].resolve_time.is_some());
    assert!(view.stats[0].resolve_time.is_none());
    db.store
        .acknowledge(&user_id("u2"), &account_id("partner"), &id, now)
        .await
        .unwrap();
    let view = db.store.view(&id).await.unwrap().unwrap();
    assert!(view.stats[0].resolve_time.is_some());
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE state = '{}'",
                DeliveryState::Withdrawn.as_str()
            )
        )
        .await,
        3
    );
}

#[tokio::test]
async fn the_inbox_is_newest_first_and_paged() {
    let db = test_db().await;
    let start = tenantry_platform::time::now();
    let members = FakeMembers::with(&[("acme", vec!["alice".into()])]);
    let mut ids = Vec::new();
    for i in 0..5 {
        // Two messages share a send time: the id breaks the tie.
        let at = start + Duration::seconds(i64::from(i / 2));
        ids.push(
            send_and_fan_out(
                &db,
                &new_message(&["acme"], ReadPolicy::AllMustRead),
                &members,
                at,
            )
            .await,
        );
    }
    let now = start + Duration::seconds(10);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = db
            .store
            .pending_inbox(&user_id("alice"), cursor.as_ref(), 2, now)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page
            .last()
            .and_then(|entry| super::inbox::decode_cursor(&super::inbox::encode_cursor(entry)));
        seen.extend(page.into_iter().map(|entry| entry.message.message_id));
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn expired_messages_leave_every_inbox() {
    let db = test_db().await;
    let now = tenantry_platform::time::now();
    let members = FakeMembers::with(&[("acme", vec!["alice".into(), "bob".into()])]);
    let mut new = new_message(&["acme"], ReadPolicy::AllMustRead);
    new.expire_time = Some(now + Duration::seconds(30));
    let id = send_and_fan_out(&db, &new, &members, now).await;
    assert_eq!(
        db.store
            .pending_inbox(&user_id("alice"), None, 10, now)
            .await
            .unwrap()
            .len(),
        1
    );
    let later = now + Duration::seconds(31);
    // Filtered on read even before the sweep.
    assert!(
        db.store
            .pending_inbox(&user_id("alice"), None, 10, later)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.store.expire_due_messages(later, 10).await.unwrap(), 1);
    assert_eq!(db.store.expire_due_deliveries(later, 10).await.unwrap(), 2);
    assert_eq!(
        db.store.message(&id).await.unwrap().unwrap().state,
        MessageState::Expired
    );
    assert!(matches!(
        db.store
            .acknowledge(&user_id("alice"), &account_id("partner"), &id, later)
            .await,
        Err(NotificationError::Expired(_))
    ));
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'message.expired'"
        )
        .await,
        1
    );
}
