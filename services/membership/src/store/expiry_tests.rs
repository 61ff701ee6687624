//! Time-bound memberships on both backends, with the clock in the test's hands (the sweep is
//! given its `now`): expiry with `member.expired`, the last OWNER kept, an extension racing
//! the sweep with exactly one outcome, and the warning list across a partner's customers.

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use tenantry_proto::events::v1 as pb;

use super::test_stores::{postgres, sqlite};
use super::*;
use crate::domain::owners::MAX_OWNERS;
use crate::store::entities::account_replica;

fn a(account_id: &str) -> AccountId {
    AccountId::trusted(account_id)
}

fn u(user_id: &str) -> UserId {
    UserId::trusted(user_id)
}

fn member(account_id: &str, user_id: &str, role: Role, ends: Option<DateTime<Utc>>) -> NewMember {
    NewMember {
        account_id: a(account_id),
        user_id: u(user_id),
        role,
        source: MemberSource::SelfAssigned,
        added_by: format!("users/{user_id}"),
        expire_time: ends.map(tenantry_platform::time::stored_precision),
    }
}

/// The types of the events in the outbox, in order.
async fn event_types(store: &Store) -> Vec<String> {
    let connection = store.connection().unwrap();
    connection
        .query_all_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT event_type FROM outbox ORDER BY seq",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

async fn last_payload(store: &Store) -> Vec<u8> {
    let connection = store.connection().unwrap();
    connection
        .query_one_raw(Statement::from_string(
            connection.get_database_backend(),
            "SELECT payload FROM outbox ORDER BY seq DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<Vec<u8>>(0)
        .unwrap()
}

async fn replica(store: &Store, account_id: &str, partner: bool, managed_by: Option<&str>) {
    let now = tenantry_platform::time::now();
    account_replica::Entity::insert(account_replica::ActiveModel {
        account_id: Set(account_id.into()),
        display_name: Set(account_id.to_uppercase()),
        partner: Set(partner),
        managed_by: Set(managed_by.map(str::to_string)),
        state: Set("ACTIVE".into()),
        registry_version: Set(1),
        update_time: Set(now),
    })
    .exec_without_returning(store.connection().unwrap())
    .await
    .unwrap();
}

/// A member whose time is up is removed once, with `member.expired` (the membership as it
/// was, by the sweep), its count given back; one not yet due, and one without an end, stay.
async fn due_memberships_expire_once(store: Store) {
    let now = Utc::now();
    let in_an_hour = now + Duration::hours(1);
    store
        .add_member(
            &member("acme", "owner", Role::Owner, None),
            MAX_OWNERS,
            None,
        )
        .await
        .unwrap();
    let (joined, created) = store
        .add_myself(&member("acme", "pat", Role::Admin, Some(in_an_hour)))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        joined.expire_time,
        Some(tenantry_platform::time::stored_precision(in_an_hour))
    );
    store
        .add_myself(&member(
            "acme",
            "later",
            Role::Admin,
            Some(now + Duration::days(2)),
        ))
        .await
        .unwrap();

    // Not yet.
    assert_eq!(store.expire_due(now, 100).await.unwrap(), (0, 0));
    assert!(store.member(&a("acme"), &u("pat")).await.unwrap().is_some());
    // An hour and a minute later: only pat.
    let later = now + Duration::minutes(61);
    assert_eq!(store.expire_due(later, 100).await.unwrap(), (1, 1));
    assert!(store.member(&a("acme"), &u("pat")).await.unwrap().is_none());
    assert!(
        store
            .member(&a("acme"), &u("later"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .member(&a("acme"), &u("owner"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        event_types(&store).await,
        [
            "member.added",
            "member.added",
            "member.added",
            "member.expired"
        ]
    );
    let expired = pb::MemberExpired::decode(&last_payload(&store).await[..]).unwrap();
    assert_eq!(expired.actor, SWEEP_ACTOR);
    let gone = expired.member.unwrap();
    assert_eq!(gone.name, "accounts/acme/members/pat");
    assert!(gone.expire_time.is_some());
    // Swept again: nothing more.
    assert_eq!(store.expire_due(later, 100).await.unwrap(), (0, 0));
    assert_eq!(store.owner_count(&a("acme")).await.unwrap(), 1);
}

/// The last OWNER is never given an expiry, and never expires: an OWNER whose time is up
/// while another OWNER exists expires; once alone, the other one stays past its time.
async fn the_last_owner_never_expires(store: Store) {
    let now = Utc::now();
    let soon = now + Duration::minutes(5);
    let refused = store
        .add_myself(&member("solo", "first", Role::Owner, Some(soon)))
        .await;
    assert!(
        matches!(refused, Err(MembershipError::LastOwnerExpiry(_))),
        "{refused:?}"
    );
    store
        .add_member(
            &member("acme", "keeper", Role::Owner, None),
            MAX_OWNERS,
            None,
        )
        .await
        .unwrap();
    store
        .add_myself(&member("acme", "a", Role::Owner, Some(soon)))
        .await
        .unwrap();
    store
        .add_myself(&member("acme", "b", Role::Employee, Some(soon)))
        .await
        .unwrap();
    // `keeper` leaves: `a` is now the only OWNER, and stays past its time.
    let keeper = store
        .member(&a("acme"), &u("keeper"))
        .await
        .unwrap()
        .unwrap();
    store
        .remove_member(&keeper, false, "users/keeper")
        .await
        .unwrap();
    let later = now + Duration::hours(1);
    assert_eq!(store.expire_due(later, 100).await.unwrap(), (1, 1));
    assert!(store.member(&a("acme"), &u("b")).await.unwrap().is_none());
    assert!(store.member(&a("acme"), &u("a")).await.unwrap().is_some());
    assert_eq!(store.owner_count(&a("acme")).await.unwrap(), 1);
}

/// ListExpiringMembers' query: the partner's own and its customers' time-bound memberships
/// before the cut-off, soonest first, paged without gaps or repeats; other accounts' never.
async fn the_warning_list_covers_the_partner_and_its_customers(store: Store) {
    replica(&store, "p", true, None).await;
    replica(&store, "c1", false, Some("p")).await;
    replica(&store, "c2", false, Some("p")).await;
    replica(&store, "other", false, Some("q")).await;
    let now = Utc::now();
    let at = |hours: i64| Some(now + Duration::hours(hours));
    for (account, user, ends) in [
        ("p", "x", at(3)),
        ("c1", "x", at(1)),
        ("c1", "y", at(1)),
        ("c2", "x", at(2)),
        ("c2", "z", at(30)),
        ("c2", "forever", None),
        ("other", "x", at(1)),
    ] {
        store
            .add_myself(&member(account, user, Role::Admin, ends))
            .await
            .unwrap();
    }
    let before = now + Duration::hours(24);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_expiring(&a("p"), before, after.as_ref(), 2)
            .await
            .unwrap();
        seen.extend(
            page.iter()
                .map(|m| format!("{}/{}", m.account_id, m.user_id)),
        );
        if page.len() < 2 {
            break;
        }
        after = expiring_key(page.last().unwrap());
    }
    assert_eq!(seen, ["c1/x", "c1/y", "c2/x", "p/x"]);
}

/// ExtendMemberAccess racing the sweep at the moment of expiry: each round ends either
/// extended (the member stays with the new end) or expired (the extension finds no member);
/// never both, never neither.
async fn an_extension_racing_the_sweep_has_one_outcome(store: Store) {
    let now = Utc::now();
    store
        .add_member(
            &member("acme", "owner", Role::Owner, None),
            MAX_OWNERS,
            None,
        )
        .await
        .unwrap();
    let (mut extended, mut expired) = (0, 0);
    for round in 0..20 {
        let user = format!("u{round}");
        let (current, _) = store
            .add_myself(&member(
                "acme",
                &user,
                Role::Admin,
                Some(now + Duration::minutes(1)),
            ))
            .await
            .unwrap();
        let due = now + Duration::minutes(2);
        let new_end = tenantry_platform::time::stored_precision(now + Duration::days(1));
        let (sweep, extension) = tokio::join!(
            store.expire_due(due, 100),
            store.extend_access(&current, new_end, false, "users/owner"),
        );
        let swept = sweep.unwrap().1;
        let stays = store.member(&a("acme"), &u(&user)).await.unwrap();
        match (extension, swept, stays) {
            (Ok(member), 0, Some(stays)) => {
                assert_eq!(member.expire_time, Some(new_end));
                assert_eq!(stays.expire_time, Some(new_end));
                extended += 1;
            }
            (Err(MembershipError::MemberNotFound { .. }), 1, None) => expired += 1,
            other => panic!("round {round}: two outcomes or none: {other:?}"),
        }
        if let Some(stays) = store.member(&a("acme"), &u(&user)).await.unwrap() {
            store
                .remove_member(&stays, false, "users/owner")
                .await
                .unwrap();
        }
    }
    assert_eq!(extended + expired, 20);
}

/// A time-bound member does not count as a member for an invitation, and accepting one makes
/// the membership permanent (role unchanged, `member.updated` with the previous expiry); the
/// sweep then leaves it alone.
async fn an_accepted_invitation_makes_time_bound_access_permanent(store: Store) {
    let now = Utc::now();
    store
        .add_member(
            &member("acme", "owner", Role::Owner, None),
            MAX_OWNERS,
            None,
        )
        .await
        .unwrap();
    let (joined, _) = store
        .add_myself(&member(
            "acme",
            "pat",
            Role::Admin,
            Some(now + Duration::hours(1)),
        ))
        .await
        .unwrap();
    store
        .upsert_user(
            &u("pat"),
            &UserProfile {
                email: "pat@example.com".into(),
                given_name: String::new(),
                family_name: String::new(),
            },
        )
        .await
        .unwrap();
    let facts = store.invitee(&a("acme"), "pat@example.com").await.unwrap();
    assert!(
        !facts.email_is_member,
        "time-bound access is no membership for good"
    );

    let mut accepted = member("acme", "pat", Role::Employee, None);
    accepted.source = MemberSource::Invitation;
    accepted.added_by = "services/invitation".into();
    let permanent = store.add_member(&accepted, MAX_OWNERS, None).await.unwrap();
    assert_eq!(permanent.expire_time, None);
    assert_eq!(permanent.role, Role::Admin, "the role stays");
    assert_eq!(permanent.version, joined.version + 1);
    assert_eq!(event_types(&store).await.last().unwrap(), "member.updated");
    let updated = pb::MemberUpdated::decode(&last_payload(&store).await[..]).unwrap();
    assert!(updated.previous_expire_time.is_some());
    assert!(updated.member.unwrap().expire_time.is_none());
    assert!(
        store
            .invitee(&a("acme"), "pat@example.com")
            .await
            .unwrap()
            .email_is_member
    );
    assert_eq!(
        store
            .expire_due(now + Duration::hours(2), 100)
            .await
            .unwrap(),
        (0, 0)
    );
    // A second acceptance (or AddMember) finds a member for good: ALREADY_EXISTS as before.
    let again = store.add_member(&accepted, MAX_OWNERS, None).await;
    assert!(
        matches!(again, Err(MembershipError::AlreadyMember { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn due_memberships_expire_once_on_sqlite() {
    let (_temp, store) = sqlite("membership-expiry").await;
    due_memberships_expire_once(store).await;
}

#[tokio::test]
async fn due_memberships_expire_once_on_postgres() {
    let Some((_temp, store)) = postgres("membership_expiry").await else {
        return;
    };
    due_memberships_expire_once(store).await;
}

#[tokio::test]
async fn the_last_owner_never_expires_on_sqlite() {
    let (_temp, store) = sqlite("membership-last-owner-expiry").await;
    the_last_owner_never_expires(store).await;
}

#[tokio::test]
async fn the_last_owner_never_expires_on_postgres() {
    let Some((_temp, store)) = postgres("membership_last_owner_expiry").await else {
        return;
    };
    the_last_owner_never_expires(store).await;
}

#[tokio::test]
async fn the_warning_list_covers_the_partner_and_its_customers_on_sqlite() {
    let (_temp, store) = sqlite("membership-expiring-list").await;
    the_warning_list_covers_the_partner_and_its_customers(store).await;
}

#[tokio::test]
async fn the_warning_list_covers_the_partner_and_its_customers_on_postgres() {
    let Some((_temp, store)) = postgres("membership_expiring_list").await else {
        return;
    };
    the_warning_list_covers_the_partner_and_its_customers(store).await;
}

#[tokio::test]
async fn an_extension_racing_the_sweep_has_one_outcome_on_sqlite() {
    let (_temp, store) = sqlite("membership-extend-race").await;
    an_extension_racing_the_sweep_has_one_outcome(store).await;
}

#[tokio::test]
async fn an_extension_racing_the_sweep_has_one_outcome_on_postgres() {
    let Some((_temp, store)) = postgres("membership_extend_race").await else {
        return;
    };
    an_extension_racing_the_sweep_has_one_outcome(store).await;
}

#[tokio::test]
async fn an_accepted_invitation_makes_time_bound_access_permanent_on_sqlite() {
    let (_temp, store) = sqlite("membership-invited-permanent").await;
    an_accepted_invitation_makes_time_bound_access_permanent(store).await;
}

#[tokio::test]
async fn an_accepted_invitation_makes_time_bound_access_permanent_on_postgres() {
    let Some((_temp, store)) = postgres("membership_invited_permanent").await else {
        return;
    };
    an_accepted_invitation_makes_time_bound_access_permanent(store).await;
}
