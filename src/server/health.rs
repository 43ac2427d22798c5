//! Health (grpc.health.v1) that follows Redis: SERVING while it answers, NOT_SERVING while it
//! doesn't (and until it first did), for `""` and `task.Task`; a watch hears each change once;
//! NOT_SERVING for good once shutdown begins.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{proto::task::task_server::SERVICE_NAME, store::Store};

/// The service names health answers for: the whole server and `task.Task`.
const NAMES: [&str; 2] = ["", SERVICE_NAME];

/// Sets every name to `status`.
pub async fn set(reporter: &HealthReporter, status: ServingStatus) {
    for name in NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Checks the store every `interval` until `stop`, then reports NOT_SERVING.
pub async fn follow_store(
    reporter: HealthReporter,
    store: Store,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Not serving until the store first answers (the reporter starts with SERVING for "").
    set(&reporter, ServingStatus::NotServing).await;
    let mut sent = ServingStatus::NotServing;
    let mut last = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        let status = match tokio::time::timeout(
            interval.max(Duration::from_millis(100)),
            store.ping(),
        )
        .await
        {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(e)) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!(error = %e, "health: NOT_SERVING, the store does not answer");
                }
                ServingStatus::NotServing
            }
            Err(_) => {
                if last != Some(ServingStatus::NotServing) {
                    tracing::warn!("health: NOT_SERVING, the store did not answer in time");
                }
                ServingStatus::NotServing
            }
        };
        if last == Some(ServingStatus::NotServing) && status == ServingStatus::Serving {
            tracing::info!("health: SERVING again, the store answers");
        }
        // Only changes are sent: every `set` wakes each Watch caller, even with the same status.
        if !stop.is_cancelled() && status != sent {
            set(&reporter, status).await;
            sent = status;
        }
        last = Some(status);
    }
    set(&reporter, ServingStatus::NotServing).await;
}
