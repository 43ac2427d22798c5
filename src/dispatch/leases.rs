//! The entries this instance holds, and their leases: while an entry is held, its idle time is
//! reset well within the visibility timeout, so that no other instance takes over work that is
//! still alive. A [`Held`] guard releases its entry however the delivery ends (a panic
//! included), so that a lost delivery is taken over instead of being renewed forever; and it
//! carries the token that stops the delivery when its task is cancelled.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::repeated::Repeated;
use crate::{store::Store, task::TaskId};

/// The held entries: for each, whether the write that ends it here (its acknowledgement) has
/// been sent.
#[derive(Debug)]
pub(super) struct Leases {
    store: Store,
    consumer: String,
    visibility_timeout: Duration,
    lost: Counter,
    held: Mutex<HashMap<String, Entry>>,
    renewals: Repeated,
}

/// A held entry's state.
#[derive(Debug)]
struct Entry {
    task: TaskId,
    /// The write that ends the entry here (its acknowledgement) has been sent.
    settling: bool,
    /// Cancelled when the task is.
    cancelled: CancellationToken,
}

/// One held entry; dropping it releases the entry.
#[derive(Debug)]
pub(super) struct Held {
    leases: Arc<Leases>,
    id: String,
    /// Cancelled when the task is cancelled: the delivery stops.
    pub(super) cancelled: CancellationToken,
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
            renewals: Repeated::new("cannot renew leases"),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds entry `id` of `task` until the returned guard is dropped.
    pub(super) fn hold(self: &Arc<Self>, id: &str, task: TaskId) -> Held {
        let cancelled = CancellationToken::new();
        self.held().insert(
            id.to_owned(),
            Entry {
                task,
                settling: false,
                cancelled: cancelled.clone(),
            },
        );
        Held {
            leases: self.clone(),
            id: id.to_owned(),
            cancelled,
        }
    }

    /// Stops the deliveries of `task` held here.
    pub(super) fn cancel(&self, task: TaskId) {
        for entry in self.held().values().filter(|e| e.task == task) {
            entry.cancelled.cancel();
        }
    }

    /// The tasks whose entries are held here.
    pub(super) fn tasks(&self) -> Vec<TaskId> {
        self.held().values().map(|e| e.task).collect()
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
                let unsettled = |id: &&String| held.get(*id).is_some_and(|e| !e.settling);
                for id in lost.iter().filter(unsettled) {
                    // Another instance took it over (our renewals came too late): both may now
                    // call the Processor, which treats task_id as its idempotency key.
                    self.lost.inc();
                    tracing::warn!(entry = %id, "lost the lease of an entry still in flight here");
                }
            }
            Err(e) => {
                self.renewals.failed(&e);
                return;
            }
        }
        self.renewals.succeeded();
    }
}

impl Held {
    /// The entry's ending write is on its way: its leaving the pending list is no lost lease.
    pub(super) fn settling(&self) {
        if let Some(entry) = self.leases.held().get_mut(&self.id) {
            entry.settling = true;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.leases.held().remove(&self.id);
    }
}
