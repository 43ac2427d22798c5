//! How many attempts a request gets and how long to wait between them.

use std::time::Duration;

/// Limits of a [`RetryPolicy`](super::RetryPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Total attempts, including the first; 0 and 1 both mean "never retry" (a
    /// transient error is then still reported as `RetriesExhausted { attempts: 1 }`).
    pub max_attempts: u32,
    /// Ceiling of the delay before the first retry; it doubles for every further retry.
    pub base_delay: Duration,
    /// Largest ceiling the doubling may reach.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    /// Three attempts, with delays drawn from up to 100 ms, then up to 200 ms.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}
