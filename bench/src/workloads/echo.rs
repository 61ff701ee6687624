//! Echo ceilings: a service's own generated tonic server, with nothing behind the measured
//! RPC but a clone of a real answer (so the same message, of the same size, crosses the same
//! codec and HTTP/2 stack) — no authentication, no authorization, no database. The registry's
//! `GetAccount` ([`start`]) and membership's `Authorize` ([`start_membership`]).

use std::net::SocketAddr;

use tenantry_proto::membership::v1 as mpb;
use tenantry_proto::membership::v1::membership_service_server::{
    MembershipService, MembershipServiceServer,
};
use tenantry_proto::registry::v1 as pb;
use tenantry_proto::registry::v1::customer_registry_service_server::{
    CustomerRegistryService, CustomerRegistryServiceServer,
};
use tokio::sync::oneshot;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

/// Answers `GetAccount` with a fixed response.
#[derive(Clone, Debug)]
struct Echo {
    answer: pb::GetAccountResponse,
}

/// A running echo server; stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Answers `Authorize` with a fixed response.
#[derive(Clone, Debug)]
struct MembershipEcho {
    answer: mpb::AuthorizeResponse,
}

/// Starts the registry's echo server (`GetAccount`) on a free loopback port.
pub async fn start(answer: pb::GetAccountResponse) -> anyhow::Result<EchoServer> {
    serve(Routes::new(CustomerRegistryServiceServer::new(Echo {
        answer,
    })))
    .await
}

/// Starts membership's echo server (`Authorize`) on a free loopback port.
pub async fn start_membership(answer: mpb::AuthorizeResponse) -> anyhow::Result<EchoServer> {
    serve(Routes::new(MembershipServiceServer::new(MembershipEcho {
        answer,
    })))
    .await
}

/// Serves `routes` on a free loopback port, with the server settings every echo shares.
async fn serve(routes: Routes) -> anyhow::Result<EchoServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let incoming = tokio_stream_listener(listener);
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(EchoServer { addr, _stop: stop })
}

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the echo ceiling only answers the measured RPC",
    ))
}

#[tonic::async_trait]
impl CustomerRegistryService for Echo {
    async fn get_account(
        &self,
        _request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }

    async fn create_account(
        &self,
        _request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        unimplemented()
    }

    async fn promote_to_partner(
        &self,
        _request: Request<pb::PromoteToPartnerRequest>,
    ) -> Result<Response<pb::PromoteToPartnerResponse>, Status> {
        unimplemented()
    }

    async fn create_managed_customer(
        &self,
        _request: Request<pb::CreateManagedCustomerRequest>,
    ) -> Result<Response<pb::CreateManagedCustomerResponse>, Status> {
        unimplemented()
    }

    async fn list_managed_customers(
        &self,
        _request: Request<pb::ListManagedCustomersRequest>,
    ) -> Result<Response<pb::ListManagedCustomersResponse>, Status> {
        unimplemented()
    }

    async fn batch_get_accounts(
        &self,
        _request: Request<pb::BatchGetAccountsRequest>,
    ) -> Result<Response<pb::BatchGetAccountsResponse>, Status> {
        unimplemented()
    }

    async fn list_accounts(
        &self,
        _request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        unimplemented()
    }

    async fn update_account(
        &self,
        _request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::UpdateAccountResponse>, Status> {
        unimplemented()
    }

    async fn disable_account(
        &self,
        _request: Request<pb::DisableAccountRequest>,
    ) -> Result<Response<pb::DisableAccountResponse>, Status> {
        unimplemented()
    }

    async fn enable_account(
        &self,
        _request: Request<pb::EnableAccountRequest>,
    ) -> Result<Response<pb::EnableAccountResponse>, Status> {
        unimplemented()
    }

    async fn delete_account(
        &self,
        _request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl MembershipService for MembershipEcho {
    async fn authorize(
        &self,
        _request: Request<mpb::AuthorizeRequest>,
    ) -> Result<Response<mpb::AuthorizeResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }

    async fn add_member(
        &self,
        _request: Request<mpb::AddMemberRequest>,
    ) -> Result<Response<mpb::AddMemberResponse>, Status> {
        unimplemented()
    }

    async fn add_myself(
        &self,
        _request: Request<mpb::AddMyselfRequest>,
    ) -> Result<Response<mpb::AddMyselfResponse>, Status> {
        unimplemented()
    }

    async fn get_member(
        &self,
        _request: Request<mpb::GetMemberRequest>,
    ) -> Result<Response<mpb::GetMemberResponse>, Status> {
        unimplemented()
    }

    async fn update_member(
        &self,
        _request: Request<mpb::UpdateMemberRequest>,
    ) -> Result<Response<mpb::UpdateMemberResponse>, Status> {
        unimplemented()
    }

    async fn remove_member(
        &self,
        _request: Request<mpb::RemoveMemberRequest>,
    ) -> Result<Response<mpb::RemoveMemberResponse>, Status> {
        unimplemented()
    }

    async fn extend_member_access(
        &self,
        _request: Request<mpb::ExtendMemberAccessRequest>,
    ) -> Result<Response<mpb::ExtendMemberAccessResponse>, Status> {
        unimplemented()
    }

    async fn get_access_policy(
        &self,
        _: Request<mpb::GetAccessPolicyRequest>,
    ) -> Result<Response<mpb::GetAccessPolicyResponse>, Status> {
        unimplemented()
    }

    async fn update_access_policy(
        &self,
        _: Request<mpb::UpdateAccessPolicyRequest>,
    ) -> Result<Response<mpb::UpdateAccessPolicyResponse>, Status> {
        unimplemented()
    }

    async fn create_access_request(
        &self,
        _: Request<mpb::CreateAccessRequestRequest>,
    ) -> Result<Response<mpb::CreateAccessRequestResponse>, Status> {
        unimplemented()
    }

    async fn get_access_request(
        &self,
        _: Request<mpb::GetAccessRequestRequest>,
    ) -> Result<Response<mpb::GetAccessRequestResponse>, Status> {
        unimplemented()
    }

    async fn list_access_requests(
        &self,
        _: Request<mpb::ListAccessRequestsRequest>,
    ) -> Result<Response<mpb::ListAccessRequestsResponse>, Status> {
        unimplemented()
    }

    async fn list_access_requests_waiting_for_me(
        &self,
        _: Request<mpb::ListAccessRequestsWaitingForMeRequest>,
    ) -> Result<Response<mpb::ListAccessRequestsWaitingForMeResponse>, Status> {
        unimplemented()
    }

    async fn approve_access_request(
        &self,
        _: Request<mpb::ApproveAccessRequestRequest>,
    ) -> Result<Response<mpb::ApproveAccessRequestResponse>, Status> {
        unimplemented()
    }

    async fn decline_access_request(
        &self,
        _: Request<mpb::DeclineAccessRequestRequest>,
    ) -> Result<Response<mpb::DeclineAccessRequestResponse>, Status> {
        unimplemented()
    }

    async fn cancel_access_request(
        &self,
        _: Request<mpb::CancelAccessRequestRequest>,
    ) -> Result<Response<mpb::CancelAccessRequestResponse>, Status> {
        unimplemented()
    }

    async fn list_expiring_members(
        &self,
        _request: Request<mpb::ListExpiringMembersRequest>,
    ) -> Result<Response<mpb::ListExpiringMembersResponse>, Status> {
        unimplemented()
    }

    async fn list_members(
        &self,
        _request: Request<mpb::ListMembersRequest>,
    ) -> Result<Response<mpb::ListMembersResponse>, Status> {
        unimplemented()
    }

    async fn list_my_accounts(
        &self,
        _request: Request<mpb::ListMyAccountsRequest>,
    ) -> Result<Response<mpb::ListMyAccountsResponse>, Status> {
        unimplemented()
    }

    async fn check_invitee(
        &self,
        _request: Request<mpb::CheckInviteeRequest>,
    ) -> Result<Response<mpb::CheckInviteeResponse>, Status> {
        unimplemented()
    }

    async fn get_owner_capacity(
        &self,
        _request: Request<mpb::GetOwnerCapacityRequest>,
    ) -> Result<Response<mpb::GetOwnerCapacityResponse>, Status> {
        unimplemented()
    }
}
