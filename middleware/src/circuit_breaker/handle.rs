//! A read-only view of a breaker, for health checks, metrics and dispatchers.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::BreakerState;
use super::breaker::{Breaker, Failure};

/// Observes a breaker without being able to make calls through it.
///
/// Obtained from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle);
/// clones observe the same breaker.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    breaker: Arc<Breaker>,
}

impl BreakerHandle {
    pub(super) fn new(breaker: Arc<Breaker>) -> Self {
        Self { breaker }
    }

    /// The current state. HalfOpen is reported as soon as `open_for` has passed, even if
    /// no call has arrived since.
    pub fn state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// A receiver that sees every transition.
    ///
    /// A dispatcher can park until calls are allowed again with
    /// `rx.wait_for(|s| s.allows_calls()).await`. The Open → HalfOpen change is pushed
    /// by a timer task when `open_for` ends, so waiting works without polling (this
    /// needs the breaker to have been opened inside a tokio runtime, as it always is in
    /// a server).
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.breaker.subscribe()
    }

    /// How many times the circuit has opened (including re-opens after a failed probe).
    pub fn opened_total(&self) -> u64 {
        self.breaker.opened_total()
    }

    /// Calls refused with [`CircuitOpen`](super::CircuitOpen) without reaching the
    /// inner service.
    pub fn rejected_total(&self) -> u64 {
        self.breaker.rejected_total()
    }

    /// When the circuit opened, if it is not closed: the start of the current outage (re-opens
    /// after a failed probe keep it).
    pub fn opened_at(&self) -> Option<SystemTime> {
        self.breaker.opened_at()
    }

    /// The last call counted as a failure, open or not.
    pub fn last_failure(&self) -> Option<Failure> {
        self.breaker.last_failure()
    }
}
