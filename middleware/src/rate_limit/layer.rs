//! The layer that wraps services in [`RateLimit`], and the metrics it exposes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tower_layer::Layer;

use super::limiter::Limits;
use super::{RateLimit, RateLimitConfig, RateLimitScope};

/// Applies global and per-client rate limits; see the [module docs](super).
///
/// Clones share one set of buckets and counters, so keep a clone to read metrics after
/// handing the layer to the server.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: Arc<Limits>,
}

impl RateLimitLayer {
    /// Builds the limiter; buckets start full.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            limits: Arc::new(Limits::new(config)),
        }
    }

    /// Requests refused by any limit since the layer was built.
    pub fn rejected_total(&self) -> u64 {
        self.rejected(RateLimitScope::Global) + self.rejected(RateLimitScope::PerClient)
    }

    /// Requests refused by the limit of the given scope.
    pub fn rejected(&self, scope: RateLimitScope) -> u64 {
        let counters = &self.limits.counters;
        match scope {
            RateLimitScope::Global => counters.rejected_global.load(Ordering::Relaxed),
            RateLimitScope::PerClient => counters.rejected_per_client.load(Ordering::Relaxed),
        }
    }

    /// Requests from new clients that found the table full and were counted under the
    /// shared overflow bucket. A steadily rising value means `max_tracked_clients` is
    /// too small for the real client population (or someone is minting identities).
    pub fn overflowed_total(&self) -> u64 {
        self.limits.counters.overflowed.load(Ordering::Relaxed)
    }

    /// Clients that currently have their own bucket.
    pub fn tracked_clients(&self) -> usize {
        self.limits.tracked_clients()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limits.clone())
    }
}
