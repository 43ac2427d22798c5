//! The in-memory backend of the dev mode: the same semantics as the Redis store (fencing, TTLs,
//! a queue with deliveries, leases and idle times), in one process. Time is tokio's, so tests can
//! pause it. This file holds the tasks and the change notifications; [`queue`] the dispatch
//! queue and the watch list; [`index`] the task index (ListTasks) and cancellation.

mod index;
mod queue;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, atomic::AtomicUsize},
    time::Duration,
};

use tokio::{
    sync::{Notify, broadcast, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    AcceptOutcome, Change, Created, FailOutcome, FailRequest, NewTask, QueueEntry, StoreError,
    layout::{entry_fields, index_member},
};
use crate::task::{RawStatus, TaskId, TaskRecord, TaskStatus, fields};
use queue::format_id;

/// The in-memory store. Cloning shares the data.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    arrivals: Arc<Notify>,
    /// What its listeners hear.
    changes: broadcast::Sender<Change>,
    /// Queue reads waiting for an arrival.
    waiting: Arc<AtomicUsize>,
    ttl: Duration,
}

/// Changes kept for a slow listener before it is told it missed some.
const CHANGES_BUFFER: usize = 4096;

/// A stream id: milliseconds and sequence.
type EntryKey = (u64, u64);

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<TaskId, StoredTask>,
    entries: BTreeMap<EntryKey, Vec<(String, String)>>,
    last_id: EntryKey,
    last_delivered: EntryKey,
    pending: BTreeMap<EntryKey, Delivery>,
    consumers: HashMap<String, Instant>,
    watch: BTreeSet<(u64, TaskId)>,
    watch_scores: HashMap<TaskId, u64>,
    /// The task index: members as the Redis store writes them.
    index: BTreeSet<String>,
    /// The dispatch entry of each task not yet accepted.
    entry_of: HashMap<TaskId, EntryKey>,
    /// Idempotency records: request id → (task, file, expiry).
    requests: HashMap<String, (TaskId, String, Instant)>,
}

#[derive(Debug)]
struct StoredTask {
    fields: HashMap<String, String>,
    expires_at: Option<Instant>,
}

#[derive(Debug)]
struct Delivery {
    consumer: String,
    delivered_at: Instant,
    deliveries: u32,
}

impl MemoryStore {
    /// An empty store whose final tasks live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            state: Arc::default(),
            arrivals: Arc::default(),
            changes: broadcast::Sender::new(CHANGES_BUFFER),
            waiting: Arc::default(),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// See [`super::Store::create`].
    pub async fn create(&self, new: NewTask<'_>) -> Result<Created, StoreError> {
        let task = new.record;
        let id = TaskId::parse(&task.task_id).map_err(StoreError::Corrupt)?;
        let mut state = self.lock();
        let now = Instant::now();
        if let Some((request_id, _)) = new.request {
            state.requests.retain(|_, (_, _, expires)| *expires > now);
            if let Some((existing, file, _)) = state.requests.get(request_id) {
                return Ok(if *file == task.original_file_key {
                    Created::Existing(*existing)
                } else {
                    Created::Conflict(*existing)
                });
            }
        }
        if state.task(id).is_some() {
            return Err(StoreError::Command {
                addr: "the in-memory store".into(),
                reason: "TASKEXISTS a task with this id already exists".into(),
            });
        }
        let stored = StoredTask {
            fields: task
                .to_pairs()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_at: None,
        };
        state.tasks.insert(id, stored);
        let key = state.next_id();
        let mut entry = vec![
            (entry_fields::TASK_ID.to_owned(), task.task_id.clone()),
            (
                entry_fields::ORIGINAL_FILE_KEY.to_owned(),
                task.original_file_key.clone(),
            ),
        ];
        entry.extend(new.trace.iter().cloned());
        state.entries.insert(key, entry);
        state.entry_of.insert(id, key);
        state.index.insert(index_member(new.created_ms, id));
        if let Some((request_id, window)) = new.request {
            let record = (id, task.original_file_key.clone(), now + window);
            state.requests.insert(request_id.to_owned(), record);
        }
        drop(state);
        self.arrivals.notify_waiters();
        self.changed(Change::Task(id));
        Ok(Created::New {
            entry_id: format_id(key),
        })
    }

    /// Tells the listeners (none listening is no error).
    fn changed(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// See [`super::Store::enable_notifications`]: always on in memory.
    pub async fn enable_notifications(&self) -> bool {
        true
    }

    /// See [`super::Store::listen`].
    pub async fn listen(&self, sink: mpsc::Sender<Change>, tasks: bool, stop: CancellationToken) {
        let mut changes = self.changes.subscribe();
        // Listening from now on (as the Redis store says once subscribed).
        if sink.send(Change::Missed).await.is_err() {
            return;
        }
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = stop.cancelled() => return,
            };
            let change = match change {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(_)) => Change::Missed,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if !tasks && matches!(change, Change::Task(_)) {
                continue;
            }
            if sink.send(change).await.is_err() {
                return;
            }
        }
    }

    /// See [`super::Store::read`].
    pub async fn read(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut state = self.lock();
        let ttl = self.ttl;
        Ok(state.task(task_id).and_then(|task| {
            task.expire_if_final(ttl);
            TaskRecord::from_pairs(task.fields.iter().map(|(k, v)| (k.as_str(), v.clone())))
        }))
    }

    /// See [`super::Store::fail`].
    pub async fn fail(&self, request: FailRequest<'_>) -> Result<FailOutcome, StoreError> {
        let mut state = self.lock();
        let ttl = self.ttl;
        let outcome = match state.task(request.task_id) {
            None => FailOutcome::Missing,
            Some(task) if task.is_final() => {
                task.expire_if_final(ttl);
                FailOutcome::AlreadyFinal
            }
            Some(task)
                if request
                    .expect_updated_at
                    .is_some_and(|expected| task.field(fields::UPDATED_AT) != expected) =>
            {
                FailOutcome::Changed
            }
            Some(task) => {
                for (field, value) in [
                    (fields::STATUS, TaskStatus::Failed.as_str()),
                    (fields::ERROR_MESSAGE, request.message),
                    (fields::RESULT_FILE_KEY, ""),
                    (fields::UPDATED_AT, request.now),
                ] {
                    task.fields.insert(field.to_owned(), value.to_owned());
                }
                task.expires_at = Some(Instant::now() + ttl);
                FailOutcome::Failed
            }
        };
        if let Some(id) = request.entry_id {
            state.acknowledge(id);
            state.entry_of.remove(&request.task_id);
        }
        if outcome != FailOutcome::Changed {
            state.unwatch(request.task_id);
        }
        drop(state);
        if outcome == FailOutcome::Failed {
            self.changed(Change::Task(request.task_id));
        }
        Ok(outcome)
    }

    /// See [`super::Store::accepted`].
    pub async fn accepted(
        &self,
        entry: &QueueEntry,
        next_check_ms: u64,
    ) -> Result<AcceptOutcome, StoreError> {
        let mut state = self.lock();
        state.acknowledge(&entry.id);
        state.entry_of.remove(&entry.task_id);
        let ttl = self.ttl;
        let outcome = match state.task(entry.task_id) {
            None => AcceptOutcome::Missing,
            Some(task) => match task.final_status() {
                Some(status) => {
                    task.expire_if_final(ttl);
                    AcceptOutcome::Final(status)
                }
                None => AcceptOutcome::Watching,
            },
        };
        match outcome {
            AcceptOutcome::Watching => state.watch_at(entry.task_id, next_check_ms),
            _ => state.unwatch(entry.task_id),
        }
        Ok(outcome)
    }

    /// See [`super::Store::ping`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`super::Store::ttl`].
    pub async fn ttl(&self, task_id: TaskId) -> Result<Option<Duration>, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        Ok(state
            .task(task_id)
            .and_then(|task| task.expires_at)
            .map(|at| at.saturating_duration_since(now)))
    }

    /// A Processor's plain write of hash fields (see [`super::ProcessorReport`]): like HSET, it
    /// creates the hash if it is gone.
    pub(super) async fn processor_write(
        &self,
        task_id: TaskId,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.task(task_id).is_none() {
            state.tasks.insert(
                task_id,
                StoredTask {
                    fields: HashMap::new(),
                    expires_at: None,
                },
            );
        }
        let task = state.tasks.get_mut(&task_id).expect("inserted above");
        for (field, value) in pairs {
            task.fields.insert((*field).to_owned(), (*value).to_owned());
        }
        drop(state);
        self.changed(Change::Task(task_id));
        Ok(())
    }

    /// See [`super::Store::processor_status`].
    pub async fn processor_status(&self, task_id: TaskId) -> Result<Option<RawStatus>, StoreError> {
        let mut state = self.lock();
        Ok(state
            .task(task_id)
            .and_then(|task| task.fields.get(fields::STATUS))
            .map(|status| RawStatus::parse(status)))
    }
}

impl State {
    /// The live task, dropping it first if it has expired.
    fn task(&mut self, task_id: TaskId) -> Option<&mut StoredTask> {
        let now = Instant::now();
        if self
            .tasks
            .get(&task_id)
            .is_some_and(|t| t.expires_at.is_some_and(|at| at <= now))
        {
            self.tasks.remove(&task_id);
        }
        self.tasks.get_mut(&task_id)
    }
}

impl StoredTask {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn final_status(&self) -> Option<TaskStatus> {
        RawStatus::parse(self.field(fields::STATUS)).final_status()
    }

    fn is_final(&self) -> bool {
        self.final_status().is_some()
    }

    /// Gives a final task its TTL if it has none (the Redis store's `TTL == -1` rule).
    fn expire_if_final(&mut self, ttl: Duration) {
        if self.is_final() && self.expires_at.is_none() {
            self.expires_at = Some(Instant::now() + ttl);
        }
    }
}
