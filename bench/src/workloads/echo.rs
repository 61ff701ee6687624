//! The ceiling of `GetAccount`: the registry's own generated tonic service, with nothing behind
//! `GetAccount` but a clone of a real answer (so the same message, of the same size, crosses
//! the same codec and HTTP/2 stack) — no authentication, no authorization, no database.

use std::net::SocketAddr;

use tenantry_proto::registry::v1 as pb;
use tenantry_proto::registry::v1::customer_registry_service_server::{
    CustomerRegistryService, CustomerRegistryServiceServer,
};
use tokio::sync::oneshot;
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

/// Starts the echo server on a free loopback port.
pub async fn start(answer: pb::GetAccountResponse) -> anyhow::Result<EchoServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = CustomerRegistryServiceServer::new(Echo { answer });
    tokio::spawn(async move {
        let incoming = tokio_stream_listener(listener);
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(service)
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
        "the echo ceiling only answers GetAccount",
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
