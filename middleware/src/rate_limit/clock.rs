//! A governor clock backed by `tokio::time`, so rate limits follow paused time in tests.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// Reads `tokio::time::Instant::now()`.
///
/// Outside tests this is the monotonic system clock (the same source as governor's
/// `MonotonicClock`); under `tokio::time::pause()` it is the runtime's mock clock, which
/// is what makes the limiter's decisions deterministic in tests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

/// A `tokio::time::Instant` that governor can do arithmetic on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(duration.into())
            .map_or(*self, TokioInstant)
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}
