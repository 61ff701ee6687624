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
use crate::call_context::{self, CallContext};
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
///
/// Metadata: a call whose metadata is larger than `max_metadata_bytes` (HTTP/2 header list size)
/// is refused RESOURCE_EXHAUSTED before anything reads it (a megabyte bearer token is never
/// parsed); the connection and its other calls go on.
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    authenticator: Arc<Authenticator>,
    metrics: Metrics,
    max_metadata_bytes: usize,
}

impl EdgeLayer {
    pub(crate) fn new(
        authenticator: Arc<Authenticator>,
        metrics: Metrics,
        max_metadata_bytes: u32,
    ) -> Self {
        Self {
            authenticator,
            metrics,
            max_metadata_bytes: max_metadata_bytes as usize,
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            inner,
            authenticator: self.authenticator.clone(),
            max_metadata_bytes: self.max_metadata_bytes,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct EdgeService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    metrics: Metrics,
    max_metadata_bytes: usize,
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
        let rpc = crate::metrics::rpc_labels(request.uri().path());
        metrics.rpc_started(&rpc);
        let open = OPEN_PREFIXES
            .iter()
            .any(|prefix| request.uri().path().starts_with(prefix));
        let span = if open {
            tracing::Span::none()
        } else {
            server_span(&request, &rpc.service, &rpc.method)
        };
        let call_span = span.clone();
        let metadata_bytes = header_list_size(&request);
        let max_metadata_bytes = self.max_metadata_bytes;
        Box::pin(
            async move {
                let started = Instant::now();
                let mut call_context = None;
                let refused = if metadata_bytes > max_metadata_bytes {
                    Some(oversized_metadata(metadata_bytes, max_metadata_bytes).into_http())
                } else if open {
                    None
                } else {
                    match authenticator.authenticate(request.headers()).await {
                        Ok(principal) => {
                            call_context = Some(Arc::new(CallContext::of_call(
                                request.headers(),
                                &principal,
                            )));
                            request.extensions_mut().insert(principal);
                            None
                        }
                        Err(error) => Some(tonic::Status::from(error).into_http()),
                    }
                };
                let mut response = match (refused, call_context.clone()) {
                    (Some(response), _) => response,
                    (None, Some(context)) => {
                        undecodable_as_invalid_argument(oversize_as_resource_exhausted(
                            call_context::scope(context, inner.call(request)).await?,
                        ))
                    }
                    (None, None) => undecodable_as_invalid_argument(
                        oversize_as_resource_exhausted(inner.call(request).await?),
                    ),
                };
                if let Some(context) = call_context
                    && let Ok(value) = http::HeaderValue::from_str(context.request_id())
                {
                    response
                        .headers_mut()
                        .insert(call_context::REQUEST_ID_HEADER, value);
                }
                metrics.observe_rpc_duration(&rpc, started.elapsed());
                let call = RpcCall {
                    metrics,
                    rpc,
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

/// The size of a request's metadata as HTTP/2 counts a header list (RFC 9113 §6.5.2): each
/// name and value plus 32 bytes, the pseudo-headers (`:method`, `:scheme`, `:authority`,
/// `:path`) included, so a huge path cannot pass where a huge header would not.
fn header_list_size(request: &http::Request<Body>) -> usize {
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority()
                .map_or(0, |authority| authority.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |path| path.as_str().len()),
        ),
    ]
    .iter()
    .map(|(name, value)| name.len() + value + 32)
    .sum::<usize>();
    pseudo
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum::<usize>()
}

/// The refusal of a call whose metadata is `bytes` long, over `limit`.
fn oversized_metadata(bytes: usize, limit: usize) -> tonic::Status {
    tonic::Status::resource_exhausted(format!(
        "the request metadata (headers, the authorization header included) is {bytes} bytes; \
         at most {limit} are accepted (TENANTRY_MAX_METADATA_BYTES)"
    ))
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
    rpc: crate::metrics::RpcLabels,
    /// Held until the final status is known, so the span ends with the call.
    span: tracing::Span,
}

impl RpcCall {
    fn finish(self, code: tonic::Code) {
        self.metrics.record_rpc(&self.rpc, code);
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

/// How tonic's protobuf codec starts the INTERNAL status of a request body it cannot decode
/// (prost's `DecodeError` message).
const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message: ";

/// tonic answers a request body that is not valid protobuf for its type (invalid UTF-8 in a
/// string, a wrong wire type, a truncated field) with INTERNAL. The caller sent it, so it is
/// INVALID_ARGUMENT, with a `BadRequest` naming the field the decoder stopped at when it says
/// which (for a field of a `oneof`, the `oneof`). Framing violations below protobuf (a
/// compressed flag without an encoding, a truncated frame) stay INTERNAL, as the gRPC
/// specification asks.
fn undecodable_as_invalid_argument(response: http::Response<Body>) -> http::Response<Body> {
    let internal = (tonic::Code::Internal as i32).to_string();
    let is_internal = response
        .headers()
        .get("grpc-status")
        .is_some_and(|value| value.as_bytes() == internal.as_bytes());
    if !is_internal {
        return response;
    }
    let message = match response.extensions().get::<tonic::Status>() {
        Some(status) => status.message().to_string(),
        None => tonic::Status::from_header_map(response.headers())
            .map(|status| status.message().to_string())
            .unwrap_or_default(),
    };
    let Some(detail) = message.strip_prefix(DECODE_ERROR_PREFIX) else {
        return response;
    };
    let (field, description) = undecodable_field(detail);
    let description = format!("cannot be decoded: {description}");
    let error = match field {
        Some(field) => ApiError::invalid_field(field, description),
        None => ApiError::malformed_request(format!("the request {description}")),
    };
    tonic::Status::from(error).into_http()
}

/// The field path and the cause in the detail of a prost decode error, which lists the
/// `Message.field` it was decoding from the innermost out (`Subject.user: AuthorizeRequest.subject:
/// invalid string value: …` is `subject.user`).
fn undecodable_field(detail: &str) -> (Option<String>, &str) {
    let mut fields = Vec::new();
    let mut rest = detail;
    while let Some((segment, after)) = rest.split_once(": ") {
        let Some((message, field)) = segment.split_once('.') else {
            break;
        };
        let is_identifier = |text: &str| {
            !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let field = field.strip_prefix("r#").unwrap_or(field);
        if !is_identifier(message) || !is_identifier(field) {
            break;
        }
        fields.push(field);
        rest = after;
    }
    fields.reverse();
    ((!fields.is_empty()).then(|| fields.join(".")), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_name_the_field_path() {
        assert_eq!(
            undecodable_field(
                "Subject.user: AuthorizeRequest.subject: invalid string value: data is not UTF-8 encoded"
            ),
            (
                Some("subject.user".to_string()),
                "invalid string value: data is not UTF-8 encoded"
            )
        );
        assert_eq!(
            undecodable_field(
                "GetAccountRequest.name: invalid wire type: ThirtyTwoBit (expected LengthDelimited)"
            ),
            (
                Some("name".to_string()),
                "invalid wire type: ThirtyTwoBit (expected LengthDelimited)"
            )
        );
        assert_eq!(
            undecodable_field("invalid varint"),
            (None, "invalid varint")
        );
        assert_eq!(
            undecodable_field("buffer underflow: x.y"),
            (None, "buffer underflow: x.y")
        );
    }

    #[test]
    fn undecodable_requests_become_invalid_argument() {
        use prost::Message as _;
        // `name` (field 1) holding bytes that are not UTF-8: the error tonic's codec reports.
        let decode_error =
            tenantry_proto::registry::v1::GetAccountRequest::decode(&[0x0a, 0x02, 0xc3, 0x28][..])
                .expect_err("not UTF-8");
        let internal = tonic::Status::internal(decode_error.to_string());
        let response = undecodable_as_invalid_argument(internal.into_http());
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = tonic_types::StatusExt::get_error_details(&status);
        let bad_request = details.bad_request().expect("a BadRequest");
        assert_eq!(bad_request.field_violations[0].field, "name");
        // Other INTERNAL statuses are left alone.
        let response = undecodable_as_invalid_argument(
            tonic::Status::internal("Unexpected EOF decoding stream.").into_http(),
        );
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
