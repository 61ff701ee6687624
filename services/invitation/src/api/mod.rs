//! The gRPC handlers: authenticate, parse and validate, authorize through membership, decide
//! with the domain rules, call the store and the peers, map back. The secret of a request is
//! hashed at once and never logged.

pub mod convert;
pub mod errors;
pub mod guesses;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Duration;
use tenantry_platform::authz::Authorizer;
use tenantry_platform::idempotency::{RequestKey, fingerprint, parse_request_id};
use tenantry_platform::names::{parse_account, user_name};
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{ApiError, Principal, UserIdentity};
use tenantry_proto::invitation::v1 as wire;
use tenantry_proto::invitation::v1::invitation_service_server::InvitationService;
use tenantry_proto::membership::v1::{Member as WireMember, Permission};
use tonic::{Request, Response, Status};

use crate::domain::secret::{hash_token, plausible_token};
use crate::domain::{
    self, Invitation, InvitationError, InvitationState, NewInvitation, RevokeDecision, Role,
    normalize_email,
};
use crate::peers::{AccountDirectory, AccountState, Members, RegistryAccounts};
use crate::store::Store;
use crate::{Config, Deps};
use convert::{etag_allows, invitation_to_wire, parse_invitation_name};
use errors::Failure;
use guesses::GuessGuard;

const CREATE_INVITATION: &str = "CreateInvitation";

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
            store: Store::new(deps.database, deps.outbox),
            authorizer: deps.authorizer,
            members: Members::new(deps.membership),
            accounts: Arc::new(RegistryAccounts::new(deps.registry)),
            page_tokens: deps.page_tokens,
            guesses: GuessGuard::new(
                config.guesses_per_caller,
                config.guesses_per_address,
                std::time::Duration::from_secs(config.guess_window_seconds),
            ),
            config,
        }
    }

    fn lifetime(&self) -> Duration {
        Duration::hours(i64::from(self.config.lifetime_hours))
    }

    fn resend_interval(&self) -> Duration {
        Duration::seconds(i64::try_from(self.config.resend_interval_seconds).unwrap_or(i64::MAX))
    }

    /// Managing invitations of the account; those for the OWNER role need OWNERS_MANAGE too.
    async fn authorize(
        &self,
        principal: &Principal,
        account_id: &str,
        role: Option<Role>,
    ) -> Result<(), ApiError> {
        self.authorizer
            .require(principal, account_id, Permission::InvitationsManage)
            .await?;
        if role == Some(Role::Owner) {
            self.authorizer
                .require(principal, account_id, Permission::OwnersManage)
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

    async fn account_must_be_active(&self, account_id: &str) -> Result<String, Failure> {
        match self.accounts.account(account_id).await? {
            Some(facts) if facts.state == AccountState::Active => Ok(facts.display_name),
            Some(_) => Err(InvitationError::AccountNotActive(account_id.to_string()).into()),
            None => Err(ApiError::not_found(
                "ACCOUNT_NOT_FOUND",
                format!("accounts/{account_id} does not exist"),
            )
            .into()),
        }
    }

    async fn create(
        &self,
        request: Request<wire::CreateInvitationRequest>,
    ) -> Result<wire::Invitation, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?.clone();
        let request = request.into_inner();
        let account_id = parse_account("parent", &request.parent)?;
        let now = now();
        let mut violations = Vec::new();
        let email = checked(
            &mut violations,
            "email",
            domain::validate_email(&request.email),
        );
        let given_name = checked(
            &mut violations,
            "given_name",
            domain::validate_name(&request.given_name),
        );
        let family_name = checked(
            &mut violations,
            "family_name",
            domain::validate_name(&request.family_name),
        );
        let role = convert::role_from_wire(request.role)
            .map_err(|why| violations.push(("role".into(), why)))
            .ok();
        let requested_expiry = match &request.expire_time {
            Some(timestamp) => Some(convert::time_from_wire("expire_time", timestamp)?),
            None => None,
        };
        let expire_time = domain::expiry_of_new(requested_expiry, self.lifetime(), now)
            .map_err(|why| violations.push(("expire_time".into(), why)))
            .ok();
        let (Some(role), Some(expire_time), true) = (role, expire_time, violations.is_empty())
        else {
            return Err(ApiError::invalid_fields(violations).into());
        };
        let request_id = parse_request_id("request_id", &request.request_id)?;

        self.authorize(&principal, &account_id, Some(role)).await?;

        let key = request_id.map(|request_id| RequestKey {
            request_id,
            caller: principal.resource_name(),
            method: CREATE_INVITATION.to_string(),
            fingerprint: fingerprint(&[
                CREATE_INVITATION,
                &account_id,
                &normalize_email(&email),
                &given_name,
                &family_name,
                role.as_str(),
                &requested_expiry
                    .map(|time| time.to_rfc3339())
                    .unwrap_or_default(),
            ]),
        });
        if let Some(key) = &key
            && let Some(earlier) = self.replay(key).await?
        {
            return Ok(invitation_to_wire(&earlier, now));
        }
        self.account_must_be_active(&account_id).await?;
        if role == Role::Owner && self.members.owner_count(&account_id).await? >= domain::MAX_OWNERS
        {
            return Err(InvitationError::OwnerLimit(account_id).into());
        }
        if self
            .members
            .has_member_with_email(&account_id, &email)
            .await?
        {
            return Err(InvitationError::AlreadyMember { account_id, email }.into());
        }
        let new = NewInvitation {
            account_id,
            email,
            given_name,
            family_name,
            role,
            inviter: user.resource_name(),
            inviter_display_name: inviter_name(&user),
            expire_time,
        };
        match self.store.create(&new, key.as_ref(), now).await {
            Ok(created) => Ok(invitation_to_wire(&created, now)),
            Err(error @ InvitationError::AlreadyPending { .. }) => {
                // A concurrent call with the same request id may have won.
                if let Some(key) = &key
                    && let Some(earlier) = self.replay(key).await?
                {
                    return Ok(invitation_to_wire(&earlier, now));
                }
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The invitation an earlier call with this request id created, if there was one.
    async fn replay(&self, key: &RequestKey) -> Result<Option<Invitation>, InvitationError> {
        let Some(earlier) = self.store.find_request(&key.request_id).await? else {
            return Ok(None);
        };
        key.check_retry_of(&earlier.key)?;
        self.store
            .get(&earlier.invitation_id)
            .await?
            .map(Some)
            .ok_or_else(|| InvitationError::Corrupt(format!("request {}", key.request_id)))
    }

    async fn list(
        &self,
        request: Request<wire::ListInvitationsRequest>,
    ) -> Result<wire::ListInvitationsResponse, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let account_id = parse_account("parent", &request.parent)?;
        let states = convert::states_filter(&request.states)?;
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
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut rows, |row| row.invitation_id.clone());
        Ok(wire::ListInvitationsResponse {
            invitations: rows
                .iter()
                .map(|row| invitation_to_wire(row, now))
                .collect(),
            next_page_token,
        })
    }

    async fn revoke(
        &self,
        request: Request<wire::RevokeInvitationRequest>,
    ) -> Result<wire::Invitation, Failure> {
        let principal = Principal::of(&request)?;
        let actor = principal.user()?.resource_name();
        let request = request.into_inner();
        let current = self
            .authorized_invitation(&principal, &request.name, true)
            .await?;
        let now = now();
        if decide_revoke(&current, &request.etag, now)? == RevokeDecision::Unchanged {
            return Ok(invitation_to_wire(&current, now));
        }
        if let Some(revoked) = self.store.revoke(&current, &actor, now).await? {
            return Ok(invitation_to_wire(&revoked, now));
        }
        // Lost a race: explain with the invitation as it is now.
        let now = tenantry_platform::time::now();
        let latest = self.reload(&current).await?;
        match decide_revoke(&latest, &request.etag, now)? {
            RevokeDecision::Unchanged => Ok(invitation_to_wire(&latest, now)),
            RevokeDecision::Revoke => Err(InvitationError::ConcurrentChange.into()),
        }
    }

    async fn resend(
        &self,
        request: Request<wire::ResendInvitationRequest>,
    ) -> Result<wire::Invitation, Failure> {
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
            .resend(&current, &actor, self.lifetime(), now)
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
        if !etag_allows(etag, invitation.version) {
            return Err(InvitationError::StaleEtag(invitation.name()));
        }
        domain::check_resend(invitation, self.resend_interval(), now)
    }

    async fn reload(&self, current: &Invitation) -> Result<Invitation, InvitationError> {
        self.store
            .get(&current.invitation_id)
            .await?
            .ok_or_else(|| InvitationError::NotFound(current.name()))
    }

    /// The invitation holding `token`, under the limits on unknown secrets per caller and per
    /// `address` (the peer's IP).
    async fn by_token(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<Invitation, Failure> {
        if token.is_empty() {
            return Err(ApiError::invalid_field(
                "token",
                "required: the secret from the invitation link (`token=`)",
            )
            .into());
        }
        self.guesses.check(&user.sub, address)?;
        let found = if plausible_token(token) {
            self.store.find_by_secret_hash(&hash_token(token)).await?
        } else {
            None
        };
        match found {
            Some(invitation) => Ok(invitation),
            None => {
                self.guesses.record_failure(&user.sub, address);
                Err(InvitationError::SecretNotFound.into())
            }
        }
    }

    fn email_matches(&self, invitation: &Invitation, user: &UserIdentity) -> bool {
        !self.config.require_matching_email
            || domain::email_matches(&invitation.email, user.email.as_deref())
    }

    async fn lookup(
        &self,
        request: Request<wire::LookupInvitationRequest>,
    ) -> Result<wire::LookupInvitationResponse, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let address = peer_ip(&request);
        let invitation = self
            .by_token(user, address, &request.get_ref().token)
            .await?;
        let account_display_name = self
            .accounts
            .account(&invitation.account_id)
            .await?
            .map(|facts| facts.display_name)
            .unwrap_or_default();
        let now = now();
        Ok(wire::LookupInvitationResponse {
            account: tenantry_platform::names::account_name(&invitation.account_id),
            account_display_name,
            inviter_display_name: invitation.inviter_display_name.clone(),
            role: convert::role_to_wire(invitation.role),
            email: invitation.email.clone(),
            expire_time: Some(to_timestamp(invitation.expire_time)),
            state: convert::state_to_wire(invitation.state_at(now)),
            email_matches: self.email_matches(&invitation, user),
        })
    }

    async fn accept(
        &self,
        request: Request<wire::AcceptInvitationRequest>,
    ) -> Result<WireMember, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let address = peer_ip(&request);
        let token = &request.get_ref().token;
        let invitation = self.by_token(user, address, token).await?;
        if let Some(member) = self.already_accepted_by(&invitation, user).await? {
            return Ok(member);
        }
        if !self.email_matches(&invitation, user) {
            return Err(InvitationError::EmailMismatch.into());
        }
        let now = now();
        check_acceptable(&invitation, now)?;
        self.account_must_be_active(&invitation.account_id).await?;
        let accepted = self
            .store
            .accept(&invitation, &user_name(&user.sub), now, || async {
                let member = self
                    .members
                    .add_invited(&invitation.account_id, &user.sub, invitation.role)
                    .await?;
                Ok((member.name.clone(), member))
            })
            .await?;
        if let Some((_, member)) = accepted {
            return Ok(member);
        }
        // Lost a race: a concurrent acceptance (maybe our own retry), revocation, resend
        // (this secret is superseded) or expiry.
        let latest = self.by_token(user, address, token).await?;
        if let Some(member) = self.already_accepted_by(&latest, user).await? {
            return Ok(member);
        }
        check_acceptable(&latest, tenantry_platform::time::now())?;
        Err(InvitationError::ConcurrentChange.into())
    }

    /// The caller's membership if the caller already accepted this invitation (a retry).
    async fn already_accepted_by(
        &self,
        invitation: &Invitation,
        user: &UserIdentity,
    ) -> Result<Option<WireMember>, InvitationError> {
        if invitation.state == InvitationState::Accepted
            && invitation.accepted_by.as_deref() == Some(user_name(&user.sub).as_str())
        {
            return Ok(Some(
                self.members.get(&invitation.account_id, &user.sub).await?,
            ));
        }
        Ok(None)
    }
}

/// The IP address the call came from (`None` when the transport does not tell).
fn peer_ip<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|addr| addr.ip())
}

/// AcceptInvitation's state rule, told apart: accepted by someone else, or not PENDING.
fn check_acceptable(
    invitation: &Invitation,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), InvitationError> {
    if invitation.state == InvitationState::Accepted {
        return Err(InvitationError::AcceptedByAnother(invitation.name()));
    }
    domain::check_acceptable(invitation, now)
}

/// RevokeInvitation's order: an already REVOKED invitation is returned whatever the etag (a
/// retried revoke succeeds), then the etag, then the state.
fn decide_revoke(
    invitation: &Invitation,
    etag: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RevokeDecision, InvitationError> {
    let decision = domain::revoke_decision(invitation, now);
    if matches!(decision, Ok(RevokeDecision::Unchanged)) {
        return decision;
    }
    if !etag_allows(etag, invitation.version) {
        return Err(InvitationError::StaleEtag(invitation.name()));
    }
    decision
}

/// The value, or an empty string after noting the violation of `field`.
fn checked(
    violations: &mut Vec<(String, String)>,
    field: &str,
    result: Result<String, String>,
) -> String {
    result.unwrap_or_else(|why| {
        violations.push((field.to_string(), why));
        String::new()
    })
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
        request: Request<wire::CreateInvitationRequest>,
    ) -> Result<Response<wire::CreateInvitationResponse>, Status> {
        let invitation = self.create(request).await?;
        Ok(Response::new(wire::CreateInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn list_invitations(
        &self,
        request: Request<wire::ListInvitationsRequest>,
    ) -> Result<Response<wire::ListInvitationsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn get_invitation(
        &self,
        request: Request<wire::GetInvitationRequest>,
    ) -> Result<Response<wire::GetInvitationResponse>, Status> {
        let principal = Principal::of(&request).map_err(Failure::from)?;
        let invitation = self
            .authorized_invitation(&principal, &request.get_ref().name, false)
            .await?;
        Ok(Response::new(wire::GetInvitationResponse {
            invitation: Some(invitation_to_wire(&invitation, now())),
        }))
    }

    async fn revoke_invitation(
        &self,
        request: Request<wire::RevokeInvitationRequest>,
    ) -> Result<Response<wire::RevokeInvitationResponse>, Status> {
        let invitation = self.revoke(request).await?;
        Ok(Response::new(wire::RevokeInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn resend_invitation(
        &self,
        request: Request<wire::ResendInvitationRequest>,
    ) -> Result<Response<wire::ResendInvitationResponse>, Status> {
        let invitation = self.resend(request).await?;
        Ok(Response::new(wire::ResendInvitationResponse {
            invitation: Some(invitation),
        }))
    }

    async fn lookup_invitation(
        &self,
        request: Request<wire::LookupInvitationRequest>,
    ) -> Result<Response<wire::LookupInvitationResponse>, Status> {
        Ok(Response::new(self.lookup(request).await?))
    }

    async fn accept_invitation(
        &self,
        request: Request<wire::AcceptInvitationRequest>,
    ) -> Result<Response<wire::AcceptInvitationResponse>, Status> {
        let member = self.accept(request).await?;
        Ok(Response::new(wire::AcceptInvitationResponse {
            member: Some(member),
        }))
    }
}
