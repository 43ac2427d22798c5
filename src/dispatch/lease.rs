//! Lease renewal: while this instance holds entries, their idle time is reset well within the
//! visibility timeout, so that no other instance takes over work that is still alive.

use std::sync::Arc;

use super::Shared;

/// Renews the leases of held entries every third of the visibility timeout, until aborted.
pub(super) async fn renew(shared: Arc<Shared>) {
    let period = shared.config.visibility_timeout / 3;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let held = shared.held_ids();
        if held.is_empty() {
            continue;
        }
        match shared
            .store
            .lease(&shared.consumer, std::time::Duration::ZERO, &held)
            .await
        {
            Ok(lost) => {
                // An entry that finished meanwhile, or whose acknowledgement is on its way, is
                // no longer pending anywhere: not a loss.
                for id in shared.unsettled(lost) {
                    // Another instance took it over (our renewals came too late): both may now
                    // call the Processor, which treats task_id as its idempotency key.
                    shared.metrics.dispatch_leases_lost.inc();
                    tracing::warn!(entry = %id, "lost the lease of an entry still in flight here");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
        }
    }
}
