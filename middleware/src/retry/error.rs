//! The error leaves of a request whose retries ended without success.
//!
//! Their `Display` does not repeat the cause: it is reachable through
//! [`source`](std::error::Error::source) (and the public `source` field), as the Rust API
//! guidelines ask, so error-chain printers don't show it twice.

use crate::BoxError;

/// Every allowed attempt failed with a retryable error.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {attempts} attempts")]
pub struct RetriesExhausted {
    /// Attempts made, including the first (equals `max_attempts`).
    pub attempts: u32,
    /// The last attempt's error.
    #[source]
    pub source: BoxError,
}

/// A retryable error, but the shared retry budget refused another attempt: too large a
/// share of recent traffic is already retries, so retrying now would only add load.
#[derive(Debug, thiserror::Error)]
#[error("retry budget exhausted after {attempts} attempts")]
pub struct RetryBudgetExhausted {
    /// Attempts made, including the first.
    pub attempts: u32,
    /// The last attempt's error.
    #[source]
    pub source: BoxError,
}
