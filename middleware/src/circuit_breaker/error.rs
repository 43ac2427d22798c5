//! The error leaf returned when the circuit refuses a call.

use std::time::Duration;

/// The circuit is open (or half-open with all probe slots taken); the inner service was
/// not called.
///
/// This says nothing new about the downstream, so retry policies must not retry it (see
/// [`retry`](crate::retry)). Applications usually map it to `UNAVAILABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open; retry in {retry_in:?}")]
pub struct CircuitOpen {
    /// When calls may be let through again: the rest of the open period; while half-open
    /// with every probe slot busy, `open_for` (the wait if the probes fail); zero if the
    /// circuit was closed again by the time this call was judged.
    pub retry_in: Duration,
}
