//! The gRPC handlers: authenticate, parse and validate, decide with the domain rules, call the
//! store, map back. Membership's own RPCs use the authorization table locally.

mod access;
pub mod convert;
pub mod errors;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::StreamExt;
use tenantry_platform::idempotency::{RequestKey, fingerprint};
use tenantry_platform::names::{parse_account, parse_member, parse_user};
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::{ApiError, Principal};
use tenantry_proto::membership::v1 as wire;
use tenantry_proto::membership::v1::membership_service_server::MembershipService;
use tonic::{Request, Response, Status};

use crate::accounts::AccountDirectory;
use crate::domain::owners::MAX_OWNERS;
use crate::domain::{
    AccountFacts, AccountState, Caller, Member, MembershipError, NewMember, Permission, Role,
    validate_email,
};
use crate::store::{RequestRecord, Store};
use crate::{Config, Deps};
use access::{Access, UserDirectory};
use convert::{etag_allows, member_to_wire, role_to_wire};

/// How many account lookups ListMyAccounts runs at once.
const ACCOUNT_LOOKUP_CONCURRENCY: usize = 16;
const ADD_MEMBER: &str = "AddMember";

/// The membership service.
#[derive(Debug)]
pub struct MembershipApi {
    config: Config,
    store: Store,
    accounts: Arc<dyn AccountDirectory>,
    page_tokens: PageTokens,
    directory: UserDirectory,
}

/// Who AddMember adds.
enum Target {
    User(String),
    Email(String),
}

impl MembershipApi {
    /// The service over `deps`.
    pub fn new(config: Config, deps: Deps) -> Self {
        let store = Store::new(deps.database, deps.outbox);
        Self {
            config,
            directory: UserDirectory::new(store.clone()),
            store,
            accounts: deps.accounts,
            page_tokens: deps.page_tokens,
        }
    }

    /// The caller as the domain sees it; a person's directory entry is refreshed on the way.
    async fn caller(&self, principal: &Principal) -> Result<Caller, ApiError> {
        match principal {
            Principal::Service(service) => Ok(Caller::Service {
                name: service.name.clone(),
            }),
            Principal::User(user) => {
                self.directory
                    .remember(&user.sub, convert::profile_of_user(user))
                    .await?;
                Ok(Caller::User {
                    user_id: user.sub.clone(),
                    operator: user.operator,
                })
            }
        }
    }

    /// The caller's standing in `account_id`.
    async fn access(&self, caller: &Caller, account_id: &str) -> Result<Access, ApiError> {
        let facts = self.accounts.account(account_id).await?;
        self.access_with(caller, account_id, facts, true).await
    }

    /// Like [`Self::access`], but a refusal is checked once more against the registry's own
    /// facts: the replica follows `account.*` events a moment behind, and a partner promoted
    /// (or a customer enabled) just now must not be refused for that.
    async fn access_for(
        &self,
        caller: &Caller,
        account_id: &str,
        permission: Permission,
    ) -> Result<Access, ApiError> {
        // Whether the account has an OWNER only matters to OwnersManage; counting them for
        // every Authorize was one query in four on the path of every call of every service.
        let count_owners = permission == Permission::OwnersManage;
        let facts = self.accounts.account(account_id).await?;
        let access = self
            .access_with(caller, account_id, facts, count_owners)
            .await?;
        if access.allows(permission) || access.facts.is_none() {
            return Ok(access);
        }
        let facts = self.accounts.refresh(account_id).await?;
        self.access_with(caller, account_id, facts, count_owners)
            .await
    }

    /// The caller's standing given the account's `facts`; `has_owner` is only looked up when
    /// `count_owners` (otherwise it is false).
    async fn access_with(
        &self,
        caller: &Caller,
        account_id: &str,
        facts: Option<AccountFacts>,
        count_owners: bool,
    ) -> Result<Access, ApiError> {
        let mut access = Access {
            caller: caller.clone(),
            facts,
            role: None,
            partner_role: None,
            has_owner: false,
        };
        if let (Some(facts), Some(user_id)) = (&access.facts, caller.user_id()) {
            let mut ids = vec![account_id];
            ids.extend(facts.managed_by.as_deref());
            let roles = self.store.roles_of(user_id, &ids).await?;
            access.role = roles.get(account_id).copied();
            access.partner_role = facts
                .managed_by
                .as_ref()
                .and_then(|partner| roles.get(partner).copied());
            if count_owners {
                access.has_owner = self.store.owner_count(account_id).await? > 0;
            }
        }
        Ok(access)
    }

    /// The member, or NOT_FOUND.
    async fn existing_member(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<Member, MembershipError> {
        self.store
            .member(account_id, user_id)
            .await?
            .ok_or_else(|| MembershipError::MemberNotFound {
                account_id: account_id.to_string(),
                user_id: user_id.to_string(),
            })
    }

    /// The answer to a retried AddMember: the membership it created, as it is now.
    async fn replay(
        &self,
        earlier: RequestRecord,
        this: &RequestKey,
    ) -> Result<Member, MembershipError> {
        this.check_retry_of(&earlier.key)
            .map_err(|_| MembershipError::RequestIdReused)?;
        let (account_id, user_id) = earlier
            .resource_key
            .split_once('/')
            .ok_or_else(|| MembershipError::Corrupt(format!("key {:?}", earlier.resource_key)))?;
        self.existing_member(account_id, user_id).await
    }

    async fn add_member(
        &self,
        request: Request<wire::AddMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let account_id = parse_account("parent", &request.parent)?;
        let target = match &request.principal {
            None => {
                return Err(ApiError::invalid_field(
                    "user",
                    "required: who to add, as `user` (users/{sub}) or `email`",
                ));
            }
            Some(wire::add_member_request::Principal::User(name)) => {
                Target::User(parse_user("user", name)?)
            }
            Some(wire::add_member_request::Principal::Email(email)) => Target::Email(
                validate_email(email).map_err(|why| ApiError::invalid_field("email", why))?,
            ),
        };
        let role = convert::role_from_wire("role", request.role)?;
        let from_service = matches!(caller, Caller::Service { .. });
        let source = convert::add_member_source(request.source, from_service)?;
        let request_id = convert::request_id(&request.request_id)?;

        let target_key = match &target {
            Target::User(user_id) => format!("user:{user_id}"),
            Target::Email(email) => format!("email:{email}"),
        };
        let fingerprint = fingerprint(&[
            ADD_MEMBER,
            &account_id,
            &target_key,
            role.as_str(),
            source.as_str(),
        ]);

        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersManage)?;
        let account = access.existing(&account_id)?;
        // A retry is answered before the checks its own success may now fail (e.g. an ADMIN
        // whose first call created the account's first OWNER).
        let mut record = request_id.map(|request_id| RequestRecord {
            key: RequestKey {
                request_id,
                caller: caller.resource_name(),
                method: ADD_MEMBER.to_string(),
                fingerprint,
            },
            resource_key: String::new(),
        });
        if let Some(record) = &record
            && let Some(earlier) = self.store.find_request(&record.key.request_id).await?
        {
            return Ok(self.replay(earlier, &record.key).await?);
        }
        let owner_ceiling = match role {
            Role::Owner => access
                .owner_grant_ceiling()
                .ok_or(MembershipError::PermissionDenied)?,
            _ => MAX_OWNERS,
        };
        if account.state == AccountState::Deleted {
            return Err(MembershipError::AccountDeleted(account_id).into());
        }
        let user_id = match target {
            Target::User(user_id) => user_id,
            Target::Email(email) => {
                let mut ids = self.store.users_with_email(&email, 2).await?;
                match ids.len() {
                    0 => return Err(MembershipError::UserNotFound(email).into()),
                    1 => ids.remove(0),
                    _ => return Err(MembershipError::AmbiguousEmail(email).into()),
                }
            }
        };
        if let Some(record) = &mut record {
            record.resource_key = format!("{account_id}/{user_id}");
        }
        let new = NewMember {
            account_id,
            user_id,
            role,
            source,
            added_by: caller.resource_name(),
        };
        let result = self
            .store
            .add_member(&new, owner_ceiling, record.as_ref())
            .await;
        if let (Err(MembershipError::AlreadyMember { .. }), Some(record)) = (&result, &record)
            && let Some(earlier) = self.store.find_request(&record.key.request_id).await?
        {
            // A concurrent call with the same request id won.
            return Ok(self.replay(earlier, &record.key).await?);
        }
        Ok(result?)
    }

    async fn add_myself(
        &self,
        request: Request<wire::AddMyselfRequest>,
    ) -> Result<wire::AddMyselfResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        self.caller(&principal).await?;
        let account_id = parse_account("account", &request.get_ref().account)?;
        // Operators join customers with AddMember; here only partner membership counts.
        let caller = Caller::User {
            user_id: user.sub.clone(),
            operator: false,
        };
        let access = self
            .access_for(&caller, &account_id, Permission::AddMyself)
            .await?;
        access.require(Permission::AddMyself)?;
        let account = access.existing(&account_id)?;
        // A customer enabled a moment ago may still be DISABLED in the replica: ask the
        // registry before refusing.
        if account.state != AccountState::Active
            && self
                .accounts
                .refresh(&account_id)
                .await?
                .is_none_or(|fresh| fresh.state != AccountState::Active)
        {
            return Err(MembershipError::AccountNotActive(account_id).into());
        }
        let new = NewMember {
            account_id,
            user_id: user.sub.clone(),
            role: self.config.add_myself_role.role(),
            source: crate::domain::MemberSource::SelfAssigned,
            added_by: caller.resource_name(),
        };
        let (member, created) = self.store.add_myself(&new).await?;
        Ok(wire::AddMyselfResponse {
            member: Some(member_to_wire(&member)),
            created,
        })
    }

    async fn get_member(
        &self,
        request: Request<wire::GetMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let (account_id, user_id) = parse_member("name", &request.get_ref().name)?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        Ok(self.existing_member(&account_id, &user_id).await?)
    }

    async fn update_member(
        &self,
        request: Request<wire::UpdateMemberRequest>,
    ) -> Result<Member, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let changed = request
            .member
            .ok_or_else(|| ApiError::invalid_field("member", "required"))?;
        let (account_id, user_id) = parse_member("member.name", &changed.name)?;
        if let Some(mask) = &request.update_mask
            && let Some(path) = mask.paths.iter().find(|path| path.as_str() != "role")
        {
            return Err(ApiError::invalid_field(
                "update_mask",
                format!("only `role` can be changed, not `{path}`"),
            ));
        }
        let role = convert::role_from_wire("member.role", changed.role)?;
        // Roles are changed by people: no peer service needs to, so none may.
        principal.user()?;

        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        let account = access.existing(&account_id)?;
        let current = self.existing_member(&account_id, &user_id).await?;
        access.require(Permission::MembersManage)?;
        let mut owner_ceiling = MAX_OWNERS;
        if current.role == Role::Owner && role != Role::Owner && !access.may_revoke_owner() {
            return Err(MembershipError::PermissionDenied.into());
        }
        if role == Role::Owner && current.role != Role::Owner {
            owner_ceiling = access
                .owner_grant_ceiling()
                .ok_or(MembershipError::PermissionDenied)?;
        }
        if account.state == AccountState::Deleted {
            return Err(MembershipError::AccountDeleted(account_id).into());
        }
        if !etag_allows(&changed.etag, current.version) {
            return Err(MembershipError::StaleEtag(changed.name).into());
        }
        if current.role == role {
            return Ok(current);
        }
        let (etag_sent, actor) = (!changed.etag.is_empty(), caller.resource_name());
        Ok(self
            .store
            .update_role(&current, role, owner_ceiling, etag_sent, &actor)
            .await?)
    }

    async fn remove_member(
        &self,
        request: Request<wire::RemoveMemberRequest>,
    ) -> Result<(), ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let (account_id, user_id) = parse_member("name", &request.name)?;
        // Members are removed by people (or leave): no peer service needs to, so none may.
        principal.user()?;
        let access = self.access(&caller, &account_id).await?;
        let may_list = access.allows(Permission::MembersList);
        let is_self = caller.user_id() == Some(user_id.as_str());
        // Only callers allowed to list members learn whether the account or member exists.
        let hidden = || {
            if may_list {
                None
            } else {
                Some(MembershipError::PermissionDenied)
            }
        };
        if !may_list && !is_self {
            return Err(MembershipError::PermissionDenied.into());
        }
        if access.facts.is_none() {
            return Err(hidden()
                .unwrap_or(MembershipError::AccountNotFound(account_id))
                .into());
        }
        let Some(current) = self.store.member(&account_id, &user_id).await? else {
            return Err(hidden()
                .unwrap_or(MembershipError::MemberNotFound {
                    account_id,
                    user_id,
                })
                .into());
        };
        if !is_self {
            access.require(Permission::MembersManage)?;
            if current.role == Role::Owner && !access.may_revoke_owner() {
                return Err(MembershipError::PermissionDenied.into());
            }
        }
        if !etag_allows(&request.etag, current.version) {
            return Err(MembershipError::StaleEtag(request.name).into());
        }
        let (etag_sent, actor) = (!request.etag.is_empty(), caller.resource_name());
        Ok(self
            .store
            .remove_member(&current, etag_sent, &actor)
            .await?)
    }

    async fn list_members(
        &self,
        request: Request<wire::ListMembersRequest>,
    ) -> Result<wire::ListMembersResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let caller = self.caller(&principal).await?;
        let request = request.into_inner();
        let account_id = parse_account("parent", &request.parent)?;
        let mut roles = request
            .roles
            .iter()
            .map(|role| convert::role_from_wire("roles", *role))
            .collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        roles.dedup();
        let role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        let email = request.email.trim().to_lowercase();
        if email.chars().count() > 254 || email.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "email",
                "must be an e-mail address of at most 254 characters",
            ));
        }
        let email = (!email.is_empty()).then_some(email);
        let scope = format!(
            "ListMembers|{account_id}|{}|{}",
            role_names.join(","),
            email.as_deref().unwrap_or_default()
        );
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let access = self.access(&caller, &account_id).await?;
        access.require(Permission::MembersList)?;
        access.existing(&account_id)?;
        let mut members = self
            .store
            .list_members(
                &account_id,
                &roles,
                email.as_deref(),
                page.after.as_deref(),
                page.size + 1,
            )
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut members, |member| member.user_id.clone());
        Ok(wire::ListMembersResponse {
            members: members.iter().map(member_to_wire).collect(),
            next_page_token,
        })
    }

    async fn list_my_accounts(
        &self,
        request: Request<wire::ListMyAccountsRequest>,
    ) -> Result<wire::ListMyAccountsResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        self.caller(&principal).await?;
        let request = request.into_inner();
        let scope = format!("ListMyAccounts|{}", user.sub);
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let mut memberships = self
            .store
            .memberships_of(&user.sub, page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut memberships, |member| {
                member.account_id.clone()
            });
        // A page may hold fewer rows than asked for: DELETED accounts are left out after the
        // keyset read (facts from the directory, mostly replica hits; `account.deleted` drops
        // the members of deleted accounts, so this only covers the moments before that).
        let account_ids: Vec<String> = memberships
            .iter()
            .map(|member| member.account_id.clone())
            .collect();
        let directory = Arc::clone(&self.accounts);
        let facts: Vec<_> = futures::stream::iter(account_ids)
            .map(move |account_id| {
                let directory = Arc::clone(&directory);
                async move { directory.account(&account_id).await }
            })
            .buffered(ACCOUNT_LOOKUP_CONCURRENCY)
            .collect()
            .await;
        let mut accounts = Vec::with_capacity(memberships.len());
        for (member, facts) in memberships.iter().zip(facts) {
            if let Some(facts) = facts?
                && facts.state != AccountState::Deleted
            {
                accounts.push(convert::membership_to_wire(member, &facts));
            }
        }
        Ok(wire::ListMyAccountsResponse {
            accounts,
            next_page_token,
        })
    }

    async fn authorize(
        &self,
        request: Request<wire::AuthorizeRequest>,
    ) -> Result<wire::AuthorizeResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let service = principal.service()?.name.clone();
        let request = request.into_inner();
        let subject = request
            .subject
            .ok_or_else(|| ApiError::invalid_field("subject", "required"))?;
        let user_id = parse_user("subject.user", &subject.user)?;
        let account_id = parse_account("account", &request.account)?;
        let permission = convert::permission_from_wire(request.permission)?;
        self.directory
            .remember(&user_id, convert::profile_of_subject(&subject))
            .await?;
        let caller = Caller::User {
            user_id,
            operator: subject.platform_operator,
        };
        let access = self.access_for(&caller, &account_id, permission).await?;
        let decision = access.decide(permission);
        tracing::debug!(
            %service,
            subject = %subject.user,
            account = %request.account,
            permission = permission.as_str(),
            allowed = decision.allowed,
            reason = %decision.reason,
            "authorize"
        );
        Ok(wire::AuthorizeResponse {
            allowed: decision.allowed,
            role: role_to_wire(access.role),
            partner_role: role_to_wire(access.partner_role),
            account_exists: access.facts.is_some(),
            reason: decision.reason,
        })
    }
}

#[tonic::async_trait]
impl MembershipService for MembershipApi {
    async fn add_member(
        &self,
        request: Request<wire::AddMemberRequest>,
    ) -> Result<Response<wire::AddMemberResponse>, Status> {
        let member = MembershipApi::add_member(self, request).await?;
        Ok(Response::new(wire::AddMemberResponse {
            member: Some(member_to_wire(&member)),
        }))
    }

    async fn add_myself(
        &self,
        request: Request<wire::AddMyselfRequest>,
    ) -> Result<Response<wire::AddMyselfResponse>, Status> {
        Ok(Response::new(
            MembershipApi::add_myself(self, request).await?,
        ))
    }

    async fn get_member(
        &self,
        request: Request<wire::GetMemberRequest>,
    ) -> Result<Response<wire::GetMemberResponse>, Status> {
        let member = MembershipApi::get_member(self, request).await?;
        Ok(Response::new(wire::GetMemberResponse {
            member: Some(member_to_wire(&member)),
        }))
    }

    async fn update_member(
        &self,
        request: Request<wire::UpdateMemberRequest>,
    ) -> Result<Response<wire::UpdateMemberResponse>, Status> {
        let member = MembershipApi::update_member(self, request).await?;
        Ok(Response::new(wire::UpdateMemberResponse {
            member: Some(member_to_wire(&member)),
        }))
    }

    async fn remove_member(
        &self,
        request: Request<wire::RemoveMemberRequest>,
    ) -> Result<Response<wire::RemoveMemberResponse>, Status> {
        MembershipApi::remove_member(self, request).await?;
        Ok(Response::new(wire::RemoveMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<wire::ListMembersRequest>,
    ) -> Result<Response<wire::ListMembersResponse>, Status> {
        Ok(Response::new(
            MembershipApi::list_members(self, request).await?,
        ))
    }

    async fn list_my_accounts(
        &self,
        request: Request<wire::ListMyAccountsRequest>,
    ) -> Result<Response<wire::ListMyAccountsResponse>, Status> {
        Ok(Response::new(
            MembershipApi::list_my_accounts(self, request).await?,
        ))
    }

    async fn authorize(
        &self,
        request: Request<wire::AuthorizeRequest>,
    ) -> Result<Response<wire::AuthorizeResponse>, Status> {
        Ok(Response::new(
            MembershipApi::authorize(self, request).await?,
        ))
    }

    async fn get_owner_capacity(
        &self,
        request: Request<wire::GetOwnerCapacityRequest>,
    ) -> Result<Response<wire::GetOwnerCapacityResponse>, Status> {
        let principal = Principal::of(&request)?;
        principal.service()?;
        let account_id = parse_account("account", &request.get_ref().account)?;
        let owners = self
            .store
            .owner_count(&account_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(wire::GetOwnerCapacityResponse {
            owner_count: i32::try_from(owners).unwrap_or(i32::MAX),
            max_owners: MAX_OWNERS as i32,
            has_room: owners < MAX_OWNERS,
        }))
    }
}
