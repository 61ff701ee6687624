//! Calling other Tenantry services: channels and the service identity they carry.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::ServiceTokenMinter;

/// A channel to another service that presents this service's identity on every call.
pub type ServiceChannel = InterceptedService<Channel, ServiceCredentials>;

/// Adds `authorization: Bearer <service token>` to outgoing calls.
#[derive(Clone, Debug)]
pub struct ServiceCredentials {
    minter: ServiceTokenMinter,
}

impl ServiceCredentials {
    /// Credentials minted by `minter`.
    pub fn new(minter: ServiceTokenMinter) -> Self {
        Self { minter }
    }
}

impl Interceptor for ServiceCredentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let token = self.minter.token().map_err(tonic::Status::from)?;
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| tonic::Status::internal("service token is not a valid header"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// Why a service URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid service URL {url:?}: {source}")]
pub struct InvalidServiceUrl {
    url: String,
    #[source]
    source: tonic::transport::Error,
}

/// A lazily connected channel to `url` with sensible timeouts; the first call connects, and a
/// peer that is down makes calls fail with UNAVAILABLE instead of blocking start-up.
pub fn channel(url: &str, minter: ServiceTokenMinter) -> Result<ServiceChannel, InvalidServiceUrl> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|source| InvalidServiceUrl {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        ServiceCredentials::new(minter),
    ))
}
