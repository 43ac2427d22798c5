//! A sliding time window of call and failure counts, kept as a ring of buckets.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window: memory and work per call stay constant however busy the
/// downstream is, at the cost of the window sliding in tenths.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-width slot since `origin` these counts belong to.
    slot: u64,
    calls: u64,
    failures: u64,
}

/// Calls and failures over roughly the last `window`.
#[derive(Debug)]
pub(super) struct Window {
    origin: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    pub(super) fn new(window: Duration, origin: Instant) -> Self {
        Self {
            origin,
            width: (window / BUCKETS as u32).max(Duration::from_nanos(1)),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn slot(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        (since / self.width.as_nanos()) as u64
    }

    pub(super) fn record(&mut self, now: Instant, failure: bool) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u64::from(failure);
    }

    /// `(calls, failures)` in the buckets that still overlap the window ending at `now`.
    pub(super) fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| b.slot <= current && current - b.slot < BUCKETS as u64)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    pub(super) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_after_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        w.record(t0, true);
        w.record(t0 + Duration::from_millis(500), false);
        w.record(t0 + Duration::from_secs(5), true);
        assert_eq!(w.totals(t0 + Duration::from_secs(5)), (3, 2));
        // The first bucket (0..1 s) leaves the window once the 10th bucket after it starts.
        assert_eq!(w.totals(t0 + Duration::from_millis(9_999)), (3, 2));
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (1, 1));
        assert_eq!(w.totals(t0 + Duration::from_secs(15)), (0, 0));
    }

    #[test]
    fn reused_buckets_start_from_zero() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        w.record(t0, true);
        // Same ring position, ten slots later.
        w.record(t0 + Duration::from_secs(10), false);
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (1, 0));
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (0, 0));
    }
}
