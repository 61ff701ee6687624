//! The access-request RPCs: Create, Get, List, ListWaitingForMe, Approve, Decline, Cancel. The
//! rules are `domain/requests.rs`; the transactions `store/requests.rs`.

use chrono::{DateTime, Utc};
use tenantry_platform::names::{member_name, parse_account_child};
use tenantry_platform::{AccountId, ApiError, Principal, UserId};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use super::members::record;
use crate::access_wire::{new_request, reason, request_to_wire, states_filter};
use crate::domain::access::Access;
use crate::domain::members::{self, Target};
use crate::domain::owners::MAX_OWNERS;
use crate::domain::requests::{
    self as rules, AccessRequest, RequestState, approver_roles, may_grant, may_request,
};
use crate::domain::{AccountState, Caller, Member, MembershipError, Permission, Role};
use crate::events::RequestChange;

/// Most people asked to approve one request (each gets an e-mail).
const MAX_APPROVERS_ASKED: u64 = 200;

/// How often a write that lost a race to another approval is tried again with what is now
/// stored (only when the caller sent no etag).
const RACE_RETRIES: usize = 3;

impl MembershipApi {
    pub(super) async fn create_access_request(
        &self,
        request: Request<pb::CreateAccessRequestRequest>,
    ) -> Result<AccessRequest, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let caller = self.caller(&principal).await?;
        let requester = UserId::trusted(user.sub.clone());
        let asked = new_request(request.get_ref())?;
        let access = self.access(&caller, &asked.account_id).await?;
        let add_myself_role = self.config.add_myself_role.role();
        // An address is looked up only for someone who could grant the role to anyone.
        let subject = match &asked.subject {
            Target::User(user_id) => user_id.clone(),
            Target::Email(email) => {
                if !may_grant(&access, asked.role, false) || access.caller.is_operator() {
                    return Err(MembershipError::PermissionDenied.into());
                }
                let holders = self.store.users_with_email(email, 2).await?;
                match members::the_user_with(email.clone(), holders) {
                    Ok(user_id) => user_id,
                    Err(MembershipError::UserNotFound(email)) => {
                        return Err(ApiError::not_found(
                            "USER_NOT_FOUND",
                            format!(
                                "access_request.subject_email: no known user has the e-mail \
                                 address {email}; invite them first"
                            ),
                        ));
                    }
                    Err(MembershipError::AmbiguousEmail(email)) => {
                        return Err(ApiError::failed_precondition(
                            "AMBIGUOUS_EMAIL",
                            "access_request.subject_email",
                            format!(
                                "several users have the e-mail address {email}; ask by `subject`"
                            ),
                        ));
                    }
                    Err(other) => return Err(other.into()),
                }
            }
        };
        if !may_request(&access, asked.role, &subject, add_myself_role) {
            return Err(MembershipError::PermissionDenied.into());
        }
        let account = access.existing(&asked.account_id)?;
        if account.state != AccountState::Active {
            return Err(MembershipError::AccountNotActive(asked.account_id.to_string()).into());
        }
        let policy = self.policy_in_force(&access).await?;
        let current = self.store.member(&asked.account_id, &subject).await?;
        // A member without end asking for no duration keeps no end: the policy's durations
        // bound new and time-bound access, not a role change of a permanent membership.
        let permanent_member = current
            .as_ref()
            .is_some_and(|member| member.expire_time.is_none());
        let owners = self.store.owner_count(&asked.account_id).await?;
        // Nor do they make an account's first OWNER time-bound: the last OWNER never expires.
        let first_owner = asked.role == Role::Owner && owners == 0;
        let access_duration =
            if (permanent_member || first_owner) && asked.access_duration.is_none() {
                None
            } else {
                policy
                    .rules
                    .access_duration(asked.access_duration)
                    .map_err(|description| MembershipError::PolicyRefused {
                        field: "access_request.access_duration",
                        description,
                    })?
            };
        let now = tenantry_platform::time::now();
        // Refused now rather than by every approval: the OWNER limit (checked again by the
        // granting transaction), and a time-bound first OWNER.
        if asked.role == Role::Owner
            && current
                .as_ref()
                .is_none_or(|member| member.role != Role::Owner)
            && owners >= MAX_OWNERS
        {
            return Err(MembershipError::OwnerLimit(asked.account_id.to_string()).into());
        }
        if first_owner && access_duration.is_some() {
            return Err(MembershipError::LastOwnerExpiry(asked.account_id.to_string()).into());
        }
        rules::check_grantable(
            current.as_ref(),
            asked.role,
            access_duration,
            now,
            &member_name(asked.account_id.as_str(), subject.as_str()),
        )?;
        let required = policy.rules.approvals();
        let needed = (required - 1) as usize;
        let mut approvers = self
            .approvers_for(&access, &asked.account_id, asked.role, &requester, &subject)
            .await?;
        let mut escalated = false;
        if approvers.len() < needed
            && policy.rules.escalates()
            && let Some(partner) = &account.managed_by
        {
            // Too few in the account: the policy lets the partner's OWNERs approve too.
            escalated = true;
            for owner in self
                .store
                .members_with_roles(partner, &[Role::Owner], MAX_APPROVERS_ASKED)
                .await?
            {
                if owner != requester && owner != subject && !approvers.contains(&owner) {
                    approvers.push(owner);
                }
            }
        }
        if approvers.len() < needed {
            return Err(MembershipError::NotEnoughApprovers {
                account_id: asked.account_id.to_string(),
                eligible: approvers.len(),
                needed,
            }
            .into());
        }
        let subject_email = match &current {
            Some(member) => member.profile.email.clone(),
            None => self
                .store
                .member_profile(&subject)
                .await?
                .map(|profile| profile.email)
                .unwrap_or_default(),
        };
        record(
            access.granted_by(|access| may_request(access, asked.role, &subject, add_myself_role)),
        );
        let new = AccessRequest {
            account_id: asked.account_id.clone(),
            request_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            subject,
            subject_email,
            role: asked.role,
            reason: asked.reason,
            access_duration,
            state: RequestState::Pending,
            requester: requester.clone(),
            approvals: Vec::new(),
            required_approvals: required,
            escalated,
            create_time: now,
            expire_time: now + policy.rules.request_lifetime(),
            decide_time: None,
            decided_by: None,
            decline_reason: None,
            version: 1,
        };
        let created = self.store.create_request(&new, &approvers).await?;
        self.request_mail.notify_one();
        Ok(created)
    }

    /// Who of the account's own members may approve a grant of `role` (not the requester, not
    /// the subject).
    async fn approvers_for(
        &self,
        access: &Access,
        account_id: &AccountId,
        role: Role,
        requester: &UserId,
        subject: &UserId,
    ) -> Result<Vec<UserId>, MembershipError> {
        let roles = approver_roles(role, access.has_owner);
        Ok(self
            .store
            .members_with_roles(account_id, &roles, MAX_APPROVERS_ASKED)
            .await?
            .into_iter()
            .filter(|user| user != requester && user != subject)
            .collect())
    }

    /// FAILED_PRECONDITION REQUESTER_NOT_ENTITLED unless the requester of `request` could still
    /// make it (see [`may_request`]).
    async fn requester_still_entitled(&self, request: &AccessRequest) -> Result<(), ApiError> {
        let requester = Caller::User {
            user_id: request.requester.clone(),
            operator: false,
        };
        let access = self.access(&requester, &request.account_id).await?;
        let add_myself_role = self.config.add_myself_role.role();
        if may_request(&access, request.role, &request.subject, add_myself_role) {
            Ok(())
        } else {
            Err(MembershipError::RequesterNotEntitled(request.name()).into())
        }
    }

    /// How many approvals of `request` still count: the requester's (checked apart), an
    /// operator's (their right is not a role in the account), and each of the others whose
    /// approver may still grant the role.
    async fn approvals_that_count(&self, request: &AccessRequest) -> Result<usize, ApiError> {
        let mut counted = 0;
        for approval in &request.approvals {
            if approval.approver == request.requester || approval.operator {
                counted += 1;
                continue;
            }
            let approver = Caller::User {
                user_id: approval.approver.clone(),
                operator: false,
            };
            let access = self.access(&approver, &request.account_id).await?;
            if may_grant(&access, request.role, request.escalated) {
                counted += 1;
            }
        }
        Ok(counted)
    }

    /// The request `name` names, as a caller who may see it sees it: whoever may list the
    /// account's members, the requester, the subject, operators. Everyone else
    /// PERMISSION_DENIED, whether or not it exists.
    async fn visible_request(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Access, AccessRequest), ApiError> {
        let (account, request_id) = parse_account_child("name", name, "accessRequests")?;
        let account_id = AccountId::trusted(account);
        let access = self.access(caller, &account_id).await?;
        let found = self.store.request(&account_id, &request_id).await?;
        let lister = access.allows(Permission::MembersList);
        match found {
            Some(request) if lister || request.concerns(caller.user_id()) => Ok((access, request)),
            None if lister => Err(MembershipError::RequestNotFound(name.to_string()).into()),
            _ => Err(MembershipError::PermissionDenied.into()),
        }
    }

    pub(super) async fn get_access_request(
        &self,
        request: Request<pb::GetAccessRequestRequest>,
    ) -> Result<AccessRequest, ApiError> {
        let principal = Principal::of(&request)?;
        // Requests are people's business: no peer service needs them, so none may read them.
        principal.user()?;
        let caller = self.caller(&principal).await?;
        Ok(self
            .visible_request(&caller, &request.get_ref().name)
            .await?
            .1)
    }

    pub(super) async fn list_access_requests(
        &self,
        request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<pb::ListAccessRequestsResponse, ApiError> {
        let principal = Principal::of(&request)?;
        // Requests are people's business: no peer service needs them, so none may read them.
        principal.user()?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let account_id = AccountId::from_name("parent", &request.parent)?;
        let states = states_filter(&request.states)?;
        let scope = format!(
            "ListAccessRequests|{account_id}|{}",
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        let now = tenantry_platform::time::now();
        let after = page.after.as_deref().map(parse_cursor).transpose()?;
        let mut rows = self
            .store
            .list_requests(&account_id, &states, after, page.size + 1, now)
            .await?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut rows, |row| {
            cursor(row.create_time, &row.request_id)
        });
        Ok(pb::ListAccessRequestsResponse {
            access_requests: rows.iter().map(|row| request_to_wire(row, now)).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_access_requests_waiting_for_me(
        &self,
        request: Request<pb::ListAccessRequestsWaitingForMeRequest>,
    ) -> Result<pb::ListAccessRequestsWaitingForMeResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let caller = self.caller(&principal).await?;
        let user_id = UserId::trusted(user.sub.clone());
        let request = request.into_inner();
        let scope = format!("ListAccessRequestsWaitingForMe|{user_id}");
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let now = tenantry_platform::time::now();
        let after = page.after.as_deref().map(parse_cursor).transpose()?;
        let mut rows = self
            .store
            .waiting_for(&user_id, now, after, page.size + 1)
            .await?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut rows, |row| {
            cursor(row.expire_time, &row.request_id)
        });
        // Only what the caller may still approve: someone asked when the request was made may
        // have lost the role since (a page may then hold fewer than page_size).
        let mut waiting = Vec::with_capacity(rows.len());
        for row in rows {
            let access = self.access(&caller, &row.account_id).await?;
            if may_grant(&access, row.role, row.escalated) {
                waiting.push(request_to_wire(&row, now));
            }
        }
        Ok(pb::ListAccessRequestsWaitingForMeResponse {
            access_requests: waiting,
            next_page_token,
        })
    }

    pub(super) async fn approve_access_request(
        &self,
        request: Request<pb::ApproveAccessRequestRequest>,
    ) -> Result<(AccessRequest, Option<Member>), ApiError> {
        let principal = Principal::of(&request)?;
        principal.user()?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let approver = caller
            .user_id()
            .cloned()
            .ok_or(MembershipError::PermissionDenied)?;
        let etag_sent = !request.etag.is_empty();
        let approved = decided_on_what_is_stored(etag_sent, || async {
            let (access, current) = self.visible_request(&caller, &request.name).await?;
            if !may_grant(&access, current.role, current.escalated) {
                return Err(MembershipError::PermissionDenied.into());
            }
            let now = tenantry_platform::time::now();
            rules::check_approval(&current, &approver, &request.etag, now)?;
            // The requester's approval counts only while they could still ask: one who left the
            // account (or its partner) since does not vouch for the grant any more.
            self.requester_still_entitled(&current).await?;
            // Nor do the approvals of people who lost the right to grant since: the grant
            // waits for as many approvals from people who still have it.
            let counted = self.approvals_that_count(&current).await?;
            let last = counted + 1 >= current.required_approvals as usize;
            record(access.granted_by(|access| may_grant(access, current.role, current.escalated)));
            // The approver's own OWNER ceiling (an ADMIN grants OWNER only while there is
            // none: the first OWNER's grant ends that right atomically).
            let owner_ceiling = access.owner_grant_ceiling().unwrap_or(MAX_OWNERS);
            Ok(self
                .store
                .approve_request(
                    &current,
                    &approver,
                    caller.is_operator(),
                    last,
                    owner_ceiling,
                    etag_sent,
                )
                .await)
        })
        .await?;
        self.request_mail.notify_one();
        Ok(approved)
    }

    pub(super) async fn decline_access_request(
        &self,
        request: Request<pb::DeclineAccessRequestRequest>,
    ) -> Result<AccessRequest, ApiError> {
        let principal = Principal::of(&request)?;
        principal.user()?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let why = reason("reason", &request.reason, false)?;
        let decider = caller
            .user_id()
            .cloned()
            .ok_or(MembershipError::PermissionDenied)?;
        let etag_sent = !request.etag.is_empty();
        let declined = decided_on_what_is_stored(etag_sent, || async {
            let (access, current) = self.visible_request(&caller, &request.name).await?;
            if decider == current.subject || !may_grant(&access, current.role, current.escalated) {
                return Err(MembershipError::PermissionDenied.into());
            }
            rules::check_pending(&current, &request.etag, tenantry_platform::time::now())?;
            record(access.granted_by(|access| may_grant(access, current.role, current.escalated)));
            Ok(self
                .store
                .close_request(
                    &current,
                    RequestChange::Declined,
                    &decider,
                    Some(&why),
                    etag_sent,
                )
                .await)
        })
        .await?;
        self.request_mail.notify_one();
        Ok(declined)
    }

    pub(super) async fn cancel_access_request(
        &self,
        request: Request<pb::CancelAccessRequestRequest>,
    ) -> Result<AccessRequest, ApiError> {
        let principal = Principal::of(&request)?;
        principal.user()?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let canceller = caller
            .user_id()
            .cloned()
            .ok_or(MembershipError::PermissionDenied)?;
        let etag_sent = !request.etag.is_empty();
        decided_on_what_is_stored(etag_sent, || async {
            let (access, current) = self.visible_request(&caller, &request.name).await?;
            if canceller != current.requester && !caller.is_operator() {
                return Err(MembershipError::PermissionDenied.into());
            }
            rules::check_pending(&current, &request.etag, tenantry_platform::time::now())?;
            record(access.granted_by(|access| {
                access.caller.is_operator() || access.caller.user_id() == Some(&current.requester)
            }));
            Ok(self
                .store
                .close_request(
                    &current,
                    RequestChange::Cancelled,
                    &canceller,
                    None,
                    etag_sent,
                )
                .await)
        })
        .await
    }
}

/// Runs `attempt` — read the request as stored, check, write under the version read (the
/// outer error: refused before writing; the inner: the write's) — again when its write lost a
/// race to another change (a partial approval moves the version on) and the caller sent no
/// etag, up to [`RACE_RETRIES`] times: the decision is made on what is stored now.
async fn decided_on_what_is_stored<T, F, Fut>(
    etag_sent: bool,
    mut attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, MembershipError>, ApiError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await? {
            Err(MembershipError::ConcurrentChange) if !etag_sent && tries < RACE_RETRIES => {
                tries += 1;
            }
            Err(error) => return Err(error.into()),
            Ok(done) => return Ok(done),
        }
    }
}

/// A page cursor: a time (microseconds) and a request id.
fn cursor(time: DateTime<Utc>, request_id: &str) -> String {
    format!("{}|{request_id}", time.timestamp_micros())
}

fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let invalid = || ApiError::invalid_field("page_token", "not a page token of this list");
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((time, id.to_string()))
}
