//! Exponential backoff ceilings and full jitter.

use std::time::Duration;

use rand::Rng;

/// Picks the actual delay given the ceiling for this retry.
///
/// A plain function pointer so policies stay `Clone + Send + Sync` and tests can swap
/// in a deterministic one (for example `|ceiling| ceiling`).
pub type Jitter = fn(Duration) -> Duration;

/// "Full jitter": a uniformly random delay in `[0, ceiling]`.
///
/// Spreading retries over the whole interval (rather than around its end) keeps clients
/// that failed together from retrying together, which is what lets an overloaded
/// downstream recover.
pub fn full_jitter(ceiling: Duration) -> Duration {
    rand::rng().random_range(Duration::ZERO..=ceiling)
}

/// The ceiling before retry number `retry` (1 for the first retry):
/// `min(max, base * 2^(retry - 1))`, without overflowing.
pub(super) fn ceiling(base: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_max() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        let got: Vec<_> = (1..=6).map(|n| ceiling(base, max, n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(
            ceiling(base, Duration::MAX, 200),
            Duration::MAX.min(base * u32::MAX)
        );
    }

    #[test]
    fn full_jitter_stays_within_bounds_and_varies() {
        let ceiling = Duration::from_millis(100);
        let samples: Vec<_> = (0..200).map(|_| full_jitter(ceiling)).collect();
        assert!(samples.iter().all(|d| *d <= ceiling));
        assert!(
            samples.iter().any(|d| *d != samples[0]),
            "jitter is constant"
        );
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
