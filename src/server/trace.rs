//! Request tracing for gRPC with tower-http: a request id and a span per request with the
//! OpenTelemetry RPC attributes, its status code and latency. Switched off, it costs a branch.

use std::time::Duration;

use http::{HeaderMap, Request, Response};
use tower_http::{
    classify::GrpcErrorsAsFailures,
    request_id::{MakeRequestId, RequestId},
    trace::{MakeSpan, OnEos, OnResponse, TraceLayer},
};
use tracing::{Span, field::Empty};

/// The trace layer with this module's callbacks.
pub type GrpcTraceLayer = TraceLayer<
    tower_http::classify::SharedClassifier<GrpcErrorsAsFailures>,
    GrpcSpan,
    (),
    GrpcResponse,
    (),
    GrpcEos,
    (),
>;

/// The layer; `enabled` false makes it (and the request ids) do nothing.
pub fn layer(enabled: bool) -> GrpcTraceLayer {
    TraceLayer::new_for_grpc()
        .make_span_with(GrpcSpan { enabled })
        .on_request(())
        .on_response(GrpcResponse)
        .on_body_chunk(())
        .on_eos(GrpcEos)
        // Non-OK codes are the callers' business (NOT_FOUND is routine); they are recorded on
        // the span, not logged as errors.
        .on_failure(())
}

/// Makes `x-request-id` values (UUIDs) when tracing is on.
#[derive(Clone, Copy, Debug)]
pub struct RequestIds {
    /// Whether to make them.
    pub enabled: bool,
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        self.enabled.then(|| {
            RequestId::new(
                uuid::Uuid::new_v4()
                    .to_string()
                    .parse()
                    .expect("a UUID is a valid header value"),
            )
        })
    }
}

/// Opens the request's span.
#[derive(Clone, Copy, Debug)]
pub struct GrpcSpan {
    enabled: bool,
}

impl<B> MakeSpan<B> for GrpcSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        if !self.enabled {
            return Span::none();
        }
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", path));
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = %request_id,
            rpc.grpc.status_code = Empty,
            task.id = Empty,
            enduser.id = Empty,
        );
        // The caller's W3C trace context, if it sent one, makes this span part of its trace.
        observability::propagation::set_parent_from_headers(&span, request.headers());
        span
    }
}

/// Records the code of a trailers-only answer (every error status) on the span.
#[derive(Clone, Copy, Debug)]
pub struct GrpcResponse;

impl<B> OnResponse<B> for GrpcResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        if let Some(code) = grpc_status(response.headers()) {
            span.record("rpc.grpc.status_code", code);
            tracing::debug!(parent: span, code, latency_ms = latency.as_secs_f64() * 1e3, "answered");
        }
    }
}

/// Records the code sent in the trailers (every OK answer) on the span.
#[derive(Clone, Copy, Debug)]
pub struct GrpcEos;

impl OnEos for GrpcEos {
    fn on_eos(self, trailers: Option<&HeaderMap>, stream_duration: Duration, span: &Span) {
        if let Some(code) = trailers.and_then(grpc_status) {
            span.record("rpc.grpc.status_code", code);
            tracing::debug!(parent: span, code, latency_ms = stream_duration.as_secs_f64() * 1e3, "answered");
        }
    }
}

/// The numeric `grpc-status`, if present.
pub fn grpc_status(headers: &HeaderMap) -> Option<i64> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}
