//! The shared state machine behind every clone of a breaker, and the permits it hands out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::window::Window;
use super::{BreakerState, CallOutcome, CircuitBreakerConfig, CircuitOpen};

/// One breaker, shared by the layer, its services, their futures and the handles.
pub(crate) struct Breaker {
    config: CircuitBreakerConfig,
    core: Mutex<Core>,
    state_tx: watch::Sender<BreakerState>,
    opened_total: AtomicU64,
    rejected_total: AtomicU64,
}

/// Mutable state, behind one short-held lock (no awaits, no calls out while held).
struct Core {
    phase: Phase,
    /// Bumped on every transition. A permit records its outcome only if the epoch it
    /// was issued in is still current: a slow call started before the circuit opened
    /// must not re-open it later, nor count in a later closed period.
    epoch: u64,
    consecutive_failures: u32,
    window: Window,
    /// The task that flips Open → HalfOpen for subscribers; see [`Breaker::open`].
    timer: Option<AbortHandle>,
    /// When the circuit last went from closed to open (kept through half-open and re-opens,
    /// cleared when it closes), by the wall clock: for people reading a dashboard.
    opened_at: Option<SystemTime>,
    /// The last call counted as a failure.
    last_failure: Option<Failure>,
}

/// A call the classifier counted as a failure, as a handle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When it completed, by the wall clock.
    pub at: SystemTime,
    /// Its error's text (at most [`Failure::MAX_MESSAGE`] bytes).
    pub message: String,
}

impl Failure {
    /// Longest message kept: an error's text is the downstream's to choose.
    pub const MAX_MESSAGE: usize = 512;

    fn new(message: String) -> Self {
        let mut message = message;
        if message.len() > Self::MAX_MESSAGE {
            let mut end = Self::MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self {
            at: SystemTime::now(),
            message,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Breaker {
    /// # Panics
    ///
    /// If `config` is invalid (see [`CircuitBreakerConfig`]).
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        config.assert_valid();
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        Self {
            core: Mutex::new(Core {
                phase: Phase::Closed,
                epoch: 0,
                consecutive_failures: 0,
                window: Window::new(config.window, Instant::now()),
                timer: None,
                opened_at: None,
                last_failure: None,
            }),
            config,
            state_tx,
            opened_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
        }
    }

    /// Locks the core, first applying the time-driven Open → HalfOpen transition.
    ///
    /// Doing it here, lazily, means every reader and every admission decision sees
    /// HalfOpen as soon as `open_for` has passed, whether or not the timer task has run.
    fn lock(&self) -> MutexGuard<'_, Core> {
        // The core is consistent after every statement that can panic, so a poisoned
        // lock is still safe to use; a breaker must not take the service down with it.
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Open { until } = core.phase
            && Instant::now() >= until
        {
            self.transition(
                &mut core,
                Phase::HalfOpen {
                    probes_in_flight: 0,
                },
            );
        }
        core
    }

    fn transition(&self, core: &mut Core, phase: Phase) {
        core.phase = phase;
        core.epoch += 1;
        core.consecutive_failures = 0;
        core.window.clear();
        self.state_tx.send_replace(phase.state());
        tracing::debug!(state = %phase.state(), "circuit breaker transition");
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.lock().phase.state()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<BreakerState> {
        // Apply a due HalfOpen first, so a new subscriber never starts from a stale Open.
        drop(self.lock());
        self.state_tx.subscribe()
    }

    pub(crate) fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected_total.load(Ordering::Relaxed)
    }

    pub(crate) fn opened_at(&self) -> Option<SystemTime> {
        self.lock().opened_at
    }

    pub(crate) fn last_failure(&self) -> Option<Failure> {
        self.lock().last_failure.clone()
    }

    /// Asks to let one call through.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        let mut core = self.lock();
        let epoch = core.epoch;
        let probe = match &mut core.phase {
            Phase::Closed => false,
            Phase::HalfOpen { probes_in_flight }
                if *probes_in_flight < self.config.half_open_probes =>
            {
                *probes_in_flight += 1;
                true
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                let retry_in = self.retry_in(&core);
                drop(core);
                return Err(self.reject(retry_in));
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            epoch,
            probe,
            recorded: false,
        })
    }

    /// Refuses a call that the service could not forward because it skipped the inner
    /// `poll_ready` (the circuit was open then); see `CircuitBreaker::call`.
    pub(crate) fn reject_unready(&self) -> CircuitOpen {
        let core = self.lock();
        let retry_in = match core.phase {
            Phase::Open { .. } => self.retry_in(&core),
            Phase::Closed | Phase::HalfOpen { .. } => Duration::ZERO,
        };
        drop(core);
        self.reject(retry_in)
    }

    fn reject(&self, retry_in: Duration) -> CircuitOpen {
        self.rejected_total.fetch_add(1, Ordering::Relaxed);
        CircuitOpen { retry_in }
    }

    fn retry_in(&self, core: &Core) -> Duration {
        match core.phase {
            Phase::Open { until } => until.saturating_duration_since(Instant::now()),
            // Probes are out; if they fail, the circuit stays shut for `open_for`.
            Phase::HalfOpen { .. } => self.config.open_for,
            Phase::Closed => Duration::ZERO,
        }
    }

    fn record(self: &Arc<Self>, epoch: u64, outcome: CallOutcome, failure: Option<Failure>) {
        let mut core = self.lock();
        if failure.is_some() {
            // Kept whatever the epoch: the last error seen is worth showing even from a call
            // that started before the last transition.
            core.last_failure = failure;
        }
        if core.epoch != epoch {
            return;
        }
        let now = Instant::now();
        match (core.phase, outcome) {
            (Phase::Closed, CallOutcome::Success) => {
                core.consecutive_failures = 0;
                core.window.record(now, false);
            }
            (Phase::Closed, CallOutcome::Failure) => {
                core.consecutive_failures = core.consecutive_failures.saturating_add(1);
                core.window.record(now, true);
                if self.should_trip(&core, now) {
                    self.open(&mut core, now);
                }
            }
            (Phase::HalfOpen { .. }, CallOutcome::Success) => {
                core.opened_at = None;
                self.transition(&mut core, Phase::Closed)
            }
            (Phase::HalfOpen { .. }, CallOutcome::Failure) => self.open(&mut core, now),
            (Phase::HalfOpen { probes_in_flight }, CallOutcome::Ignore) => {
                core.phase = Phase::HalfOpen {
                    probes_in_flight: probes_in_flight.saturating_sub(1),
                };
            }
            // Ignored outcomes say nothing; no permits are issued while open.
            (Phase::Closed, CallOutcome::Ignore) | (Phase::Open { .. }, _) => {}
        }
    }

    /// A probe went away without an outcome (its future was dropped): free its slot.
    fn release_probe(&self, epoch: u64) {
        let mut core = self.lock();
        if core.epoch != epoch {
            return;
        }
        if let Phase::HalfOpen { probes_in_flight } = &mut core.phase {
            *probes_in_flight = probes_in_flight.saturating_sub(1);
        }
    }

    fn should_trip(&self, core: &Core, now: Instant) -> bool {
        let config = &self.config;
        if config.consecutive_failures > 0
            && core.consecutive_failures >= config.consecutive_failures
        {
            return true;
        }
        let (calls, failures) = core.window.totals(now);
        calls >= u64::from(config.minimum_calls.max(1))
            && failures as f64 >= config.failure_rate * calls as f64
    }

    /// Opens the circuit until `now + open_for`.
    ///
    /// Besides the lazy check in [`Breaker::lock`], a small task sleeps until then and
    /// applies the transition, so `subscribe()`rs learn of HalfOpen without any call or
    /// read happening. It holds only a `Weak`, and a newer opening aborts an older timer,
    /// so at most one exists per breaker. Without a tokio runtime (no task can be
    /// spawned) subscribers see HalfOpen at the next call or `state()` read.
    fn open(self: &Arc<Self>, core: &mut Core, now: Instant) {
        let until = now
            .checked_add(self.config.open_for)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        if matches!(core.phase, Phase::Closed) {
            core.opened_at = Some(SystemTime::now());
        }
        self.transition(core, Phase::Open { until });
        let timer = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let breaker: Weak<Self> = Arc::downgrade(self);
            runtime
                .spawn(async move {
                    tokio::time::sleep_until(until).await;
                    if let Some(breaker) = breaker.upgrade() {
                        drop(breaker.lock());
                    }
                })
                .abort_handle()
        });
        if let Some(old) = std::mem::replace(&mut core.timer, timer) {
            old.abort();
        }
    }
}

impl Drop for Breaker {
    fn drop(&mut self) {
        let core = self.core.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = core.timer.take() {
            timer.abort();
        }
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &*self.state_tx.borrow())
            .field("config", &self.config)
            .field("opened_total", &self.opened_total())
            .field("rejected_total", &self.rejected_total())
            .finish()
    }
}

/// Leave to make one call; reports its outcome, or frees its probe slot if dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    epoch: u64,
    probe: bool,
    recorded: bool,
}

impl Permit {
    pub(crate) fn record(mut self, outcome: CallOutcome) {
        self.recorded = true;
        self.breaker.record(self.epoch, outcome, None);
    }

    /// Records a failure with what it said.
    pub(crate) fn record_failure(mut self, message: String) {
        self.recorded = true;
        self.breaker.record(
            self.epoch,
            CallOutcome::Failure,
            Some(Failure::new(message)),
        );
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A cancelled call says nothing about the downstream's health, but a probe that
        // never reports would hold its half-open slot forever.
        if !self.recorded && self.probe {
            self.breaker.release_probe(self.epoch);
        }
    }
}
