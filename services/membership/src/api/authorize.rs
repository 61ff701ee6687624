//! Authorize and GetOwnerCapacity: the internal RPCs other Tenantry services call with their
//! service identity.

use tenantry_platform::{AccountId, ApiError, Principal, UserId};
use tenantry_proto::membership::v1 as pb;
use tonic::Request;

use super::MembershipApi;
use crate::domain::Caller;
use crate::domain::owners::OwnerCapacity;
use crate::wire;

impl MembershipApi {
    pub(super) async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<pb::AuthorizeResponse, ApiError> {
        let principal = Principal::of(&request)?;
        let service = principal.service()?.name.clone();
        let request = request.into_inner();
        let subject = request
            .subject
            .ok_or_else(|| ApiError::invalid_field("subject", "required"))?;
        let user_id = UserId::from_name("subject.user", &subject.user)?;
        let account_id = AccountId::from_name("account", &request.account)?;
        let permission = wire::permission_from_wire(request.permission)?;
        self.directory
            .remember(&user_id, wire::profile_of_subject(&subject))
            .await?;
        let caller = Caller::User {
            user_id,
            operator: subject.platform_operator,
        };
        let access = self
            .authorize_access(&caller, &account_id, permission, request.bypass_view)
            .await?;
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
        Ok(wire::authorize_response(&access, permission, decision))
    }

    /// How many OWNERs an account has against the limit, for the invitation service (service
    /// identities only; an account membership does not know has none).
    pub(super) async fn get_owner_capacity(
        &self,
        request: Request<pb::GetOwnerCapacityRequest>,
    ) -> Result<pb::GetOwnerCapacityResponse, ApiError> {
        let principal = Principal::of(&request)?;
        principal.service()?;
        let account_id = AccountId::from_name("account", &request.get_ref().account)?;
        let owners = self.store.owner_count(&account_id).await?;
        Ok(wire::owner_capacity_to_wire(OwnerCapacity::of(owners)))
    }
}
