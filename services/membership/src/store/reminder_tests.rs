//! The reminder bookkeeping on both backends, the clock in the test's hands: which reminder
//! is due when, who gets it, one claim per e-mail, a failed send claimed again, a done
//! reminder never due again.

use chrono::{DateTime, Duration, Utc};
use tenantry_events::Outbox;
use tenantry_platform::testing::{TempDatabase, TempPostgres};

use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::store::entities::account_replica;
use crate::store::migrations::Migrator;
use crate::store::reminders::{MAX_ATTEMPTS, ReminderOutcome};

fn member(account_id: &str, user_id: &str, role: Role, ends: Option<DateTime<Utc>>) -> NewMember {
    NewMember {
        account_id: AccountId::trusted(account_id),
        user_id: UserId::trusted(user_id),
        role,
        source: MemberSource::Direct,
        added_by: "users/operator".into(),
        expire_time: ends.map(tenantry_platform::time::stored_precision),
    }
}

async fn person(store: &Store, user: &str, email: &str) {
    store
        .upsert_user(
            &UserId::trusted(user),
            &UserProfile {
                email: email.into(),
                given_name: String::new(),
                family_name: String::new(),
            },
        )
        .await
        .unwrap();
}

/// Partner `p` (OWNERs olga and oscar, EMPLOYEE eve) manages `c`; pat is in `c` for 3 days,
/// sam for 12 hours; olga is also in `c` for 10 days.
async fn world(store: &Store) -> chrono::DateTime<Utc> {
    let now = Utc::now();
    let now_row = tenantry_platform::time::now();
    for (id, managed_by) in [("p", None), ("c", Some("p"))] {
        account_replica::Entity::insert(account_replica::ActiveModel {
            account_id: Set(id.into()),
            display_name: Set(format!("{} corp", id.to_uppercase())),
            partner: Set(managed_by.is_none()),
            managed_by: Set(managed_by.map(str::to_string)),
            state: Set("ACTIVE".into()),
            registry_version: Set(1),
            update_time: Set(now_row),
        })
        .exec_without_returning(store.connection().unwrap())
        .await
        .unwrap();
    }
    for (account, user, role, ends) in [
        ("p", "olga", Role::Owner, None),
        ("p", "oscar", Role::Owner, None),
        ("p", "eve", Role::Employee, None),
        ("c", "cora", Role::Owner, None),
        ("c", "pat", Role::Admin, Some(now + Duration::days(3))),
        ("c", "sam", Role::Admin, Some(now + Duration::hours(12))),
        ("c", "olga", Role::Admin, Some(now + Duration::days(10))),
    ] {
        store
            .add_member(&member(account, user, role, ends), MAX_OWNERS, None)
            .await
            .unwrap();
    }
    for (user, email) in [
        ("olga", "olga@p.example"),
        ("oscar", "Oscar@p.example"),
        ("eve", "eve@p.example"),
        ("pat", "pat@p.example"),
    ] {
        person(store, user, email).await;
    }
    now
}

async fn reminders_follow_the_clock(store: Store) {
    let now = world(&store).await;
    let (first, last) = (Some(Duration::days(7)), Some(Duration::days(1)));
    let due = store.due_reminders(now, first, last, 100).await.unwrap();
    let summary: Vec<(String, ReminderKind, Vec<String>)> = due
        .iter()
        .map(|r| (r.user_id.to_string(), r.kind, r.recipients.clone()))
        .collect();
    // sam (12 h): the last one only; pat (3 days): the first; olga's 10 days: none yet. The
    // member first, then the partner's OWNERs; sam has no e-mail in the directory.
    assert_eq!(
        summary,
        vec![
            (
                "sam".to_string(),
                ReminderKind::Last,
                vec!["olga@p.example".to_string(), "Oscar@p.example".to_string()]
            ),
            (
                "pat".to_string(),
                ReminderKind::First,
                vec![
                    "pat@p.example".to_string(),
                    "olga@p.example".to_string(),
                    "Oscar@p.example".to_string()
                ]
            ),
        ]
    );
    assert_eq!(due[1].member_email.as_deref(), Some("pat@p.example"));
    assert_eq!(due[1].account_name, "C corp");

    // One claim per e-mail; a failed send is claimed again, a sent one never.
    let pat = &due[1];
    let until = now + Duration::minutes(2);
    assert!(
        store
            .claim_reminder(pat, "pat@p.example", "a", now, until)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_reminder(pat, "pat@p.example", "b", now, until)
            .await
            .unwrap()
    );
    // A failed send waits for its retry time, held against every attempt (and out of the due
    // list) until then; the address is one mailbox whatever its case.
    let retry_at = now + Duration::minutes(2);
    store
        .finish_reminder(
            pat,
            "pat@p.example",
            "a",
            ReminderOutcome::Retry { retry_at },
            now,
        )
        .await
        .unwrap();
    let later = now + Duration::seconds(1);
    assert!(
        !store
            .claim_reminder(pat, "PAT@p.example", "c", later, until)
            .await
            .unwrap()
    );
    assert!(
        store
            .due_reminders(later, first, last, 100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.user_id.as_str() != "pat"),
        "a reminder waiting for its retry is not due"
    );
    let retry = retry_at + Duration::seconds(1);
    assert!(
        store
            .claim_reminder(
                pat,
                "PAT@p.example",
                "c",
                retry,
                retry + Duration::minutes(2)
            )
            .await
            .unwrap()
    );
    store
        .finish_reminder(pat, "pat@p.example", "c", ReminderOutcome::Sent, retry)
        .await
        .unwrap();
    let much_later = now + Duration::hours(1);
    assert!(
        !store
            .claim_reminder(
                pat,
                "pat@p.example",
                "d",
                much_later,
                much_later + Duration::minutes(2)
            )
            .await
            .unwrap()
    );
    // An expired lease of another attempt is taken over.
    assert!(
        store
            .claim_reminder(pat, "olga@p.example", "e", now, until)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_reminder(
                pat,
                "olga@p.example",
                "f",
                until + Duration::seconds(1),
                until + Duration::minutes(3)
            )
            .await
            .unwrap()
    );
    // Not done while an e-mail is unsent; done once all are, and then never due again.
    assert!(!store.complete_reminder(pat, now).await.unwrap());
    store
        .finish_reminder(pat, "olga@p.example", "f", ReminderOutcome::Sent, now)
        .await
        .unwrap();
    assert!(
        store
            .claim_reminder(pat, "Oscar@p.example", "g", now, until)
            .await
            .unwrap()
    );
    // Oscar's e-mail keeps failing: given up after MAX_ATTEMPTS tries, which completes the
    // reminder (one bad address never holds it, nor the reminders behind it).
    for attempt in 1..=MAX_ATTEMPTS {
        assert!(
            !store.complete_reminder(pat, now).await.unwrap(),
            "{attempt}"
        );
        store
            .finish_reminder(
                pat,
                "Oscar@p.example",
                "g",
                ReminderOutcome::Retry { retry_at: now },
                now,
            )
            .await
            .unwrap();
    }
    assert!(store.complete_reminder(pat, now).await.unwrap());
    let due = store.due_reminders(now, first, last, 100).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|r| r.user_id.to_string())
            .collect::<Vec<_>>(),
        ["sam"]
    );
    // Two days on, pat is within a day of the end: the last reminder is due.
    let due = store
        .due_reminders(
            now + Duration::days(2) + Duration::minutes(1),
            first,
            last,
            100,
        )
        .await
        .unwrap();
    assert!(
        due.iter()
            .any(|r| r.user_id.as_str() == "pat" && r.kind == ReminderKind::Last)
    );
    // Nothing once the membership ended; the rows are forgotten a month later.
    assert!(
        store
            .due_reminders(now + Duration::days(11), first, last, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .forget_reminders(now + Duration::days(40))
            .await
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn reminders_follow_the_clock_on_sqlite() {
    let temp = TempDatabase::new::<Migrator>("membership-reminders").await;
    reminders_follow_the_clock(Store::new(temp.database.clone(), Outbox::new())).await;
}

#[tokio::test]
async fn reminders_follow_the_clock_on_postgres() {
    let Some(temp) = TempPostgres::create("membership_reminders").await else {
        return;
    };
    let database = temp.database();
    database.connect_and_migrate::<Migrator>().await.unwrap();
    reminders_follow_the_clock(Store::new(database, Outbox::new())).await;
}
