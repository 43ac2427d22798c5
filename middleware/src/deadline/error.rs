//! The error leaf returned when a request overruns its deadline.

use std::time::Duration;

/// The request did not complete within its effective timeout.
///
/// The inner future has been dropped by the time this error is seen, so the handler's
/// work was cancelled. Applications usually map this to `DEADLINE_EXCEEDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request deadline of {timeout:?} exceeded")]
pub struct DeadlineExceeded {
    /// The effective timeout that was enforced (client value or default, capped).
    pub timeout: Duration,
}
