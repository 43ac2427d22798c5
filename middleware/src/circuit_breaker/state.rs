//! The observable state of a breaker.

use std::fmt;

/// Where the breaker is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`](super::CircuitOpen) until `open_for` has passed.
    Open,
    /// A limited number of probe calls go through; their outcome closes or re-opens it.
    HalfOpen,
}

impl BreakerState {
    /// A stable lowercase name, for metric labels and health output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Whether a call may currently be let through (closed, or half-open with a free slot).
    pub fn allows_calls(self) -> bool {
        !matches!(self, Self::Open)
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
