//! A bounded cache of `GetTaskStatus` reads, kept at most one invalidation behind Redis by
//! server-assisted client-side caching (RESP3 `CLIENT TRACKING`) on a connection of its own.
//!
//! Every read the cache answers from memory was read from Redis through the tracked connection,
//! which registered the key with Redis: the next write to it makes Redis push an invalidation
//! down that connection, and the driver applies it (removes the entry) before it hands on any
//! answer that came after it. Three rules keep reads honest around that:
//! - **A read may fill the cache only if nothing happened to its key while it was away.** It
//!   marks the key `Filling` before sending; an invalidation, a lost connection, or any other
//!   read of the same key coming back first (which may have seen a newer value) removes the mark,
//!   and then nothing is cached. So two reads racing a write can never leave the older value in
//!   memory after the newer one was answered, and no status seen once is seen to go backwards.
//! - **Hits need a fresh proof that invalidations arrive.** A PING goes down the connection every
//!   quarter of the lease; its answer proves every invalidation Redis sent before it was applied.
//!   Hits stop when no answer proved it within the lease (Redis paused, cut off, or the
//!   connection silently dead): a hit never misses a write older than the lease, and with Redis
//!   unreachable reads go to Redis and fail as they would without the cache.
//! - **Bounded**, here and in Redis: at most `entries` keys, an arbitrary one evicted to make
//!   room; an entry ends with its task's TTL; a lost or replaced connection empties the cache.
//!   A task is first read on the ordinary connection and only marked `Known` if it exists; only
//!   a known task is read through the tracked connection. So Redis's tracking table holds only
//!   keys of tasks that existed: a client asking for random ids makes it grow by nothing.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bb8_redis::redis::{
    self, AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, RedisResult, Value,
    aio::MultiplexedConnection,
};

use crate::task::{TaskId, TaskRecord};

/// Shards of the map, each behind its own lock.
const SHARDS: usize = 16;
/// PINGs that fail in a row before the connection is given up and made again.
const FAILED_PINGS_TO_RECONNECT: u32 = 2;

/// The cache of one Redis node. Cloning is cheap and shares it.
#[derive(Clone)]
pub(super) struct ReadCache {
    shared: Arc<Shared>,
}

struct Shared {
    shards: Box<[Mutex<HashMap<TaskId, Slot>>]>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    lease: Duration,
    timeout: Duration,
    /// The node, spoken to in RESP3 (invalidations arrive on the connection that read).
    client: Client,
    tracked: RwLock<Option<Tracked>>,
    /// Counts the tracked connections made; entries from reads on older ones are not kept.
    generations: AtomicU64,
    tokens: AtomicU64,
    /// When (nanoseconds after `epoch`) the latest command was sent whose answer came back on
    /// the current tracked connection: every invalidation sent before then has been applied.
    /// 0: nothing proven on this connection.
    proven: AtomicU64,
    epoch: Instant,
    started: AtomicBool,
    failed_pings: AtomicU32,
    counts: Counts,
}

/// What the cache has done, for the metrics.
#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    resets: AtomicU64,
}

/// Figures about the cache, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to Redis (uncached while the cache has no tracked connection).
    pub misses: u64,
    /// Keys Redis said were written (or expired, or deleted).
    pub invalidations: u64,
    /// Times the cache was emptied: a tracked connection lost or replaced, a FLUSHALL.
    pub resets: u64,
    /// Entries held now (reads in flight included).
    pub entries: u64,
}

#[derive(Clone)]
struct Tracked {
    connection: MultiplexedConnection,
    generation: u64,
}

enum Slot {
    /// The task existed when last read (or its entry was invalidated): the next read goes
    /// through the tracked connection and may fill the slot.
    Known,
    /// A read is on its way; only it may fill the slot, and only if the mark is still here.
    Filling { token: u64, generation: u64 },
    Cached {
        record: TaskRecord,
        until: Option<Instant>,
    },
}

/// A read that goes to Redis, to be finished with [`ReadCache::finish`].
pub(super) struct Miss {
    /// The tracked connection to read on; `None`: the ordinary one (a task not known to exist,
    /// a read racing another, or no tracked connection now).
    pub connection: Option<MultiplexedConnection>,
    generation: u64,
    /// Set when this read may fill the slot (it then reads on the tracked connection).
    token: Option<u64>,
    sent: u64,
}

impl ReadCache {
    /// A cache of at most `entries` tasks for the node of `client`, whose hits need a proof no
    /// older than `lease`; Redis calls are bounded by `timeout`. Connects when first used.
    pub fn new(
        client: &Client,
        entries: usize,
        lease: Duration,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        // The address keeps the TLS settings (certificates included) of `client`.
        let client = Client::open(info.set_redis_settings(settings))?;
        Ok(Self {
            shared: Arc::new(Shared {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: std::collections::hash_map::RandomState::new(),
                per_shard: entries.div_ceil(SHARDS).max(1),
                lease,
                timeout,
                client,
                tracked: RwLock::new(None),
                generations: AtomicU64::new(0),
                tokens: AtomicU64::new(0),
                proven: AtomicU64::new(0),
                epoch: Instant::now(),
                started: AtomicBool::new(false),
                failed_pings: AtomicU32::new(0),
                counts: Counts::default(),
            }),
        })
    }

    /// The task as last read, if the cache may answer for it now.
    pub fn hit(&self, id: TaskId) -> Option<TaskRecord> {
        self.shared.start();
        if !self.shared.proven_within_lease() {
            return None;
        }
        let now = Instant::now();
        let hit = match self.shared.shard(id).get(&id) {
            Some(Slot::Cached { record, until }) if until.is_none_or(|u| now < u) => {
                Some(record.clone())
            }
            _ => None,
        };
        if hit.is_some() {
            self.shared.counts.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Starts a read of `id` that memory could not answer.
    pub fn miss(&self, id: TaskId) -> Miss {
        self.shared.start();
        self.shared.counts.misses.fetch_add(1, Ordering::Relaxed);
        let untracked = Miss {
            connection: None,
            generation: 0,
            token: None,
            sent: 0,
        };
        let Some(Tracked {
            connection,
            generation,
        }) = self.shared.tracked()
        else {
            return untracked;
        };
        let now = Instant::now();
        let mut shard = self.shared.shard(id);
        let fills = match shard.get(&id) {
            // Known to exist, or an entry past its task's TTL: this read may fill the slot.
            Some(Slot::Known) => true,
            Some(Slot::Cached {
                until: Some(until), ..
            }) => *until <= now,
            // Not known to exist (a read on the ordinary connection registers nothing with
            // Redis), another read on its way (this one fills nothing, and when it is back takes
            // the other's mark away: see `finish`), or an entry the lease keeps from being
            // answered (the read tells whether it is behind).
            _ => false,
        };
        if !fills {
            return untracked;
        }
        let token = self.shared.tokens.fetch_add(1, Ordering::Relaxed);
        shard.insert(id, Slot::Filling { token, generation });
        drop(shard);
        Miss {
            connection: Some(connection),
            generation,
            token: Some(token),
            sent: self.shared.now(),
        }
    }

    /// Ends a read started by [`ReadCache::miss`]: `read` is what Redis answered (the task and
    /// its TTL in seconds), or `None` if the read failed.
    pub fn finish(&self, id: TaskId, miss: Miss, read: Option<(&Option<TaskRecord>, i64)>) {
        if read.is_some() && miss.connection.is_some() {
            self.shared.prove(miss.generation, miss.sent);
        }
        let current = self.shared.generation();
        let mut shard = self.shared.shard(id);
        let ours = |token: &u64| Some(*token) == miss.token;
        let keep = match (shard.get(&id), read) {
            (Some(Slot::Filling { token, generation }), Some((Some(record), ttl)))
                if ours(token) && *generation == current =>
            {
                Some(Slot::Cached {
                    record: record.clone(),
                    until: until_of(ttl),
                })
            }
            // Ours, but the task is missing, the read failed or the connection changed.
            (Some(Slot::Filling { token, .. }), _) if ours(token) => None,
            // A failed read answered nothing: it has nothing to say about the slot.
            (_, None) => return,
            // Another read's mark: it may come back with an older value than ours.
            (Some(Slot::Filling { .. }), Some(_)) => None,
            // An entry that differs from what Redis just answered is behind it.
            (Some(Slot::Cached { record, .. }), Some((read, _)))
                if Some(record) != read.as_ref() =>
            {
                read.as_ref().map(|_| Slot::Known)
            }
            // The task exists: the next read may go through the tracked connection.
            (None, Some((Some(_), _))) => {
                if shard.len() >= self.shared.per_shard {
                    evict_one(&mut shard);
                }
                Some(Slot::Known)
            }
            (Some(Slot::Known), Some((None, _))) => None,
            _ => return,
        };
        match keep {
            Some(slot) => shard.insert(id, slot),
            None => shard.remove(&id),
        };
    }

    /// The service wrote the task itself: the next read of it goes to Redis (and no read that
    /// was on its way may fill the cache with what it saw before the write).
    pub fn forget(&self, id: TaskId) {
        self.shared.shard(id).remove(&id);
    }

    /// Figures for the metrics.
    pub fn stats(&self) -> ReadCacheStats {
        let counts = &self.shared.counts;
        ReadCacheStats {
            hits: counts.hits.load(Ordering::Relaxed),
            misses: counts.misses.load(Ordering::Relaxed),
            invalidations: counts.invalidations.load(Ordering::Relaxed),
            resets: counts.resets.load(Ordering::Relaxed),
            entries: self
                .shared
                .shards
                .iter()
                .map(|s| lock(s).len() as u64)
                .sum(),
        }
    }
}

impl Shared {
    /// Starts the task that connects and proves the connection, once.
    fn start(self: &Arc<Self>) {
        if !self.started.load(Ordering::Relaxed)
            && !self.started.swap(true, Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(keep_tracking(Arc::downgrade(self)));
        }
    }

    fn shard(&self, id: TaskId) -> std::sync::MutexGuard<'_, HashMap<TaskId, Slot>> {
        lock(&self.shards[self.hasher.hash_one(id) as usize % SHARDS])
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn proven_within_lease(&self) -> bool {
        let proven = self.proven.load(Ordering::Acquire);
        proven != 0
            && self.now().saturating_sub(proven)
                <= u64::try_from(self.lease.as_nanos()).unwrap_or(u64::MAX)
    }

    /// An answer came back on connection `generation` to a command sent at `sent`.
    fn prove(&self, generation: u64, sent: u64) {
        if generation == self.generation() {
            self.proven.fetch_max(sent, Ordering::AcqRel);
        }
    }

    fn tracked(&self) -> Option<Tracked> {
        self.tracked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn generation(&self) -> u64 {
        self.tracked().map_or(0, |t| t.generation)
    }

    /// Removes every entry and mark, and what proved the old connection.
    fn reset(&self) {
        self.proven.store(0, Ordering::Release);
        for shard in &self.shards {
            lock(shard).clear();
        }
        self.counts.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives up the connection `generation` (if still the current one) and all it backed.
    fn drop_connection(&self, generation: u64) {
        let mut tracked = self.tracked.write().unwrap_or_else(|p| p.into_inner());
        if tracked.as_ref().is_some_and(|t| t.generation == generation) {
            *tracked = None;
            drop(tracked);
            self.reset();
        }
    }

    /// What Redis pushed on connection `generation`; runs in the connection's driver, before it
    /// hands on the answers that followed.
    fn on_push(&self, generation: u64, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        let id = match key {
                            Value::BulkString(bytes) => std::str::from_utf8(bytes)
                                .ok()
                                .and_then(|k| k.strip_prefix("task:"))
                                .and_then(|id| TaskId::parse(id).ok()),
                            _ => None,
                        };
                        if let Some(id) = id {
                            let mut shard = self.shard(id);
                            // An entry goes (the task most likely still exists); a read on its
                            // way may no longer fill the slot.
                            match shard.get(&id) {
                                Some(Slot::Cached { .. }) => {
                                    shard.insert(id, Slot::Known);
                                }
                                Some(Slot::Filling { .. }) => {
                                    shard.remove(&id);
                                }
                                _ => {}
                            }
                        }
                        self.counts.invalidations.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // FLUSHALL or FLUSHDB (a null in place of the keys), or a form not known.
                _ => self.reset(),
            },
            PushKind::Disconnection => self.drop_connection(generation),
            _ => {}
        }
    }

    /// Makes a tracked connection, and makes it the current one.
    async fn connect(self: &Arc<Self>) -> RedisResult<()> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let weak = Arc::downgrade(self);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(move |push: PushInfo| {
                if let Some(shared) = weak.upgrade() {
                    shared.on_push(generation, push);
                }
                Ok::<(), redis::aio::SendError>(())
            });
        let mut connection = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| timed_out("connecting"))??;
        tokio::time::timeout(
            self.timeout,
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .query_async::<()>(&mut connection),
        )
        .await
        .map_err(|_| timed_out("CLIENT TRACKING ON"))??;
        let sent = self.now();
        *self.tracked.write().unwrap_or_else(|p| p.into_inner()) = Some(Tracked {
            connection,
            generation,
        });
        // Whatever an older connection backed is gone with it.
        self.reset();
        self.failed_pings.store(0, Ordering::Relaxed);
        self.prove(generation, sent);
        Ok(())
    }

    /// Sends a PING down the current connection: its answer proves the invalidations before it.
    async fn ping(&self) {
        let Some(Tracked {
            mut connection,
            generation,
        }) = self.tracked()
        else {
            return;
        };
        let sent = self.now();
        let answer = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await;
        if matches!(answer, Ok(Ok(()))) {
            self.failed_pings.store(0, Ordering::Relaxed);
            self.prove(generation, sent);
        } else if self.failed_pings.fetch_add(1, Ordering::Relaxed) + 1 >= FAILED_PINGS_TO_RECONNECT
        {
            tracing::debug!("the read cache's Redis connection does not answer: making another");
            self.drop_connection(generation);
        }
    }
}

/// Until the cache is dropped: connects (again, after a loss), and proves the connection every
/// quarter of the lease.
async fn keep_tracking(shared: Weak<Shared>) {
    let mut warned = false;
    loop {
        let Some(cache) = shared.upgrade() else {
            return;
        };
        if cache.tracked().is_none() {
            match cache.connect().await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "the read cache cannot track keys on Redis; reads go to Redis until it can");
                }
                Err(e) => tracing::debug!(error = %e, "the read cache still cannot track keys"),
            }
        } else {
            cache.ping().await;
        }
        let pause = (cache.lease / 4).max(Duration::from_millis(1));
        drop(cache);
        tokio::time::sleep(pause).await;
    }
}

/// Until when an entry of a task with `ttl` seconds left may be answered (`TTL` rounds, so a
/// second less); none when it has no TTL.
fn until_of(ttl: i64) -> Option<Instant> {
    match u64::try_from(ttl) {
        Ok(secs) => Some(Instant::now() + Duration::from_secs(secs.saturating_sub(1))),
        Err(_) => None,
    }
}

/// Makes room in a full shard.
fn evict_one(shard: &mut HashMap<TaskId, Slot>) {
    if let Some(id) = shard.keys().next().copied() {
        shard.remove(&id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn timed_out(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} did not answer within TASK_REDIS_TIMEOUT"),
    ))
}
