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
//! What crosses this boundary is typed: task ids are [`TaskId`]s, statuses [`RawStatus`] or
//! [`TaskStatus`], and each operation answers an enum of what it found. Keys and field names
//! are in [`layout`].

mod error;
pub mod layout;
pub mod memory;
pub mod redis;

use std::time::Duration;

pub use error::StoreError;
pub use layout::{GROUP, task_key};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::task::{RawStatus, TaskId, TaskRecord, TaskStatus};

/// One dispatch entry as taken from the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// The entry's id in the queue (`{ms}-{seq}`, as Redis streams write them).
    pub id: String,
    /// The task to hand to the Processor.
    pub task_id: TaskId,
    /// Its original file.
    pub original_file_key: String,
    /// The creating request's trace context (W3C `traceparent`, `tracestate`), as field/value pairs.
    pub trace: Vec<(String, String)>,
    /// How many times the entry has been delivered, this delivery included.
    pub deliveries: u32,
}

/// An entry of the queue that is not one of ours: its task id is missing or not a UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedEntry {
    /// The entry's id.
    pub id: String,
    /// What its `task_id` field held.
    pub task_id: String,
}

/// What a read of the queue gives: an entry, or one that cannot be dispatched.
pub type Taken = Result<QueueEntry, MalformedEntry>;

impl QueueEntry {
    /// When the entry was queued, in milliseconds since the Unix epoch (the id's first part).
    pub fn enqueued_at_ms(&self) -> u64 {
        entry_ms(&self.id)
    }

    /// Reads an entry from a stream entry's fields.
    fn from_fields(
        id: String,
        fields: impl IntoIterator<Item = (String, String)>,
        deliveries: u32,
    ) -> Taken {
        let mut task_id = String::new();
        let mut original_file_key = String::new();
        let mut trace = Vec::new();
        for (field, value) in fields {
            match field.as_str() {
                layout::entry_fields::TASK_ID => task_id = value,
                layout::entry_fields::ORIGINAL_FILE_KEY => original_file_key = value,
                _ => trace.push((field, value)),
            }
        }
        match TaskId::parse(&task_id) {
            Ok(task_id) => Ok(Self {
                id,
                task_id,
                original_file_key,
                trace,
                deliveries,
            }),
            Err(_) => Err(MalformedEntry { id, task_id }),
        }
    }
}

/// The milliseconds part of a stream id.
fn entry_ms(id: &str) -> u64 {
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

/// A task to create.
#[derive(Clone, Copy, Debug)]
pub struct NewTask<'a> {
    /// Its hash (a new PENDING task).
    pub record: &'a TaskRecord,
    /// When it was created, in milliseconds since the epoch (for the index's order).
    pub created_ms: u64,
    /// The creating request's trace context, for the dispatch entry.
    pub trace: &'a [(String, String)],
    /// The request id that makes a retry answer this task, and how long it does.
    pub request: Option<(&'a str, Duration)>,
}

impl<'a> NewTask<'a> {
    /// A task created now, with no request id.
    pub fn now(record: &'a TaskRecord, trace: &'a [(String, String)]) -> Self {
        Self {
            record,
            created_ms: crate::task::now_ms(),
            trace,
            request: None,
        }
    }
}

/// What [`Store::create`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// The task and its dispatch entry (this id) were written.
    New {
        /// The dispatch entry's id.
        entry_id: String,
    },
    /// The request id belongs to an earlier call for the same file: nothing was written; this
    /// is that call's task.
    Existing(TaskId),
    /// The request id belongs to an earlier call for another file: nothing was written.
    Conflict(TaskId),
}

/// What [`Store::cancel`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was not accepted by the Processor: it is now FAILED, its entry out of the queue,
    /// and the instances delivering it were told.
    Cancelled,
    /// The Processor accepted the task (it has no dispatch entry, or it shows PROCESSING):
    /// nothing was written; the Processor must be asked to cancel first.
    Accepted(RawStatus),
    /// The task is final already: nothing was written.
    Final(TaskStatus),
    /// There is no such task.
    Missing,
}

/// Which tasks a [`Store::cancel`] may fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelAs {
    /// Only one the Processor has not accepted: PENDING, with its dispatch entry (queued,
    /// waiting for a retry, or its call in flight).
    Unaccepted,
    /// Any that is not final: the Processor agreed to stop it (CancelVideo answered OK).
    ProcessorAgreed,
}

/// One page of tasks asked of [`Store::list`].
#[derive(Clone, Copy, Debug)]
pub struct ListQuery<'a> {
    /// Start after this index member (from the previous page); `None`: the newest.
    pub after: Option<&'a str>,
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Tasks wanted.
    pub page_size: usize,
    /// Index members looked at, at most (a page with a rare status may come back short).
    pub budget: usize,
}

/// What [`Store::list`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The tasks, newest first.
    pub tasks: Vec<TaskRecord>,
    /// Where the next page starts (the last index member looked at); `None`: the end.
    pub next: Option<String>,
}

/// Something that happened to tasks, as the store tells its listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The task's hash was written, expired or deleted.
    Task(TaskId),
    /// The task was cancelled (its delivery, wherever it is, should stop).
    Cancelled(TaskId),
    /// Changes may have been missed (the listening connection was lost): look again at all.
    Missed,
}

/// What [`Store::fail`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub task_id: TaskId,
    /// The reason, for `error_message`.
    pub message: &'a str,
    /// The write's `updated_at`.
    pub now: &'a str,
    /// Write only if `updated_at` still has this value.
    pub expect_updated_at: Option<&'a str>,
    /// Acknowledge and delete this dispatch entry in the same step.
    pub entry_id: Option<&'a str>,
}

impl<'a> FailRequest<'a> {
    /// Ends the task of `entry` FAILED and acknowledges the entry, in one step, whatever the task
    /// was last written as (the dispatcher's verdict on an entry it holds).
    pub fn ending(entry: &'a QueueEntry, message: &'a str, now: &'a str) -> Self {
        Self {
            task_id: entry.task_id,
            message,
            now,
            expect_updated_at: None,
            entry_id: Some(&entry.id),
        }
    }
}

/// What [`Store::accepted`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// The task is unfinished and now on the watch list.
    Watching,
    /// The task is already final (the Processor answered when done): COMPLETED or FAILED. It has
    /// its TTL.
    Final(TaskStatus),
    /// The task hash is gone.
    Missing,
}

/// A watched task as [`Store::settle`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The hash is gone; the task left the watch list.
    Missing,
    /// The task is final (COMPLETED or FAILED); it has its TTL and left the watch list.
    Final(TaskStatus),
    /// The task is not final; it is looked at again later.
    Unfinished {
        /// The status as written.
        status: RawStatus,
        /// `updated_at` as written.
        updated_at: String,
        /// `created_at` as written.
        created_at: String,
    },
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

/// What a Processor writes into a task hash (plain HSETs, outside any fence: that is how the
/// contract's Processor writes). The service itself never writes these; the reference Processor
/// and the benchmarks' instant Processor do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorReport<'a> {
    /// Work started.
    Processing,
    /// Done: the result's key.
    Completed {
        /// `result_file_key`.
        result_file_key: &'a str,
    },
    /// Ended without a result.
    Failed {
        /// `error_message`.
        error_message: &'a str,
    },
}

impl<'a> ProcessorReport<'a> {
    /// The hash fields this report writes at `now`.
    fn pairs(self, now: &'a str) -> Vec<(&'static str, &'a str)> {
        use crate::task::fields;
        let mut pairs = Vec::with_capacity(4);
        match self {
            Self::Processing => pairs.push((fields::STATUS, TaskStatus::Processing.as_str())),
            Self::Completed { result_file_key } => {
                pairs.push((fields::STATUS, TaskStatus::Completed.as_str()));
                pairs.push((fields::RESULT_FILE_KEY, result_file_key));
                pairs.push((fields::ERROR_MESSAGE, ""));
            }
            Self::Failed { error_message } => {
                pairs.push((fields::STATUS, TaskStatus::Failed.as_str()));
                pairs.push((fields::ERROR_MESSAGE, error_message));
            }
        }
        pairs.push((fields::UPDATED_AT, now));
        pairs
    }
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
    /// Creates a task, its dispatch entry, its index member and (with a request id) its
    /// idempotency record in one atomic step — unless the request id answers an earlier call.
    pub async fn create(&self, task: NewTask<'_>) -> Result<Created, StoreError> {
        each!(self, s => s.create(task).await)
    }

    /// Cancels a task as `how` allows (see [`CancelOutcome`]), fenced: FAILED with `message`,
    /// its dispatch entry (if any) out of the queue, and every instance told.
    pub async fn cancel(
        &self,
        task_id: TaskId,
        message: &str,
        now: &str,
        how: CancelAs,
    ) -> Result<CancelOutcome, StoreError> {
        each!(self, s => s.cancel(task_id, message, now, how).await)
    }

    /// A page of tasks, newest first; removes index members whose task is gone on the way.
    pub async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        each!(self, s => s.list(query).await)
    }

    /// Removes index members whose task is gone, looking at `count` members after `after`;
    /// returns how many it removed and where to go on (`None`: the end was reached).
    pub async fn trim_index(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        each!(self, s => s.trim_index(after, count).await)
    }

    /// Asks the store to tell of changes to task hashes (Redis: keyspace notifications, set
    /// with `CONFIG SET` if they are off and that is allowed); false if it cannot.
    pub async fn enable_notifications(&self) -> bool {
        each!(self, s => s.enable_notifications().await)
    }

    /// Sends every [`Change`] to `sink` until `stop` (task changes only if `tasks`: else only
    /// cancellations), reconnecting after failures. A [`Change::Missed`] comes first, once
    /// listening, and again after each reconnection.
    pub async fn listen(
        &self,
        sink: tokio::sync::mpsc::Sender<Change>,
        tasks: bool,
        stop: tokio_util::sync::CancellationToken,
    ) {
        each!(self, s => s.listen(sink, tasks, stop).await)
    }

    /// Reads a task; a final task without TTL gets it.
    pub async fn read(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        each!(self, s => s.read(task_id).await)
    }

    /// Reads a task for `GetTaskStatus`: like [`Store::read`], but on Redis with
    /// `TASK_READ_CACHE_ENTRIES` it may be answered from memory, at most one invalidation (and
    /// never more than `TASK_READ_CACHE_LEASE`) behind Redis, never older than an answer given
    /// before it. Whatever acts on a state (watches, the dispatcher) reads with [`Store::read`].
    pub async fn read_status(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        match self {
            Store::Redis(s) => s.read_status(task_id).await,
            Store::Memory(s) => s.read(task_id).await,
        }
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

    /// Acknowledges and deletes an entry that cannot be dispatched.
    pub async fn discard(&self, entry_id: &str) -> Result<(), StoreError> {
        each!(self, s => s.discard(entry_id).await)
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
    ) -> Result<Vec<Taken>, StoreError> {
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
    ) -> Result<Vec<Taken>, StoreError> {
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
    pub async fn due_watched(&self, now_ms: u64, count: usize) -> Result<Vec<TaskId>, StoreError> {
        each!(self, s => s.due_watched(now_ms, count).await)
    }

    /// Looks at watched tasks (see [`Settled`]); unfinished ones are rescheduled at `next_check_ms`.
    pub async fn settle(
        &self,
        task_ids: &[TaskId],
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
    pub async fn ttl(&self, task_id: TaskId) -> Result<Option<Duration>, StoreError> {
        each!(self, s => s.ttl(task_id).await)
    }

    /// A task's status as a Processor reads it (no side effects); `None` when there is no task.
    pub async fn processor_status(&self, task_id: TaskId) -> Result<Option<RawStatus>, StoreError> {
        each!(self, s => s.processor_status(task_id).await)
    }

    /// Writes what a Processor reports about a task at `now`, as the contract's Processor does:
    /// plain HSETs, no fence (see [`ProcessorReport`]).
    pub async fn processor_report(
        &self,
        task_id: TaskId,
        report: ProcessorReport<'_>,
        now: &str,
    ) -> Result<(), StoreError> {
        let pairs = report.pairs(now);
        each!(self, s => s.processor_write(task_id, &pairs).await)
    }

    /// Any plain write of hash fields, as a Processor (or an operator) could make: for tests
    /// that write what the contract allows others to write.
    #[cfg(feature = "test-util")]
    pub async fn processor_write(
        &self,
        task_id: TaskId,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        each!(self, s => s.processor_write(task_id, pairs).await)
    }
}
