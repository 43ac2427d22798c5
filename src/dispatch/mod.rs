//! The dispatcher: takes entries from the dispatch queue and hands their tasks to the Processor,
//! acknowledging an entry only once the Processor accepted it or the task ended FAILED.
//!
//! # How an entry travels
//! 1. CreateTask queued it atomically with the task (see [`crate::store`]).
//! 2. [`intake`] takes entries only when a slot is free (`TASK_PROCESSOR_CONCURRENCY` slots:
//!    backpressure — waiting tasks stay in the queue) and only while the circuit is not open.
//!    Entries whose holder died (idle past `TASK_DISPATCH_VISIBILITY_TIMEOUT`) are taken over
//!    first; one delivered more than `TASK_DISPATCH_MAX_DELIVERIES` times ends FAILED as poison.
//! 3. [`delivery`] gives each entry rounds of calls through the Processor client stack until its
//!    [`Answer`](crate::processor::Answer) settles it: accepted (acknowledged; the task goes on
//!    the watch list), rejected (FAILED with the Processor's words), or transient until
//!    `TASK_DISPATCH_MAX_ATTEMPTS` attempts or `TASK_DISPATCH_MAX_AGE` (FAILED with what
//!    happened). While the circuit is open an entry waits, spending no attempt.
//! 4. While it is held, its lease is renewed ([`leases`]); at shutdown, unfinished entries are
//!    given back so that another instance takes them at once. A cancelled task's delivery stops
//!    wherever it is ([`cancellations`]).
//!
//! The [`reaper`] runs beside it: watched tasks get their TTL when final, or end FAILED when
//! stalled. Every loop here runs under the [`Supervisor`]: if one dies, the service stops.

mod cancellations;
mod delivery;
mod intake;
mod leases;
mod reaper;
mod repeated;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use middleware::circuit_breaker::{BreakerHandle, BreakerState};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::DispatchConfig,
    events::Events,
    metrics::Metrics,
    processor::{Caller, Canceller},
    store::Store,
    supervisor::Supervisor,
};
use leases::Leases;

/// What the dispatcher needs.
#[allow(missing_debug_implementations)]
pub struct DispatcherParts {
    /// The store.
    pub store: Store,
    /// The Processor client stack.
    pub caller: Caller,
    /// The client stack's circuit breaker, if it has one.
    pub breaker: Option<BreakerHandle>,
    /// Settings.
    pub config: DispatchConfig,
    /// Entries held at once (and so ProcessVideo calls in flight).
    pub concurrency: usize,
    /// This instance's consumer name.
    pub consumer: String,
    /// Where the figures go.
    pub metrics: Metrics,
    /// Cancellations, which stop deliveries.
    pub events: Events,
    /// CancelVideo, for a call cut by a cancellation.
    pub canceller: Canceller,
}

/// A running dispatcher (and its reaper).
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    abort: CancellationToken,
    intake: JoinHandle<()>,
    renewal: JoinHandle<()>,
    reaper: JoinHandle<()>,
}

/// Everything the dispatcher's tasks share.
struct Shared {
    store: Store,
    caller: Caller,
    breaker: Option<BreakerHandle>,
    config: DispatchConfig,
    consumer: String,
    metrics: Metrics,
    leases: Arc<Leases>,
    canceller: Canceller,
    /// Set at shutdown: take no more entries, stop waiting.
    stop: CancellationToken,
    /// Set when the grace period is over: abandon calls in flight.
    abort: CancellationToken,
}

impl Dispatcher {
    /// Starts the intake loop, the lease renewal and the reaper, under `supervisor`.
    pub fn spawn(parts: DispatcherParts, supervisor: &Supervisor) -> Self {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let leases = Arc::new(Leases::new(
            parts.store.clone(),
            parts.consumer.clone(),
            parts.config.visibility_timeout,
            parts.metrics.dispatch_leases_lost.clone(),
        ));
        let shared = Arc::new(Shared {
            store: parts.store,
            caller: parts.caller,
            breaker: parts.breaker,
            config: parts.config,
            consumer: parts.consumer,
            metrics: parts.metrics,
            leases: leases.clone(),
            canceller: parts.canceller,
            stop: stop.clone(),
            abort: abort.clone(),
        });
        tracing::info!(consumer = %shared.consumer, concurrency = parts.concurrency, "dispatcher started");
        let reaper = supervisor.spawn(
            "reaper",
            reaper::run(
                shared.store.clone(),
                shared.config.clone(),
                shared.metrics.clone(),
                stop.clone(),
            ),
        );
        let renewal = supervisor.spawn("lease renewal", leases.clone().renew_until(abort.clone()));
        supervisor.spawn(
            "cancellations",
            cancellations::follow(parts.events, leases, shared.store.clone(), stop.clone()),
        );
        let intake = supervisor.spawn("dispatcher", intake::run(shared, parts.concurrency));
        Self {
            stop,
            abort,
            intake,
            renewal,
            reaper,
        }
    }

    /// Stops taking entries, lets calls in flight finish for up to `grace`, then gives back
    /// whatever is unfinished so that another instance takes it at once.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(grace, &mut self.intake).await.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; giving back the entries still in flight"
            );
            self.abort.cancel();
            let _ = (&mut self.intake).await;
        }
        self.abort.cancel();
        let _ = self.renewal.await;
        let _ = self.reaper.await;
        tracing::info!("dispatcher stopped");
    }
}

/// A unique consumer name for this instance: host, process id and a random part.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "task-service".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    /// Sleeps, unless shutdown comes first.
    async fn pause(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.stop.cancelled() => {}
        }
    }

    /// Waits while the circuit is open. After a rejection by the breaker (`rejected`), waits for
    /// its next change first, so that half-open probes are not raced. False at shutdown.
    async fn wait_while_open(&self, rejected: bool) -> bool {
        let Some(breaker) = &self.breaker else {
            return !self.stop.is_cancelled();
        };
        let mut states = breaker.subscribe();
        let wait = async {
            if rejected {
                let _ = states.changed().await;
            }
            let _ = states.wait_for(|state| *state != BreakerState::Open).await;
        };
        tokio::select! {
            () = wait => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// Doubling delays from 100 ms to 5 s, for retrying the store.
#[derive(Debug)]
struct RetryDelay(Duration);

impl Default for RetryDelay {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl RetryDelay {
    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        delay
    }
}
