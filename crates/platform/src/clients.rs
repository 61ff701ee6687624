//! Calling other Tenantry services: channels that carry this service's identity and the
//! caller's trace context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use tracing::Instrument;

use crate::auth::ServiceTokenMinter;

/// A channel to another service that presents this service's identity on every call and opens
/// a client span for it.
pub type ServiceChannel = InterceptedService<TracedChannel, ServiceCredentials>;

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
    channel_with_tls(url, minter, None)
}

/// [`channel`] over TLS as `tls` says (see [`crate::tls::NodeTls::client_for`]).
pub fn channel_with_tls(
    url: &str,
    minter: ServiceTokenMinter,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<ServiceChannel, InvalidServiceUrl> {
    let invalid = |source| InvalidServiceUrl {
        url: url.to_string(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(invalid)?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        TracedChannel {
            inner: endpoint.connect_lazy(),
        },
        ServiceCredentials::new(minter),
    ))
}

/// A channel that opens a `grpc.client` span per call (a child of the current span) and sends
/// its W3C trace context in the `traceparent`/`tracestate` metadata, so the callee's server
/// span joins the caller's trace.
#[derive(Clone, Debug)]
pub struct TracedChannel {
    inner: Channel,
}

impl tower::Service<http::Request<Body>> for TracedChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let (service, method) = crate::metrics::rpc_labels(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %request.uri().path().trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        crate::telemetry::record_ids(&span);
        crate::telemetry::inject_headers(&span, request.headers_mut());
        let response = self.inner.call(request);
        Box::pin(
            async move {
                let response = response.await?;
                // Errors of unary calls come trailers-only: the code is in the headers. A
                // successful call's OK arrives in the trailers, after this span's work.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .unwrap_or(0);
                tracing::Span::current().record("rpc.grpc.status_code", code);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
