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
    errors_as_status::ErrorsAsStatusLayer,
    rpc_metrics::RpcMetricsLayer,
    trace::{self, GrpcTraceLayer, RequestIds},
    unary_framing::UnaryFramingLayer,
};
use crate::{config::ServerConfig, metrics::Metrics};

/// Answers a client's own deadline this much early, so the answer reaches it in time and our
/// DEADLINE_EXCEEDED beats tonic's timer set to the same deadline (which would say CANCELLED).
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

type PanicHandler = fn(Box<dyn Any + Send>) -> http::Response<tonic::body::Body>;

/// The stack's type, innermost layer first.
pub type Layers = Stack<
    CatchPanicLayer<PanicHandler>,
    Stack<
        UnaryFramingLayer,
        Stack<
            DeadlineLayer,
            Stack<
                Either<LoadShedLayer, Identity>,
                Stack<
                    Either<RateLimitLayer, Identity>,
                    Stack<
                        ErrorsAsStatusLayer,
                        Stack<
                            PropagateRequestIdLayer,
                            Stack<
                                RpcMetricsLayer,
                                Stack<
                                    GrpcTraceLayer,
                                    Stack<SetRequestIdLayer<RequestIds>, Identity>,
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
        // First, so that the span and every log line below carry the request id (a client's
        // own x-request-id is kept).
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
        // Cheapest refusal first: a client over its rate never takes a concurrency slot.
        .option_layer(limits.rate_limit.clone())
        // Past TASK_MAX_IN_FLIGHT, sheds at once (UNAVAILABLE) instead of queueing without
        // bound; only requests that passed the rate limit count.
        .option_layer(limits.load_shed.clone())
        // The handler's time budget, from the client's grpc-timeout, a default and a cap; it
        // starts once the request is admitted.
        .layer(
            DeadlineLayer::new(config.request_timeout, config.request_timeout_max)
                .with_margin(DEADLINE_MARGIN),
        )
        // Malformed framing of a Task call (a second message, a bad prefix, a truncated body) is
        // INVALID_ARGUMENT before the handler runs; only admitted requests' bodies are read.
        .layer(UnaryFramingLayer::new(
            "/task.Task/",
            config.max_message_bytes,
        ))
        // Innermost, right around the handler: a panic becomes INTERNAL for this request and
        // the connection, and the server, keep serving.
        .layer(CatchPanicLayer::custom(panic_response as PanicHandler))
}

/// The limiting layers, kept so that their figures can be read.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Rate limiting, if any limit is set.
    pub rate_limit: Option<RateLimitLayer>,
    /// Load shedding, if a cap is set.
    pub load_shed: Option<LoadShedLayer>,
}

impl Limits {
    /// The limits `config` asks for.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
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
