//! The link RPCs, for the person holding an invitation's secret: LookupInvitation,
//! AcceptInvitation and DeclineInvitation. The invitation page calls them too (`*_link`), so its
//! answers follow the same rules and limits. The secret is hashed at once and never logged.

use std::net::IpAddr;

use tenantry_platform::call_context::{self, ActorRole};
use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{AccountId, ApiError, Principal, UserId, UserIdentity};
use tenantry_proto::invitation::v1 as pb;
use tenantry_proto::membership::v1 as membership_pb;
use tenantry_proto::membership::v1::Member as WireMember;
use tonic::{Request, Status};

use super::InvitationApi;
use super::errors::Failure;
use crate::domain::secret::{hash_token, plausible_token};
use crate::domain::{self, Invitation, InvitationError};
use crate::wire;

impl InvitationApi {
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
        self.guesses.check(&user.sub, address).await?;
        let found = if plausible_token(token) {
            self.store.find_by_secret_hash(&hash_token(token)).await?
        } else {
            None
        };
        match found {
            Some(invitation) => Ok(invitation),
            None => {
                self.guesses.record_failure(&user.sub, address).await;
                Err(InvitationError::SecretNotFound.into())
            }
        }
    }

    fn email_matches(&self, invitation: &Invitation, user: &UserIdentity) -> bool {
        !self.config.require_matching_email
            || domain::email_matches(&invitation.email, user.email.as_deref())
    }

    /// LookupInvitation for `user` calling from `address`; the accept page calls it too.
    pub async fn lookup_link(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<pb::LookupInvitationResponse, Status> {
        Ok(self.lookup(user, address, token).await?)
    }

    pub(super) async fn lookup(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<pb::LookupInvitationResponse, Failure> {
        let invitation = self.by_token(user, address, token).await?;
        let account_display_name = self.display_name(&invitation.account_id).await?;
        let now = now();
        Ok(pb::LookupInvitationResponse {
            account: invitation.account_id.name(),
            account_display_name,
            inviter_display_name: invitation.inviter_display_name.clone(),
            role: invitation.role.to_wire(),
            email: invitation.email.clone(),
            expire_time: Some(to_timestamp(invitation.expire_time)),
            state: wire::state_to_wire(invitation.state_at(now)),
            email_matches: self.email_matches(&invitation, user),
        })
    }

    /// AcceptInvitation for `user` calling from `address`; the accept page calls it too.
    pub async fn accept_link(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<WireMember, Status> {
        Ok(self.accept(user, address, token).await?)
    }

    pub(super) async fn accept(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<WireMember, Failure> {
        let invitation = self.by_token(user, address, token).await?;
        if let Some(member) = self.already_accepted_by(&invitation, user).await? {
            return Ok(member);
        }
        if !self.email_matches(&invitation, user) {
            return Err(InvitationError::EmailMismatch.into());
        }
        let now = now();
        domain::check_accept(&invitation, now)?;
        self.account_must_be_active(&invitation.account_id).await?;
        // Holding the secret (under the e-mail rule) is what lets the caller act: recorded
        // before AddMember, so membership's `member.added` carries it too.
        call_context::record_role(ActorRole::Invitee);
        let user_id = UserId::trusted(user.sub.clone());
        // The token's own claims, as membership records them on the user's own calls — never
        // the invitation's address, which the inviter chose (with the e-mail check configured
        // off, the person accepting need not own it). A token without a usable e-mail sends
        // none: the profile is a convenience and never blocks the membership.
        let profile = user
            .email
            .as_deref()
            .filter(|email| tenantry_platform::email::validate_email(email).is_ok())
            .map(|email| membership_pb::InviteeProfile {
                email: email.to_string(),
                given_name: user.given_name.clone().unwrap_or_default(),
                family_name: user.family_name.clone().unwrap_or_default(),
            });
        let accepted = self
            .store
            .accept(&invitation, &user_id, now, || async {
                let member = self
                    .members
                    .add_invited(&invitation.account_id, &user_id, invitation.role, profile)
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
        domain::check_accept(&latest, tenantry_platform::time::now())?;
        Err(InvitationError::ConcurrentChange.into())
    }

    /// DeclineInvitation for `user` calling from `address`; the accept page calls it too.
    pub async fn decline_link(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<pb::DeclineInvitationResponse, Status> {
        Ok(self.decline(user, address, token).await?)
    }

    pub(super) async fn decline(
        &self,
        user: &UserIdentity,
        address: Option<IpAddr>,
        token: &str,
    ) -> Result<pb::DeclineInvitationResponse, Failure> {
        let user_id = UserId::trusted(user.sub.clone());
        let invitation = self.by_token(user, address, token).await?;
        let declined = if invitation.declined_by_user(&user_id) {
            invitation
        } else {
            if !self.email_matches(&invitation, user) {
                return Err(InvitationError::EmailMismatch.into());
            }
            domain::check_decline(&invitation, now())?;
            call_context::record_role(ActorRole::Invitee);
            match self.store.decline(&invitation, &user_id, now()).await? {
                Some(declined) => declined,
                None => {
                    // Lost a race (accepted, revoked, resent, expired, or our own retry).
                    let latest = self.by_token(user, address, token).await?;
                    if !latest.declined_by_user(&user_id) {
                        domain::check_decline(&latest, tenantry_platform::time::now())?;
                        return Err(InvitationError::ConcurrentChange.into());
                    }
                    latest
                }
            }
        };
        let account_display_name = self.display_name(&declined.account_id).await?;
        Ok(pb::DeclineInvitationResponse {
            account: declined.account_id.name(),
            account_display_name,
            decline_time: declined.decline_time.map(to_timestamp),
        })
    }

    /// The account's display name; empty for an account that no longer exists.
    pub(super) async fn display_name(&self, account_id: &AccountId) -> Result<String, Failure> {
        Ok(self
            .accounts
            .account(account_id)
            .await?
            .map(|facts| facts.display_name)
            .unwrap_or_default())
    }

    /// The caller's membership if the caller already accepted this invitation (a retry).
    async fn already_accepted_by(
        &self,
        invitation: &Invitation,
        user: &UserIdentity,
    ) -> Result<Option<WireMember>, InvitationError> {
        let user_id = UserId::trusted(user.sub.clone());
        if invitation.accepted_by_user(&user_id) {
            return Ok(Some(
                self.members.get(&invitation.account_id, &user_id).await?,
            ));
        }
        Ok(None)
    }
}

/// The person calling a link RPC (services are refused) and their IP address.
pub(super) fn person_calling<T>(
    request: &Request<T>,
) -> Result<(UserIdentity, Option<IpAddr>), Failure> {
    let principal = Principal::of(request)?;
    Ok((principal.user()?.clone(), peer_ip(request)))
}

/// The IP address the call came from (`None` when the transport does not tell).
fn peer_ip<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|addr| addr.ip())
}
