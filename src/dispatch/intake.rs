//! Intake: the loop that takes entries from the queue while slots are free and the circuit
//! allows — entries abandoned by a dead instance first (ending as poison those delivered too
//! often), then new ones — and hands each to a delivery of its own.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};

use super::{RetryDelay, Shared, delivery, repeated::Repeated};
use crate::{
    metrics::TaskEnd,
    store::{FailOutcome, FailRequest, MalformedEntry, QueueEntry, StoreError, Taken},
    task::now_timestamp,
};

/// How long one blocking queue read waits for a new entry.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// Takes entries while slots are free and the circuit allows; hands each to a delivery. The
/// slots are the one bound on ProcessVideo calls in flight: each held entry makes at most one
/// call at a time.
pub(super) async fn run(shared: Arc<Shared>, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut work = JoinSet::new();
    prepare_queue(&shared).await;
    let mut next_reclaim = Instant::now();
    let mut retry = RetryDelay::default();
    let reclaims = Repeated::new("cannot look for abandoned entries");
    let reads = Repeated::new("cannot read the dispatch queue");
    while !shared.stop.is_cancelled() {
        reap(&mut work);
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
        let mut taken = Vec::new();
        if Instant::now() >= next_reclaim {
            next_reclaim = Instant::now() + shared.config.reaper_interval;
            match reclaim(&shared, permits.len()).await {
                Ok(reclaimed) => {
                    reclaims.succeeded();
                    taken = reclaimed;
                }
                Err(e) => {
                    reclaims.failed(&e);
                }
            }
        }
        let wanted = permits.len() - taken.len();
        if wanted > 0 {
            let block = if taken.is_empty() {
                READ_BLOCK.min(shared.config.reaper_interval)
            } else {
                Duration::ZERO
            };
            match shared.store.read_new(&shared.consumer, wanted, block).await {
                Ok(new) => {
                    retry = RetryDelay::default();
                    reads.succeeded();
                    taken.extend(new);
                }
                Err(e) => {
                    reads.failed(&e);
                    shared.pause(retry.next()).await;
                }
            }
        }
        for (taken, slot) in taken.into_iter().zip(permits) {
            start(&shared, &mut work, taken, slot).await;
        }
    }
    while let Some(done) = work.join_next().await {
        report_panic(done);
    }
}

/// Creates the queue and its group, retrying until Redis answers (or shutdown).
async fn prepare_queue(shared: &Shared) {
    let mut retry = RetryDelay::default();
    let attempts = Repeated::new("cannot prepare the dispatch queue");
    while !shared.stop.is_cancelled() {
        match shared.store.ensure_queue().await {
            Ok(()) => {
                attempts.succeeded();
                return;
            }
            Err(e) => {
                attempts.failed(&e);
                shared.pause(retry.next()).await;
            }
        }
    }
}

/// Starts the delivery of one taken entry in `slot`; one that cannot be dispatched is dropped.
async fn start(
    shared: &Arc<Shared>,
    work: &mut JoinSet<()>,
    taken: Taken,
    slot: OwnedSemaphorePermit,
) {
    match taken {
        Ok(entry) => {
            let held = shared.leases.hold(&entry.id, entry.task_id);
            work.spawn(delivery::deliver(shared.clone(), entry, held, slot));
        }
        Err(MalformedEntry { id, task_id }) => {
            tracing::warn!(entry = %id, task.id = %task_id, "dropping a dispatch entry without a valid task id");
            match shared.store.discard(&id).await {
                Ok(()) => shared.metrics.ended(TaskEnd::Malformed),
                Err(e) => {
                    tracing::warn!(error = %e, entry = %id, "cannot drop a malformed dispatch entry; it will be taken over later")
                }
            }
        }
    }
}

/// Collects finished deliveries, logging any that panicked (its entry was released, so it is
/// taken over after the visibility timeout).
fn reap(work: &mut JoinSet<()>) {
    while let Some(done) = work.try_join_next() {
        report_panic(done);
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a delivery panicked; its entry will be delivered again after the visibility timeout");
    }
}

/// Takes over entries whose holder stopped renewing their lease; ends as poison those
/// delivered too often.
async fn reclaim(shared: &Shared, max: usize) -> Result<Vec<Taken>, StoreError> {
    let visibility = shared.config.visibility_timeout;
    let idle: HashMap<String, (String, u32)> = shared
        .store
        .idle_entries(visibility, max)
        .await?
        .into_iter()
        .filter(|p| !shared.leases.is_held(&p.id))
        .map(|p| (p.id, (p.consumer, p.deliveries)))
        .collect();
    if idle.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = idle.keys().cloned().collect();
    let claimed = shared
        .store
        .claim(&shared.consumer, visibility, &ids)
        .await?;
    let mut taken = Vec::with_capacity(claimed.len());
    for claim in claimed {
        let Ok(mut entry) = claim else {
            taken.push(claim);
            continue;
        };
        let (from, before) = idle
            .get(&entry.id)
            .map_or(("?", 0), |(consumer, n)| (consumer.as_str(), *n));
        entry.deliveries = before + 1;
        shared.metrics.dispatch_rescues.inc();
        tracing::info!(
            entry = %entry.id,
            task.id = %entry.task_id,
            from,
            deliveries = entry.deliveries,
            "took over an abandoned dispatch entry"
        );
        if entry.deliveries > shared.config.max_deliveries {
            fail_as_poison(shared, &entry).await?;
        } else {
            taken.push(Ok(entry));
        }
    }
    Ok(taken)
}

/// Ends an entry that keeps losing its instance: FAILED, and acknowledged.
async fn fail_as_poison(shared: &Shared, entry: &QueueEntry) -> Result<(), StoreError> {
    let message = format!(
        "dispatch abandoned after {} deliveries (TASK_DISPATCH_MAX_DELIVERIES={}): each time, \
         the service instance handling the task stopped before the processor answered",
        entry.deliveries - 1,
        shared.config.max_deliveries
    );
    let now = now_timestamp();
    let request = FailRequest::ending(entry, &message, &now);
    if shared.store.fail(request).await? == FailOutcome::Failed {
        shared.metrics.ended(TaskEnd::Poisoned);
    }
    Ok(())
}
