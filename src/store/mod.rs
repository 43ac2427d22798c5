//! Where tasks live: the `task:{task_id}` hashes, the dispatch queue and the watch list.
//!
//! Two backends with the same semantics: [`RedisStore`] (production) and [`MemoryStore`] (the
//! embedded dev mode, and a reference for the shared store test suite). Both guarantee:
//! - a task and its dispatch entry are created in one atomic step;
//! - the service's own state changes are fenced: a final task (COMPLETED/FAILED) is never
//!   changed, a missing task is never recreated, and a write guarded by `updated_at` happens only
//!   if nobody (the Processor included) wrote since it was read;
//! - a final task gets the TTL, also when someone else wrote the final state.
//!
//! Keys: `task:{id}` (the contract's hash), `{prefix}:dispatch` (a stream with the consumer group
//! `dispatchers`), `{prefix}:watch` (a sorted set of accepted, unfinished tasks by next check
//! time). The prefix never matches `task:*`.

mod error;
pub mod memory;
pub mod redis;

use std::time::Duration;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::task::TaskRecord;

/// The consumer group every instance's dispatcher joins.
pub const GROUP: &str = "dispatchers";

/// One dispatch entry as taken from the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// The entry's id in the queue (`{ms}-{seq}`, as Redis streams write them).
    pub id: String,
    /// The task to hand to the Processor.
    pub task_id: String,
    /// Its original file.
    pub original_file_key: String,
    /// The creating request's trace context (W3C `traceparent`, `tracestate`), as field/value pairs.
    pub trace: Vec<(String, String)>,
    /// How many times the entry has been delivered, this delivery included.
    pub deliveries: u32,
}

impl QueueEntry {
    /// When the entry was queued, in milliseconds since the Unix epoch (the id's first part).
    pub fn enqueued_at_ms(&self) -> u64 {
        entry_ms(&self.id)
    }

    /// Builds an entry from a stream entry's fields.
    fn from_fields(
        id: String,
        fields: impl IntoIterator<Item = (String, String)>,
        deliveries: u32,
    ) -> Self {
        let mut entry = Self {
            id,
            task_id: String::new(),
            original_file_key: String::new(),
            trace: Vec::new(),
            deliveries,
        };
        for (field, value) in fields {
            match field.as_str() {
                "task_id" => entry.task_id = value,
                "original_file_key" => entry.original_file_key = value,
                _ => entry.trace.push((field, value)),
            }
        }
        entry
    }
}

/// The milliseconds part of a stream id.
pub fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// An entry that has been delivered and not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry's id.
    pub id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Deliveries so far.
    pub deliveries: u32,
}

/// What [`Store::fail`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// The task is now FAILED.
    Failed,
    /// The task was already final; it kept its state (and got the TTL if it had none).
    AlreadyFinal,
    /// There is no such task (expired, deleted, or Redis lost it); nothing was written.
    Missing,
    /// The task was written since it was read (its `updated_at` moved); nothing was written.
    Changed,
}

/// A fenced FAILED write.
#[derive(Clone, Copy, Debug)]
pub struct FailRequest<'a> {
    /// The task.
    pub task_id: &'a str,
    /// The reason, for `error_message`.
    pub message: &'a str,
    /// The write's `updated_at`.
    pub now: &'a str,
    /// Write only if `updated_at` still has this value.
    pub expect_updated_at: Option<&'a str>,
    /// Acknowledge and delete this dispatch entry in the same step.
    pub entry_id: Option<&'a str>,
}

/// What [`Store::accepted`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// The task is unfinished and now on the watch list.
    Watching,
    /// The task is already final (the Processor answered when done); it has its TTL. The
    /// status is given.
    Final(String),
    /// The task hash is gone.
    Missing,
}

/// A watched task as [`Store::settle`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The status text, or `None` when the hash is gone.
    pub status: Option<String>,
    /// `updated_at` as written.
    pub updated_at: String,
    /// `created_at` as written.
    pub created_at: String,
}

/// Figures about the dispatch queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries in the queue: waiting plus delivered and not yet acknowledged.
    pub depth: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// When the oldest entry was queued (ms since the epoch), if any.
    pub oldest_ms: Option<u64>,
    /// Tasks accepted by the Processor and not yet final.
    pub watched: u64,
}

/// The store: one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    /// Redis (production).
    Redis(RedisStore),
    /// In memory (dev mode).
    Memory(MemoryStore),
}

macro_rules! each {
    ($self:ident, $store:ident => $body:expr) => {
        match $self {
            Store::Redis($store) => $body,
            Store::Memory($store) => $body,
        }
    };
}

impl Store {
    /// Creates a task and its dispatch entry atomically; returns the entry's id.
    pub async fn create(
        &self,
        task: &TaskRecord,
        trace: &[(String, String)],
    ) -> Result<String, StoreError> {
        each!(self, s => s.create(task, trace).await)
    }

    /// Reads a task; a final task without TTL gets it.
    pub async fn read(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        each!(self, s => s.read(task_id).await)
    }

    /// Ends a task FAILED, fenced (see [`FailOutcome`]).
    pub async fn fail(&self, request: FailRequest<'_>) -> Result<FailOutcome, StoreError> {
        each!(self, s => s.fail(request).await)
    }

    /// The Processor accepted the task of `entry`: acknowledge it, and watch the task until final.
    pub async fn accepted(
        &self,
        entry: &QueueEntry,
        next_check_ms: u64,
    ) -> Result<AcceptOutcome, StoreError> {
        each!(self, s => s.accepted(entry, next_check_ms).await)
    }

    /// Makes sure the queue and its consumer group exist (also after Redis lost its data).
    pub async fn ensure_queue(&self) -> Result<(), StoreError> {
        each!(self, s => s.ensure_queue().await)
    }

    /// Takes up to `count` entries never delivered, waiting up to `block` for one.
    pub async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        each!(self, s => s.read_new(consumer, count, block).await)
    }

    /// Entries idle for at least `min_idle` (their holder stopped renewing its lease).
    pub async fn idle_entries(
        &self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        each!(self, s => s.idle_entries(min_idle, count).await)
    }

    /// Takes over the given entries if they are still idle for `min_idle`; returns those taken,
    /// with their delivery counts not yet filled in (the caller knows them).
    pub async fn claim(
        &self,
        consumer: &str,
        min_idle: Duration,
        ids: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        each!(self, s => s.claim(consumer, min_idle, ids).await)
    }

    /// Sets the idle time of the entries this consumer still holds (0 renews the lease; the
    /// visibility timeout gives them back at once); returns those it no longer holds.
    pub async fn lease(
        &self,
        consumer: &str,
        idle: Duration,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.lease(consumer, idle, ids).await)
    }

    /// Deletes consumers that hold nothing and have been idle for `idle`.
    pub async fn forget_consumers(&self, idle: Duration) -> Result<u64, StoreError> {
        each!(self, s => s.forget_consumers(idle).await)
    }

    /// Watched tasks due for a look at `now_ms`.
    pub async fn due_watched(&self, now_ms: u64, count: usize) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.due_watched(now_ms, count).await)
    }

    /// Looks at watched tasks (see [`Settled`]); unfinished ones are rescheduled at `next_check_ms`.
    pub async fn settle(
        &self,
        task_ids: &[String],
        next_check_ms: u64,
    ) -> Result<Vec<Settled>, StoreError> {
        each!(self, s => s.settle(task_ids, next_check_ms).await)
    }

    /// Figures about the queue.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        each!(self, s => s.queue_stats().await)
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        each!(self, s => s.ping().await)
    }

    /// A task's remaining time to live; `None` when it has no expiry or does not exist.
    pub async fn ttl(&self, task_id: &str) -> Result<Option<Duration>, StoreError> {
        each!(self, s => s.ttl(task_id).await)
    }

    /// A Processor's plain write of hash fields (no fencing: that is how the contract's
    /// Processor writes).
    pub async fn processor_write(
        &self,
        task_id: &str,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        each!(self, s => s.processor_write(task_id, pairs).await)
    }

    /// A task's status as a Processor reads it (no side effects).
    pub async fn processor_status(&self, task_id: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.processor_status(task_id).await)
    }

    /// What to call this store in messages (`Redis at host:port`, `the in-memory store`).
    pub fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
}

/// The contract's key of a task hash.
pub fn task_key(task_id: &str) -> String {
    format!("task:{task_id}")
}
