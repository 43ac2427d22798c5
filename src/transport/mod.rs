//! Connections, before a server sees them: an accept loop with a cap on open connections and a
//! backoff instead of a spin ([`listener`]), a connection that closes itself when idle or too old
//! and tells the server who the peer is ([`conn`]), and TLS whose certificates follow their
//! files ([`tls`]). Both the gRPC server and the metrics endpoint take their connections here.

pub mod conn;
pub mod listener;
pub mod tls;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

pub use conn::{Conn, Lifetime, PeerInfo};
pub use listener::{ListenerLimits, accept};
pub use tls::{ReloadingTls, TlsError, TlsFiles};

/// File descriptors kept for everything but client connections (Redis, the Processor, files).
const RESERVED_FDS: u64 = 256;

/// `wanted`, or less: enough below the process's file-descriptor limit that the service can still
/// open what it needs when every connection slot is taken (said at start when it is lowered).
pub fn under_fd_limit(wanted: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let fits = limit.saturating_sub(RESERVED_FDS).max(1);
    if (wanted as u64) <= fits {
        return wanted;
    }
    tracing::warn!(
        wanted,
        allowed = fits,
        fd_limit = limit,
        "TASK_MAX_CONNECTIONS is above what the file-descriptor limit leaves; using the lower cap (raise `ulimit -n` for more)"
    );
    fits as usize
}

/// What a listener's connections did, for the metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections closed at once because the cap was reached.
    pub refused: Counter,
    /// Failed accepts (for lack of file descriptors, mostly).
    pub accept_errors: Counter,
    /// TLS handshakes that failed (no or a bad client certificate, not TLS at all).
    pub tls_failures: Counter,
    /// Connections closed for sending no preface (or TLS handshake) in time.
    pub preface_timeouts: Counter,
    /// Connections closed for starting with something that is not HTTP/2.
    pub bad_prefaces: Counter,
    limit: AtomicUsize,
    open: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl ConnectionStats {
    fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn track(&self, slots: &Arc<tokio::sync::Semaphore>) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(slots.clone());
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        let limit = self.limit.load(Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |slots| limit.saturating_sub(slots.available_permits()))
    }

    /// The cap on open connections.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
}

/// Lets a log line through at most once per period, and says how many it held back since.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// At most one line a minute.
    pub fn per_minute() -> Self {
        Self {
            period: Duration::from_secs(60),
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.period) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_lets_one_line_a_minute_through_and_counts_the_rest() {
        let mut throttle = Throttle::per_minute();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(throttle.allow(), Some(2));
    }
}
