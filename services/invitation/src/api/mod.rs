//! The gRPC handlers: authenticate, parse and validate, authorize through membership, decide
//! with the domain rules, call the store and the peers, map back. The secret of a request is
//! hashed at once and never logged.

mod batch;
pub mod errors;
pub mod guesses;
mod links;
mod mine;

use std::sync::Arc;

use chrono::Duration;
use tenantry_platform::authz::Authorizer;
use tenantry_platform::idempotency::{RequestKey, parse_request_id};
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::now;
use tenantry_platform::{AccountId, ApiError, Principal, UserIdentity};
use tenantry_proto::invitation::v1 as pb;
use tenantry_proto::invitation::v1::invitation_service_server::InvitationService;
use tonic::{Request, Response, Status};

use crate::domain::create::{CreateInvitation, Requested};
use crate::domain::{self, Invitation, InvitationError, RevokeDecision, Role};
use crate::peers::{AccountDirectory, AccountState, Members};
use crate::store::Store;
use crate::store::guesses::GuessCounter;
use crate::wire::{self, invitation_to_wire, parse_invitation_name};
use crate::{Config, Deps};
use errors::Failure;
use guesses::GuessGuard;
use links::person_calling;

/// The invitation service.
#[derive(Debug)]
pub struct InvitationApi {
    config: Config,
    store: Store,
    authorizer: Authorizer,
    members: Members,
    accounts: Arc<dyn AccountDirectory>,
    page_tokens: PageTokens,
    guesses: GuessGuard,
}

impl InvitationApi {
    /// The service over `deps`.
    pub fn new(config: Config, deps: Deps) -> Self {
        Self {
            store: Store::new(deps.database.clone(), deps.outbox),
            authorizer: deps.authorizer,
            members: Members::new(deps.membership),
            accounts: deps.accounts,
            page_tokens: deps.page_tokens,
            guesses: GuessGuard::new(
                config.guesses_per_caller,
                config.guesses_per_address,
                std::time::Duration::from_secs(config.guess_window_seconds),
                GuessCounter::new(deps.database),
            ),
            config,
        }
    }

    fn lifetime(&self) -> Duration {
        Duration::hours(i64::from(self.config.lifetime_hours))
    }

    /// How long before the expiry the reminder e-mail goes out (zero: none).
    fn reminder_before(&self) -> Duration {
        Duration::hours(i64::from(self.config.reminder_hours))
    }

    fn resend_interval(&self) -> Duration {
        Duration::seconds(i64::try_from(self.config.resend_interval_seconds).unwrap_or(i64::MAX))
    }

    /// Managing invitations of the account; those for the OWNER role need OWNERS_MANAGE too.
    async fn authorize(
        &self,
        principal: &Principal,
        account_id: &AccountId,
        role: Option<Role>,
    ) -> Result<(), ApiError> {
        for permission in domain::permissions_to_manage(role) {
            self.authorizer
                .require(principal, account_id, *permission)
                .await?;
        }
        Ok(())
    }

    /// The invitation `name` for an authorized caller (OWNER invitations: OWNER only).
    async fn authorized_invitation(
        &self,
        principal: &Principal,
        name: &str,
        owner_rule: bool,
    ) -> Result<Invitation, Failure> {
        let (account_id, invitation_id) = parse_invitation_name("name", name)?;
        self.authorize(principal, &account_id, None).await?;
        let invitation = self
            .store
            .get(&invitation_id)
            .await?
            .filter(|invitation| invitation.account_id == account_id)
            .ok_or_else(|| InvitationError::NotFound(name.to_string()))?;
        if owner_rule && invitation.role == Role::Owner {
            self.authorize(principal, &account_id, Some(Role::Owner))
                .await?;
        }
        Ok(invitation)
    }

    async fn account_must_be_active(&self, account_id: &AccountId) -> Result<String, Failure> {
        match self.accounts.account(account_id).await? {
            Some(facts) if facts.state == AccountState::Active => Ok(facts.display_name),
            Some(_) => Err(InvitationError::AccountNotActive(account_id.clone()).into()),
            None => Err(ApiError::not_found(
                "ACCOUNT_NOT_FOUND",
                format!("accounts/{account_id} does not exist"),
            )
            .into()),
        }
    }

    /// CreateInvitation's fields, validated by the domain rule (every bad field at once).
    fn parse_create(
        &self,
        request: &pb::CreateInvitationRequest,
        user: &UserIdentity,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<CreateInvitation, ApiError> {
        let account_id = AccountId::from_name("parent", &request.parent)?;
        let expire_time = match &request.expire_time {
            Some(timestamp) => Some(wire::time_from_wire("expire_time", timestamp)?),
            None => None,
        };
        let requested = Requested {
            account_id,
            email: &request.email,
            given_name: &request.given_name,
            family_name: &request.family_name,
            role: wire::role_from_wire(request.role),
            expire_time,
            inviter: user.resource_name(),
            inviter_display_name: inviter_name(user),
        };
        CreateInvitation::validate(requested, self.lifetime(), self.reminder_before(), now)
    }

    async fn create(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<pb::Invitation, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?.clone();
        let request = request.into_inner();
        let now = now();
        let create = self.parse_create(&request, &user, now)?;
        let request_id = parse_request_id("request_id", &request.request_id)?;
        let new = &create.new;
        self.authorize(&principal, &new.account_id, Some(new.role))
            .await?;
        let key = request_id.map(|id| create.request_key(id, principal.resource_name()));
        if let Some(earlier) = self.replay(key.as_ref()).await? {
            return Ok(invitation_to_wire(&earlier, now));
        }
        self.check_invitable(&create).await?;
        let created = match self.store.create(new, key.as_ref(), now).await {
            // A concurrent call with the same request id may have won.
            Err(error @ InvitationError::AlreadyPending { .. }) => {
                self.replay(key.as_ref()).await?.ok_or(error)?
            }
            other => other?,
        };
        Ok(invitation_to_wire(&created, now))
    }

    /// The invitation an earlier call under the request's id created, if there was one.
    async fn replay(
        &self,
        key: Option<&RequestKey>,
    ) -> Result<Option<Invitation>, InvitationError> {
        match key {
            Some(key) => self.store.replay(key).await,
            None => Ok(None),
        }
    }

    /// CreateInvitation's checks against the other services: the account is ACTIVE (the
    /// registry's answer, usually kept in the local view), and — one membership call — an OWNER
    /// invitation fits under the OWNER limit, no member has the e-mail already, and the access
    /// policy does not put the invitation behind approval.
    async fn check_invitable(&self, create: &CreateInvitation) -> Result<(), Failure> {
        let new = &create.new;
        self.account_must_be_active(&new.account_id).await?;
        let invitee = self
            .members
            .check_invitee(&new.account_id, &new.email, new.role)
            .await?;
        create.check_ungated(invitee.gating_policy.as_ref())?;
        create.check_owner_room(invitee.owner_room)?;
        Ok(create.check_not_member(invitee.email_is_member)?)
    }

    async fn list(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<pb::ListInvitationsResponse, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let account_id = AccountId::from_name("parent", &request.parent)?;
        let states = wire::states_filter(&request.states)?;
        let scope = format!(
            "ListInvitations|{account_id}|{}",
            states
                .iter()
                .map(|state| state.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        self.authorize(&principal, &account_id, None).await?;
        let now = now();
        let mut rows = self
            .store
            .list(
                &account_id,
                &states,
                page.after.as_deref(),
                page.size + 1,
                now,
            )
            .await?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut rows, |row| {
            row.invitation_id.to_string()
        });
        Ok(pb::ListInvitationsResponse {
            invitations: rows
                .iter()
                .map(|row| invitation_to_wire(row, now))
                .collect(),
            next_page_token,
        })
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<pb::Invitation, Failure> {
        let principal = Principal::of(&request)?;
        let actor = principal.user()?.resource_name();
        let request = request.into_inner();
        let current = self
            .authorized_invitation(&principal, &request.name, true)
            .await?;
        let now = now();
        if domain::decide_revoke(&current, &request.etag, now)? == RevokeDecision::Unchanged {
            return Ok(invitation_to_wire(&current, now));
        }
        if let Some(revoked) = self.store.revoke(&current, &actor, now).await? {
            return Ok(invitation_to_wire(&revoked, now));
        }
        // Lost a race: explain with the invitation as it is now.
        let now = tenantry_platform::time::now();
        let latest = self.reload(&current).await?;
        match domain::decide_revoke(&latest, &request.etag, now)? {
            RevokeDecision::Unchanged => Ok(invitation_to_wire(&latest, now)),
            RevokeDecision::Revoke => Err(InvitationError::ConcurrentChange.into()),
        }
    }

    async fn resend(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<pb::Invitation, Failure> {
        let principal = Principal::of(&request)?;
        let actor = principal.user()?.resource_name();
        let request = request.into_inner();
        let current = self
            .authorized_invitation(&principal, &request.name, true)
            .await?;
        let now = now();
        self.check_resend(&current, &request.etag, now)?;
        if let Some(resent) = self
            .store
            .resend(
                &current,
                &actor,
                self.lifetime(),
                self.reminder_before(),
                now,
            )
            .await?
        {
            return Ok(invitation_to_wire(&resent, now));
        }
        // Lost a race (a concurrent resend, revoke, acceptance or expiry): explain it.
        let latest = self.reload(&current).await?;
        self.check_resend(&latest, &request.etag, tenantry_platform::time::now())?;
        Err(InvitationError::ConcurrentChange.into())
    }

    fn check_resend(
        &self,
        invitation: &Invitation,
        etag: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), InvitationError> {
        domain::check_resend_request(invitation, etag, self.resend_interval(), now)
    }

    async fn reload(&self, current: &Invitation) -> Result<Invitation, InvitationError> {
        self.store
            .get(&current.invitation_id)
            .await?
            .ok_or_else(|| InvitationError::NotFound(current.name()))
    }
}

fn inviter_name(user: &UserIdentity) -> String {
    domain::inviter_display_name(
        user.given_name.as_deref(),
        user.family_name.as_deref(),
        user.email.as_deref(),
        &user.resource_name(),
    )
}

#[tonic::async_trait]
impl InvitationService for InvitationApi {
    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<Response<pb::CreateInvitationResponse>, Status> {
        let invitation = self.create(request).await?;
        Ok(Response::new(pb::CreateInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn get_invitation(
        &self,
        request: Request<pb::GetInvitationRequest>,
    ) -> Result<Response<pb::GetInvitationResponse>, Status> {
        let principal = Principal::of(&request).map_err(Failure::from)?;
        let invitation = self
            .authorized_invitation(&principal, &request.get_ref().name, false)
            .await?;
        Ok(Response::new(pb::GetInvitationResponse {
            invitation: Some(invitation_to_wire(&invitation, now())),
        }))
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::RevokeInvitationResponse>, Status> {
        let invitation = self.revoke(request).await?;
        Ok(Response::new(pb::RevokeInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::ResendInvitationResponse>, Status> {
        let invitation = self.resend(request).await?;
        Ok(Response::new(pb::ResendInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn lookup_invitation(
        &self,
        request: Request<pb::LookupInvitationRequest>,
    ) -> Result<Response<pb::LookupInvitationResponse>, Status> {
        let (user, address) = person_calling(&request)?;
        Ok(Response::new(
            self.lookup(&user, address, &request.get_ref().token)
                .await?,
        ))
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let (user, address) = person_calling(&request)?;
        let member = self
            .accept(&user, address, &request.get_ref().token)
            .await?;
        Ok(Response::new(pb::AcceptInvitationResponse {
            member: Some(member),
        }))
    }

    async fn list_my_invitations(
        &self,
        request: Request<pb::ListMyInvitationsRequest>,
    ) -> Result<Response<pb::ListMyInvitationsResponse>, Status> {
        let (user, _) = person_calling(&request)?;
        Ok(Response::new(
            self.list_mine(&user, request.get_ref()).await?,
        ))
    }

    async fn batch_create_invitations(
        &self,
        request: Request<pb::BatchCreateInvitationsRequest>,
    ) -> Result<Response<pb::BatchCreateInvitationsResponse>, Status> {
        let principal = Principal::of(&request).map_err(Failure::from)?;
        Ok(Response::new(
            self.batch_create(principal, request.into_inner()).await?,
        ))
    }

    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        let (user, address) = person_calling(&request)?;
        Ok(Response::new(
            self.decline(&user, address, &request.get_ref().token)
                .await?,
        ))
    }
}
