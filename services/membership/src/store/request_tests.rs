//! Access requests and policies on both backends: concurrent last approvals grant once, a
//! decline racing the last approval has one outcome, the OWNER limit is re-checked by the
//! granting transaction, one PENDING request per subject, e-mails claimed once, and policy
//! writes conditioned on the version read.

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, Statement};

use super::test_stores::{postgres, sqlite};
use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::domain::policy::{AccessPolicy, GatedGrant};
use crate::domain::requests::{AccessRequest, RequestState};
use crate::events::RequestChange;

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

async fn add(store: &Store, account_id: &str, user_id: &str, role: Role) {
    store
        .add_member(
            &NewMember {
                account_id: a(account_id),
                user_id: u(user_id),
                role,
                source: MemberSource::Direct,
                added_by: "users/setup".into(),
                expire_time: None,
            },
            MAX_OWNERS,
            None,
        )
        .await
        .expect("member added");
    store
        .upsert_user(
            &u(user_id),
            &UserProfile {
                email: format!("{user_id}@example.com"),
                ..UserProfile::default()
            },
        )
        .await
        .expect("directory entry");
}

fn request(
    account_id: &str,
    subject: &str,
    role: Role,
    requester: &str,
    required: i32,
) -> AccessRequest {
    let now = tenantry_platform::time::now();
    AccessRequest {
        account_id: a(account_id),
        request_id: uuid::Uuid::new_v4().hyphenated().to_string(),
        subject: u(subject),
        subject_email: String::new(),
        role,
        reason: "on call this week".into(),
        access_duration: None,
        state: RequestState::Pending,
        requester: u(requester),
        approvals: Vec::new(),
        required_approvals: required,
        escalated: false,
        create_time: now,
        expire_time: now + Duration::days(7),
        decide_time: None,
        decided_by: None,
        decline_reason: None,
        version: 1,
    }
}

/// How many outbox events have `event_type`.
async fn events_of(store: &Store, event_type: &str) -> i64 {
    let connection = store.connection().unwrap();
    let backend = connection.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT COUNT(*) FROM outbox WHERE event_type = $1",
        _ => "SELECT COUNT(*) FROM outbox WHERE event_type = ?1",
    };
    connection
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [event_type.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Two approvers' last approvals at once: one grants, the other is told the request is no
/// longer PENDING (or lost a race to retry); one membership, one `member.added`.
async fn concurrent_last_approvals_grant_once(store: Store) {
    for (user, role) in [
        ("alice", Role::Owner),
        ("bob", Role::Admin),
        ("carol", Role::Admin),
        ("dave", Role::Admin),
    ] {
        add(&store, "acme", user, role).await;
    }
    let created = store
        .create_request(
            &request("acme", "sam", Role::Admin, "alice", 3),
            &[u("bob"), u("carol"), u("dave")],
        )
        .await
        .expect("created");
    let (second, granted) = store
        .approve_request(&created, &u("bob"), false, false, MAX_OWNERS, false)
        .await
        .expect("second approval");
    assert!(granted.is_none());
    assert_eq!(second.approvals.len(), 2);
    let (carol, dave) = (u("carol"), u("dave"));
    let (one, other) = tokio::join!(
        store.approve_request(&second, &carol, false, true, MAX_OWNERS, false),
        store.approve_request(&second, &dave, false, true, MAX_OWNERS, false),
    );
    let outcomes = [one, other];
    let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let (approved, member) = won[0];
    assert_eq!(approved.state, RequestState::Approved);
    assert_eq!(member.as_ref().map(|m| m.role), Some(Role::Admin));
    for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(
                lost,
                MembershipError::NotPending {
                    state: RequestState::Approved,
                    ..
                } | MembershipError::ConcurrentChange
            ),
            "{lost:?}"
        );
    }
    assert_eq!(
        events_of(&store, "member.added").await,
        5,
        "four set-up members and sam"
    );
    assert_eq!(events_of(&store, "access_request.approved").await, 2);
    let stored = store
        .request(&a("acme"), &created.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.approvals.len(), 3);
    assert_eq!(stored.state, RequestState::Approved);
}

/// A decline and the last approval at once: exactly one of them happens.
async fn a_decline_racing_the_last_approval_has_one_outcome(store: Store) {
    for (user, role) in [("alice", Role::Owner), ("bob", Role::Admin)] {
        add(&store, "acme", user, role).await;
    }
    for round in 0..6 {
        let subject = format!("sam{round}");
        let created = store
            .create_request(
                &request("acme", &subject, Role::Admin, "alice", 2),
                &[u("bob")],
            )
            .await
            .expect("created");
        let bob = u("bob");
        let (approve, decline) = tokio::join!(
            store.approve_request(&created, &bob, false, true, MAX_OWNERS, false),
            store.close_request(&created, RequestChange::Declined, &bob, Some("no"), false),
        );
        let member = store.member(&a("acme"), &u(&subject)).await.unwrap();
        let stored = store
            .request(&a("acme"), &created.request_id)
            .await
            .unwrap()
            .unwrap();
        match (approve.is_ok(), decline.is_ok()) {
            (true, false) => {
                assert_eq!(stored.state, RequestState::Approved);
                assert!(member.is_some());
            }
            (false, true) => {
                assert_eq!(stored.state, RequestState::Declined);
                assert!(member.is_none());
                assert_eq!(
                    stored.approvals.len(),
                    1,
                    "the losing approval left nothing"
                );
            }
            other => panic!("round {round}: {other:?} ({approve:?}, {decline:?})"),
        }
    }
}

/// The granting transaction re-checks the OWNER limit: with two OWNERs a third is refused and
/// the approval is not recorded; the request stays PENDING.
async fn the_last_approval_never_over_grants_owner(store: Store) {
    for (user, role) in [("alice", Role::Owner), ("olga", Role::Owner)] {
        add(&store, "acme", user, role).await;
    }
    let created = store
        .create_request(
            &request("acme", "sam", Role::Owner, "alice", 2),
            &[u("olga")],
        )
        .await
        .expect("created");
    let refused = store
        .approve_request(&created, &u("olga"), false, true, MAX_OWNERS, false)
        .await;
    assert!(
        matches!(refused, Err(MembershipError::OwnerLimit(_))),
        "{refused:?}"
    );
    let stored = store
        .request(&a("acme"), &created.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, RequestState::Pending);
    assert_eq!(stored.approvals.len(), 1);
    assert!(store.member(&a("acme"), &u("sam")).await.unwrap().is_none());
    assert_eq!(store.owner_count(&a("acme")).await.unwrap(), 2);
}

/// A time-bound OWNER is never made the account's only one: the last OWNER never expires.
async fn the_only_owner_is_never_time_bound(store: Store) {
    for (user, role) in [("alice", Role::Admin), ("bob", Role::Admin)] {
        add(&store, "acme", user, role).await;
    }
    let mut ask = request("acme", "sam", Role::Owner, "alice", 2);
    ask.access_duration = Some(Duration::hours(4));
    let created = store
        .create_request(&ask, &[u("bob")])
        .await
        .expect("created");
    let refused = store
        .approve_request(&created, &u("bob"), false, true, MAX_OWNERS, false)
        .await;
    assert!(
        matches!(refused, Err(MembershipError::LastOwnerExpiry(_))),
        "{refused:?}"
    );
    assert!(store.member(&a("acme"), &u("sam")).await.unwrap().is_none());
}

/// One PENDING request per subject; a lapsed one is closed (EXPIRED) by the next.
async fn one_pending_request_per_subject(store: Store) {
    add(&store, "acme", "alice", Role::Owner).await;
    let first = store
        .create_request(&request("acme", "sam", Role::Admin, "alice", 2), &[])
        .await
        .expect("created");
    let again = store
        .create_request(&request("acme", "sam", Role::Owner, "alice", 2), &[])
        .await;
    assert!(
        matches!(&again, Err(MembershipError::RequestPending(name)) if name == &first.name()),
        "{again:?}"
    );
    // Lapse the first, then ask again.
    let connection = store.connection().unwrap();
    let backend = connection.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE access_requests SET expire_time = $1",
        _ => "UPDATE access_requests SET expire_time = ?1",
    };
    connection
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [(Utc::now() - Duration::minutes(1)).into()],
        ))
        .await
        .unwrap();
    store
        .create_request(&request("acme", "sam", Role::Admin, "alice", 2), &[])
        .await
        .expect("a new request once the first lapsed");
    let lapsed = store
        .request(&a("acme"), &first.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lapsed.state, RequestState::Expired);
}

/// The approvers' e-mails are queued with the request, each claimed by one attempt, and gone
/// from the due list once sent; the requester's is queued by the last approval.
async fn request_mails_are_claimed_once(store: Store) {
    for (user, role) in [("alice", Role::Owner), ("bob", Role::Admin)] {
        add(&store, "acme", user, role).await;
    }
    let created = store
        .create_request(
            &request("acme", "sam", Role::Admin, "alice", 2),
            &[u("bob")],
        )
        .await
        .expect("created");
    let now = tenantry_platform::time::now();
    let due = store.due_request_mails(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].kind, due[0].recipient.as_str()),
        (MailKind::Waiting, "bob@example.com")
    );
    let until = now + Duration::minutes(2);
    assert!(
        store
            .claim_request_mail(&due[0], "t1", now, until)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_request_mail(&due[0], "t2", now, until)
            .await
            .unwrap()
    );
    store
        .finish_request_mail(&due[0], "t1", MailOutcome::Sent, now)
        .await
        .unwrap();
    assert!(
        store
            .due_request_mails(now + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .approve_request(&created, &u("bob"), false, true, MAX_OWNERS, false)
        .await
        .expect("approved");
    let due = store
        .due_request_mails(tenantry_platform::time::now(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].kind, due[0].recipient.as_str()),
        (MailKind::Decided, "alice@example.com")
    );
    // A failed send waits for its retry time.
    let now = tenantry_platform::time::now();
    assert!(
        store
            .claim_request_mail(&due[0], "t3", now, now + Duration::minutes(2))
            .await
            .unwrap()
    );
    let retry_at = now + Duration::minutes(1);
    store
        .finish_request_mail(&due[0], "t3", MailOutcome::Retry { retry_at }, now)
        .await
        .unwrap();
    assert!(store.due_request_mails(now, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_request_mails(retry_at, 10).await.unwrap().len(),
        1
    );
    // One no longer needed is finished for good.
    let later = retry_at + Duration::minutes(2);
    assert!(
        store
            .claim_request_mail(&due[0], "t4", retry_at, later)
            .await
            .unwrap()
    );
    store
        .finish_request_mail(&due[0], "t4", MailOutcome::Skipped, retry_at)
        .await
        .unwrap();
    assert!(
        store
            .due_request_mails(later + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A policy write is conditioned on the version read; the partner's applies to its customer.
async fn policy_writes_follow_the_version_read(store: Store) {
    let rules = AccessPolicy {
        gated: [GatedGrant::AdminRole].into(),
        required_approvals: 3,
        ..AccessPolicy::default()
    };
    let first = store
        .update_policy(&a("partner"), &rules, None, false, "users/alice")
        .await
        .expect("set");
    assert_eq!(first.version, 1);
    let stale = store
        .update_policy(&a("partner"), &rules, None, true, "users/bob")
        .await;
    assert!(
        matches!(stale, Err(MembershipError::StaleEtag(_))),
        "{stale:?}"
    );
    let second = store
        .update_policy(
            &a("partner"),
            &AccessPolicy::default(),
            Some(&first),
            true,
            "users/alice",
        )
        .await
        .expect("updated");
    assert_eq!(second.version, 2);
    store
        .update_policy(&a("partner"), &rules, Some(&second), false, "users/alice")
        .await
        .expect("again");
    let effective = store
        .effective_policy(&a("acme"), Some(&a("partner")))
        .await
        .unwrap();
    assert!(effective.own.is_none());
    assert_eq!(effective.gating(GatedGrant::AdminRole), Some(&a("partner")));
    assert_eq!(effective.rules.approvals(), 3);
    assert_eq!(events_of(&store, "access_policy.updated").await, 3);
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let (_temp, store) = super::sqlite(concat!("membership-", stringify!($scenario))).await;
                    super::$scenario(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some((_temp, store)) = super::postgres(concat!("membership_", stringify!($scenario))).await else {
                        return;
                    };
                    super::$scenario(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    concurrent_last_approvals_grant_once,
    a_decline_racing_the_last_approval_has_one_outcome,
    the_last_approval_never_over_grants_owner,
    the_only_owner_is_never_time_bound,
    one_pending_request_per_subject,
    request_mails_are_claimed_once,
    policy_writes_follow_the_version_read,
);
