//! The edge of every gRPC server: authentication, the call's server span (continuing the
//! caller's trace), per-call metrics, and normalised transport-level statuses.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Paths served without authentication: Kubernetes probes and `grpcurl list` need no token.
const OPEN_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Authenticates every call, opens its server span, normalises transport-level statuses and
/// records per-call metrics.
///
/// Traces: every call except health checks and reflection gets a `grpc.server` span, a child
/// of the caller's `traceparent` when it sent one; it ends when the response body does (the
/// handler's spans and logs are inside it) and records the final gRPC code.
///
/// Metrics: the duration is measured to the response headers (for a unary call, the time the
/// handler took; for a server stream, the time to open it). The code is the final status: the
/// `grpc-status` header of a trailers-only response (every error of a unary call), else the
/// `grpc-status` trailer when the body ends; a stream whose body is dropped before its trailers
/// (the client went away) counts as CANCELLED.
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    authenticator: Arc<Authenticator>,
    metrics: Metrics,
}

impl EdgeLayer {
    pub(crate) fn new(authenticator: Arc<Authenticator>, metrics: Metrics) -> Self {
        Self {
            authenticator,
            metrics,
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            inner,
            authenticator: self.authenticator.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct EdgeService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    metrics: Metrics,
}

impl<S> tower::Service<http::Request<Body>> for EdgeService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The ready service must be the one called; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let metrics = self.metrics.clone();
        let (service, method) = crate::metrics::rpc_labels(request.uri().path());
        let open = OPEN_PREFIXES
            .iter()
            .any(|prefix| request.uri().path().starts_with(prefix));
        let span = if open {
            tracing::Span::none()
        } else {
            server_span(&request, &service, &method)
        };
        let call_span = span.clone();
        Box::pin(
            async move {
                let started = Instant::now();
                let refused = if open {
                    None
                } else {
                    match authenticator.authenticate(request.headers()).await {
                        Ok(principal) => {
                            request.extensions_mut().insert(principal);
                            None
                        }
                        Err(error) => Some(tonic::Status::from(error).into_http()),
                    }
                };
                let response = match refused {
                    Some(response) => response,
                    None => oversize_as_resource_exhausted(inner.call(request).await?),
                };
                metrics.observe_rpc_duration(&service, &method, started.elapsed());
                let call = RpcCall {
                    metrics,
                    service,
                    method,
                    span: call_span,
                };
                // A trailers-only response carries the final status in its headers.
                if let Some(code) = grpc_status(response.headers()) {
                    call.finish(code);
                    return Ok(response);
                }
                Ok(response.map(|body| {
                    Body::new(ObservedBody {
                        inner: body,
                        call: Some(call),
                    })
                }))
            }
            .instrument(span),
        )
    }
}

/// The call's server span, continuing the caller's trace. The name is the full method, as the
/// OpenTelemetry RPC conventions ask; the labels are the known method (never the raw path).
fn server_span(request: &http::Request<Body>, service: &str, method: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %request.uri().path().trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace_from_headers(&span, request.headers());
    span
}

/// The labels of one call whose status is not known yet.
struct RpcCall {
    metrics: Metrics,
    service: String,
    method: String,
    /// Held until the final status is known, so the span ends with the call.
    span: tracing::Span,
}

impl RpcCall {
    fn finish(self, code: tonic::Code) {
        self.metrics.record_rpc(&self.service, &self.method, code);
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_fault(code) {
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

/// The codes that mean the server failed (the OpenTelemetry gRPC conventions); refusals such as
/// INVALID_ARGUMENT or PERMISSION_DENIED are the caller's, and leave the span's status unset.
fn is_server_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    )
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A response body that records the call's status when its trailers pass (or, if it is
/// dropped before, CANCELLED).
struct ObservedBody {
    inner: Body,
    call: Option<RpcCall>,
}

impl http_body::Body for ObservedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = self.call.take()
                {
                    call.finish(grpc_status(trailers).unwrap_or(tonic::Code::Ok));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.finish(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.finish(tonic::Code::Ok);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(tonic::Code::Cancelled);
        }
    }
}

/// tonic reports a request larger than the decoding limit as OUT_OF_RANGE; the gRPC status
/// code guide says RESOURCE_EXHAUSTED. Tenantry's handlers never use OUT_OF_RANGE, so every
/// such status comes from that limit; it is replaced by a status with the usual details.
fn oversize_as_resource_exhausted(response: http::Response<Body>) -> http::Response<Body> {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let is_oversize = response
        .headers()
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == out_of_range.as_bytes());
    if !is_oversize {
        return response;
    }
    tonic::Status::from(ApiError::resource_exhausted(
        "REQUEST_TOO_LARGE",
        "the request message is larger than this server accepts",
    ))
    .into_http()
}
