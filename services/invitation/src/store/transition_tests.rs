//! Store tests of the lifecycle changes after creation: acceptance (single use, races,
//! rollback), resend (rotation), and the mailer's delivery bookkeeping.

use std::sync::Arc;

use chrono::Duration;
use prost::Message;
use tenantry_proto::events::v1 as wire_events;
use tenantry_proto::invitation::v1::InvitationState as WireState;

use super::tests::{add_ok, at, new_invitation, outbox_rows, outbox_types, temp_store, user};
use super::*;

#[tokio::test]
async fn acceptance_is_single_use() {
    let temp = temp_store().await;
    let store = &temp.store;
    let invitation = store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let (accepted, member) = store
        .accept(&invitation, &user("bob"), at(10), || {
            add_ok("accounts/globex/members/bob")
        })
        .await
        .unwrap()
        .expect("accepted");
    assert_eq!(member, "accounts/globex/members/bob");
    assert_eq!(accepted.state, InvitationState::Accepted);
    assert_eq!(accepted.accepted_by.as_deref(), Some("users/bob"));
    assert_eq!(accepted.accept_time, Some(at(10)));
    assert_eq!(accepted.version, 2);
    // Using it again — with the version read before, as a concurrent acceptance would — fails,
    // and AddMember is not called.
    let again: Option<(Invitation, ())> = store
        .accept(&invitation, &user("mallory"), at(11), || async {
            panic!("AddMember must not be called for a used invitation")
        })
        .await
        .unwrap();
    assert!(again.is_none());
    let rows = outbox_rows(&temp.database).await;
    assert_eq!(rows.len(), 2);
    let (event_type, payload) = &rows[1];
    assert_eq!(event_type, "invitation.accepted");
    let event = wire_events::InvitationAccepted::decode(payload.as_slice()).unwrap();
    assert_eq!(event.member, "accounts/globex/members/bob");
    assert_eq!(event.actor, "users/bob");
    // The invitation before and after the change.
    let (before, after) = (event.previous.unwrap(), event.invitation.unwrap());
    assert_eq!(
        (before.state, after.state),
        (WireState::Pending as i32, WireState::Accepted as i32)
    );
    assert_eq!((before.etag.as_str(), after.etag.as_str()), ("1", "2"));
    assert_eq!(
        (before.accepted_by.as_str(), after.accepted_by.as_str()),
        ("", "users/bob")
    );
}

#[tokio::test]
async fn concurrent_acceptances_have_one_winner() {
    let temp = temp_store().await;
    let store = Arc::new(temp.store.clone());
    let invitation = store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, invitation, calls) = (store.clone(), invitation.clone(), calls.clone());
            tokio::spawn(async move {
                store
                    .accept(&invitation, &user(&format!("u{i}")), at(5), || async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok((format!("accounts/globex/members/u{i}"), i))
                    })
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        if let Some((_, i)) = task.await.unwrap().unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = store.get(&invitation.invitation_id).await.unwrap().unwrap();
    assert_eq!(stored.accepted_by, Some(format!("users/u{}", winners[0])));
}

#[tokio::test]
async fn a_failed_add_member_rolls_the_acceptance_back() {
    let temp = temp_store().await;
    let store = &temp.store;
    let invitation = store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let failed = store
        .accept(&invitation, &user("bob"), at(1), || async {
            Err::<(String, ()), _>(InvitationError::OwnerLimit(AccountId::trusted("globex")))
        })
        .await;
    assert!(matches!(failed, Err(InvitationError::OwnerLimit(_))));
    let stored = store.get(&invitation.invitation_id).await.unwrap().unwrap();
    assert_eq!(stored, invitation, "unchanged");
    assert_eq!(outbox_types(&temp.database).await, ["invitation.created"]);
    // It can still be accepted.
    assert!(
        store
            .accept(&invitation, &user("bob"), at(2), || add_ok("m"))
            .await
            .unwrap()
            .is_some()
    );
    // An expired invitation cannot be accepted even before the sweep marked it.
    let late = store
        .create(
            &new_invitation("globex", "late@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let after = late.expire_time;
    assert!(
        store
            .accept(&late, &user("late"), after, || add_ok("m"))
            .await
            .unwrap()
            .is_none()
    );
}

/// What the mailer does around one e-mail: claim it with the secret's hash, then record SENT.
pub(crate) async fn claim_and_record_sent(
    connection: &sea_orm::DatabaseConnection,
    invitation_id: &crate::domain::InvitationId,
    generation: i32,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, crate::domain::InvitationError> {
    let token = format!("attempt-{hash}");
    let until = now + Duration::seconds(60);
    match mailer::claim(
        connection,
        invitation_id,
        generation,
        &token,
        hash,
        until,
        now,
    )
    .await?
    {
        mailer::Claim::Claimed(_) => {
            mailer::record_sent(connection, invitation_id, generation, &token, now).await
        }
        _ => Ok(false),
    }
}

#[tokio::test]
async fn resend_rotates_and_restarts() {
    let temp = temp_store().await;
    let store = &temp.store;
    let invitation = store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let connection = temp.database.connection().unwrap();
    assert!(
        claim_and_record_sent(connection, &invitation.invitation_id, 0, "hash-0", at(1))
            .await
            .unwrap()
    );
    let sent = store.get(&invitation.invitation_id).await.unwrap().unwrap();
    assert_eq!(sent.delivery.state, DeliveryState::Sent);
    assert_eq!(sent.delivery.attempts, 1);
    assert_eq!(sent.version, 1, "delivery bookkeeping keeps the etag");
    assert_eq!(
        store
            .find_by_secret_hash("hash-0")
            .await
            .unwrap()
            .map(|i| i.invitation_id),
        Some(invitation.invitation_id.clone())
    );

    let lifetime = Duration::hours(24);
    let resent = store
        .resend(&sent, "users/alice", lifetime, Duration::zero(), at(100))
        .await
        .unwrap()
        .expect("resent");
    assert_eq!(resent.resend_count, 1);
    assert_eq!(resent.version, 2);
    assert_eq!(resent.expire_time, at(100) + lifetime);
    assert_eq!(resent.last_sent_time, at(100));
    assert_eq!(resent.delivery, Delivery::queued());
    // The old link died at once.
    assert!(store.find_by_secret_hash("hash-0").await.unwrap().is_none());
    assert_eq!(
        mailer::secret_hash(connection, &invitation.invitation_id)
            .await
            .unwrap(),
        None
    );
    // The mailer of the superseded e-mail can no longer write, the new one can.
    assert!(
        !claim_and_record_sent(connection, &invitation.invitation_id, 0, "hash-0b", at(101))
            .await
            .unwrap()
    );
    assert!(
        claim_and_record_sent(connection, &invitation.invitation_id, 1, "hash-1", at(102))
            .await
            .unwrap()
    );
    // A resend with the version read before the first resend loses.
    assert!(
        store
            .resend(&sent, "users/alice", lifetime, Duration::zero(), at(200))
            .await
            .unwrap()
            .is_none()
    );
    let rows = outbox_rows(&temp.database).await;
    let (event_type, payload) = rows.last().unwrap();
    assert_eq!(event_type, "invitation.resent");
    let event = wire_events::InvitationResent::decode(payload.as_slice()).unwrap();
    assert_eq!(event.invitation.unwrap().resend_count, 1);
    // The invitation before the resend: the first generation, its first expiry.
    let before = event.previous.unwrap();
    assert_eq!(before.resend_count, 0);
    assert_eq!(before.state, WireState::Pending as i32);
    assert_eq!(
        before.expire_time,
        Some(tenantry_platform::time::to_timestamp(
            invitation.expire_time
        ))
    );
}

#[tokio::test]
async fn revocations_and_declines_carry_the_pending_invitation() {
    let temp = temp_store().await;
    let store = &temp.store;
    let revoked = store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let declined = store
        .create(
            &new_invitation("globex", "carol@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    store
        .revoke(&revoked, "users/alice", at(10))
        .await
        .unwrap()
        .expect("revoked");
    store
        .decline(&declined, &user("carol"), at(11))
        .await
        .unwrap()
        .expect("declined");
    let rows = outbox_rows(&temp.database).await;
    assert_eq!(
        rows.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        [
            "invitation.created",
            "invitation.created",
            "invitation.revoked",
            "invitation.declined"
        ]
    );

    let event = wire_events::InvitationRevoked::decode(rows[2].1.as_slice()).unwrap();
    assert_eq!(event.actor, "users/alice");
    let (before, after) = (event.previous.unwrap(), event.invitation.unwrap());
    assert_eq!(
        (before.state, after.state),
        (WireState::Pending as i32, WireState::Revoked as i32)
    );
    assert_eq!(before.name, after.name);
    assert_eq!(
        (before.revoked_by.as_str(), after.revoked_by.as_str()),
        ("", "users/alice")
    );
    assert!(before.revoke_time.is_none() && after.revoke_time.is_some());

    let event = wire_events::InvitationDeclined::decode(rows[3].1.as_slice()).unwrap();
    let (before, after) = (event.previous.unwrap(), event.invitation.unwrap());
    assert_eq!(
        (before.state, after.state),
        (WireState::Pending as i32, WireState::Declined as i32)
    );
    assert_eq!((before.etag.as_str(), after.etag.as_str()), ("1", "2"));
    assert_eq!(
        (before.declined_by.as_str(), after.declined_by.as_str()),
        ("", "users/carol")
    );
}

#[tokio::test]
async fn failed_attempts_are_recorded_per_generation() {
    let temp = temp_store().await;
    let invitation = temp
        .store
        .create(
            &new_invitation("globex", "bob@example.com", at(0)),
            None,
            at(0),
        )
        .await
        .unwrap();
    let connection = temp.database.connection().unwrap();
    let id = &invitation.invitation_id;
    assert!(
        mailer::record_failed_attempt(connection, id, 0, "connection refused", false, at(1))
            .await
            .unwrap()
    );
    let seen = temp.store.get(id).await.unwrap().unwrap();
    assert_eq!(seen.delivery.state, DeliveryState::Queued);
    assert_eq!(seen.delivery.attempts, 1);
    assert_eq!(seen.delivery.failure_reason, "connection refused");
    assert!(
        mailer::record_failed_attempt(connection, id, 0, "still refused", true, at(2))
            .await
            .unwrap()
    );
    let seen = temp.store.get(id).await.unwrap().unwrap();
    assert_eq!(seen.delivery.state, DeliveryState::Failed);
    assert_eq!(seen.delivery.attempts, 2);
    assert_eq!(seen.delivery.last_attempt_time, Some(at(2)));
    // Another generation's failure is ignored.
    assert!(
        !mailer::record_failed_attempt(connection, id, 7, "x", true, at(3))
            .await
            .unwrap()
    );
}
