//! Global and per-client request rate limits on `governor`, refusing with [`RateLimited`].
//!
//! Each request takes one cell from its client's bucket and then from the global bucket
//! (GCRA, so quotas are a sustained rate plus a burst). A request over either limit is
//! refused at once, without reaching the inner service; nothing queues or waits.
//!
//! # Who is a client
//!
//! [`ClientKey`] picks the identity. Requests whose identity cannot be determined share
//! one "unknown" bucket with the per-client quota.
//!
//! # Bounded memory
//!
//! Per-client state lives in governor's keyed (dashmap) store. It is swept with
//! `retain_recent` + `shrink_to_fit` every 1 024 checks, and also (at most every
//! 100 ms) when a new client arrives while `max_tracked_clients` clients have state. If
//! the table is still full after that, the new client is counted under one shared
//! "overflow" bucket with the per-client quota until room frees up. Under a flood of
//! fresh identities this throttles newcomers hard while established clients keep their
//! own buckets, which is the right side to fail on; `overflowed_total()` shows it.
//!
//! # Time
//!
//! The buckets read `tokio::time::Instant`, so they follow `tokio::time::pause()` in tests
//! and the monotonic clock otherwise.

mod clock;
mod config;
mod error;
mod future;
mod key;
mod layer;
mod limiter;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

pub use self::config::{ClientIdentity, ClientKey, RateLimitConfig};
pub use self::error::{RateLimitScope, RateLimited};
pub use self::future::ResponseFuture;
pub use self::layer::RateLimitLayer;
use self::limiter::Limits;
use crate::BoxError;

/// Refuses requests over the configured rate limits; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> RateLimit<S> {
    fn new(inner: S, limits: Arc<Limits>) -> Self {
        Self { inner, limits }
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

impl<S, B> Service<http::Request<B>> for RateLimit<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    /// Delegates to the inner service: the limit is judged per request in `call`, where
    /// the request (and so the client) is known.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.limits.check(&req) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(limited) => {
                tracing::debug!(
                    scope = %limited.scope,
                    retry_after = ?limited.retry_after,
                    "request refused by rate limit"
                );
                ResponseFuture::limited(limited)
            }
        }
    }
}
