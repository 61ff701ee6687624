//! Membership's persistence. Every state change is one transaction function (`add_member`,
//! `add_myself`, `update_role`, `remove_member`) that also appends the change's `member.*`
//! event to the outbox, so an event is published if and only if its change committed. The
//! OWNER rules are enforced here with conditional updates of `account_member_counts`, which is
//! race-free on SQLite and PostgreSQL alike. The account replica lives in [`replica`].

#[cfg(test)]
mod deletion_race_tests;
pub mod entities;
#[cfg(test)]
mod event_tests;
mod expiry;
#[cfg(test)]
mod expiry_tests;
mod invitee;
pub mod migrations;
mod policy;
#[cfg(test)]
mod reminder_tests;
mod reminders;
pub mod replica;
mod request_mails;
#[cfg(test)]
mod request_tests;
mod requests;
#[cfg(test)]
mod test_stores;

pub use invitee::InviteeFacts;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tenantry_events::{Outbox, OutboxTransaction, Revoked};
use tenantry_platform::db::{Database, StoreError};
use tenantry_platform::idempotency::{ReplayError, RequestIds, RequestKey, RequestRecord};
use tenantry_platform::{AccountId, UserId};

use crate::domain::owners::{self, OwnerDelta};
use crate::domain::{
    Member, MemberSource, MembershipError, NewMember, Role, UserProfile, normalize_email,
};
use crate::events::{MemberChange, member_event};
use entities::{account_member_count as counts, member, user};

pub use expiry::{ExpiringKey, SWEEP_ACTOR, expiring_key};
pub use reminders::{DueReminder, MAX_ATTEMPTS, ReminderKind, ReminderOutcome, recipient_key};
pub use request_mails::{DueMail, MailKind, MailOutcome};

/// AddMember's request ids; a record's resource key is `{account_id}/{user_id}`.
pub(crate) const REQUEST_IDS: RequestIds = RequestIds::new("membership_request_ids");

/// The tables the service's pruner keeps bounded (see [`tenantry_platform::retention`]): the
/// request ids of creates (kept for `retention.request_ids`) and the consumer groups' records
/// of handled events (kept for `retention.processed_events`).
pub fn prune_targets(
    retention: &tenantry_platform::retention::RetentionSettings,
) -> Vec<tenantry_platform::retention::PruneTarget> {
    vec![
        REQUEST_IDS.prune_target(retention.request_ids),
        tenantry_events::retention::processed_events_target(retention.processed_events),
    ]
}

/// Membership's tables.
#[derive(Clone, Debug)]
pub struct Store {
    database: Database,
    outbox: Outbox,
}

impl Store {
    /// A store over `database` (migrated with [`migrations::Migrator`]) appending its events
    /// to `outbox`.
    pub fn new(database: Database, outbox: Outbox) -> Self {
        Self { database, outbox }
    }

    /// Begins a transaction whose `member.*` events are relayed once it commits.
    async fn begin(&self) -> Result<OutboxTransaction, MembershipError> {
        Ok(self.outbox.begin(self.connection()?).await?)
    }

    fn connection(&self) -> Result<&DatabaseConnection, MembershipError> {
        Ok(self.database.connection()?)
    }

    /// The user's roles in each of `account_ids` where they are a member.
    pub async fn roles_of(
        &self,
        user_id: &UserId,
        account_ids: &[&AccountId],
    ) -> Result<HashMap<AccountId, Role>, MembershipError> {
        let rows = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id.as_str()))
            .filter(member::Column::AccountId.is_in(account_ids.iter().map(|id| id.as_str())))
            .all(self.connection()?)
            .await?;
        rows.into_iter()
            .map(|row| Ok((AccountId::trusted(row.account_id), parse_role(&row.role)?)))
            .collect()
    }

    /// The user's directory entry, if they ever called Tenantry (or were given one).
    pub async fn member_profile(
        &self,
        user_id: &UserId,
    ) -> Result<Option<UserProfile>, MembershipError> {
        Ok(
            load_profiles(self.connection()?, std::slice::from_ref(user_id))
                .await?
                .remove(user_id.as_str()),
        )
    }

    /// How many OWNERs the account has.
    pub async fn owner_count(&self, account_id: &AccountId) -> Result<i64, MembershipError> {
        owner_count(self.connection()?, account_id).await
    }

    /// One membership with the member's directory entry.
    pub async fn member(
        &self,
        account_id: &AccountId,
        user_id: &UserId,
    ) -> Result<Option<Member>, MembershipError> {
        load_member(self.connection()?, account_id, user_id).await
    }

    /// A page of the account's members ordered by user id, after `after`, optionally only
    /// those with one of `roles` and only those whose directory e-mail (normalized, lower
    /// case) is `email`.
    pub async fn list_members(
        &self,
        account_id: &AccountId,
        roles: &[Role],
        email: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Member>, MembershipError> {
        let connection = self.connection()?;
        let mut query =
            member::Entity::find().filter(member::Column::AccountId.eq(account_id.as_str()));
        if !roles.is_empty() {
            query = query.filter(member::Column::Role.is_in(roles.iter().map(|r| r.as_str())));
        }
        if let Some(email) = email {
            let holders: Vec<String> = user::Entity::find()
                .filter(user::Column::EmailNormalized.eq(email))
                .all(connection)
                .await?
                .into_iter()
                .map(|row| row.user_id)
                .collect();
            query = query.filter(member::Column::UserId.is_in(holders));
        }
        if let Some(after) = after {
            query = query.filter(member::Column::UserId.gt(after));
        }
        let rows = query
            .order_by_asc(member::Column::UserId)
            .limit(limit)
            .all(connection)
            .await?;
        with_profiles(connection, rows).await
    }

    /// A page of the user's memberships ordered by account id, after `after` (without
    /// directory entries: they are all the same user).
    pub async fn memberships_of(
        &self,
        user_id: &UserId,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Member>, MembershipError> {
        let mut query = member::Entity::find().filter(member::Column::UserId.eq(user_id.as_str()));
        if let Some(after) = after {
            query = query.filter(member::Column::AccountId.gt(after));
        }
        query
            .order_by_asc(member::Column::AccountId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(|row| to_member(row, UserProfile::default()))
            .collect()
    }

    /// Up to `limit` user ids whose e-mail is `email` (case-insensitive).
    pub async fn users_with_email(
        &self,
        email: &str,
        limit: u64,
    ) -> Result<Vec<UserId>, MembershipError> {
        Ok(user::Entity::find()
            .filter(user::Column::EmailNormalized.eq(normalize_email(email)))
            .order_by_asc(user::Column::UserId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(|row| UserId::trusted(row.user_id))
            .collect())
    }

    /// Writes the user's directory entry (insert or overwrite).
    pub async fn upsert_user(
        &self,
        user_id: &UserId,
        profile: &UserProfile,
    ) -> Result<(), MembershipError> {
        let row = user::ActiveModel {
            user_id: Set(user_id.to_string()),
            email: Set(profile.email.clone()),
            email_normalized: Set(normalize_email(&profile.email)),
            given_name: Set(profile.given_name.clone()),
            family_name: Set(profile.family_name.clone()),
            update_time: Set(tenantry_platform::time::now()),
        };
        user::Entity::insert(row)
            .on_conflict(
                OnConflict::column(user::Column::UserId)
                    .update_columns([
                        user::Column::Email,
                        user::Column::EmailNormalized,
                        user::Column::GivenName,
                        user::Column::FamilyName,
                        user::Column::UpdateTime,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.connection()?)
            .await?;
        Ok(())
    }

    /// The answer to a retried AddMember: the membership its first call created, as it is
    /// now; `None` if the request id is new. A request id used for another request is
    /// [`MembershipError::RequestIdReused`].
    pub async fn replayed(&self, key: &RequestKey) -> Result<Option<Member>, MembershipError> {
        let connection = self.connection()?;
        let resource_key = match REQUEST_IDS.replay(connection, key).await {
            Ok(Some(resource_key)) => resource_key,
            Ok(None) => return Ok(None),
            Err(ReplayError::Reused(_)) => return Err(MembershipError::RequestIdReused),
            Err(ReplayError::Database(error)) => return Err(error.into()),
        };
        let (account_id, user_id) = resource_key
            .split_once('/')
            .ok_or_else(|| MembershipError::Corrupt(format!("key {resource_key:?}")))?;
        let (account_id, user_id) = (AccountId::trusted(account_id), UserId::trusted(user_id));
        match load_member(connection, &account_id, &user_id).await? {
            Some(member) => Ok(Some(member)),
            None => Err(MembershipError::MemberNotFound {
                account_id: account_id.into(),
                user_id: user_id.into(),
            }),
        }
    }

    /// Creates a membership (AddMember) and publishes `member.added` by `new.added_by`. A new
    /// OWNER is counted only while the account has fewer than `owner_ceiling` OWNERs.
    /// `request` is recorded in the same transaction. A unique-key race (the member or the
    /// request id) is [`MembershipError::AlreadyMember`]; an account deleted since the caller
    /// checked it is [`MembershipError::AccountDeleted`], as the check would have said.
    pub async fn add_member(
        &self,
        new: &NewMember,
        owner_ceiling: i64,
        request: Option<&RequestRecord>,
    ) -> Result<Member, MembershipError> {
        self.add_member_bounded(new, owner_ceiling, request, &|_| false)
            .await
    }

    /// [`Self::add_member`], where an accepted invitation (source INVITATION) leaves a
    /// time-bound membership whose role `keep_time_bound` names as it is (the access policy
    /// bounds it), instead of making it permanent.
    pub async fn add_member_bounded(
        &self,
        new: &NewMember,
        owner_ceiling: i64,
        request: Option<&RequestRecord>,
        keep_time_bound: &(dyn Fn(Role) -> bool + Sync),
    ) -> Result<Member, MembershipError> {
        let tx = self.begin().await?;
        if replica::deleted_for_write(&*tx, &new.account_id).await? {
            return Err(MembershipError::AccountDeleted(new.account_id.to_string()));
        }
        if new.source == MemberSource::Invitation
            && let Some(existing) = load_member(&*tx, &new.account_id, &new.user_id).await?
            && existing.expire_time.is_some()
        {
            // An accepted invitation grants for good: the time-bound membership it finds
            // becomes permanent (the role stays; changing it is UpdateMember's) — unless the
            // access policy bounds such access, then it stays as it is.
            let member = if keep_time_bound(existing.role) {
                existing
            } else {
                expiry::make_permanent(&tx, &existing, &new.added_by).await?
            };
            if let Some(request) = request {
                REQUEST_IDS
                    .record(&*tx, &request.key, &request.resource_key)
                    .await
                    .map_err(|error| already_member_on_conflict(error, new))?;
            }
            tx.commit().await?;
            return Ok(member);
        }
        insert_member(&*tx, new, owner_ceiling).await?;
        if let Some(request) = request {
            REQUEST_IDS
                .record(&*tx, &request.key, &request.resource_key)
                .await
                .map_err(|error| already_member_on_conflict(error, new))?;
        }
        let member = load_member(&*tx, &new.account_id, &new.user_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&member_event(MemberChange::Added, &member, &new.added_by))
            .await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Creates the membership unless the user already is a member (AddMyself). Returns the
    /// membership and whether this call created it; concurrent calls create one row, and only
    /// the call that created it publishes `member.added` (by `new.added_by`, the member). An
    /// account deleted since the caller checked it is [`MembershipError::AccountNotActive`], as
    /// AddMyself's check says of a deleted account.
    pub async fn add_myself(&self, new: &NewMember) -> Result<(Member, bool), MembershipError> {
        let tx = self.begin().await?;
        if replica::deleted_for_write(&*tx, &new.account_id).await? {
            return Err(MembershipError::AccountNotActive(
                new.account_id.to_string(),
            ));
        }
        if let Some(existing) = load_member(&*tx, &new.account_id, &new.user_id).await? {
            tx.commit().await?;
            return Ok((existing, false));
        }
        if new.role == Role::Owner
            && new.expire_time.is_some()
            && owner_count(&*tx, &new.account_id).await? == 0
        {
            // It would be the account's only OWNER, who never expires.
            return Err(MembershipError::LastOwnerExpiry(new.account_id.to_string()));
        }
        match insert_member(&*tx, new, owners::MAX_OWNERS).await {
            Ok(()) => {}
            Err(MembershipError::AlreadyMember { .. }) => {
                // A concurrent AddMyself won; its row is the answer.
                drop(tx);
                return match self.member(&new.account_id, &new.user_id).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(MembershipError::ConcurrentChange),
                };
            }
            Err(error) => return Err(error),
        }
        let member = load_member(&*tx, &new.account_id, &new.user_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&member_event(MemberChange::Added, &member, &new.added_by))
            .await?;
        tx.commit().await?;
        Ok((member, true))
    }

    /// Changes the role of `current` (as read and authorized by the caller) to `role` and
    /// publishes `member.updated` by `actor`. Fails if the member changed since it was read:
    /// ABORTED as a stale etag when the caller sent one. A role that is already `role` is
    /// returned as read, without a write or an event.
    pub async fn update_role(
        &self,
        current: &Member,
        role: Role,
        owner_ceiling: i64,
        etag_sent: bool,
        actor: &str,
    ) -> Result<Member, MembershipError> {
        if current.role == role {
            // Already as asked: perhaps by a concurrent call still announcing it. This one
            // answers no sooner than that one may (see `Revocations::reannounce`).
            self.outbox
                .revocations()
                .reannounce(Revoked::User(current.user_id.to_string()))
                .await;
            return Ok(current.clone());
        }
        let tx = self.begin().await?;
        update_as_read(
            &*tx,
            current,
            member::Column::Role,
            role.as_str(),
            etag_sent,
        )
        .await?;
        let delta = owners::owner_delta(Some(current.role), Some(role));
        change_counts(&*tx, &current.account_id, delta, 0, owner_ceiling).await?;
        let member = load_member(&*tx, &current.account_id, &current.user_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        let change = MemberChange::Updated {
            previous_role: current.role,
            previous_expire_time: current.expire_time,
        };
        // A role change may take access away: the call answers once no replica's local view
        // can serve the old role (see `Revocations`).
        tx.append_revocation(&member_event(change, &member, actor))
            .await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Removes `current` (as read and authorized by the caller) and publishes `member.removed`
    /// by `actor`. The last OWNER stays.
    pub async fn remove_member(
        &self,
        current: &Member,
        etag_sent: bool,
        actor: &str,
    ) -> Result<(), MembershipError> {
        let tx = self.begin().await?;
        let result = member::Entity::delete_many()
            .filter(as_read(current))
            .exec(&*tx)
            .await?;
        if result.rows_affected == 0 {
            return Err(lost_race(&*tx, current, etag_sent).await);
        }
        let delta = owners::owner_delta(Some(current.role), None);
        change_counts(&*tx, &current.account_id, delta, -1, owners::MAX_OWNERS).await?;
        // The row that was deleted is `current` (same version), with the directory entry as
        // it is now.
        let mut removed = current.clone();
        removed.profile = load_profiles(&*tx, std::slice::from_ref(&current.user_id))
            .await?
            .remove(current.user_id.as_str())
            .unwrap_or_default();
        tx.append_revocation(&member_event(MemberChange::Removed, &removed, actor))
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The row of `current` exactly as it was read: the same version of the same membership.
/// Versions start at 1 again in a recreated membership (removed or expired, then added again),
/// so the creation time tells the row that was read from its successor.
fn as_read(current: &Member) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(member::Column::AccountId.eq(current.account_id.as_str()))
        .add(member::Column::UserId.eq(current.user_id.as_str()))
        .add(member::Column::Version.eq(current.version))
        .add(member::Column::CreateTime.eq(current.create_time))
}

/// Sets `column` of `current` to `value` (and moves its update time and version) if the row is
/// still as read; otherwise the error [`lost_race`] names.
async fn update_as_read(
    txn: &impl ConnectionTrait,
    current: &Member,
    column: member::Column,
    value: impl Into<sea_orm::Value>,
    etag_sent: bool,
) -> Result<(), MembershipError> {
    let result = member::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .col_expr(
            member::Column::UpdateTime,
            Expr::value(tenantry_platform::time::now()),
        )
        .col_expr(member::Column::Version, Expr::value(current.version + 1))
        .filter(as_read(current))
        .exec(txn)
        .await?;
    if result.rows_affected == 0 {
        return Err(lost_race(txn, current, etag_sent).await);
    }
    Ok(())
}

/// Why a conditional write of `current` matched no row.
async fn lost_race(
    conn: &impl ConnectionTrait,
    current: &Member,
    etag_sent: bool,
) -> MembershipError {
    match load_member(conn, &current.account_id, &current.user_id).await {
        Ok(None) => MembershipError::MemberNotFound {
            account_id: current.account_id.to_string(),
            user_id: current.user_id.to_string(),
        },
        Ok(Some(_)) if etag_sent => MembershipError::StaleEtag(
            tenantry_platform::names::member_name(&current.account_id, &current.user_id),
        ),
        Ok(Some(_)) => MembershipError::ConcurrentChange,
        Err(error) => error,
    }
}

fn already_member_on_conflict(error: sea_orm::DbErr, new: &NewMember) -> MembershipError {
    match StoreError::from(error) {
        StoreError::Conflict(_) => MembershipError::AlreadyMember {
            account_id: new.account_id.to_string(),
            user_id: new.user_id.to_string(),
        },
        other => MembershipError::Store(other),
    }
}

/// Inserts the member row and counts it, inside the caller's transaction.
async fn insert_member(
    txn: &impl ConnectionTrait,
    new: &NewMember,
    owner_ceiling: i64,
) -> Result<(), MembershipError> {
    let already = || MembershipError::AlreadyMember {
        account_id: new.account_id.to_string(),
        user_id: new.user_id.to_string(),
    };
    if member::Entity::find_by_id((new.account_id.to_string(), new.user_id.to_string()))
        .one(txn)
        .await?
        .is_some()
    {
        return Err(already());
    }
    let now = tenantry_platform::time::now();
    let row = member::ActiveModel {
        account_id: Set(new.account_id.to_string()),
        user_id: Set(new.user_id.to_string()),
        role: Set(new.role.as_str().to_string()),
        source: Set(new.source.as_str().to_string()),
        added_by: Set(new.added_by.clone()),
        create_time: Set(now),
        update_time: Set(now),
        version: Set(1),
        expire_time: Set(new.expire_time),
    };
    member::Entity::insert(row)
        .exec_without_returning(txn)
        .await
        .map_err(|error| already_member_on_conflict(error, new))?;
    let delta = owners::owner_delta(None, Some(new.role));
    change_counts(txn, &new.account_id, delta, 1, owner_ceiling).await
}

/// Moves the account's counters by one conditional update: a gained OWNER only while
/// `owners < owner_ceiling`, a lost OWNER only while `owners > 1`. A refused update becomes
/// the error the OWNER rules give for the count found.
async fn change_counts(
    txn: &impl ConnectionTrait,
    account_id: &AccountId,
    delta: OwnerDelta,
    members_delta: i64,
    owner_ceiling: i64,
) -> Result<(), MembershipError> {
    if delta == OwnerDelta::Unchanged && members_delta == 0 {
        return Ok(());
    }
    let row = counts::ActiveModel {
        account_id: Set(account_id.to_string()),
        owners: Set(0),
        members: Set(0),
    };
    counts::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await?;
    let mut update = counts::Entity::update_many()
        .col_expr(
            counts::Column::Members,
            Expr::col(counts::Column::Members).add(members_delta),
        )
        .filter(counts::Column::AccountId.eq(account_id.as_str()));
    update = match delta {
        OwnerDelta::Gained => update
            .col_expr(
                counts::Column::Owners,
                Expr::col(counts::Column::Owners).add(1),
            )
            .filter(counts::Column::Owners.lt(owner_ceiling)),
        OwnerDelta::Lost => update
            .col_expr(
                counts::Column::Owners,
                Expr::col(counts::Column::Owners).sub(1),
            )
            .filter(counts::Column::Owners.gt(1)),
        OwnerDelta::Unchanged => update,
    };
    if update.exec(txn).await?.rows_affected == 1 {
        return Ok(());
    }
    let owners = owner_count(txn, account_id).await?;
    match delta {
        OwnerDelta::Gained => owners::check_grant(account_id, owners, owner_ceiling)?,
        OwnerDelta::Lost => owners::check_revoke(account_id, owners)?,
        OwnerDelta::Unchanged => {}
    }
    // The count allows the change, so the update lost a race we cannot explain: retryable.
    Err(MembershipError::ConcurrentChange)
}

async fn owner_count(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
) -> Result<i64, MembershipError> {
    Ok(counts::Entity::find_by_id(account_id.to_string())
        .one(conn)
        .await?
        .map_or(0, |row| row.owners))
}

async fn load_member(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
    user_id: &UserId,
) -> Result<Option<Member>, MembershipError> {
    let Some(row) = member::Entity::find_by_id((account_id.to_string(), user_id.to_string()))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let profile = load_profiles(conn, &[UserId::trusted(row.user_id.clone())])
        .await?
        .remove(&row.user_id)
        .unwrap_or_default();
    to_member(row, profile).map(Some)
}

/// `rows` as members, each with its user's directory entry (one query for all).
async fn with_profiles(
    conn: &impl ConnectionTrait,
    rows: Vec<member::Model>,
) -> Result<Vec<Member>, MembershipError> {
    let ids: Vec<UserId> = rows
        .iter()
        .map(|row| UserId::trusted(row.user_id.clone()))
        .collect();
    let profiles = load_profiles(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let profile = profiles.get(&row.user_id).cloned().unwrap_or_default();
            to_member(row, profile)
        })
        .collect()
}

/// The directory entries of `user_ids`, by user id.
async fn load_profiles(
    conn: &impl ConnectionTrait,
    user_ids: &[UserId],
) -> Result<HashMap<String, UserProfile>, MembershipError> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::UserId.is_in(user_ids.iter().map(|id| id.as_str())))
        .all(conn)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.user_id,
                UserProfile {
                    email: row.email,
                    given_name: row.given_name,
                    family_name: row.family_name,
                },
            )
        })
        .collect())
}

/// `count` bind placeholders of raw SQL for `backend`: `$1…` on PostgreSQL, `?1…` on SQLite.
pub(super) fn placeholders(backend: sea_orm::DbBackend, count: usize) -> Vec<String> {
    (1..=count)
        .map(|n| match backend {
            sea_orm::DbBackend::Postgres => format!("${n}"),
            _ => format!("?{n}"),
        })
        .collect()
}

fn parse_role(text: &str) -> Result<Role, MembershipError> {
    Role::parse(text).ok_or_else(|| MembershipError::Corrupt(format!("role {text:?}")))
}

fn to_member(row: member::Model, profile: UserProfile) -> Result<Member, MembershipError> {
    Ok(Member {
        role: parse_role(&row.role)?,
        source: MemberSource::parse(&row.source)
            .ok_or_else(|| MembershipError::Corrupt(format!("source {:?}", row.source)))?,
        account_id: AccountId::trusted(row.account_id),
        user_id: UserId::trusted(row.user_id),
        added_by: row.added_by,
        create_time: row.create_time,
        update_time: row.update_time,
        version: row.version,
        expire_time: row.expire_time,
        profile,
    })
}
