//! The in-memory dispatch queue (entries, deliveries, idle times, consumers) and watch list,
//! with the semantics of the Redis stream and sorted set they stand for.

use std::{
    collections::BTreeSet,
    sync::atomic::Ordering,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::time::Instant;

use super::{Delivery, EntryKey, MemoryStore, State};
use crate::{
    store::{PendingEntry, QueueEntry, QueueStats, Settled, StoreError, Taken},
    task::{RawStatus, TaskId, fields},
};

impl MemoryStore {
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
}

impl State {
    pub(super) fn next_id(&mut self) -> EntryKey {
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

    pub(super) fn deliver_new(&mut self, consumer: &str, count: usize) -> Vec<Taken> {
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

    pub(super) fn acknowledge(&mut self, id: &str) {
        if let Some(key) = parse_id(id) {
            self.pending.remove(&key);
            self.entries.remove(&key);
        }
    }

    pub(super) fn watch_at(&mut self, task_id: TaskId, score: u64) {
        if let Some(old) = self.watch_scores.insert(task_id, score) {
            self.watch.remove(&(old, task_id));
        }
        self.watch.insert((score, task_id));
    }

    pub(super) fn unwatch(&mut self, task_id: TaskId) {
        if let Some(old) = self.watch_scores.remove(&task_id) {
            self.watch.remove(&(old, task_id));
        }
    }
}

pub(super) fn format_id((ms, seq): EntryKey) -> String {
    format!("{ms}-{seq}")
}

pub(super) fn parse_id(id: &str) -> Option<EntryKey> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
