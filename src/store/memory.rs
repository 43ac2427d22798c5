//! The in-memory backend of the dev mode: the same semantics as the Redis store (fencing, TTLs,
//! a queue with deliveries, leases and idle times), in one process. Time is tokio's, so tests can
//! pause it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{sync::Notify, time::Instant};

use super::{
    AcceptOutcome, FailOutcome, FailRequest, PendingEntry, QueueEntry, QueueStats, Settled,
    StoreError, Taken, layout::entry_fields,
};
use crate::task::{RawStatus, TaskId, TaskRecord, TaskStatus, fields};

/// The in-memory store. Cloning shares the data.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    arrivals: Arc<Notify>,
    /// Queue reads waiting for an arrival.
    waiting: Arc<AtomicUsize>,
    ttl: Duration,
}

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
    pub async fn create(
        &self,
        task: &TaskRecord,
        trace: &[(String, String)],
    ) -> Result<String, StoreError> {
        let id = TaskId::parse(&task.task_id).map_err(StoreError::Corrupt)?;
        let mut state = self.lock();
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
        entry.extend(trace.iter().cloned());
        state.entries.insert(key, entry);
        drop(state);
        self.arrivals.notify_waiters();
        Ok(format_id(key))
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
        }
        if outcome != FailOutcome::Changed {
            state.unwatch(request.task_id);
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

    /// See [`super::Store::discard`].
    pub async fn discard(&self, entry_id: &str) -> Result<(), StoreError> {
        self.lock().acknowledge(entry_id);
        Ok(())
    }

    /// See [`super::Store::ensure_queue`]: the in-memory queue always exists.
    pub async fn ensure_queue(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`super::Store::read_new`].
    pub async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Taken>, StoreError> {
        let deadline = Instant::now() + block;
        loop {
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let taken = self.lock().deliver_new(consumer, count);
            if !taken.is_empty() {
                return Ok(taken);
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let woke = tokio::time::timeout_at(deadline, arrival).await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if woke.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Queue reads waiting for an entry right now: for tests that must start writing only once
    /// a reader waits.
    #[cfg(feature = "test-util")]
    pub fn waiting_readers(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// See [`super::Store::idle_entries`].
    pub async fn idle_entries(
        &self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let state = self.lock();
        let now = Instant::now();
        Ok(state
            .pending
            .iter()
            .filter(|(_, d)| now.duration_since(d.delivered_at) >= min_idle)
            .take(count)
            .map(|(key, d)| PendingEntry {
                id: format_id(*key),
                consumer: d.consumer.clone(),
                deliveries: d.deliveries,
            })
            .collect())
    }

    /// See [`super::Store::claim`].
    pub async fn claim(
        &self,
        consumer: &str,
        min_idle: Duration,
        ids: &[String],
    ) -> Result<Vec<Taken>, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        state.consumers.insert(consumer.to_owned(), now);
        let mut claimed = Vec::new();
        for key in ids.iter().filter_map(|id| parse_id(id)) {
            let Some(fields) = state.entries.get(&key).cloned() else {
                state.pending.remove(&key);
                continue;
            };
            let Some(delivery) = state.pending.get_mut(&key) else {
                continue;
            };
            if now.duration_since(delivery.delivered_at) < min_idle {
                continue;
            }
            delivery.consumer = consumer.to_owned();
            delivery.delivered_at = now;
            delivery.deliveries += 1;
            claimed.push(QueueEntry::from_fields(format_id(key), fields, 0));
        }
        Ok(claimed)
    }

    /// See [`super::Store::lease`].
    pub async fn lease(
        &self,
        consumer: &str,
        idle: Duration,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut lost = Vec::new();
        for id in ids {
            match parse_id(id).and_then(|key| state.pending.get_mut(&key)) {
                Some(delivery) if delivery.consumer == consumer => {
                    delivery.delivered_at = now.checked_sub(idle).unwrap_or(now);
                }
                _ => lost.push(id.clone()),
            }
        }
        Ok(lost)
    }

    /// See [`super::Store::forget_consumers`].
    pub async fn forget_consumers(&self, idle: Duration) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let now = Instant::now();
        let holding: BTreeSet<String> =
            state.pending.values().map(|d| d.consumer.clone()).collect();
        let before = state.consumers.len();
        state
            .consumers
            .retain(|name, seen| holding.contains(name) || now.duration_since(*seen) <= idle);
        Ok((before - state.consumers.len()) as u64)
    }

    /// See [`super::Store::due_watched`].
    pub async fn due_watched(&self, now_ms: u64, count: usize) -> Result<Vec<TaskId>, StoreError> {
        let state = self.lock();
        Ok(state
            .watch
            .iter()
            .take_while(|(score, _)| *score <= now_ms)
            .take(count)
            .map(|(_, id)| *id)
            .collect())
    }

    /// See [`super::Store::settle`].
    pub async fn settle(
        &self,
        task_ids: &[TaskId],
        next_check_ms: u64,
    ) -> Result<Vec<Settled>, StoreError> {
        let mut state = self.lock();
        let ttl = self.ttl;
        let mut settled = Vec::with_capacity(task_ids.len());
        for &id in task_ids {
            let Some(task) = state.task(id) else {
                state.unwatch(id);
                settled.push(Settled::Missing);
                continue;
            };
            if let Some(status) = task.final_status() {
                task.expire_if_final(ttl);
                state.unwatch(id);
                settled.push(Settled::Final(status));
                continue;
            }
            settled.push(Settled::Unfinished {
                status: RawStatus::parse(task.field(fields::STATUS)),
                updated_at: task.field(fields::UPDATED_AT).to_owned(),
                created_at: task.field(fields::CREATED_AT).to_owned(),
            });
            if state.watch_scores.contains_key(&id) {
                state.watch_at(id, next_check_ms);
            }
        }
        Ok(settled)
    }

    /// See [`super::Store::queue_stats`].
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let state = self.lock();
        Ok(QueueStats {
            depth: state.entries.len() as u64,
            pending: state.pending.len() as u64,
            oldest_ms: state.entries.keys().next().map(|(ms, _)| *ms),
            watched: state.watch.len() as u64,
        })
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

    fn next_id(&mut self) -> EntryKey {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_id = if ms > self.last_id.0 {
            (ms, 0)
        } else {
            (self.last_id.0, self.last_id.1 + 1)
        };
        self.last_id
    }

    fn deliver_new(&mut self, consumer: &str, count: usize) -> Vec<Taken> {
        let now = Instant::now();
        let start = (self.last_delivered.0, self.last_delivered.1 + 1);
        let taken: Vec<_> = self
            .entries
            .range(start..)
            .take(count)
            .map(|(key, fields)| (*key, fields.clone()))
            .collect();
        let mut delivered = Vec::with_capacity(taken.len());
        if !taken.is_empty() {
            // As in Redis, a consumer exists once it has been given something.
            self.consumers.insert(consumer.to_owned(), now);
        }
        for (key, fields) in taken {
            self.last_delivered = key;
            self.pending.insert(
                key,
                Delivery {
                    consumer: consumer.to_owned(),
                    delivered_at: now,
                    deliveries: 1,
                },
            );
            delivered.push(QueueEntry::from_fields(format_id(key), fields, 1));
        }
        delivered
    }

    fn acknowledge(&mut self, id: &str) {
        if let Some(key) = parse_id(id) {
            self.pending.remove(&key);
            self.entries.remove(&key);
        }
    }

    fn watch_at(&mut self, task_id: TaskId, score: u64) {
        if let Some(old) = self.watch_scores.insert(task_id, score) {
            self.watch.remove(&(old, task_id));
        }
        self.watch.insert((score, task_id));
    }

    fn unwatch(&mut self, task_id: TaskId) {
        if let Some(old) = self.watch_scores.remove(&task_id) {
            self.watch.remove(&(old, task_id));
        }
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

fn format_id((ms, seq): EntryKey) -> String {
    format!("{ms}-{seq}")
}

fn parse_id(id: &str) -> Option<EntryKey> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
