//! The client side of membership's `Authorize`: every service asks membership instead of
//! re-implementing role rules (DESIGN.md §2, §5).
//!
//! The answer is turned into the error a caller may see: PERMISSION_DENIED for a caller who is
//! not allowed (whether or not the account exists), NOT_FOUND only for an allowed caller
//! (operators, members of the managing partner) asking about an account that does not exist.

use tenantry_proto::membership::v1::{
    AuthorizeRequest, Permission, Role, Subject, membership_service_client::MembershipServiceClient,
};

use crate::auth::Principal;
use crate::clients::ServiceChannel;
use crate::error::{ApiError, from_upstream};

/// What membership said about an allowed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The caller's own role in the account, if a member.
    pub role: Option<Role>,
    /// The caller's role in the account's managing partner, if a member there.
    pub partner_role: Option<Role>,
}

/// Asks membership whether a caller may do something to an account.
#[derive(Clone, Debug)]
pub struct Authorizer {
    client: MembershipServiceClient<ServiceChannel>,
}

/// The protobuf `Subject` for a user principal.
pub fn subject_of(principal: &Principal) -> Option<Subject> {
    match principal {
        Principal::User(user) => Some(Subject {
            user: user.resource_name(),
            email: user.email.clone().unwrap_or_default(),
            given_name: user.given_name.clone().unwrap_or_default(),
            family_name: user.family_name.clone().unwrap_or_default(),
            platform_operator: user.operator,
        }),
        Principal::Service(_) => None,
    }
}

impl Authorizer {
    /// An authorizer calling membership over `channel`.
    pub fn new(channel: ServiceChannel) -> Self {
        Self {
            client: MembershipServiceClient::new(channel),
        }
    }

    /// Allows the call, or fails with the error the caller may see. Services of the cluster are
    /// trusted: they act on behalf of a caller they have already authorized.
    pub async fn require(
        &self,
        principal: &Principal,
        account_id: &str,
        permission: Permission,
    ) -> Result<Grant, ApiError> {
        let Some(subject) = subject_of(principal) else {
            return Ok(Grant {
                role: None,
                partner_role: None,
            });
        };
        let response = self
            .client
            .clone()
            .authorize(AuthorizeRequest {
                subject: Some(subject),
                account: crate::names::account_name(account_id),
                permission: permission as i32,
            })
            .await
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
        Ok(Grant {
            role: role(response.role),
            partner_role: role(response.partner_role),
        })
    }
}
