//! GetAccessPolicy and UpdateAccessPolicy, and the gate every grant passes: a grant the policy
//! in force puts behind approval is refused with APPROVAL_REQUIRED (people only: operators
//! and service identities are not gated; an accepted invitation was gated when it was made).

use tenantry_platform::{ApiError, Principal};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use super::members::record;
use crate::access_wire::{effective_to_wire, policy_account, policy_from_wire, policy_to_wire};
use crate::domain::access::Access;
use crate::domain::policy::{EffectivePolicy, GatedGrant};
use crate::domain::{AccountState, MembershipError, Permission, Role};

impl MembershipApi {
    /// The policy in force for the account of `access` (none for an unknown account).
    pub(super) async fn policy_in_force(
        &self,
        access: &Access,
    ) -> Result<EffectivePolicy, MembershipError> {
        match &access.facts {
            Some(facts) => {
                self.store
                    .effective_policy(&facts.account_id, facts.managed_by.as_ref())
                    .await
            }
            None => Ok(EffectivePolicy::default()),
        }
    }

    /// APPROVAL_REQUIRED if the policy in force gates any of `grants` for this caller (a person
    /// who is not an operator); returns the policy, which also sets durations. With no grant a
    /// policy could gate (an EMPLOYEE grant), nothing is read: the policy is the default.
    pub(super) async fn gate(
        &self,
        access: &Access,
        grants: &[Option<GatedGrant>],
    ) -> Result<EffectivePolicy, MembershipError> {
        if grants.iter().all(Option::is_none) {
            return Ok(EffectivePolicy::default());
        }
        let policy = self.policy_in_force(access).await?;
        let gated_caller = access.caller.user_id().is_some() && !access.caller.is_operator();
        if gated_caller {
            for grant in grants.iter().flatten() {
                policy.require_ungated(*grant)?;
            }
        }
        Ok(policy)
    }

    pub(super) async fn get_access_policy(
        &self,
        request: Request<pb::GetAccessPolicyRequest>,
    ) -> Result<pb::GetAccessPolicyResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let account_id = policy_account("name", &request.get_ref().name)?;
        // Policies are read by people: no peer service needs to, so none may.
        principal.user()?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        let policy = self.policy_in_force(&access).await?;
        Ok(pb::GetAccessPolicyResponse {
            policy: Some(policy_to_wire(&account_id, policy.own.as_ref())),
            effective: Some(effective_to_wire(&account_id, &policy)),
        })
    }

    pub(super) async fn update_access_policy(
        &self,
        request: Request<pb::UpdateAccessPolicyRequest>,
    ) -> Result<pb::UpdateAccessPolicyResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let sent = request
            .get_ref()
            .policy
            .clone()
            .ok_or_else(|| ApiError::invalid_field("policy", "required"))?;
        let account_id = policy_account("policy.name", &sent.name)?;
        let rules = policy_from_wire(&sent)?;
        // Policies are set by people: no peer service needs to, so none may.
        principal.user()?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        let account = access.existing(&account_id)?;
        if !may_set_policy(&access) {
            return Err(MembershipError::PermissionDenied.into());
        }
        if account.state == AccountState::Deleted {
            return Err(MembershipError::AccountDeleted(account_id.to_string()).into());
        }
        let current = self.policy_in_force(&access).await?;
        let name = crate::domain::policy::policy_name(&account_id);
        let read_version = current.own.as_ref().map_or(0, |own| own.version);
        if !sent.etag.is_empty() && !tenantry_platform::etag::etag_allows(&sent.etag, read_version)
        {
            return Err(MembershipError::StaleEtag(name).into());
        }
        record(access.granted_by(may_set_policy));
        let stored = self
            .store
            .update_policy(
                &account_id,
                &rules,
                current.own.as_ref(),
                !sent.etag.is_empty(),
                &caller.resource_name(),
            )
            .await?;
        let effective = EffectivePolicy::of(Some(stored.clone()), current.partner);
        Ok(pb::UpdateAccessPolicyResponse {
            policy: Some(policy_to_wire(&account_id, Some(&stored))),
            effective: Some(effective_to_wire(&account_id, &effective)),
        })
    }
}

/// Policies are set by the account's OWNERs and by operators.
fn may_set_policy(access: &Access) -> bool {
    access.caller.is_operator() || access.role == Some(Role::Owner)
}
