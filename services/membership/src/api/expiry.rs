//! ExtendMemberAccess and ListExpiringMembers: time-bound memberships (the rules are in
//! `domain/expiry.rs`; the sweep that ends them is `crate::run_expiry_sweep`).

use tenantry_platform::names::parse_member_ids;
use tenantry_platform::time::from_timestamp;
use tenantry_platform::{AccountId, ApiError, Principal};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use super::members::record;
use crate::domain::policy::GatedGrant;
use crate::domain::{Member, MembershipError, Permission, expiry};
use crate::store::{ExpiringKey, expiring_key};
use crate::wire;

impl MembershipApi {
    pub(super) async fn extend_member_access(
        &self,
        request: Request<pb::ExtendMemberAccessRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let (account_id, user_id) = parse_member_ids("name", &request.name)?;
        let timestamp = request
            .expire_time
            .as_ref()
            .ok_or_else(|| ApiError::invalid_field("expire_time", "required"))?;
        let expire_time =
            tenantry_platform::time::stored_precision(from_timestamp("expire_time", timestamp)?);
        let now = tenantry_platform::time::now();
        expiry::check_expire_time(expire_time, now)
            .map_err(|reason| ApiError::invalid_field("expire_time", reason))?;
        // Access is extended by people: no peer service needs to, so none may.
        principal.user()?;

        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        let account = access.existing(&account_id)?;
        let current = self.existing_member(&account_id, &user_id).await?;
        expiry::check_extension(
            &access,
            account,
            &current,
            expire_time,
            now,
            &request.etag,
            &request.name,
        )?;
        let policy = self.gate(&access, &[Some(GatedGrant::Extensions)]).await?;
        policy
            .rules
            .check_end(expire_time, now)
            .map_err(|description| MembershipError::PolicyRefused {
                field: "expire_time",
                description,
            })?;
        record(expiry::extend_granted_by(&access, &current));
        let (etag_sent, actor) = (!request.etag.is_empty(), caller.resource_name());
        Ok(self
            .store
            .extend_access(&current, expire_time, etag_sent, &actor)
            .await?)
    }

    pub(super) async fn list_expiring_members(
        &self,
        request: Request<pb::ListExpiringMembersRequest>,
    ) -> Result<pb::ListExpiringMembersResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let partner = AccountId::from_name("parent", &request.parent)?;
        let timestamp = request
            .expire_before
            .as_ref()
            .ok_or_else(|| ApiError::invalid_field("expire_before", "required"))?;
        // Stored times hold microseconds: a cut-off between two is rounded up, once, so both
        // databases compare the same value and the page token is bound to it.
        let exact = from_timestamp("expire_before", timestamp)?;
        let before = tenantry_platform::time::stored_precision(exact);
        let before = if before < exact {
            before + chrono::Duration::microseconds(1)
        } else {
            before
        };
        let scope = format!(
            "ListExpiringMembers|{partner}|{}",
            before.timestamp_micros()
        );
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let after: Option<ExpiringKey> = page
            .after
            .as_deref()
            .map(|cursor| {
                serde_json::from_str::<(i64, String, String)>(cursor)
                    .ok()
                    .and_then(|(micros, account, user)| {
                        Some((
                            chrono::DateTime::from_timestamp_micros(micros)?,
                            account,
                            user,
                        ))
                    })
                    .ok_or_else(|| {
                        ApiError::invalid_field("page_token", "not a page token of this listing")
                    })
            })
            .transpose()?;
        // The warning list is for the people who manage the partner: no peer service reads it.
        principal.user()?;
        let access = self.access(&caller, &partner).await?;
        access.require(Permission::MembersManage)?;
        // Answered like a foreign account for one that is not a partner, or does not exist. A
        // partner promoted a moment ago may not be one in the replica yet: ask the registry
        // before refusing.
        let is_partner = match &access.facts {
            None => false,
            Some(facts) if facts.partner => true,
            Some(_) => self
                .accounts
                .refresh(&partner)
                .await?
                .is_some_and(|fresh| fresh.partner),
        };
        if !is_partner {
            return Err(MembershipError::PermissionDenied.into());
        }
        let mut members = self
            .store
            .list_expiring(&partner, before, after.as_ref(), page.size + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut members, |member| {
                expiring_key(member)
                    .map(|(time, account, user)| {
                        serde_json::json!([time.timestamp_micros(), account, user]).to_string()
                    })
                    .unwrap_or_default()
            });
        Ok(pb::ListExpiringMembersResponse {
            members: members.iter().map(wire::member_to_wire).collect(),
            next_page_token,
        })
    }
}
