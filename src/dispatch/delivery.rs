//! Delivery: one held entry carried to its end — rounds of calls until a [`Verdict`], then the
//! store write that records it, retried until it lands.

use std::{sync::Arc, time::Duration};

use tokio::{sync::OwnedSemaphorePermit, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, field::Empty};

use super::{RetryDelay, Shared, leases::Held, now_ms, repeated::Repeated};
use crate::{
    metrics::TaskEnd,
    processor::{Answer, ProcessCall, outcome},
    store::{AcceptOutcome, FailOutcome, FailRequest, QueueEntry, StoreError},
    task::{TaskId, TaskStatus, now_timestamp},
};

/// How an entry ends here.
enum Verdict {
    /// The Processor has the task.
    Accepted,
    /// The task ends FAILED with this message.
    Fail(TaskEnd, String),
    /// Shutting down: leave the entry to another instance.
    GiveBack,
    /// The task was cancelled (it is FAILED and its entry acknowledged already); whether a
    /// ProcessVideo call was in flight when it was.
    Cancelled {
        /// The call was stopped mid-way: the Processor may have accepted it just then.
        call_in_flight: bool,
    },
}

impl Verdict {
    fn name(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Fail(..) => "failed",
            Self::GiveBack => "given back",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// Carries one entry to its end, in a span that joins the creating request's trace. `held`
/// keeps its lease renewed and `slot` its place under the concurrency cap until then.
pub(super) async fn deliver(
    shared: Arc<Shared>,
    entry: QueueEntry,
    held: Held,
    slot: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!(
        "dispatch",
        otel.name = "dispatch ProcessVideo",
        task.id = %entry.task_id,
        dispatch.entry = %entry.id,
        dispatch.deliveries = entry.deliveries,
        dispatch.outcome = Empty,
    );
    observability::propagation::set_parent_from_fields(&span, &entry.trace);
    async move {
        let verdict = tokio::select! {
            verdict = verdict(&shared, &entry, &held.cancelled) => verdict,
            // A cancel while waiting (for the circuit, between rounds); a call in flight is
            // told apart below.
            () = held.cancelled.cancelled() => Verdict::Cancelled { call_in_flight: false },
        };
        tracing::Span::current().record("dispatch.outcome", verdict.name());
        held.settling();
        record(&shared, &entry, verdict).await;
        drop((held, slot));
    }
    .instrument(span)
    .await;
}

/// Rounds of calls until the entry's fate is known.
async fn verdict(shared: &Shared, entry: &QueueEntry, cancelled: &CancellationToken) -> Verdict {
    let started = Instant::now();
    let max_age = shared.config.max_age;
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
                TaskEnd::Expired,
                format!(
                    "the processor did not accept the task within {} (TASK_DISPATCH_MAX_AGE){last}",
                    humantime::format_duration(max_age)
                ),
            );
        }
        let waited = tokio::select! {
            open = shared.wait_while_open(rejected_by_circuit) => open,
            () = tokio::time::sleep(max_age - age) => continue,
        };
        if !waited {
            return Verdict::GiveBack;
        }
        let call = ProcessCall::new(entry.task_id, &entry.original_file_key, &entry.trace);
        let result = tokio::select! {
            result = shared.caller.clone().oneshot(call.clone()) => result,
            () = shared.abort.cancelled() => return Verdict::GiveBack,
            // Dropping the call cancels it at the Processor (RST_STREAM).
            () = cancelled.cancelled() => return Verdict::Cancelled { call_in_flight: true },
        };
        attempts += call.attempts();
        shared
            .metrics
            .dispatch_retries
            .inc_by(u64::from(call.attempts().saturating_sub(1)));
        rejected_by_circuit = false;
        match outcome::classify(result) {
            Answer::Accepted => return Verdict::Accepted,
            Answer::Rejected(message) => {
                return Verdict::Fail(
                    TaskEnd::Rejected,
                    format!("the processor rejected the task: {message}"),
                );
            }
            Answer::CircuitOpen => {
                shared.metrics.dispatch_deferred.inc();
                rejected_by_circuit = true;
            }
            Answer::Transient { message, deadline } => {
                if deadline && processor_has_it(shared, entry.task_id).await {
                    return Verdict::Accepted;
                }
                if attempts >= shared.config.max_attempts {
                    return Verdict::Fail(
                        TaskEnd::Unreachable,
                        format!(
                            "the processor was unreachable after {attempts} attempts over {}: {message}",
                            humantime::format_duration(Duration::from_secs(
                                started.elapsed().as_secs()
                            ))
                        ),
                    );
                }
                last_error = Some(message);
                shared.pause(shared.config.round_delay).await;
                if shared.stop.is_cancelled() {
                    return Verdict::GiveBack;
                }
            }
        }
    }
}

/// After a deadline: a Processor that answers only when finished may be working on the task;
/// if it already wrote PROCESSING (or a final state), it has the task.
async fn processor_has_it(shared: &Shared, task_id: TaskId) -> bool {
    match shared.store.read(task_id).await {
        Ok(Some(record)) => record.status.known() != Some(TaskStatus::Pending),
        _ => false,
    }
}

/// The store write that ends the entry here.
async fn record(shared: &Shared, entry: &QueueEntry, verdict: Verdict) {
    match verdict {
        Verdict::Accepted => {
            let next_check = now_ms() + shared.config.watch_interval.as_millis() as u64;
            let accepted = until_written(shared, || async {
                match shared.store.accepted(entry, next_check).await {
                    Ok(outcome) => Ok(Some(outcome)),
                    // On the primary, not on enough replicas: a failover could lose it — and
                    // with it the Processor's writes of the same moment. The entry is delivered
                    // again rather than acknowledged (the Processor treats task_id as its
                    // idempotency key).
                    Err(StoreError::NotReplicated { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await;
            match accepted {
                Some(Some(accepted)) => {
                    shared.metrics.dispatch_accepted.inc();
                    if let AcceptOutcome::Final(status) = accepted {
                        shared.metrics.ended(TaskEnd::of_final(status));
                    }
                }
                Some(None) => {
                    tracing::info!(task.id = %entry.task_id, "the acceptance reached no replica in time; the entry will be delivered again");
                    shared.leases.give_back(&entry.id).await;
                }
                None => {}
            }
        }
        Verdict::Fail(end, message) => {
            let now = now_timestamp();
            let request = FailRequest::ending(entry, &message, &now);
            if let Some(FailOutcome::Failed) =
                until_written(shared, || shared.store.fail(request)).await
            {
                tracing::info!(task.id = %entry.task_id, %message, "task failed");
                shared.metrics.ended(end);
            }
        }
        Verdict::GiveBack => shared.leases.give_back(&entry.id).await,
        Verdict::Cancelled { call_in_flight } => {
            tracing::info!(task.id = %entry.task_id, "delivery stopped: the task was cancelled");
            // CancelTask took the entry out of the queue with the task; should anything have
            // left it there, it is acknowledged here (the final task is left as it is), so that
            // it is not delivered again.
            let now = now_timestamp();
            let request = FailRequest::ending(entry, "cancelled", &now);
            until_written(shared, || shared.store.fail(request)).await;
            // The Processor may have accepted the task the moment the call was cut: ask it to
            // stop (a Processor that cannot answers UNIMPLEMENTED; nothing more to do then).
            if call_in_flight
                && let Err(status) = shared.canceller.cancel(entry.task_id).await
                && status.code() != tonic::Code::Unimplemented
            {
                tracing::debug!(task.id = %entry.task_id, %status, "CancelVideo after a cut call failed");
            }
        }
    }
}

/// Retries a store write until it succeeds; gives up only when the grace period is over (the
/// entry is then delivered again later, which the Processor tolerates).
async fn until_written<T, F, Fut>(shared: &Shared, write: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut retry = RetryDelay::default();
    let writes = Repeated::new("cannot record a dispatch result");
    loop {
        match write().await {
            Ok(value) => {
                writes.succeeded();
                return Some(value);
            }
            Err(e) => {
                writes.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(retry.next()) => {}
                    () = shared.abort.cancelled() => return None,
                }
            }
        }
    }
}
