//! Calling other Tenantry services: channels that carry this service's identity and the
//! caller's trace context.
//!
//! A peer URL names one server (`http://membership:50051`, `https://…`: one HTTP/2 connection,
//! as tonic makes it) or several replicas, and then every call goes to one of them that is
//! connected, the less busy of two picked at random (see [`balance`]):
//!
//! - `dns:///host:port` — every address the name resolves to (a Kubernetes headless Service),
//!   looked up again every [`ChannelOptions::resolve_interval`] and soon after a replica
//!   refused a connection; `dns+https:///host:port` (or a client TLS configuration given to
//!   [`channel_with_tls`]) calls them over TLS, expecting certificates for `host`;
//! - `http://a:50051,http://b:50051` — a fixed list, all `http://` or all `https://`.

mod balance;
mod resolve;
mod target;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tower::BoxError;

use tracing::Instrument;

use crate::auth::ServiceTokenMinter;

use self::balance::{BalancedChannel, Census, Dial, Replica, Update};
use self::target::PeerTarget;

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
        // The person's call this one is made for: its request id and the role it acted in.
        for (name, value) in crate::call_context::outgoing() {
            if let Ok(value) = MetadataValue::try_from(value) {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(request)
    }
}

/// Why a service URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid service URL {url:?}: {source}")]
pub struct InvalidServiceUrl {
    url: String,
    #[source]
    source: BoxError,
}

impl InvalidServiceUrl {
    fn new(url: &str, source: impl Into<BoxError>) -> Self {
        Self {
            url: url.to_string(),
            source: source.into(),
        }
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The default of [`ChannelOptions::resolve_interval`], in milliseconds; see
/// [`set_default_resolve_interval`].
static DEFAULT_RESOLVE_INTERVAL_MS: AtomicU64 = AtomicU64::new(5_000);

/// Sets how often `dns:///` peers of channels made from now on are looked up again (the
/// process's `TENANTRY_PEER_RESOLVE_SECONDS`; 5 s unless set). Zero is taken as one second.
pub fn set_default_resolve_interval(interval: Duration) {
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    DEFAULT_RESOLVE_INTERVAL_MS.store(millis.max(1_000), Ordering::Relaxed);
}

/// How a channel finds its peer's replicas.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// How often a `dns:///` peer's name is looked up again (sooner after a replica refused a
    /// connection). Default: what [`set_default_resolve_interval`] set, else 5 s.
    pub resolve_interval: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            resolve_interval: Duration::from_millis(
                DEFAULT_RESOLVE_INTERVAL_MS.load(Ordering::Relaxed),
            ),
        }
    }
}

/// A lazily connected channel to `url` (one server, a list or `dns:///host:port`: see the
/// module documentation) with sensible timeouts; the first call connects, and a peer that is
/// down makes calls fail with UNAVAILABLE instead of blocking start-up.
pub fn channel(url: &str, minter: ServiceTokenMinter) -> Result<ServiceChannel, InvalidServiceUrl> {
    channel_with_tls(url, minter, None)
}

/// [`channel`] over TLS as `tls` says (see [`crate::tls::NodeTls::client_for`]).
pub fn channel_with_tls(
    url: &str,
    minter: ServiceTokenMinter,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<ServiceChannel, InvalidServiceUrl> {
    channel_with_options(url, minter, tls, &ChannelOptions::default())
}

/// [`channel_with_tls`] with explicit [`ChannelOptions`].
pub fn channel_with_options(
    url: &str,
    minter: ServiceTokenMinter,
    tls: Option<tonic::transport::ClientTlsConfig>,
    options: &ChannelOptions,
) -> Result<ServiceChannel, InvalidServiceUrl> {
    let target = PeerTarget::parse(url).map_err(|reason| InvalidServiceUrl::new(url, reason))?;
    let inner = match target {
        PeerTarget::Single => PeerChannel::Single(endpoint(url, url, tls)?.connect_lazy()),
        PeerTarget::List(uris) => {
            let census = Census::new(url);
            let (updates, receiver) = mpsc::channel(uris.len() + 1);
            for uri in uris {
                let endpoint = endpoint(url, &uri.to_string(), tls.clone())?;
                let replica = Replica::new(endpoint, Dial::Host, census.clone(), None);
                // The channel has room for every entry and the marker.
                let _ = updates.try_send(Update::Insert(uri.to_string(), replica));
            }
            let _ = updates.try_send(Update::Resolved);
            PeerChannel::Balanced(balance::spawn(receiver, census))
        }
        PeerTarget::Dns { host, port, https } => {
            // TLS when the URL says so or the caller configured it; the replicas are dialled
            // by address, but the endpoint names the host: the certificate must name it.
            let scheme = if https || tls.is_some() {
                "https"
            } else {
                "http"
            };
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let endpoint = endpoint(url, &format!("{scheme}://{authority}"), tls)?;
            let census = Census::new(url);
            let (updates, receiver) = mpsc::channel(64);
            let channel = balance::spawn(receiver, census.clone());
            tokio::spawn(resolve::run(
                resolve::DnsTarget {
                    host,
                    port,
                    endpoint,
                    census,
                    interval: options.resolve_interval,
                },
                updates,
            ));
            PeerChannel::Balanced(channel)
        }
    };
    Ok(InterceptedService::new(
        TracedChannel { inner },
        ServiceCredentials::new(minter),
    ))
}

/// The endpoint of one server or replica at `uri` (part of the peer URL `url`).
fn endpoint(
    url: &str,
    uri: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Endpoint, InvalidServiceUrl> {
    let invalid = |source| InvalidServiceUrl::new(url, source);
    let mut endpoint = Endpoint::from_shared(uri.to_string()).map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(invalid)?;
    }
    Ok(endpoint
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// One connection to one server, or a balancer over replicas.
#[derive(Clone)]
enum PeerChannel {
    Single(Channel),
    Balanced(BalancedChannel),
}

impl std::fmt::Debug for PeerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerChannel::Single(_) => "Single",
            PeerChannel::Balanced(_) => "Balanced",
        })
    }
}

/// A channel that opens a `grpc.client` span per call (a child of the current span) and sends
/// its W3C trace context in the `traceparent`/`tracestate` metadata, so the callee's server
/// span joins the caller's trace.
#[derive(Clone, Debug)]
pub struct TracedChannel {
    inner: PeerChannel,
}

impl tower::Service<http::Request<Body>> for TracedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            PeerChannel::Single(channel) => channel.poll_ready(cx).map_err(Into::into),
            PeerChannel::Balanced(channel) => channel.poll_ready(cx),
        }
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let crate::metrics::RpcLabels {
            service, method, ..
        } = crate::metrics::rpc_labels(request.uri().path());
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
        let response: Pin<Box<dyn Future<Output = Result<_, BoxError>> + Send>> =
            match &mut self.inner {
                PeerChannel::Single(channel) => {
                    let response = channel.call(request);
                    Box::pin(async move { response.await.map_err(Into::into) })
                }
                PeerChannel::Balanced(channel) => Box::pin(channel.call(request)),
            };
        Box::pin(
            async move {
                let response = response.await.map_err(|error| {
                    if refused_before_processing(error.as_ref()) {
                        // tonic would say INTERNAL; the gRPC spec says such a call was never
                        // processed and may be retried, which is what UNAVAILABLE tells callers.
                        // The transport's error stays its source, for the logs' cause chain.
                        let mut refused = tonic::Status::unavailable(
                            "the peer's connection closed before it took the call (a replica \
                             shutting down); the call was not processed, retry it",
                        );
                        refused.set_source(std::sync::Arc::from(error));
                        Box::new(refused) as BoxError
                    } else if connection_broke(error.as_ref()) {
                        // tonic would say UNKNOWN; gRPC's own clients say UNAVAILABLE for a
                        // connection that broke under a call, the code that invites a retry
                        // (of calls safe to repeat: this one may have been processed).
                        let mut broke = tonic::Status::unavailable(
                            "the connection to the peer broke during the call (it may or may \
                             not have been processed)",
                        );
                        broke.set_source(std::sync::Arc::from(error));
                        Box::new(broke) as BoxError
                    } else {
                        error
                    }
                })?;
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

/// Whether `error` (or an error it was caused by) is the connection breaking under the call:
/// the peer closed or reset it (a replica that exited, a connection cut) while the call was
/// being written or awaited.
pub fn connection_broke(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            );
        }
        source = error.source();
    }
    false
}

/// Whether `error` (or an error it was caused by) says the peer never took the call, so it did
/// nothing there and is safe to send again:
///
/// - HTTP/2 refused it with a graceful GOAWAY (NO_ERROR) whose last stream id is below the
///   call's stream — a server draining for shutdown does that to calls that crossed its GOAWAY
///   on the wire (tonic's client reports it as INTERNAL, "h2 protocol error");
/// - the connection closed while the call still waited in hyper's queue, before it was sent
///   (tonic reports CANCELLED, which reads as if the caller had given up).
///
/// The gRPC spec calls both UNAVAILABLE.
pub fn refused_before_processing(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(http2) = error.downcast_ref::<h2::Error>() {
            return http2.is_go_away()
                && http2.is_remote()
                && http2.reason() == Some(h2::Reason::NO_ERROR);
        }
        if let Some(http) = error.downcast_ref::<hyper::Error>()
            && http.is_canceled()
        {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Transport(std::io::Error);

    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }

    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_broken_or_reset_connection_is_told_apart_from_other_failures() {
        use std::io::ErrorKind;
        for kind in [ErrorKind::BrokenPipe, ErrorKind::ConnectionReset] {
            let broke = Transport(std::io::Error::new(kind, "x"));
            assert!(connection_broke(&broke), "{kind:?}");
        }
        let refused = Transport(std::io::Error::new(ErrorKind::ConnectionRefused, "x"));
        assert!(!connection_broke(&refused), "never connected is not broken");
        assert!(!connection_broke(&std::fmt::Error));
    }
}
