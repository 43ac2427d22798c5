//! The dispatcher: takes entries from the dispatch queue and hands their tasks to the Processor,
//! acknowledging an entry only once the Processor accepted it or the task ended FAILED.
//!
//! # How an entry travels
//! 1. CreateTask queued it atomically with the task (see [`crate::store`]).
//! 2. The main loop takes entries only when a slot is free (`TASK_PROCESSOR_CONCURRENCY` slots:
//!    backpressure — waiting tasks stay in the queue) and only while the circuit is not open.
//!    Entries whose holder died (idle past `TASK_DISPATCH_VISIBILITY_TIMEOUT`) are taken over
//!    first; one delivered more than `TASK_DISPATCH_MAX_DELIVERIES` times ends FAILED as poison.
//! 3. Each entry gets rounds of calls through the client stack (retry → circuit breaker →
//!    concurrency → deadline) until an [`outcome::Outcome`] settles it: accepted (acknowledged;
//!    the task goes on the watch list), rejected (FAILED with the Processor's words), or
//!    transient until `TASK_DISPATCH_MAX_ATTEMPTS` attempts or `TASK_DISPATCH_MAX_AGE` (FAILED
//!    with what happened). While the circuit is open an entry waits, spending no attempt.
//! 4. While it is held, its lease is renewed ([`lease`]); at shutdown, unfinished entries are
//!    given back so that another instance takes them at once.
//!
//! The [`reaper`] runs beside it: watched tasks get their TTL when final, or end FAILED when
//! stalled.

pub mod lease;
pub mod outcome;
pub mod reaper;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use middleware::circuit_breaker::{BreakerHandle, BreakerState};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower::{ServiceExt, util::BoxCloneSyncService};
use tracing::{Instrument, field::Empty};

use outcome::Outcome as CallResult;

use crate::{
    config::DispatchConfig,
    metrics::{Metrics, Outcome},
    processor::{ProcessCall, client::BoxError},
    store::{AcceptOutcome, FailOutcome, FailRequest, QueueEntry, Store, StoreError},
    task::{TaskId, TaskStatus, now_timestamp},
};

/// The Processor client stack as the dispatcher sees it.
pub type Caller = BoxCloneSyncService<ProcessCall, (), BoxError>;

/// How long one blocking queue read waits for a new entry.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// Everything the dispatcher's tasks share.
struct Shared {
    store: Store,
    caller: Caller,
    breaker: Option<BreakerHandle>,
    config: DispatchConfig,
    consumer: String,
    metrics: Metrics,
    /// Entries held by this instance, whose leases are renewed; `true` once the write that ends
    /// the entry here (acknowledging it) has been sent.
    held: Mutex<HashMap<String, bool>>,
    /// Set at shutdown: take no more entries, stop waiting.
    stop: CancellationToken,
    /// Set when the grace period is over: abandon calls in flight.
    abort: CancellationToken,
}

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
}

/// A running dispatcher (and its reaper).
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    abort: CancellationToken,
    main: JoinHandle<()>,
    reaper: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts the dispatcher, its lease renewal and the reaper.
    pub fn spawn(parts: DispatcherParts) -> Self {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let concurrency = parts.concurrency;
        let shared = Arc::new(Shared {
            store: parts.store,
            caller: parts.caller,
            breaker: parts.breaker,
            config: parts.config,
            consumer: parts.consumer,
            metrics: parts.metrics,
            held: Mutex::default(),
            stop: stop.clone(),
            abort: abort.clone(),
        });
        tracing::info!(consumer = %shared.consumer, concurrency, "dispatcher started");
        let reaper = tokio::spawn(reaper::run(
            shared.store.clone(),
            shared.config.clone(),
            shared.metrics.clone(),
            stop.clone(),
        ));
        let main = tokio::spawn(run(shared, concurrency));
        Self {
            stop,
            abort,
            main,
            reaper,
        }
    }

    /// Stops taking entries, lets calls in flight finish for up to `grace`, then gives back
    /// whatever is unfinished so that another instance takes it at once.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(grace, &mut self.main).await.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; giving back the entries still in flight"
            );
            self.abort.cancel();
            let _ = (&mut self.main).await;
        }
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
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The main loop: take entries while slots are free and the circuit allows, hand each to a task.
async fn run(shared: Arc<Shared>, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut work = JoinSet::new();
    let renewals = tokio::spawn(lease::renew(shared.clone()));
    let mut retry = RetryDelay::default();
    while !shared.stop.is_cancelled() {
        match shared.store.ensure_queue().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare the dispatch queue; retrying");
                shared.pause(retry.next()).await;
            }
        }
    }
    let mut next_reclaim = Instant::now();
    while !shared.stop.is_cancelled() {
        while work.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shared.stop.cancelled() => break,
        };
        if !shared.wait_while_open(false).await {
            break;
        }
        let mut permits = vec![first];
        while permits.len() < shared.config.batch {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let mut entries = Vec::new();
        if Instant::now() >= next_reclaim {
            next_reclaim = Instant::now() + shared.config.reaper_interval;
            match shared.reclaim(permits.len()).await {
                Ok(taken) => entries = taken,
                Err(e) => tracing::warn!(error = %e, "cannot look for abandoned entries"),
            }
        }
        let wanted = permits.len() - entries.len();
        if wanted > 0 {
            let block = if entries.is_empty() {
                READ_BLOCK.min(shared.config.reaper_interval)
            } else {
                Duration::ZERO
            };
            match shared.store.read_new(&shared.consumer, wanted, block).await {
                Ok(new) => {
                    retry = RetryDelay::default();
                    entries.extend(new);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the dispatch queue; retrying");
                    shared.pause(retry.next()).await;
                }
            }
        }
        for (entry, permit) in entries.into_iter().zip(permits) {
            shared.hold(&entry.id);
            work.spawn(deliver(shared.clone(), entry, permit));
        }
    }
    while work.join_next().await.is_some() {}
    renewals.abort();
}

/// Carries one entry to its end, in a span that joins the creating request's trace.
async fn deliver(shared: Arc<Shared>, entry: QueueEntry, slot: OwnedSemaphorePermit) {
    let span = tracing::info_span!(
        "dispatch",
        otel.name = "dispatch ProcessVideo",
        task.id = %entry.task_id,
        dispatch.entry = %entry.id,
        dispatch.deliveries = entry.deliveries,
        dispatch.outcome = Empty,
    );
    observability::propagation::set_parent_from_fields(&span, &entry.trace);
    deliver_in_span(shared, entry, slot).instrument(span).await;
}

/// A verdict, then the store write that records it.
async fn deliver_in_span(shared: Arc<Shared>, entry: QueueEntry, _slot: OwnedSemaphorePermit) {
    let verdict = if TaskId::parse(&entry.task_id).is_err() {
        tracing::warn!(entry = %entry.id, task.id = %entry.task_id, "dropping a dispatch entry without a valid task id");
        Verdict::Fail(Outcome::Malformed, "malformed dispatch entry".into())
    } else {
        shared.verdict(&entry).await
    };
    tracing::Span::current().record("dispatch.outcome", verdict.name());
    shared.settling(&entry.id);
    match verdict {
        Verdict::Accepted => {
            let next_check = now_ms() + shared.config.watch_interval.as_millis() as u64;
            if let Some(accepted) = shared
                .record(|| shared.store.accepted(&entry, next_check))
                .await
            {
                shared.metrics.dispatch_accepted.inc();
                if let AcceptOutcome::Final(status) = accepted {
                    shared.metrics.ended(Outcome::of_status(&status));
                }
            }
        }
        Verdict::Fail(outcome, message) => {
            let now = now_timestamp();
            let request = FailRequest {
                task_id: &entry.task_id,
                message: &message,
                now: &now,
                expect_updated_at: None,
                entry_id: Some(&entry.id),
            };
            if let Some(FailOutcome::Failed) = shared.record(|| shared.store.fail(request)).await {
                tracing::info!(task.id = %entry.task_id, %message, "task failed");
                shared.metrics.ended(outcome);
            }
        }
        Verdict::GiveBack => {
            let ids = [entry.id.clone()];
            if let Err(e) = shared
                .store
                .lease(&shared.consumer, shared.config.visibility_timeout, &ids)
                .await
            {
                tracing::warn!(error = %e, entry = %entry.id, "could not give the entry back; it will be taken over after the visibility timeout");
            }
        }
    }
    shared.release(&entry.id);
}

/// How an entry ends here.
enum Verdict {
    /// The Processor has the task.
    Accepted,
    /// The task ends FAILED with this message.
    Fail(Outcome, String),
    /// Shutting down: leave the entry to another instance.
    GiveBack,
}

impl Verdict {
    fn name(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Fail(..) => "failed",
            Self::GiveBack => "given back",
        }
    }
}

impl Shared {
    fn hold(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), false);
    }

    /// The entry's ending write is on its way: its leaving the pending list is no lost lease.
    fn settling(&self, id: &str) {
        if let Some(settling) = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            *settling = true;
        }
    }

    fn release(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn held_ids(&self) -> Vec<String> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Those of `ids` still held here with their ending write not sent yet.
    fn unsettled(&self, ids: Vec<String>) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        ids.into_iter()
            .filter(|id| held.get(id) == Some(&false))
            .collect()
    }

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

    /// Takes over entries whose holder stopped renewing their lease; ends as poison those
    /// delivered too often.
    async fn reclaim(&self, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let visibility = self.config.visibility_timeout;
        let held: HashSet<String> = self.held_ids().into_iter().collect();
        let idle: Vec<_> = self
            .store
            .idle_entries(visibility, max)
            .await?
            .into_iter()
            .filter(|p| !held.contains(&p.id))
            .collect();
        if idle.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = idle.iter().map(|p| p.id.clone()).collect();
        let mut claimed = self.store.claim(&self.consumer, visibility, &ids).await?;
        let mut taken = Vec::with_capacity(claimed.len());
        for mut entry in claimed.drain(..) {
            let before = idle.iter().find(|p| p.id == entry.id);
            entry.deliveries = before.map_or(1, |p| p.deliveries + 1);
            self.metrics.dispatch_rescues.inc();
            tracing::info!(
                entry = %entry.id,
                task.id = %entry.task_id,
                from = before.map_or("?", |p| p.consumer.as_str()),
                deliveries = entry.deliveries,
                "took over an abandoned dispatch entry"
            );
            if entry.deliveries > self.config.max_deliveries {
                let message = format!(
                    "dispatch abandoned after {} deliveries (TASK_DISPATCH_MAX_DELIVERIES={}): each time, \
                     the service instance handling the task stopped before the processor answered",
                    entry.deliveries - 1,
                    self.config.max_deliveries
                );
                let now = now_timestamp();
                let request = FailRequest {
                    task_id: &entry.task_id,
                    message: &message,
                    now: &now,
                    expect_updated_at: None,
                    entry_id: Some(&entry.id),
                };
                if self.store.fail(request).await? == FailOutcome::Failed {
                    self.metrics.ended(Outcome::Poisoned);
                }
                continue;
            }
            taken.push(entry);
        }
        Ok(taken)
    }

    /// Rounds of calls until the entry's fate is known.
    async fn verdict(&self, entry: &QueueEntry) -> Verdict {
        let started = Instant::now();
        let max_age = self.config.max_age;
        let mut attempts = 0u32;
        let mut last_error: Option<String> = None;
        let mut rejected_by_circuit = false;
        loop {
            let age = Duration::from_millis(now_ms().saturating_sub(entry.enqueued_at_ms()));
            if age >= max_age {
                let last = last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                return Verdict::Fail(
                    Outcome::Expired,
                    format!(
                        "the processor did not accept the task within {} (TASK_DISPATCH_MAX_AGE){last}",
                        humantime::format_duration(max_age)
                    ),
                );
            }
            let waited = tokio::select! {
                open = self.wait_while_open(rejected_by_circuit) => open,
                () = tokio::time::sleep(max_age - age) => continue,
            };
            if !waited {
                return Verdict::GiveBack;
            }
            let call = ProcessCall::new(&entry.task_id, &entry.original_file_key, &entry.trace);
            let result = tokio::select! {
                result = self.caller.clone().oneshot(call.clone()) => result,
                () = self.abort.cancelled() => return Verdict::GiveBack,
            };
            attempts += call.attempts();
            self.metrics
                .dispatch_retries
                .inc_by(u64::from(call.attempts().saturating_sub(1)));
            rejected_by_circuit = false;
            match outcome::classify(result) {
                CallResult::Accepted => return Verdict::Accepted,
                CallResult::Rejected(message) => {
                    return Verdict::Fail(
                        Outcome::Rejected,
                        format!("the processor rejected the task: {message}"),
                    );
                }
                CallResult::CircuitOpen => {
                    self.metrics.dispatch_deferred.inc();
                    rejected_by_circuit = true;
                }
                CallResult::Transient { message, deadline } => {
                    if deadline && self.processor_has_it(&entry.task_id).await {
                        return Verdict::Accepted;
                    }
                    if attempts >= self.config.max_attempts {
                        return Verdict::Fail(
                            Outcome::Unreachable,
                            format!(
                                "the processor was unreachable after {attempts} attempts over {}: {message}",
                                humantime::format_duration(Duration::from_secs(
                                    started.elapsed().as_secs()
                                ))
                            ),
                        );
                    }
                    last_error = Some(message);
                    self.pause(self.config.round_delay).await;
                    if self.stop.is_cancelled() {
                        return Verdict::GiveBack;
                    }
                }
            }
        }
    }

    /// After a deadline: a Processor that answers only when finished may be working on the task;
    /// if it already wrote PROCESSING (or a final state), it has the task.
    async fn processor_has_it(&self, task_id: &str) -> bool {
        match self.store.read(task_id).await {
            Ok(Some(record)) => record.known_status() != Some(TaskStatus::Pending),
            _ => false,
        }
    }

    /// Retries a store write until it succeeds; gives up only when the grace period is over
    /// (the entry is then delivered again later, which the Processor tolerates).
    async fn record<T, F, Fut>(&self, write: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut retry = RetryDelay::default();
        loop {
            match write().await {
                Ok(value) => return Some(value),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record a dispatch result; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(retry.next()) => {}
                        () = self.abort.cancelled() => return None,
                    }
                }
            }
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
