//! Figures the dispatcher and reaper keep: what happened to the entries they handled.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The dispatcher's counts since start.
#[derive(Debug, Default)]
pub struct DispatchCounters {
    /// Tasks the Processor accepted.
    pub accepted: Counter,
    /// Tasks the service ended FAILED (every reason).
    pub failed: Counter,
    /// Of those, tasks whose attempts ran out.
    pub exhausted: Counter,
    /// Of those, tasks the Processor never accepted within the maximum age.
    pub expired: Counter,
    /// Of those, tasks whose entry kept losing its consumer.
    pub poisoned: Counter,
    /// Of those, accepted tasks with no update for the stall timeout.
    pub stalled: Counter,
    /// Entries taken over from an instance that stopped renewing them (rescues).
    pub reclaimed: Counter,
    /// Held entries whose lease another instance took.
    pub leases_lost: Counter,
    /// Calls the circuit breaker held back.
    pub deferred: Counter,
}
