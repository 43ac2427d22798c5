//! The shared limiter state: global bucket, bounded per-client table, and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{NotUntil, Quota, RateLimiter};
use tokio::time::Instant;

use super::clock::{TokioClock, TokioInstant};
use super::key::{ClientId, Identify};
use super::{RateLimitConfig, RateLimitScope, RateLimited};

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;
type Keyed = RateLimiter<ClientId, ClientTable, TokioClock, NoOpMiddleware<TokioInstant>>;

/// Run `retain_recent` + `shrink_to_fit` every this many per-client checks, so the table
/// shrinks back after a burst of clients even when it never reaches its bound.
const SWEEP_EVERY: u64 = 1_024;

/// A sweep triggered by a full table runs at most this often: entries only go stale as
/// time passes, so sweeping again sooner would scan the whole table for (almost) nothing
/// while a flood of new clients arrives.
const FORCED_SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The smallest `retry_after` reported; zero would invite an immediate, equally refused retry.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

/// The per-client state store, shared between governor (which owns a clone) and us (to
/// ask whether a client already has state and how many do).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientTable(Arc<DashMapStateStore<ClientId>>);

impl StateStore for ClientTable {
    type Key = ClientId;

    fn measure_and_replace<T, F, E>(&self, key: &ClientId, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<ClientId> for ClientTable {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counters for metrics, shared by all clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rejected_global: AtomicU64,
    pub(crate) rejected_per_client: AtomicU64,
    pub(crate) overflowed: AtomicU64,
}

/// Everything the layer and its services share.
pub(crate) struct Limits {
    global: Option<Direct>,
    per_client: Option<PerClient>,
    identify: Identify,
    pub(crate) counters: Counters,
}

/// The per-client limit: one bucket per tracked client, plus the shared buckets for
/// clients that cannot be identified or cannot be tracked.
struct PerClient {
    limiter: Keyed,
    table: ClientTable,
    unknown: Direct,
    overflow: Direct,
    max_tracked: usize,
    checks: AtomicU64,
    last_forced_sweep: Mutex<Option<Instant>>,
}

impl Limits {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        let direct = |quota| RateLimiter::direct_with_clock(quota, TokioClock);
        let per_client = config.per_client.map(|quota: Quota| {
            let table = ClientTable::default();
            PerClient {
                limiter: RateLimiter::new(quota, table.clone(), TokioClock),
                table,
                unknown: direct(quota),
                overflow: direct(quota),
                max_tracked: config.max_tracked_clients,
                checks: AtomicU64::new(0),
                last_forced_sweep: Mutex::new(None),
            }
        });
        Self {
            global: config.global.map(direct),
            per_client,
            identify: Identify::new(config.key),
            counters: Counters::default(),
        }
    }

    /// Takes one cell for `req` from its client's bucket, then from the global bucket.
    ///
    /// Per-client comes first so a client that is over its own limit is refused without
    /// draining global capacity that well-behaved clients could use. The converse cost
    /// is accepted: a request refused by the global limit has already spent a cell of its
    /// client's quota (governor cannot take back a cell).
    pub(crate) fn check<B>(&self, req: &http::Request<B>) -> Result<(), RateLimited> {
        if let Some(per_client) = &self.per_client {
            let client = self.identify.client_of(req);
            if let Err(not_until) = per_client.check(client, &self.counters) {
                self.counters
                    .rejected_per_client
                    .fetch_add(1, Ordering::Relaxed);
                return Err(refusal(RateLimitScope::PerClient, &not_until));
            }
        }
        if let Some(global) = &self.global
            && let Err(not_until) = global.check()
        {
            self.counters
                .rejected_global
                .fetch_add(1, Ordering::Relaxed);
            return Err(refusal(RateLimitScope::Global, &not_until));
        }
        Ok(())
    }

    pub(crate) fn tracked_clients(&self) -> usize {
        self.per_client.as_ref().map_or(0, |p| p.table.0.len())
    }
}

fn refusal(scope: RateLimitScope, not_until: &NotUntil<TokioInstant>) -> RateLimited {
    let retry_after = not_until.wait_time_from(TokioClock.now());
    RateLimited {
        scope,
        retry_after: retry_after.max(MIN_RETRY_AFTER),
    }
}

impl PerClient {
    fn check(
        &self,
        client: Option<ClientId>,
        counters: &Counters,
    ) -> Result<(), NotUntil<TokioInstant>> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        let Some(client) = client else {
            return self.unknown.check();
        };
        if self.has_room_for(&client) {
            self.limiter.check_key(&client)
        } else {
            counters.overflowed.fetch_add(1, Ordering::Relaxed);
            self.overflow.check()
        }
    }

    /// Whether `client` has (or may be given) its own bucket without exceeding the bound.
    ///
    /// Concurrent first requests of different new clients can race past the bound by at
    /// most the number of requests racing; it is a memory bound, not an exact count.
    fn has_room_for(&self, client: &ClientId) -> bool {
        let map = &self.table.0;
        if map.contains_key(client) || map.len() < self.max_tracked {
            return true;
        }
        self.forced_sweep();
        map.len() < self.max_tracked
    }

    fn forced_sweep(&self) {
        // Whoever holds the lock is already sweeping; don't queue up behind it.
        let Ok(mut last) = self.last_forced_sweep.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < FORCED_SWEEP_INTERVAL) {
            return;
        }
        *last = Some(now);
        self.sweep();
    }

    /// Drops the state of clients whose bucket is indistinguishable from a fresh one.
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The table can be large; show its size, not its contents.
        f.debug_struct("Limits")
            .field("global", &self.global.is_some())
            .field("per_client", &self.per_client.is_some())
            .field("identify", &self.identify)
            .field("tracked_clients", &self.tracked_clients())
            .field("counters", &self.counters)
            .finish()
    }
}
