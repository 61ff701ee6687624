//! Store tests of the reminder: one claim at a time, recorded once, and closing changes that
//! wait for a reminder being sent instead of letting it out after them.

use chrono::Duration;

use super::tests::{new_invitation, temp_store, user};
use super::transition_tests::claim_and_record_sent;
use super::*;
use crate::domain::NewInvitation;

/// An invitation to bob whose first e-mail went out and whose reminder is due at `now`.
async fn due_reminder(
    temp: &super::tests::TempStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Invitation {
    let new = NewInvitation {
        expire_time: now + Duration::days(7),
        reminder_due_time: Some(now - Duration::seconds(1)),
        ..new_invitation("globex", "bob@example.com", now)
    };
    let invitation = temp.store.create(&new, None, now).await.unwrap();
    let connection = temp.database.connection().unwrap();
    // Not before the first e-mail went out.
    assert!(
        reminders::due(connection, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        claim_and_record_sent(connection, &invitation.invitation_id, 0, "first", now)
            .await
            .unwrap()
    );
    invitation
}

#[tokio::test]
async fn a_decline_waits_for_the_reminder_being_sent() {
    let temp = temp_store().await;
    let store = &temp.store;
    let connection = temp.database.connection().unwrap();
    // Real time: the wait compares the lease with the clock.
    let now = tenantry_platform::time::now();
    let invitation = due_reminder(&temp, now).await;
    assert_eq!(reminders::due(connection, now, 10).await.unwrap().len(), 1);

    let until = now + Duration::seconds(60);
    let claimed = reminders::claim(connection, &invitation, "one", "hash-1", until, now)
        .await
        .unwrap()
        .expect("claimed");
    // Another replica's claim meanwhile gets nothing.
    assert!(
        reminders::claim(connection, &invitation, "two", "hash-2", until, now)
            .await
            .unwrap()
            .is_none()
    );
    let declining = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .decline(&claimed, &user("bob"), tenantry_platform::time::now())
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !declining.is_finished(),
        "the decline waits while the reminder is being sent"
    );
    assert!(
        reminders::record_sent(connection, &invitation.invitation_id, "one", now)
            .await
            .unwrap()
    );
    let declined = declining
        .await
        .unwrap()
        .unwrap()
        .expect("declined once the reminder was recorded");
    assert_eq!(declined.state, InvitationState::Declined);
    assert!(declined.reminder_sent_time.is_some());
    assert_eq!(
        reminders::secret_hash(connection, &invitation.invitation_id)
            .await
            .unwrap()
            .as_deref(),
        Some("hash-1")
    );
    assert!(
        reminders::due(connection, tenantry_platform::time::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_reminder_is_tried_again_unless_refused_for_good() {
    let temp = temp_store().await;
    let connection = temp.database.connection().unwrap();
    let now = tenantry_platform::time::now();
    let invitation = due_reminder(&temp, now).await;
    let until = now + Duration::seconds(60);
    reminders::claim(connection, &invitation, "one", "hash-1", until, now)
        .await
        .unwrap()
        .expect("claimed");
    reminders::release(connection, &invitation.invitation_id, "one", false, now)
        .await
        .unwrap();
    // Tried again later, not now: it does not hold up the reminders behind it.
    assert!(
        reminders::due(connection, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + reminders::RETRY_AFTER;
    reminders::claim(
        connection,
        &invitation,
        "two",
        "hash-2",
        later + Duration::seconds(60),
        later,
    )
    .await
    .unwrap()
    .expect("claimed again");
    // The first attempt's link may have been mailed: both work.
    for hash in ["hash-1", "hash-2"] {
        assert!(
            temp.store
                .find_by_secret_hash(hash)
                .await
                .unwrap()
                .is_some(),
            "{hash} leads to the invitation"
        );
    }
    reminders::release(connection, &invitation.invitation_id, "two", true, later)
        .await
        .unwrap();
    assert!(
        reminders::due(connection, now, 10)
            .await
            .unwrap()
            .is_empty(),
        "given up"
    );
}

#[tokio::test]
async fn a_system_withdrawal_does_not_wait_for_a_reminder() {
    let temp = temp_store().await;
    let connection = temp.database.connection().unwrap();
    let now = tenantry_platform::time::now();
    let invitation = due_reminder(&temp, now).await;
    reminders::claim(
        connection,
        &invitation,
        "one",
        "hash-1",
        now + Duration::seconds(60),
        now,
    )
    .await
    .unwrap()
    .expect("claimed");
    // The account is deleted while the reminder is being sent: the consumer's withdrawal
    // goes through at once rather than being dropped or stalled.
    let txn = sea_orm::TransactionTrait::begin(connection).await.unwrap();
    let withdrawn = withdraw_account(&txn, &temp.outbox, &invitation.account_id, now)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(withdrawn, 1);
    let revoked = temp
        .store
        .get(&invitation.invitation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.state, InvitationState::Revoked);
}
