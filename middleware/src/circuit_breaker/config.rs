//! When the breaker opens, how long it stays open, and how it probes for recovery.

use std::time::Duration;

/// Tuning of a [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// The circuit opens when either trigger fires:
/// - `consecutive_failures` failures in a row (0 disables this trigger), or
/// - at least `minimum_calls` calls in the last `window`, of which a fraction of at
///   least `failure_rate` failed (checked whenever a failure is recorded; set
///   `minimum_calls` to `u32::MAX` to disable this trigger).
///
/// The first catches a downstream that is plainly down within a few calls; the second
/// catches one that fails a large share of a busy stream of calls, which a single
/// success would keep resetting for the first.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Failures in a row that open the circuit; 0 disables this trigger.
    pub consecutive_failures: u32,
    /// Failure fraction (0..=1) over `window` that opens the circuit.
    pub failure_rate: f64,
    /// Length of the sliding window for `failure_rate`. It is kept as ten buckets, so
    /// it slides in steps of a tenth of its length.
    pub window: Duration,
    /// Calls needed in the window before `failure_rate` is judged (treated as at least 1).
    pub minimum_calls: u32,
    /// How long the circuit stays open before letting probes through.
    pub open_for: Duration,
    /// Probes allowed in flight at once while half-open (at least 1).
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    /// Opens after 5 failures in a row, or at 50% failures over 30 s with at least
    /// 20 calls; stays open 10 s; then lets one probe through at a time.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(30),
            minimum_calls: 20,
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        }
    }
}

impl CircuitBreakerConfig {
    /// Panics with a clear message if the configuration cannot work.
    pub(super) fn assert_valid(&self) {
        assert!(
            (0.0..=1.0).contains(&self.failure_rate),
            "circuit breaker failure_rate must be within 0..=1, got {}",
            self.failure_rate
        );
        assert!(
            self.half_open_probes >= 1,
            "circuit breaker half_open_probes must be at least 1, or the circuit never closes"
        );
        assert!(
            !self.window.is_zero(),
            "circuit breaker window must be longer than zero"
        );
    }
}
