//! Cancellations reach the deliveries here: a task cancelled (by CancelTask on any replica) has
//! its delivery stopped if this instance holds it. When cancellations may have been missed (the
//! notification connection was lost), every task held here is looked at, and the cancelled ones'
//! deliveries stopped.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::leases::Leases;
use crate::{
    events::{Cancellation, Events},
    store::Store,
};

/// Follows the cancellations until `stop`.
pub(super) async fn follow(
    events: Events,
    leases: Arc<Leases>,
    store: Store,
    stop: CancellationToken,
) {
    let mut cancellations = events.cancellations();
    loop {
        let heard = tokio::select! {
            heard = cancellations.recv() => heard,
            () = stop.cancelled() => return,
        };
        match heard {
            Ok(Cancellation::Task(task)) => leases.cancel(task),
            Ok(Cancellation::Missed) | Err(RecvError::Lagged(_)) => {
                look_at_held(&leases, &store).await;
            }
            // The events ended: at shutdown (or their listener died, which the supervisor says).
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// Stops the deliveries of held tasks that were cancelled while we did not hear. A task the
/// Processor made final during its call is not one: its delivery goes on, and the call's answer
/// acknowledges its entry.
async fn look_at_held(leases: &Leases, store: &Store) {
    for task in leases.tasks() {
        if let Ok(Some(record)) = store.read(task).await
            && record.is_cancelled()
        {
            leases.cancel(task);
        }
    }
}
