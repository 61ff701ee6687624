//! AddMember, AddMyself, GetMember, UpdateMember, RemoveMember. Access is decided here (the
//! authorization table, locally), so each change records the role that let its caller make it
//! ([`record`]) for its event's `provenance`.

use tenantry_platform::call_context::{self, ActorRole};
use tenantry_platform::names::parse_member_ids;
use tenantry_platform::{AccountId, ApiError, Principal, UserId};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use crate::domain::expiry;
use crate::domain::members::{self, Removal, Target};
use crate::domain::policy::GatedGrant;
use crate::domain::{Caller, Member, MemberSource, MembershipError, Permission};
use crate::wire;

impl MembershipApi {
    pub(super) async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let from_service = matches!(caller, Caller::Service { .. });
        let add = wire::add_member_request(request.get_ref(), from_service)?;
        let key = add.request_key(&caller);
        let access = self.access(&caller, &add.account_id).await?;
        access.require(Permission::MembersManage)?;
        let account = access.existing(&add.account_id)?;
        // A retry is answered before the checks its own success may now fail (e.g. an ADMIN
        // whose first call created the account's first OWNER).
        if let Some(key) = &key
            && let Some(earlier) = self.store.replayed(key).await?
        {
            return Ok(earlier);
        }
        let owner_ceiling = members::check_add(&access, account, add.role)?;
        // An accepted invitation needs the policy whatever its role (whether it leaves
        // time-bound access as it is); a service is never gated itself.
        let policy = if add.source == MemberSource::Invitation {
            self.policy_in_force(&access).await?
        } else {
            self.gate(&access, &[GatedGrant::of_role(add.role)]).await?
        };
        if add.source == MemberSource::Invitation
            && let Some((account, grant)) = policy.gating_invitation(add.role)
        {
            // An invitation of a gated role made before the gate (or by an operator, or resent
            // since) is not a way around it: accepting it is refused like creating it.
            return Err(MembershipError::ApprovalRequired {
                policy: crate::domain::policy::policy_name(account),
                grant,
            }
            .into());
        }
        record(members::add_granted_by(&access, add.role));
        let user_id = self.user_named_by(&add.target).await?;
        if let Some(profile) = add.profile.clone() {
            // The invitee's claims, so the member is listed complete at once.
            self.directory.remember(&user_id, profile).await?;
        }
        let (new, record) = add.into_new(user_id, &caller, key);
        // The policy limits time-bound access: an accepted invitation does not make it
        // permanent (decided in the transaction, on the membership as it is there).
        let keep_time_bound = |role| policy.rules.bounds_access(role);
        let result = self
            .store
            .add_member_bounded(&new, owner_ceiling, record.as_ref(), &keep_time_bound)
            .await;
        if let (Err(MembershipError::AlreadyMember { .. }), Some(record)) = (&result, &record)
            && let Some(earlier) = self.store.replayed(&record.key).await?
        {
            // A concurrent call with the same request id won.
            return Ok(earlier);
        }
        Ok(result?)
    }

    /// The user AddMember's target names: the user itself, or the one directory user with
    /// the e-mail address.
    async fn user_named_by(&self, target: &Target) -> Result<UserId, MembershipError> {
        match target {
            Target::User(user_id) => Ok(user_id.clone()),
            Target::Email(email) => {
                let holders = self.store.users_with_email(email, 2).await?;
                members::the_user_with(email.clone(), holders)
            }
        }
    }

    pub(super) async fn add_myself(
        &self,
        request: Request<pb::AddMyselfRequest>,
    ) -> Result<pb::AddMyselfResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        self.caller(&principal).await?;
        let account_id = AccountId::from_name("account", &request.get_ref().account)?;
        let access_duration = wire::access_duration(request.get_ref().access_duration.as_ref())?;
        let user_id = UserId::trusted(user.sub.clone());
        let caller = members::add_myself_caller(user_id.clone());
        let access = self
            .access_for(&caller, &account_id, Permission::AddMyself)
            .await?;
        access.require(Permission::AddMyself)?;
        let account = access.existing(&account_id)?;
        // A customer enabled a moment ago may still be DISABLED in the replica: ask the
        // registry before refusing.
        if !members::joinable(account)
            && !self
                .accounts
                .refresh(&account_id)
                .await?
                .is_some_and(|fresh| members::joinable(&fresh))
        {
            return Err(MembershipError::AccountNotActive(account_id.into()).into());
        }
        if let Some(existing) = self.store.member(&account_id, &user_id).await? {
            // Already a member: answered as before, whatever the policy says of new grants.
            return Ok(pb::AddMyselfResponse {
                member: Some(wire::member_to_wire(&existing)),
                created: false,
            });
        }
        let role = self.config.add_myself_role.role();
        // Gated as AddMyself, and as a grant of the role it gives.
        let policy = self
            .gate(
                &access,
                &[Some(GatedGrant::AddMyself), GatedGrant::of_role(role)],
            )
            .await?;
        let access_duration =
            policy
                .rules
                .access_duration(access_duration)
                .map_err(|description| MembershipError::PolicyRefused {
                    field: "access_duration",
                    description,
                })?;
        record(access.granting(Permission::AddMyself));
        let expire_time =
            expiry::expire_time_after(tenantry_platform::time::now(), access_duration);
        let new = members::self_assigned(account_id, user_id, role, expire_time);
        let (member, created) = self.store.add_myself(&new).await?;
        Ok(pb::AddMyselfResponse {
            member: Some(wire::member_to_wire(&member)),
            created,
        })
    }

    pub(super) async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let (account_id, user_id) = parse_member_ids("name", &request.get_ref().name)?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        Ok(self.existing_member(&account_id, &user_id).await?)
    }

    pub(super) async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let changed = request
            .member
            .ok_or_else(|| ApiError::invalid_field("member", "required"))?;
        let (account_id, user_id) = parse_member_ids("member.name", &changed.name)?;
        wire::check_update_mask(request.update_mask.as_ref())?;
        let role = wire::role_from_wire("member.role", changed.role)?;
        // Roles are changed by people: no peer service needs to, so none may.
        principal.user()?;

        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        let account = access.existing(&account_id)?;
        let current = self.existing_member(&account_id, &user_id).await?;
        access.require(Permission::MembersManage)?;
        let owner_ceiling = members::check_update(
            &access,
            account,
            &current,
            role,
            &changed.etag,
            &changed.name,
        )?;
        if current.role == role {
            record(members::update_granted_by(&access, &current, role));
            return Ok(current);
        }
        if members::raises(current.role, role) {
            self.gate(&access, &[GatedGrant::of_role(role)]).await?;
        }
        record(members::update_granted_by(&access, &current, role));
        let (etag_sent, actor) = (!changed.etag.is_empty(), caller.resource_name());
        Ok(self
            .store
            .update_role(&current, role, owner_ceiling, etag_sent, &actor)
            .await?)
    }

    pub(super) async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<(), ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let (account_id, user_id) = parse_member_ids("name", &request.name)?;
        // Members are removed by people (or leave): no peer service needs to, so none may.
        principal.user()?;
        let access = self.access(&caller, &account_id).await?;
        let removal = Removal::new(&access, &account_id, &user_id);
        removal.may_look()?;
        let found = self.store.member(&account_id, &user_id).await?;
        let current = removal.check(found, &request.etag, &request.name)?;
        record(removal.granted_by(&current));
        let (etag_sent, actor) = (!request.etag.is_empty(), caller.resource_name());
        Ok(self
            .store
            .remove_member(&current, etag_sent, &actor)
            .await?)
    }
}

/// Records `role`, what let the caller of the current call make its change (nothing for a
/// service: the role of the person it acts for came with its call).
pub(super) fn record(role: Option<ActorRole>) {
    if let Some(role) = role {
        call_context::record_role(role);
    }
}
