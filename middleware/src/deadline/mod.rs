//! A gRPC-aware server deadline: the client's `grpc-timeout`, defaulted and capped.
//!
//! tower's `Timeout` applies one fixed duration. gRPC clients instead send their own
//! deadline in `grpc-timeout`; a server should honour a shorter one (the client stops
//! waiting anyway), fall back to a default when there is none, and refuse to hold
//! resources longer than its own cap however long the client is willing to wait.
//!
//! The effective timeout is written back into the request's `grpc-timeout` header, so that
//! handlers (tonic's `Request::deadline`-style readers of it) see the budget actually granted.
//!
//! tonic's server also enforces the client's `grpc-timeout`, outside every user layer
//! (failing with `tonic::TimeoutExpired`, which it maps to `CANCELLED`). When the
//! client's value is the effective one, both timers would end at about the same moment and
//! tonic's, started a little earlier, would usually win: [`DeadlineLayer::with_margin`]
//! makes this layer answer a little before the client's deadline, so its
//! `DeadlineExceeded` comes first. Keep tonic's `Server::timeout` unset (or above `max`) so
//! it does not shadow the default and the cap.

mod error;
mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

pub use self::error::DeadlineExceeded;
pub use self::future::ResponseFuture;
pub use self::layer::DeadlineLayer;
use crate::{BoxError, grpc_timeout};

/// Enforces a per-request deadline derived from `grpc-timeout`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: Duration,
    max: Duration,
    margin: Duration,
    exempt: &'static [&'static str],
}

impl<S> Deadline<S> {
    /// Wraps `inner`; see [`DeadlineLayer::new`] for `default` and `max`.
    pub fn new(inner: S, default: Duration, max: Duration) -> Self {
        Self {
            inner,
            default,
            max,
            margin: Duration::ZERO,
            exempt: &[],
        }
    }

    /// Answers `margin` before a deadline the client sent; see [`DeadlineLayer::with_margin`].
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Leaves alone the paths under `prefixes`; see [`DeadlineLayer::exempt`].
    pub fn with_exempt(mut self, prefixes: &'static [&'static str]) -> Self {
        self.exempt = prefixes;
        self
    }

    /// The effective timeout for a request carrying `header` (if any).
    fn effective_timeout(&self, header: Option<&http::HeaderValue>) -> Duration {
        header
            .and_then(grpc_timeout::parse)
            .map(|client| client.saturating_sub(self.margin))
            .unwrap_or(self.default)
            .min(self.max)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if self.exempt.iter().any(|prefix| path.starts_with(prefix)) {
            let never = tokio::time::sleep_until(far_future());
            return ResponseFuture::new(self.inner.call(req), never, Duration::MAX);
        }
        let timeout = self.effective_timeout(req.headers().get(grpc_timeout::GRPC_TIMEOUT));
        // Measure from when we accept the request, not from when the handler first polls.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        req.headers_mut()
            .insert(grpc_timeout::GRPC_TIMEOUT, grpc_timeout::encode(timeout));
        let sleep = tokio::time::sleep_until(deadline);
        ResponseFuture::new(self.inner.call(req), sleep, timeout)
    }
}

/// A deadline that will not arrive in practice (about 30 years), for absurd `max` values
/// whose addition to `now` would overflow.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}
