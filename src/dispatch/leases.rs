//! The entries this instance holds, and their leases: while an entry is held, its idle time is
//! reset well within the visibility timeout, so that no other instance takes over work that is
//! still alive. A [`Held`] guard releases its entry however the delivery ends (a panic
//! included), so that a lost delivery is taken over instead of being renewed forever.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// The held entries: for each, whether the write that ends it here (its acknowledgement) has
/// been sent.
#[derive(Debug)]
pub(super) struct Leases {
    store: Store,
    consumer: String,
    visibility_timeout: Duration,
    lost: Counter,
    held: Mutex<HashMap<String, bool>>,
}

/// One held entry; dropping it releases the entry.
#[derive(Debug)]
pub(super) struct Held {
    leases: Arc<Leases>,
    id: String,
}

impl Leases {
    pub(super) fn new(
        store: Store,
        consumer: String,
        visibility_timeout: Duration,
        lost: Counter,
    ) -> Self {
        Self {
            store,
            consumer,
            visibility_timeout,
            lost,
            held: Mutex::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, bool>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `id` until the returned guard is dropped.
    pub(super) fn hold(self: &Arc<Self>, id: &str) -> Held {
        self.held().insert(id.to_owned(), false);
        Held {
            leases: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Whether `id` is held here.
    pub(super) fn is_held(&self, id: &str) -> bool {
        self.held().contains_key(id)
    }

    /// Gives `id` back at once (at shutdown): another instance may take it over now.
    pub(super) async fn give_back(&self, id: &str) {
        let ids = [id.to_owned()];
        if let Err(e) = self
            .store
            .lease(&self.consumer, self.visibility_timeout, &ids)
            .await
        {
            tracing::warn!(error = %e, entry = %id, "could not give the entry back; it will be taken over after the visibility timeout");
        }
    }

    /// Renews the leases of held entries every third of the visibility timeout, until `stop`.
    pub(super) async fn renew_until(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.visibility_timeout / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            self.renew().await;
        }
    }

    async fn renew(&self) {
        let ids: Vec<String> = self.held().keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        match self.store.lease(&self.consumer, Duration::ZERO, &ids).await {
            Ok(lost) => {
                let held = self.held();
                // An entry that finished meanwhile, or whose acknowledgement is on its way, is
                // no longer pending anywhere: not a loss.
                for id in lost.iter().filter(|id| held.get(*id) == Some(&false)) {
                    // Another instance took it over (our renewals came too late): both may now
                    // call the Processor, which treats task_id as its idempotency key.
                    self.lost.inc();
                    tracing::warn!(entry = %id, "lost the lease of an entry still in flight here");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
        }
    }
}

impl Held {
    /// The entry's ending write is on its way: its leaving the pending list is no lost lease.
    pub(super) fn settling(&self) {
        if let Some(settling) = self.leases.held().get_mut(&self.id) {
            *settling = true;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.leases.held().remove(&self.id);
    }
}
