//! What the invitation service's pruner deletes (see [`tenantry_platform::retention`]):
//!
//! - request ids of CreateInvitation older than `TENANTRY_REQUEST_ID_RETENTION_HOURS`;
//! - `processed_events` of its consumer groups older than
//!   `TENANTRY_PROCESSED_EVENTS_RETENTION_HOURS`;
//! - closed invitations (ACCEPTED, DECLINED, REVOKED, EXPIRED: any state but PENDING) whose last change is
//!   older than `TENANTRY_INVITATION_RETENTION_DAYS`. Every write to an invitation after it
//!   closed is conditioned on PENDING, so its `update_time` is the moment it closed (accepted,
//!   declined, revoked, or marked EXPIRED by the expiry sweep shortly after its expiry); a later write
//!   could only postpone the pruning. A PENDING row is never pruned, even past its expiry: the
//!   sweep marks it EXPIRED (with its `invitation.expired` event) and the retention counts
//!   from then. Until pruned, an invitation is listed by ListInvitations in its final state.
//!
//! Request ids go first: with a request-id retention no longer than the invitations' (checked at
//! start-up), a retried create never finds its record without the invitation it created.

use std::time::Duration;

use tenantry_platform::retention::{PruneTarget, RetentionSettings};

use super::REQUEST_IDS;

/// The condition of a closed invitation, as written in the partial index
/// [`CLOSED_INVITATIONS_INDEX`] (and, the same text, in each pruning statement).
pub const CLOSED: &str = "state <> 'PENDING'";

/// The partial index of closed invitations by `update_time`.
pub const CLOSED_INVITATIONS_INDEX: &str = "invitations_closed_by_update_time";

/// Closed invitations whose last change is older than `retention`.
pub fn closed_invitations(retention: Duration) -> PruneTarget {
    PruneTarget::new("invitations", &["invitation_id"], "update_time", retention).only_where(CLOSED)
}

/// The tables the invitation service's pruner keeps bounded, in the order it prunes them.
pub fn prune_targets(retention: &RetentionSettings) -> Vec<PruneTarget> {
    vec![
        REQUEST_IDS.prune_target(retention.request_ids),
        tenantry_events::retention::processed_events_target(retention.processed_events),
        closed_invitations(retention.invitations),
    ]
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use tenantry_events::Outbox;
    use tenantry_platform::db::Database;
    use tenantry_platform::idempotency::RequestKey;
    use tenantry_platform::retention::{Pruner, prune_table};
    use tenantry_platform::server::Shutdown;
    use tenantry_platform::testing::TempPostgres;

    use super::*;
    use crate::domain::{InvitationState, NewInvitation};
    use crate::store::Store;
    use crate::store::migrations::Migrator;
    use crate::store::tests::{add_ok, at, new_invitation, temp_store, user};

    const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

    fn expiring(email: &str, created: DateTime<Utc>, expire: DateTime<Utc>) -> NewInvitation {
        NewInvitation {
            expire_time: expire,
            reminder_due_time: None,
            ..new_invitation("acme", email, created)
        }
    }

    /// Closed invitations older than the retention go; recently closed ones and PENDING ones
    /// (before or after their expiry) stay.
    async fn prunes_closed_invitations(store: &Store, database: &Database) {
        let day = |days: i64| at(0) + TimeDelta::days(days);
        let revoked_long_ago = store
            .create(
                &new_invitation("acme", "a@example.com", day(0)),
                None,
                day(0),
            )
            .await
            .unwrap();
        store
            .revoke(&revoked_long_ago, "users/alice", day(1))
            .await
            .unwrap()
            .unwrap();
        let accepted_long_ago = store
            .create(
                &new_invitation("acme", "b@example.com", day(0)),
                None,
                day(0),
            )
            .await
            .unwrap();
        store
            .accept(&accepted_long_ago, &user("bob"), day(2), || add_ok("m"))
            .await
            .unwrap()
            .unwrap();
        let expired_long_ago = store
            .create(&expiring("c@example.com", day(0), day(7)), None, day(0))
            .await
            .unwrap();
        assert_eq!(
            store
                .expire_due(day(7) + TimeDelta::minutes(1), 100)
                .await
                .unwrap(),
            1
        );
        let revoked_recently = store
            .create(
                &new_invitation("acme", "d@example.com", day(60)),
                None,
                day(60),
            )
            .await
            .unwrap();
        store
            .revoke(&revoked_recently, "users/alice", day(61))
            .await
            .unwrap()
            .unwrap();
        // PENDING past its expiry long ago (the sweep never ran) and PENDING still valid.
        let pending_expired = store
            .create(&expiring("e@example.com", day(0), day(3)), None, day(0))
            .await
            .unwrap();
        let pending = store
            .create(&expiring("f@example.com", day(95), day(200)), None, day(95))
            .await
            .unwrap();

        let now = day(100);
        let connection = database.connection().unwrap();
        let pruned = prune_table(
            connection,
            &closed_invitations(RETENTION),
            now,
            1,
            Duration::from_millis(1),
            &Shutdown::new(),
        )
        .await
        .unwrap();
        // One row per statement here: three rows, then a statement that finds none.
        assert_eq!((pruned.rows, pruned.statements), (3, 4));
        for gone in [&revoked_long_ago, &accepted_long_ago, &expired_long_ago] {
            assert!(store.get(&gone.invitation_id).await.unwrap().is_none());
        }
        for kept in [&revoked_recently, &pending_expired, &pending] {
            assert!(store.get(&kept.invitation_id).await.unwrap().is_some());
        }
        let pending_row = store.get(&pending_expired.invitation_id).await.unwrap();
        assert_eq!(pending_row.unwrap().state, InvitationState::Pending);

        // Once the sweep marked it EXPIRED (at day 100), the retention counts from then.
        assert_eq!(store.expire_due(day(100), 100).await.unwrap(), 1);
        let prune_at = |now| async move {
            prune_table(
                connection,
                &closed_invitations(RETENTION),
                now,
                1000,
                Duration::ZERO,
                &Shutdown::new(),
            )
            .await
            .unwrap()
            .rows
        };
        assert_eq!(prune_at(day(189)).await, 1, "revoked at day 61");
        assert!(
            store
                .get(&revoked_recently.invitation_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get(&pending_expired.invitation_id)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(prune_at(day(191)).await, 1, "expired at day 100");
        assert!(
            store
                .get(&pending_expired.invitation_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.get(&pending.invitation_id).await.unwrap().is_some());
    }

    /// The service's pruner keeps a create's request id inside the window: a retry gets the
    /// invitation the first call created.
    async fn keeps_request_ids_inside_the_window(store: &Store, database: &Database) {
        let now = tenantry_platform::time::now();
        let key = RequestKey::new(
            "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into(),
            "users/alice".into(),
            "CreateInvitation",
            &["acme", "g@example.com"],
        );
        let first = store
            .create(
                &expiring("g@example.com", now, now + TimeDelta::days(7)),
                Some(&key),
                now,
            )
            .await
            .unwrap();
        let pruner = Pruner::new(
            "invitation",
            database.clone(),
            prune_targets(&RetentionSettings::DEFAULT),
        );
        for result in pruner
            .prune_once(now + TimeDelta::hours(1), &Shutdown::new())
            .await
        {
            result.unwrap();
        }
        let replayed = store.replay(&key).await.unwrap().expect("still remembered");
        assert_eq!(replayed.invitation_id, first.invitation_id);
        // Eight days later it is forgotten (the invitation itself, PENDING, stays).
        pruner
            .prune_once(now + TimeDelta::days(8), &Shutdown::new())
            .await;
        assert!(store.replay(&key).await.unwrap().is_none());
        assert!(store.get(&first.invitation_id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn prunes_on_sqlite() {
        let temp = temp_store().await;
        prunes_closed_invitations(&temp.store, &temp.database).await;
        keeps_request_ids_inside_the_window(&temp.store, &temp.database).await;
        // The statement finds closed invitations through the partial index.
        let (sql, values) = closed_invitations(RETENTION)
            .delete_batch(DbBackend::Sqlite, at(0), 1000)
            .build(sea_orm::sea_query::SqliteQueryBuilder);
        let plan = temp
            .database
            .connection()
            .unwrap()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {sql}"),
                values,
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect::<Vec<_>>();
        assert!(
            plan.iter()
                .any(|step| step.contains(CLOSED_INVITATIONS_INDEX)),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn prunes_on_postgres() {
        let Some(temp) = TempPostgres::create("invitation_retention").await else {
            return;
        };
        let database = temp.database();
        database.connect_and_migrate::<Migrator>().await.unwrap();
        let store = Store::new(database.clone(), Outbox::new());
        prunes_closed_invitations(&store, &database).await;
        keeps_request_ids_inside_the_window(&store, &database).await;
        let _ = database.connection().unwrap().clone().close().await;
    }
}
