//! The server's tower stack, in one function that reads top to bottom: the first layer sees a
//! request first.

use std::{any::Any, time::Duration};

use middleware::{DeadlineLayer, LoadShedLayer, RateLimitLayer};
use tonic::Status;
use tower::{
    ServiceBuilder,
    layer::util::{Identity, Stack},
    util::Either,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
};

use super::{
    auth::AuthLayer,
    connection::ConnectionLayer,
    errors_as_status::ErrorsAsStatusLayer,
    metadata::MetadataLayer,
    rpc_metrics::RpcMetricsLayer,
    trace::{self, GrpcTraceLayer, RequestIds},
    unary_framing::UnaryFramingLayer,
};
use crate::{auth::Authenticator, config::ServerConfig, metrics::Metrics};

/// The streaming methods: bounded their own way (`TASK_WATCH_MAX`, the client's grpc-timeout),
/// not by the unary deadline, nor counted against the per-connection cap on requests.
const STREAMING: &[&str] = &["/task.Task/WatchTask"];

/// Answers a client's own deadline this much early, so the answer reaches it in time and our
/// DEADLINE_EXCEEDED beats tonic's timer set to the same deadline (which would say CANCELLED).
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

type PanicHandler = fn(Box<dyn Any + Send>) -> http::Response<tonic::body::Body>;

/// The stack's type, innermost layer first.
pub type Layers = Stack<
    CatchPanicLayer<PanicHandler>,
    Stack<
        DeadlineLayer,
        Stack<
            Either<LoadShedLayer, Identity>,
            Stack<
                UnaryFramingLayer,
                Stack<
                    Either<RateLimitLayer, Identity>,
                    Stack<
                        Either<AuthLayer, Identity>,
                        Stack<
                            ConnectionLayer,
                            Stack<
                                ErrorsAsStatusLayer,
                                Stack<
                                    PropagateRequestIdLayer,
                                    Stack<
                                        RpcMetricsLayer,
                                        Stack<
                                            GrpcTraceLayer,
                                            Stack<
                                                SetRequestIdLayer<RequestIds>,
                                                Stack<MetadataLayer, Identity>,
                                            >,
                                        >,
                                    >,
                                >,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

/// The stack for `config`, with `limits` (built apart so that their figures can be read).
/// Every layer is `Clone` and clones share their state: limits are server-wide.
pub fn stack(config: &ServerConfig, limits: &Limits, metrics: &Metrics) -> ServiceBuilder<Layers> {
    let tracing = config.request_tracing;
    ServiceBuilder::new()
        // Before anything reads it: metadata the client wrote is checked (x-request-id,
        // traceparent, tracestate), so that what is kept, stored or forwarded is bounded.
        .layer(MetadataLayer)
        // So that the span and every log line below carry the request id (a client's own,
        // well-formed x-request-id is kept).
        .layer(SetRequestIdLayer::x_request_id(RequestIds {
            enabled: tracing,
        }))
        // A span per request around everything else, so that its latency and status code are
        // what the client sees, rejections included.
        .layer(trace::layer(tracing))
        // Counts every answer by method and code, rejections by the layers below included.
        .layer(RpcMetricsLayer::new(metrics))
        // The id goes back on every response, error statuses included.
        .layer(PropagateRequestIdLayer::x_request_id())
        // Every error of the layers below becomes a gRPC status from the one error table; above
        // all of them, so that none reaches the client as a reset stream.
        .layer(ErrorsAsStatusLayer)
        // Counts the request on its connection (for the idle clock), refuses it past the
        // per-connection cap, and puts the peer's address where the rate limiter reads it.
        .layer(ConnectionLayer::new(
            config.max_in_flight_per_connection,
            STREAMING,
        ))
        // Who is calling, and may they: before the rate limit, which keys on the caller.
        .option_layer(limits.auth.clone())
        // Cheap refusals first: a client over its rate never has its body read.
        .option_layer(limits.rate_limit.clone())
        // The whole body of a Task call, within TASK_REQUEST_BODY_TIMEOUT and well framed,
        // before the request takes an in-flight slot: a body that trickles in holds none.
        .layer(UnaryFramingLayer::new(
            "/task.Task/",
            config.max_message_bytes,
            config.request_body_timeout,
        ))
        // Past TASK_MAX_IN_FLIGHT, sheds at once (UNAVAILABLE) instead of queueing without
        // bound; only requests that passed the checks above count.
        .option_layer(limits.load_shed.clone())
        // The handler's time budget, from the client's grpc-timeout, a default and a cap; it
        // starts once the request is admitted. Streams are bounded by their handler instead.
        .layer(
            DeadlineLayer::new(config.request_timeout, config.request_timeout_max)
                .with_margin(DEADLINE_MARGIN)
                .exempt(STREAMING),
        )
        // Innermost, right around the handler: a panic becomes INTERNAL for this request and
        // the connection, and the server, keep serving.
        .layer(CatchPanicLayer::custom(panic_response as PanicHandler))
}

/// The layers that refuse requests, built apart so that their figures can be read.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Authentication, if a tokens file is set.
    pub auth: Option<AuthLayer>,
    /// Rate limiting, if any limit is set.
    pub rate_limit: Option<RateLimitLayer>,
    /// Load shedding, if a cap is set.
    pub load_shed: Option<LoadShedLayer>,
}

impl Limits {
    /// The limits `config` asks for, with `authenticator`'s callers when authentication is on.
    pub fn new(config: &ServerConfig, authenticator: Option<Authenticator>) -> Self {
        Self {
            auth: authenticator.map(|a| AuthLayer::new(a, config.reflection)),
            rate_limit: config.rate_limit.clone().map(RateLimitLayer::new),
            load_shed: config.max_in_flight.map(LoadShedLayer::new),
        }
    }
}

/// A panicking handler's answer: INTERNAL, with the panic logged.
fn panic_response(panic: Box<dyn Any + Send>) -> http::Response<tonic::body::Body> {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %what, "a request handler panicked");
    Status::internal(
        "the server failed while handling this request (a bug, now logged with this response's x-request-id); \
         the server keeps serving",
    )
    .into_http()
}
