//! The error leaf returned when a request is over a rate limit.

use std::fmt;
use std::time::Duration;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitScope {
    /// The server-wide limit shared by all clients.
    Global,
    /// The limit of the client the request was attributed to.
    PerClient,
}

impl RateLimitScope {
    /// A stable lowercase name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::PerClient => "per_client",
        }
    }
}

impl fmt::Display for RateLimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request was refused by a rate limit; the inner service was not called.
///
/// Applications usually map this to `RESOURCE_EXHAUSTED` with a retry hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{scope} rate limit exceeded; retry after {retry_after:?}")]
pub struct RateLimited {
    /// The limit that refused the request.
    pub scope: RateLimitScope,
    /// How long until the same request would conform to that limit (at least 1 ms).
    pub retry_after: Duration,
}
