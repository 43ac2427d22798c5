//! Generic tower layers for gRPC services: deadlines, rate limits, load shedding, circuit breaking, retries.
//!
//! Nothing here knows the service's protobuf messages: the server-side layers work on
//! `http::Request<B>` (or any request type), and failures are reported as
//! [`BoxError`]s whose leaves are small typed errors (for example
//! [`DeadlineExceeded`], [`RateLimited`], [`Overloaded`], [`CircuitOpen`],
//! [`RetriesExhausted`]). The application downcasts those leaves and maps them to
//! `tonic::Status` in one place; the middleware never builds a status itself, so the
//! mapping policy (codes, messages, retry hints) stays with the application.
//!
//! All timing goes through `tokio::time`, so every layer can be tested with
//! `tokio::time::pause()`. Every layer is `Clone`, and clones of a layer (and all
//! services it produced) share one set of state: limits are server-wide, not per
//! connection.
//!
//! # Example
//!
//! A server stack: refuse by rate first (cheap, and per-client accounting sees every
//! request), then shed beyond the concurrency limit, then bound each request's time.
//!
//! ```
//! use std::{num::NonZeroU32, time::Duration};
//!
//! use governor::Quota;
//! use middleware::{
//!     BoxError, DeadlineLayer, LoadShedLayer, RateLimitConfig, RateLimitLayer, RateLimited,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let rate_limit = RateLimitLayer::new(RateLimitConfig {
//!     per_client: Some(Quota::per_second(NonZeroU32::new(1).unwrap())),
//!     ..RateLimitConfig::default()
//! });
//! let load_shed = LoadShedLayer::new(256);
//! // Clones share state: keep these to export metrics.
//! let (rate_metrics, shed_metrics) = (rate_limit.clone(), load_shed.clone());
//!
//! let stack = ServiceBuilder::new()
//!     .layer(rate_limit)
//!     .layer(load_shed)
//!     .layer(DeadlineLayer::new(Duration::from_secs(10), Duration::from_secs(30)));
//! // With tonic: `Server::builder().layer(stack)`, plus one layer of the application's
//! // that maps these errors to `tonic::Status`.
//! let svc = stack.service_fn(|_req: http::Request<()>| async { Ok::<_, BoxError>("hello") });
//!
//! assert_eq!(svc.clone().oneshot(http::Request::new(())).await?, "hello");
//! let refused = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! assert!(refused.downcast_ref::<RateLimited>().is_some());
//! assert_eq!((rate_metrics.rejected_total(), shed_metrics.in_flight()), (1, 0));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`grpc_timeout`]: parse and encode the `grpc-timeout` header (gRPC over HTTP/2 spec).
//! - [`deadline`]: server deadline from `grpc-timeout` (default and cap), failing with
//!   [`DeadlineExceeded`] when the handler overruns.
//! - [`rate_limit`]: global and per-client request rate limits on `governor`, failing
//!   with [`RateLimited`].
//! - [`load_shed`]: server-wide concurrency limit that sheds excess requests at once
//!   with [`Overloaded`] instead of queueing them.
//! - [`circuit_breaker`]: closed / open / half-open breaker for calls to a downstream,
//!   failing fast with [`CircuitOpen`].
//! - [`retry`]: a `tower::retry::Policy` with exponential backoff, full jitter and a
//!   shared retry budget, ending in [`RetriesExhausted`] or [`RetryBudgetExhausted`].

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod circuit_breaker;
pub mod deadline;
pub mod grpc_timeout;
pub mod load_shed;
pub mod rate_limit;
pub mod retry;

/// The error type of every layer in this crate.
///
/// Typed leaves (for example [`DeadlineExceeded`]) are boxed into it; callers
/// recover them with `err.downcast_ref::<T>()`. It is the same type as
/// `tower::BoxError` and `tonic`'s, so errors flow between them without conversion.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use circuit_breaker::{
    BreakerHandle, BreakerState, CallOutcome, CircuitBreaker, CircuitBreakerConfig,
    CircuitBreakerLayer, CircuitOpen,
};
pub use deadline::{Deadline, DeadlineExceeded, DeadlineLayer};
pub use load_shed::{LoadShed, LoadShedLayer, Overloaded};
pub use rate_limit::{
    ClientIdentity, ClientKey, RateLimit, RateLimitConfig, RateLimitLayer, RateLimitScope,
    RateLimited,
};
pub use retry::{RetriesExhausted, RetryBudgetExhausted, RetryConfig, RetryPolicy};

#[cfg(test)]
mod tests {
    //! Compile-time checks that layers, services and futures can cross threads.

    use super::*;

    type Inner = tower::util::ServiceFn<
        fn(http::Request<()>) -> std::future::Ready<Result<&'static str, BoxError>>,
    >;
    type Classifier = fn(Result<&&'static str, &BoxError>) -> CallOutcome;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn layers_services_and_futures_are_thread_safe() {
        send_sync::<DeadlineLayer>();
        send_sync::<RateLimitLayer>();
        send_sync::<LoadShedLayer>();
        send_sync::<CircuitBreakerLayer<Classifier>>();
        send_sync::<BreakerHandle>();
        send_sync::<RetryPolicy<fn(&BoxError) -> bool>>();

        send_sync::<Deadline<Inner>>();
        send_sync::<RateLimit<Inner>>();
        send_sync::<CircuitBreaker<Inner, Classifier>>();

        type Fut = std::future::Ready<Result<&'static str, BoxError>>;
        send::<deadline::ResponseFuture<Fut>>();
        send::<rate_limit::ResponseFuture<Fut>>();
        send::<circuit_breaker::ResponseFuture<Fut, Classifier>>();
    }
}
