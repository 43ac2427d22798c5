//! The reaper: a loop that runs all the time beside the dispatcher. It looks at accepted tasks
//! that are due (the watch list): a final one gets its TTL (also when the Processor wrote the
//! final state), one with no update for `TASK_STALL_TIMEOUT` ends FAILED as stalled. It also
//! forgets consumers of instances that are gone, and walks the task index (ListTasks's) a
//! batch per tick, removing the members of tasks that expired.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{now_ms, repeated::Repeated};
use crate::{
    config::DispatchConfig,
    metrics::{Metrics, TaskEnd},
    store::{FailOutcome, FailRequest, QueueStats, Settled, Store, StoreError},
    task::{RawStatus, TaskId, now_timestamp, parse_timestamp},
};

/// Watched tasks looked at per step.
const BATCH: usize = 256;

/// Task index members looked at per tick (a whole pass over 1M tasks takes 1,000 ticks).
const TRIM_BATCH: usize = 1000;

/// Runs until `stop`.
pub(super) async fn run(
    store: Store,
    config: DispatchConfig,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.reaper_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trim_cursor: Option<String> = None;
    let rounds = Repeated::new(
        "reaper: cannot do its round (watched tasks, queue figures, index, consumers)",
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        // One line while its steps keep failing (Redis down, say), not one per step and tick.
        let mut failure: Option<StoreError> = None;
        if let Err(e) = sweep(&store, &config, &metrics).await {
            failure.get_or_insert(e);
        }
        match store.queue_stats().await {
            Ok(stats) => {
                record_queue(&metrics, &stats);
                metrics.store_up.set(1);
            }
            Err(e) => {
                metrics.store_up.set(0);
                failure.get_or_insert(e);
            }
        }
        match store.trim_index(trim_cursor.as_deref(), TRIM_BATCH).await {
            Ok((removed, next)) => {
                if removed > 0 {
                    tracing::debug!(removed, "reaper: trimmed the task index of expired tasks");
                }
                trim_cursor = next;
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
        let gone_after = (config.visibility_timeout * 4).max(Duration::from_secs(600));
        match store.forget_consumers(gone_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                consumers = n,
                "reaper: forgot consumers of instances that are gone"
            ),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => {
                rounds.failed(&e);
            }
            None => rounds.succeeded(),
        }
    }
}

/// Looks at every watched task that is due, in batches.
async fn sweep(
    store: &Store,
    config: &DispatchConfig,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    loop {
        let now = now_ms();
        let due = store.due_watched(now, BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        let next_check = now + config.watch_interval.as_millis() as u64;
        let settled = store.settle(&due, next_check).await?;
        for (&task_id, found) in due.iter().zip(settled) {
            match found {
                Settled::Missing => {}
                Settled::Final(status) => metrics.ended(TaskEnd::of_final(status)),
                Settled::Unfinished {
                    status,
                    updated_at,
                    created_at,
                } => {
                    let seen = Seen {
                        status: &status,
                        updated_at: &updated_at,
                        created_at: &created_at,
                    };
                    if let Some(reason) = stalled(&seen, config.stall_timeout) {
                        fail_stalled(store, task_id, &seen, &reason, metrics).await?;
                    }
                }
            }
        }
        if due.len() < BATCH {
            return Ok(());
        }
    }
}

/// An unfinished watched task as the reaper saw it.
struct Seen<'a> {
    status: &'a RawStatus,
    updated_at: &'a str,
    created_at: &'a str,
}

/// Why a watched, unfinished task counts as stalled, if it does.
fn stalled(found: &Seen<'_>, stall_timeout: Duration) -> Option<String> {
    let status = found.status;
    let limit = humantime::format_duration(stall_timeout);
    let last = parse_timestamp(found.updated_at).or_else(|| parse_timestamp(found.created_at));
    let Some(last) = last else {
        return Some(format!(
            "stalled: the task has no readable updated_at and is still {status} after TASK_STALL_TIMEOUT ({limit})"
        ));
    };
    let quiet = (Utc::now() - last).to_std().unwrap_or_default();
    (quiet >= stall_timeout).then(|| {
        format!(
            "stalled: no update from the processor for {} (TASK_STALL_TIMEOUT={limit}); last seen {status} at {}",
            humantime::format_duration(Duration::from_secs(quiet.as_secs())),
            found.updated_at
        )
    })
}

async fn fail_stalled(
    store: &Store,
    task_id: TaskId,
    found: &Seen<'_>,
    reason: &str,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let now = now_timestamp();
    let request = FailRequest {
        task_id,
        message: reason,
        now: &now,
        expect_updated_at: (!found.updated_at.is_empty()).then_some(found.updated_at),
        entry_id: None,
    };
    if store.fail(request).await? == FailOutcome::Failed {
        metrics.ended(TaskEnd::Stalled);
        tracing::warn!(task.id = %task_id, %reason, "task failed as stalled");
    }
    Ok(())
}

/// Sets the queue gauges.
fn record_queue(metrics: &Metrics, stats: &QueueStats) {
    metrics.queue_depth.set(stats.depth as i64);
    metrics.queue_pending.set(stats.pending as i64);
    metrics.watched_tasks.set(stats.watched as i64);
    let age_ms = stats
        .oldest_ms
        .map_or(0, |oldest| now_ms().saturating_sub(oldest));
    metrics.queue_oldest_age.set(age_ms as f64 / 1000.0);
}
