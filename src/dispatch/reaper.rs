//! The reaper: a loop that runs all the time beside the dispatcher. It looks at accepted tasks
//! that are due (the watch list): a final one gets its TTL (also when the Processor wrote the
//! final state), one with no update for `TASK_STALL_TIMEOUT` ends FAILED as stalled. It also
//! forgets consumers of instances that are gone.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::{
    config::DispatchConfig,
    metrics::{Metrics, Outcome},
    store::{FailOutcome, FailRequest, QueueStats, Settled, Store, StoreError},
    task::{is_terminal_text, now_timestamp, parse_timestamp},
};

/// Watched tasks looked at per step.
const BATCH: usize = 256;

/// Runs until `stop`.
pub(super) async fn run(
    store: Store,
    config: DispatchConfig,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.reaper_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = sweep(&store, &config, &metrics).await {
            tracing::warn!(error = %e, "reaper: cannot look at watched tasks");
        }
        match store.queue_stats().await {
            Ok(stats) => record_queue(&metrics, &stats),
            Err(e) => tracing::warn!(error = %e, "reaper: cannot read the queue's figures"),
        }
        let gone_after = (config.visibility_timeout * 4).max(Duration::from_secs(600));
        match store.forget_consumers(gone_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                consumers = n,
                "reaper: forgot consumers of instances that are gone"
            ),
            Err(e) => tracing::warn!(error = %e, "reaper: cannot list consumers"),
        }
    }
}

/// Looks at every watched task that is due, in batches.
pub async fn sweep(
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
        for (task_id, found) in due.iter().zip(settled) {
            if let Some(status) = found.status.as_deref().filter(|s| is_terminal_text(s)) {
                metrics.ended(Outcome::of_status(status));
            }
            if let Some(reason) = stalled(&found, config.stall_timeout) {
                fail_stalled(store, task_id, &found, &reason, metrics).await?;
            }
        }
        if due.len() < BATCH {
            return Ok(());
        }
    }
}

/// Why a watched task counts as stalled, if it does.
fn stalled(found: &Settled, stall_timeout: Duration) -> Option<String> {
    let status = found.status.as_deref()?;
    if is_terminal_text(status) {
        return None;
    }
    let limit = humantime::format_duration(stall_timeout);
    let last = parse_timestamp(&found.updated_at).or_else(|| parse_timestamp(&found.created_at));
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
    task_id: &str,
    found: &Settled,
    reason: &str,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let now = now_timestamp();
    let request = FailRequest {
        task_id,
        message: reason,
        now: &now,
        expect_updated_at: (!found.updated_at.is_empty()).then_some(found.updated_at.as_str()),
        entry_id: None,
    };
    if store.fail(request).await? == FailOutcome::Failed {
        metrics.ended(Outcome::Stalled);
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
