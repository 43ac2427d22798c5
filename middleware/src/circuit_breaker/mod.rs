//! A closed / open / half-open circuit breaker that fails fast with [`CircuitOpen`].
//!
//! When a downstream is failing, calling it anyway costs time (each call waits for its
//! own timeout), adds load to something already struggling, and ties up the caller's
//! resources. The breaker counts call outcomes and, past a threshold, *opens*: calls
//! then fail at once with [`CircuitOpen`] without touching the inner service. After
//! `open_for` it turns *half-open* and lets up to `half_open_probes` calls through; a
//! successful probe *closes* it again, a failed one re-opens it for another `open_for`.
//!
//! What counts as a failure is the caller's decision, made by a classifier returning a
//! [`CallOutcome`]: an `INVALID_ARGUMENT` reply, say, proves the downstream is alive and
//! should be [`CallOutcome::Ignore`]d rather than counted either way. See
//! [`CircuitBreakerConfig`] for the opening triggers.
//!
//! Readiness: while open, `poll_ready` returns ready without polling the inner service,
//! so callers that wait for readiness (tower's retry, a dispatcher loop) get the fast
//! refusal instead of blocking. Otherwise it delegates to the inner service.
//!
//! Observing: [`CircuitBreakerLayer::handle`] gives a [`BreakerHandle`] with the state,
//! a `watch` subscription to transitions, and counters.

mod breaker;
mod config;
mod error;
mod future;
mod handle;
mod layer;
mod state;
#[cfg(test)]
mod tests;
mod window;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use self::breaker::Breaker;
pub use self::breaker::Failure;
pub use self::config::CircuitBreakerConfig;
pub use self::error::CircuitOpen;
pub use self::future::ResponseFuture;
pub use self::handle::BreakerHandle;
pub use self::layer::CircuitBreakerLayer;
pub use self::state::BreakerState;
use crate::BoxError;

/// How a completed call bears on the downstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The downstream did its job.
    Success,
    /// The downstream is unhealthy (unavailable, timed out, internal error, ...).
    Failure,
    /// Says nothing about health, e.g. the downstream rejected a bad request.
    Ignore,
}

/// A classifier for when any error means an unhealthy downstream and any response a
/// healthy one. gRPC callers usually want a finer one that ignores caller-side errors.
pub fn classify_errors_as_failures<T>(result: Result<&T, &BoxError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Success,
        Err(_) => CallOutcome::Failure,
    }
}

/// Fails fast while the downstream is deemed unhealthy; see the [module docs](self).
pub struct CircuitBreaker<S, C> {
    inner: S,
    breaker: Arc<Breaker>,
    classify: C,
    /// Whether `poll_ready` last readied the inner service (it skips that while open).
    inner_ready: bool,
}

impl<S, C> CircuitBreaker<S, C> {
    fn new(inner: S, breaker: Arc<Breaker>, classify: C) -> Self {
        Self {
            inner,
            breaker,
            classify,
            inner_ready: false,
        }
    }

    /// A handle to observe this breaker (shared with the layer and all its services).
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.breaker.clone())
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // Readiness belongs to the inner instance that was polled, not to the clone.
        Self::new(
            self.inner.clone(),
            self.breaker.clone(),
            self.classify.clone(),
        )
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Fn(Result<&S::Response, &BoxError>) -> CallOutcome + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.breaker.state() == BreakerState::Open {
            self.inner_ready = false;
            return Poll::Ready(Ok(()));
        }
        let ready = self.inner.poll_ready(cx).map_err(Into::into);
        self.inner_ready = matches!(ready, Poll::Ready(Ok(())));
        ready
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if !std::mem::take(&mut self.inner_ready) {
            // `poll_ready` saw the circuit open and skipped the inner service, which must
            // not be called unready. If the circuit has closed since, `retry_in` is zero.
            return ResponseFuture::rejected(self.breaker.reject_unready());
        }
        match self.breaker.admit() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}
