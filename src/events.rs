//! What happens to tasks, told to whoever waits for it in this instance: a watch learns that its
//! task's hash changed, a delivery that its task was cancelled. One listener on the store per
//! instance ([`crate::store::Store::listen`]: Redis keyspace notifications and the cancellations
//! channel) feeds them all, so 10,000 watches cost no Redis command while nothing changes.
//! Changes can be missed (the listening connection is lost, notifications are off): every
//! waiter is then woken to look again, and watches also look again on a timer of their own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    store::{Change, Store},
    supervisor::Supervisor,
    task::TaskId,
};

/// Changes buffered between the store's listener and the fan-out.
const CHANGES_BUFFER: usize = 1024;

/// Cancellations buffered for the dispatcher.
const CANCELLATIONS_BUFFER: usize = 1024;

/// A cancellation, as the dispatcher hears it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancellation {
    /// This task was cancelled.
    Task(TaskId),
    /// Cancellations may have been missed: look at every task being delivered.
    Missed,
}

/// The fan-out. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Per followed task: a counter bumped on each of its changes.
    tasks: Mutex<HashMap<TaskId, watch::Sender<u64>>>,
    /// Bumped when changes may have been missed.
    missed: watch::Sender<u64>,
    cancellations: broadcast::Sender<Cancellation>,
    /// Whether the store tells of changes at all (else watches only poll).
    notifications: bool,
}

impl Events {
    /// Starts listening to `store` (under `supervisor`, until `shutdown`): to cancellations
    /// always, to task changes when `notifications` are wanted and the store can tell them.
    pub async fn start(
        store: &Store,
        notifications: bool,
        supervisor: &Supervisor,
        shutdown: CancellationToken,
    ) -> Self {
        let notifications = notifications && store.enable_notifications().await;
        if !notifications {
            tracing::info!(
                "watches look again every TASK_WATCH_POLL_INTERVAL (no change notifications)"
            );
        }
        let events = Self::new(notifications);
        let (sink, changes) = mpsc::channel(CHANGES_BUFFER);
        let listening = store.clone();
        let stop = shutdown.clone();
        supervisor.spawn("change listener", async move {
            listening.listen(sink, notifications, stop).await
        });
        supervisor.spawn("change fan-out", events.clone().fan_out(changes, shutdown));
        events
    }

    fn new(notifications: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                tasks: Mutex::default(),
                missed: watch::Sender::new(0),
                cancellations: broadcast::Sender::new(CANCELLATIONS_BUFFER),
                notifications,
            }),
        }
    }

    /// Events for tests and tools that have no store listener: nothing is ever told, so
    /// watches rely on their timer.
    pub fn silent() -> Self {
        Self::new(false)
    }

    /// Whether the store tells of changes (else watches only look again on their timer).
    pub fn notifications(&self) -> bool {
        self.inner.notifications
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<TaskId, watch::Sender<u64>>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `task`: [`Follow::changed`] returns when it may have changed.
    pub fn follow(&self, task: TaskId) -> Follow {
        let changes = self
            .tasks()
            .entry(task)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Follow {
            events: self.clone(),
            task,
            changes,
            missed: self.inner.missed.subscribe(),
        }
    }

    /// Cancellations, for the dispatcher.
    pub fn cancellations(&self) -> broadcast::Receiver<Cancellation> {
        self.inner.cancellations.subscribe()
    }

    /// Passes each change on, until `shutdown` or the listener ends.
    async fn fan_out(self, mut changes: mpsc::Receiver<Change>, shutdown: CancellationToken) {
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = shutdown.cancelled() => return,
            };
            match change {
                Some(change) => self.tell(change),
                // The listener stopped: at shutdown, or it died (the supervisor says so).
                None => return std::future::pending().await,
            }
        }
    }

    /// Tells the waiters of one change.
    fn tell(&self, change: Change) {
        match change {
            Change::Task(task) => self.bump(task),
            Change::Cancelled(task) => {
                let _ = self.inner.cancellations.send(Cancellation::Task(task));
                self.bump(task);
            }
            Change::Missed => {
                self.inner.missed.send_modify(|n| *n += 1);
                let _ = self.inner.cancellations.send(Cancellation::Missed);
            }
        }
    }

    fn bump(&self, task: TaskId) {
        if let Some(changes) = self.tasks().get(&task) {
            changes.send_modify(|n| *n += 1);
        }
    }
}

/// One waiter's following of one task.
#[derive(Debug)]
pub struct Follow {
    events: Events,
    task: TaskId,
    changes: watch::Receiver<u64>,
    missed: watch::Receiver<u64>,
}

impl Follow {
    /// Returns once the task may have changed since the last call (or since following began).
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.changes.changed() => {}
            _ = self.missed.changed() => {}
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let mut tasks = self.events.tasks();
        // This follower's receiver still counts while it is being dropped.
        if tasks
            .get(&self.task)
            .is_some_and(|changes| changes.receiver_count() <= 1)
        {
            tasks.remove(&self.task);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_follower_hears_its_task_and_missed_changes_only() {
        let events = Events::new(true);
        let task = TaskId::new_v4();
        let mut follow = events.follow(task);
        events.tell(Change::Task(TaskId::new_v4()));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), follow.changed())
                .await
                .is_err(),
            "another task's change"
        );
        events.tell(Change::Task(task));
        tokio::time::timeout(Duration::from_secs(1), follow.changed())
            .await
            .expect("its own task's change");
        events.tell(Change::Missed);
        tokio::time::timeout(Duration::from_secs(1), follow.changed())
            .await
            .expect("a missed change wakes everyone");
    }

    #[tokio::test]
    async fn cancellations_reach_the_dispatcher_and_followers_are_forgotten() {
        let events = Events::new(true);
        let mut cancellations = events.cancellations();
        let task = TaskId::new_v4();
        let first = events.follow(task);
        let second = events.follow(task);
        events.tell(Change::Cancelled(task));
        assert_eq!(
            cancellations.recv().await.unwrap(),
            Cancellation::Task(task)
        );
        drop(first);
        assert!(events.tasks().contains_key(&task), "one follower is left");
        drop(second);
        assert!(events.tasks().is_empty(), "no follower, no entry");
    }
}
