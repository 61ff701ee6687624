//! Access policies: an account's own (a row once it was set), the policy in force for an
//! account (its own and its managing partner's, read together), and UpdateAccessPolicy's write,
//! conditioned on the version read.

use chrono::Duration;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tenantry_platform::AccountId;

use super::Store;
use super::entities::access_policy;
use crate::domain::MembershipError;
use crate::domain::policy::{
    AccessPolicy, EffectivePolicy, GatedGrant, ShortOfApprovers, StoredPolicy,
};
use crate::events::policy_event;

fn to_stored(row: access_policy::Model) -> Result<StoredPolicy, MembershipError> {
    let corrupt = || MembershipError::Corrupt(format!("access policy of {}", row.account_id));
    let gated = row
        .gated_grants
        .split(',')
        .filter(|text| !text.is_empty())
        .map(|text| GatedGrant::parse(text).ok_or_else(corrupt))
        .collect::<Result<_, _>>()?;
    let short_of_approvers = row
        .short_of_approvers
        .as_deref()
        .map(|text| ShortOfApprovers::parse(text).ok_or_else(corrupt))
        .transpose()?;
    Ok(StoredPolicy {
        account_id: AccountId::trusted(row.account_id.clone()),
        policy: AccessPolicy {
            gated,
            required_approvals: row.required_approvals,
            request_lifetime: row.request_lifetime_seconds.map(Duration::seconds),
            short_of_approvers,
            default_access_duration: row.default_duration_seconds.map(Duration::seconds),
            max_access_duration: row.max_duration_seconds.map(Duration::seconds),
            access_duration_required: row.duration_required,
        },
        version: row.version,
        update_time: row.update_time,
        update_by: row.update_by,
    })
}

pub(super) async fn load_policies(
    conn: &impl ConnectionTrait,
    account_ids: &[&AccountId],
) -> Result<Vec<StoredPolicy>, MembershipError> {
    access_policy::Entity::find()
        .filter(access_policy::Column::AccountId.is_in(account_ids.iter().map(|id| id.as_str())))
        .all(conn)
        .await?
        .into_iter()
        .map(to_stored)
        .collect()
}

/// The policy in force for `account_id`, managed by `managed_by` if it is a managed customer.
pub(super) async fn effective_policy(
    conn: &impl ConnectionTrait,
    account_id: &AccountId,
    managed_by: Option<&AccountId>,
) -> Result<EffectivePolicy, MembershipError> {
    let mut ids = vec![account_id];
    ids.extend(managed_by);
    let mut policies = load_policies(conn, &ids).await?;
    let take = |policies: &mut Vec<StoredPolicy>, id: &AccountId| {
        policies
            .iter()
            .position(|stored| &stored.account_id == id)
            .map(|at| policies.remove(at))
    };
    let own = take(&mut policies, account_id);
    let partner = managed_by.and_then(|partner| take(&mut policies, partner));
    Ok(EffectivePolicy::of(own, partner))
}

impl Store {
    /// The policy in force for `account_id` (see [`EffectivePolicy`]).
    pub async fn effective_policy(
        &self,
        account_id: &AccountId,
        managed_by: Option<&AccountId>,
    ) -> Result<EffectivePolicy, MembershipError> {
        effective_policy(self.connection()?, account_id, managed_by).await
    }

    /// Sets `account_id`'s own policy to `rules` if its version is still `read` (`None`: never
    /// set), and publishes `access_policy.updated` by `actor`. Another write since the read:
    /// ABORTED as a stale etag when the caller sent one, else a retryable concurrent change.
    pub async fn update_policy(
        &self,
        account_id: &AccountId,
        rules: &AccessPolicy,
        read: Option<&StoredPolicy>,
        etag_sent: bool,
        actor: &str,
    ) -> Result<StoredPolicy, MembershipError> {
        let tx = self.begin().await?;
        let now = tenantry_platform::time::now();
        let version = read.map_or(0, |read| read.version) + 1;
        let gated = rules
            .gated
            .iter()
            .map(|grant| grant.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let row = access_policy::ActiveModel {
            account_id: Set(account_id.to_string()),
            gated_grants: Set(gated),
            required_approvals: Set(rules.required_approvals),
            request_lifetime_seconds: Set(rules.request_lifetime.map(|d| d.num_seconds())),
            short_of_approvers: Set(rules.short_of_approvers.map(|s| s.as_str().to_string())),
            default_duration_seconds: Set(rules.default_access_duration.map(|d| d.num_seconds())),
            max_duration_seconds: Set(rules.max_access_duration.map(|d| d.num_seconds())),
            duration_required: Set(rules.access_duration_required),
            version: Set(version),
            update_time: Set(now),
            update_by: Set(actor.to_string()),
        };
        let written = match read {
            None => access_policy::Entity::insert(row)
                .on_conflict_do_nothing()
                .exec_without_returning(&*tx)
                .await
                .map(|inserted| matches!(inserted, sea_orm::TryInsertResult::Inserted(1)))?,
            Some(read) => {
                access_policy::Entity::update_many()
                    .set(row)
                    .filter(access_policy::Column::AccountId.eq(account_id.as_str()))
                    .filter(access_policy::Column::Version.eq(read.version))
                    .exec(&*tx)
                    .await?
                    .rows_affected
                    == 1
            }
        };
        if !written {
            return Err(if etag_sent {
                MembershipError::StaleEtag(crate::domain::policy::policy_name(account_id))
            } else {
                MembershipError::ConcurrentChange
            });
        }
        let stored = load_policies(&*tx, &[account_id])
            .await?
            .pop()
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&policy_event(account_id, &stored, read, actor))
            .await?;
        tx.commit().await?;
        Ok(stored)
    }
}
