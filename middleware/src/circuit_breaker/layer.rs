//! The layer that wraps services in [`CircuitBreaker`], all sharing one breaker.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::breaker::Breaker;
use super::{BreakerHandle, CircuitBreaker, CircuitBreakerConfig};

/// Wraps services in a [`CircuitBreaker`]; see the [module docs](super).
///
/// Every service made by this layer or its clones shares one breaker, so build one
/// layer per downstream you want to protect.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C> {
    breaker: Arc<Breaker>,
    classify: C,
}

impl<C> CircuitBreakerLayer<C> {
    /// A closed breaker. `classify` turns each completed call into a [`CallOutcome`]:
    /// a `C: Fn(Result<&Response, &BoxError>) -> CallOutcome + Clone`, e.g.
    /// [`classify_errors_as_failures`](super::classify_errors_as_failures) or a
    /// closure that reads the gRPC status.
    ///
    /// [`CallOutcome`]: super::CallOutcome
    ///
    /// # Panics
    ///
    /// If `failure_rate` is outside `0..=1`, `half_open_probes` is 0 or `window` is zero.
    pub fn new(config: CircuitBreakerConfig, classify: C) -> Self {
        Self {
            breaker: Arc::new(Breaker::new(config)),
            classify,
        }
    }

    /// A handle to observe this breaker's state and counters.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.breaker.clone())
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classify.clone())
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}
