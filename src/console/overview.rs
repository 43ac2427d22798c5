//! What the overview page shows, gathered in one place: the queue and Redis from the store,
//! the Processor from its circuit breaker and call counter, the rest from this instance's
//! counters, the newest tasks from one short ListTasks page. Every figure costs the same
//! whatever the number of tasks stored.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use middleware::{BreakerState, circuit_breaker::Failure};

use super::{
    Console,
    activity::{Activity, Totals},
};
use crate::{
    metrics::{Metrics, TaskEnd},
    proto::task::{ListTasksRequest, ListTasksResponse},
    store::QueueStats,
};

/// Newest tasks shown.
const NEWEST: i32 = 8;

/// The overview's figures at one moment.
#[derive(Debug)]
pub struct Overview {
    /// When they were read.
    pub now: SystemTime,
    /// The queue, or why Redis did not answer.
    pub queue: Result<QueueStats, String>,
    /// How long a PING took, or why it failed.
    pub redis: Result<Duration, String>,
    /// What the store is: `Redis`, or the dev mode's memory.
    pub store_kind: &'static str,
    /// ProcessVideo calls in flight.
    pub in_flight: usize,
    /// Their cap (TASK_PROCESSOR_CONCURRENCY).
    pub concurrency: usize,
    /// The Processor's circuit.
    pub circuit: Circuit,
    /// Created / completed / failed in each of the last minutes, oldest first.
    pub minutes: Vec<Totals>,
    /// Since start: totals.
    pub totals: Totals,
    /// Since start: tasks failed, by reason (the `outcome` label), most first.
    pub failures: Vec<(&'static str, u64)>,
    /// The newest tasks (of every instance), or why they could not be listed.
    pub newest: Result<ListTasksResponse, String>,
}

/// The circuit breaker in front of the Processor.
#[derive(Debug)]
pub struct Circuit {
    /// Its state.
    pub state: BreakerState,
    /// When the current outage began (not closed).
    pub opened_at: Option<SystemTime>,
    /// The last failed call.
    pub last_failure: Option<Failure>,
}

impl Overview {
    /// Reads every figure (the two Redis reads at once, each bounded by TASK_REDIS_TIMEOUT).
    pub async fn gather(console: &Console) -> Self {
        let now = SystemTime::now();
        let ping = async {
            let started = Instant::now();
            console
                .store
                .ping()
                .await
                .map(|()| started.elapsed())
                .map_err(|e| e.to_string())
        };
        let queue = async { console.store.queue_stats().await.map_err(|e| e.to_string()) };
        let newest = async {
            let request = ListTasksRequest {
                page_size: NEWEST,
                ..Default::default()
            };
            match console.api.list(&request).await {
                // The overview shows them, it does not page through them.
                Ok(page) => Ok(ListTasksResponse {
                    next_page_token: String::new(),
                    ..page
                }),
                Err(e) => Err(e.to_string()),
            }
        };
        let (redis, queue, newest) = tokio::join!(ping, queue, newest);
        let totals = totals(&console.metrics);
        let minute = minute_of(now);
        console.activity.record(minute, totals);
        let minutes = console.activity.per_minute(minute);
        let mut failures: Vec<_> = TaskEnd::ALL
            .into_iter()
            .filter(|end| *end != TaskEnd::Completed)
            .map(|end| (end.label(), console.metrics.ended_count(end)))
            .filter(|(_, n)| *n > 0)
            .collect();
        failures.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let breaker = &console.processor.breaker;
        Self {
            now,
            queue,
            redis,
            store_kind: match console.store {
                crate::store::Store::Redis(_) => "Redis",
                crate::store::Store::Memory(_) => "Store (in memory)",
            },
            in_flight: console.processor.in_flight.load(Ordering::Relaxed),
            concurrency: console.processor.concurrency,
            circuit: Circuit {
                state: breaker.state(),
                opened_at: breaker.opened_at(),
                last_failure: breaker.last_failure(),
            },
            minutes,
            totals,
            failures,
            newest,
        }
    }

    /// Age of the oldest entry in the queue.
    pub fn oldest_waiting(&self) -> Option<Duration> {
        let oldest = self.queue.as_ref().ok()?.oldest_ms?;
        let now = self.now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        Some(now.saturating_sub(Duration::from_millis(oldest)))
    }
}

/// The counters now.
pub fn totals(metrics: &Metrics) -> Totals {
    let failed = TaskEnd::ALL
        .into_iter()
        .filter(|end| *end != TaskEnd::Completed)
        .map(|end| metrics.ended_count(end))
        .sum();
    Totals {
        created: metrics.tasks_created.get(),
        completed: metrics.ended_count(TaskEnd::Completed),
        failed,
    }
}

/// Records the counters in the activity ring.
pub fn sample(activity: &Activity, metrics: &Metrics, now: SystemTime) {
    activity.record(minute_of(now), totals(metrics));
}

/// Minutes since the epoch.
pub fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// What the Processor side offers the console.
#[derive(Debug, Clone)]
pub struct ProcessorView {
    /// The circuit breaker.
    pub breaker: middleware::BreakerHandle,
    /// Calls in flight.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Their cap.
    pub concurrency: usize,
}
