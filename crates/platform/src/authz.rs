//! The client side of membership's `Authorize`: every service asks membership instead of
//! re-implementing role rules (DESIGN.md §2, §5).
//!
//! The answer is turned into the error a caller may see: PERMISSION_DENIED for a caller who is
//! not allowed (whether or not the account exists), NOT_FOUND only for an allowed caller
//! (operators, members of the managing partner) asking about an account that does not exist.
//!
//! With a [`LocalView`] ([`Authorizer::with_view`]) allowed answers are kept in memory under
//! the view's rules (see [`crate::view`]) and served without asking membership; refusals are
//! never kept (membership is asked again, so a grant is visible at once), and neither is
//! anything while the view is not fresh.

use tenantry_proto::membership::v1::{
    AuthorizeRequest, Permission, Role, Subject, membership_service_client::MembershipServiceClient,
};

use std::sync::Arc;

use crate::auth::{Principal, UserIdentity};
use crate::call_context::ActorRole;
use crate::clients::ServiceChannel;
use crate::error::{ApiError, from_upstream};
use crate::server::Readiness;
use crate::view::{LocalView, ViewCache};

/// What membership said about an allowed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The caller's own role in the account, if a member.
    pub role: Option<Role>,
    /// The caller's role in the account's managing partner, if a member there.
    pub partner_role: Option<Role>,
    /// The role that grants the permission on its own (membership's `granted_by`).
    pub granted_by: Option<ActorRole>,
}

/// Asks membership whether a caller may do something to an account.
#[derive(Clone, Debug)]
pub struct Authorizer {
    client: MembershipServiceClient<ServiceChannel>,
    /// Allowed answers kept in this process, if it has a local view.
    decisions: Option<Arc<ViewCache<Grant>>>,
    /// Where an unreachable membership is reported (`/readyz`).
    readiness: Option<Readiness>,
}

/// The protobuf `Subject` for a user principal.
pub fn subject_of(principal: &Principal) -> Option<Subject> {
    match principal {
        Principal::User(user) => Some(subject_of_user(user)),
        Principal::Service(_) => None,
    }
}

fn subject_of_user(user: &UserIdentity) -> Subject {
    Subject {
        user: user.resource_name(),
        email: user.email.clone().unwrap_or_default(),
        given_name: user.given_name.clone().unwrap_or_default(),
        family_name: user.family_name.clone().unwrap_or_default(),
        platform_operator: user.operator,
    }
}

impl Authorizer {
    /// An authorizer calling membership over `channel`.
    pub fn new(channel: ServiceChannel) -> Self {
        Self {
            client: MembershipServiceClient::new(channel),
            decisions: None,
            readiness: None,
        }
    }

    /// Reports membership unreachable (and reachable again) to `readiness`.
    pub fn reporting_to(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// Keeps allowed answers in `view` (see the module documentation).
    pub fn with_view(mut self, view: &LocalView) -> Self {
        self.decisions = Some(Arc::new(ViewCache::new(view, "decisions")));
        self
    }

    /// Decisions held in memory now (0 without a view).
    pub fn cached_decisions(&self) -> usize {
        self.decisions.as_ref().map_or(0, |cache| cache.len())
    }

    /// Allows a person the authorization table allows, or fails with the error the caller may
    /// see. A service identity is refused (PERMISSION_DENIED): these calls act for a person,
    /// and a service may only make the calls the API names it as a caller of (see
    /// [`Self::require_or_service`]).
    pub async fn require(
        &self,
        principal: &Principal,
        account_id: &str,
        permission: Permission,
    ) -> Result<Grant, ApiError> {
        let user = principal.user()?;
        self.ask(subject_of_user(user), account_id, permission)
            .await
    }

    /// Like [`Self::require`], but lets the cluster's own services through: for the reads the
    /// API names service identities as callers of (a peer acts for a caller it has already
    /// authorized).
    pub async fn require_or_service(
        &self,
        principal: &Principal,
        account_id: &str,
        permission: Permission,
    ) -> Result<Grant, ApiError> {
        match principal {
            Principal::Service(_) => Ok(Grant {
                role: None,
                partner_role: None,
                granted_by: None,
            }),
            Principal::User(user) => {
                self.ask(subject_of_user(user), account_id, permission)
                    .await
            }
        }
    }

    /// Membership's decision about `subject`, as the error the caller may see; an allowed
    /// call records the role that let it in the call's context (events' `provenance`).
    async fn ask(
        &self,
        subject: Subject,
        account_id: &str,
        permission: Permission,
    ) -> Result<Grant, ApiError> {
        let grant = self.decide(subject, account_id, permission).await?;
        if let Some(role) = grant.granted_by {
            crate::call_context::record_role(role);
        }
        Ok(grant)
    }

    /// The decision itself: from the local view when it holds a current answer, otherwise from
    /// membership (kept if allowed).
    async fn decide(
        &self,
        subject: Subject,
        account_id: &str,
        permission: Permission,
    ) -> Result<Grant, ApiError> {
        let Some(decisions) = &self.decisions else {
            return self
                .ask_membership(subject, account_id, permission, false)
                .await
                .map(|(grant, _)| grant);
        };
        let key = decisions.key(&[
            subject.user.as_bytes(),
            subject.email.as_bytes(),
            subject.given_name.as_bytes(),
            subject.family_name.as_bytes(),
            &[u8::from(subject.platform_operator)],
            account_id.as_bytes(),
            &(permission as i32).to_le_bytes(),
        ]);
        if let Some(grant) = decisions.get(key) {
            return Ok(grant);
        }
        let sub = subject.user.strip_prefix("users/").unwrap_or(&subject.user);
        let ticket = decisions.view().ticket(Some(sub), Some(account_id));
        let (grant, keepable) = self
            .ask_membership(subject, account_id, permission, true)
            .await?;
        // Membership says which answers depend only on what the events announce.
        if let (Some(ticket), true) = (ticket, keepable) {
            decisions.insert(key, grant, ticket);
        }
        Ok(grant)
    }

    async fn ask_membership(
        &self,
        subject: Subject,
        account_id: &str,
        permission: Permission,
        bypass_view: bool,
    ) -> Result<(Grant, bool), ApiError> {
        let response = self
            .client
            .clone()
            .authorize(AuthorizeRequest {
                subject: Some(subject),
                account: crate::names::account_name(account_id),
                permission: permission as i32,
                bypass_view,
            })
            .await;
        if let Some(readiness) = &self.readiness {
            match &response {
                Err(status) if crate::error::is_unreachable(status) => {
                    readiness.set_degraded(
                        "membership",
                        Some(format!(
                            "unreachable ({}); only decisions kept in the local view are answered, the rest UNAVAILABLE",
                            crate::metrics::code_name(status.code())
                        )),
                    );
                }
                _ => readiness.set_degraded("membership", None),
            }
        }
        let response = response
            .map_err(|status| from_upstream("membership", &status))?
            .into_inner();
        if !response.allowed {
            return Err(ApiError::permission_denied());
        }
        if !response.account_exists {
            return Err(ApiError::not_found(
                "ACCOUNT_NOT_FOUND",
                format!("accounts/{account_id} does not exist"),
            ));
        }
        let role = |value: i32| {
            Role::try_from(value)
                .ok()
                .filter(|role| *role != Role::Unspecified)
        };
        let grant = Grant {
            role: role(response.role),
            partner_role: role(response.partner_role),
            granted_by: ActorRole::parse(&response.granted_by),
        };
        Ok((grant, response.keepable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ServiceIdentity, ServiceTokenMinter};

    /// An authorizer whose membership is never dialled: these callers are answered locally.
    fn offline() -> Authorizer {
        let minter = ServiceTokenMinter::new("registry", "internal-secret").expect("minter");
        Authorizer::new(crate::clients::channel("http://127.0.0.1:9", minter).expect("channel"))
    }

    fn service() -> Principal {
        Principal::Service(ServiceIdentity {
            name: "notification".into(),
        })
    }

    #[tokio::test]
    async fn services_are_refused_where_a_person_must_act() {
        let refused = offline()
            .require(&service(), "acme", Permission::MessagesList)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert_eq!(refused.reason(), "USER_REQUIRED");
    }

    #[tokio::test]
    async fn services_pass_where_the_api_names_them() {
        let grant = offline()
            .require_or_service(&service(), "acme", Permission::AccountRead)
            .await
            .expect("a service reads accounts");
        assert_eq!(
            grant,
            Grant {
                role: None,
                partner_role: None,
                granted_by: None
            }
        );
    }
}
