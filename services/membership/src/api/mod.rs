//! The gRPC handlers: authenticate, parse ([`crate::wire`]), decide with the domain rules
//! ([`crate::domain`]), call the store, map back. Membership's own RPCs use the authorization
//! table locally.

mod access;
mod authorize;
pub mod errors;
mod expiry;
mod invitee;
mod lists;
mod members;
mod policy;
mod requests;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;

use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::now;
use tenantry_proto::membership::v1 as wire;
use tenantry_proto::membership::v1::membership_service_server::MembershipService;
use tonic::{Request, Response, Status};

use crate::access_wire::request_to_wire;
use crate::accounts::AccountDirectory;
use crate::store::Store;
use crate::wire::member_to_wire;
use crate::{Config, Deps};
use access::UserDirectory;

/// The membership service.
#[derive(Debug)]
pub struct MembershipApi {
    config: Config,
    store: Store,
    accounts: Arc<dyn AccountDirectory>,
    page_tokens: PageTokens,
    directory: UserDirectory,
    /// Account facts and roles kept in memory for `Authorize` (none in unit tests).
    view: Option<view::FactsView>,
    /// Wakes the access-request mailer when a change queued an e-mail.
    request_mail: Arc<tokio::sync::Notify>,
}

impl MembershipApi {
    /// The service over `deps`.
    pub(crate) fn new(config: Config, deps: Deps) -> Self {
        let store = Store::new(deps.database, deps.outbox);
        Self {
            config,
            directory: UserDirectory::new(store.clone()),
            store,
            accounts: deps.accounts,
            page_tokens: deps.page_tokens,
            view: deps.view.as_ref().map(view::FactsView::new),
            request_mail: deps.request_mail.clone(),
        }
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

    async fn extend_member_access(
        &self,
        request: Request<wire::ExtendMemberAccessRequest>,
    ) -> Result<Response<wire::ExtendMemberAccessResponse>, Status> {
        let member = MembershipApi::extend_member_access(self, request).await?;
        Ok(Response::new(wire::ExtendMemberAccessResponse {
            member: Some(member_to_wire(&member)),
        }))
    }

    async fn list_expiring_members(
        &self,
        request: Request<wire::ListExpiringMembersRequest>,
    ) -> Result<Response<wire::ListExpiringMembersResponse>, Status> {
        Ok(Response::new(
            MembershipApi::list_expiring_members(self, request).await?,
        ))
    }

    async fn get_access_policy(
        &self,
        request: Request<wire::GetAccessPolicyRequest>,
    ) -> Result<Response<wire::GetAccessPolicyResponse>, Status> {
        Ok(Response::new(
            MembershipApi::get_access_policy(self, request).await?,
        ))
    }

    async fn update_access_policy(
        &self,
        request: Request<wire::UpdateAccessPolicyRequest>,
    ) -> Result<Response<wire::UpdateAccessPolicyResponse>, Status> {
        Ok(Response::new(
            MembershipApi::update_access_policy(self, request).await?,
        ))
    }

    async fn create_access_request(
        &self,
        request: Request<wire::CreateAccessRequestRequest>,
    ) -> Result<Response<wire::CreateAccessRequestResponse>, Status> {
        let created = MembershipApi::create_access_request(self, request).await?;
        Ok(Response::new(wire::CreateAccessRequestResponse {
            access_request: Some(request_to_wire(&created, now())),
        }))
    }

    async fn get_access_request(
        &self,
        request: Request<wire::GetAccessRequestRequest>,
    ) -> Result<Response<wire::GetAccessRequestResponse>, Status> {
        let found = MembershipApi::get_access_request(self, request).await?;
        Ok(Response::new(wire::GetAccessRequestResponse {
            access_request: Some(request_to_wire(&found, now())),
        }))
    }

    async fn list_access_requests(
        &self,
        request: Request<wire::ListAccessRequestsRequest>,
    ) -> Result<Response<wire::ListAccessRequestsResponse>, Status> {
        Ok(Response::new(
            MembershipApi::list_access_requests(self, request).await?,
        ))
    }

    async fn list_access_requests_waiting_for_me(
        &self,
        request: Request<wire::ListAccessRequestsWaitingForMeRequest>,
    ) -> Result<Response<wire::ListAccessRequestsWaitingForMeResponse>, Status> {
        Ok(Response::new(
            MembershipApi::list_access_requests_waiting_for_me(self, request).await?,
        ))
    }

    async fn approve_access_request(
        &self,
        request: Request<wire::ApproveAccessRequestRequest>,
    ) -> Result<Response<wire::ApproveAccessRequestResponse>, Status> {
        let (approved, member) = MembershipApi::approve_access_request(self, request).await?;
        Ok(Response::new(wire::ApproveAccessRequestResponse {
            access_request: Some(request_to_wire(&approved, now())),
            member: member.as_ref().map(member_to_wire),
        }))
    }

    async fn decline_access_request(
        &self,
        request: Request<wire::DeclineAccessRequestRequest>,
    ) -> Result<Response<wire::DeclineAccessRequestResponse>, Status> {
        let declined = MembershipApi::decline_access_request(self, request).await?;
        Ok(Response::new(wire::DeclineAccessRequestResponse {
            access_request: Some(request_to_wire(&declined, now())),
        }))
    }

    async fn cancel_access_request(
        &self,
        request: Request<wire::CancelAccessRequestRequest>,
    ) -> Result<Response<wire::CancelAccessRequestResponse>, Status> {
        let cancelled = MembershipApi::cancel_access_request(self, request).await?;
        Ok(Response::new(wire::CancelAccessRequestResponse {
            access_request: Some(request_to_wire(&cancelled, now())),
        }))
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
        Ok(Response::new(
            MembershipApi::get_owner_capacity(self, request).await?,
        ))
    }

    async fn check_invitee(
        &self,
        request: Request<wire::CheckInviteeRequest>,
    ) -> Result<Response<wire::CheckInviteeResponse>, Status> {
        Ok(Response::new(
            MembershipApi::check_invitee(self, request).await?,
        ))
    }
}
