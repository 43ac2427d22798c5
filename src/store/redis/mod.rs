//! The Redis backend: hot-path commands on auto-reconnecting multiplexed connections, blocking
//! queue reads on a bb8-redis pool, every operation bounded by `TASK_REDIS_TIMEOUT`.

mod scripts;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bb8_redis::{
    RedisConnectionManager,
    redis::{
        self, Client, FromRedisValue, RedisError, RedisResult, Value,
        aio::{ConnectionManager, ConnectionManagerConfig},
        streams::{StreamClaimReply, StreamPendingCountReply, StreamRangeReply, StreamReadReply},
    },
};

use tracing::Instrument;

use super::{
    AcceptOutcome, FailOutcome, FailRequest, GROUP, PendingEntry, QueueEntry, QueueStats, Settled,
    StoreError, task_key,
};
use crate::{config::RedisConfig, task::TaskRecord};

/// The Redis store. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    connections: Vec<ConnectionManager>,
    next_connection: AtomicUsize,
    pool: bb8::Pool<RedisConnectionManager>,
    stream_key: String,
    watch_key: String,
    timeout: Duration,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.inner.addr)
            .field("stream_key", &self.inner.stream_key)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares the connections without waiting for Redis: the service starts while Redis is
    /// down, answers INTERNAL until it is up, and reconnects by itself.
    pub fn connect(config: &RedisConfig, task_ttl: Duration) -> Result<Self, StoreError> {
        let addr = format!("{}:{}", config.host, config.port);
        let info = (config.host.clone(), config.port);
        let unreachable = |e: RedisError| StoreError::Unreachable {
            addr: addr.clone(),
            reason: e.to_string(),
        };
        let client = Client::open(info.clone()).map_err(unreachable)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connections = (0..config.connections)
            .map(|_| {
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreachable)?;
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(None)
            .connection_timeout(config.timeout)
            .build_unchecked(RedisConnectionManager::new(info).map_err(unreachable)?);
        Ok(Self {
            inner: Arc::new(Inner {
                addr,
                connections,
                next_connection: AtomicUsize::new(0),
                pool,
                stream_key: format!("{}:dispatch", config.key_prefix),
                watch_key: format!("{}:watch", config.key_prefix),
                timeout: config.timeout,
                ttl_secs: task_ttl.as_secs().max(1),
            }),
        })
    }

    /// `Redis at host:port`.
    pub fn describe(&self) -> String {
        format!("Redis at {}", self.inner.addr)
    }

    /// The dispatch stream's key.
    pub fn stream_key(&self) -> &str {
        &self.inner.stream_key
    }

    /// The watch list's key.
    pub fn watch_key(&self) -> &str {
        &self.inner.watch_key
    }

    /// A multiplexed connection, round robin.
    fn connection(&self) -> ConnectionManager {
        let i = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        self.inner.connections[i % self.inner.connections.len()].clone()
    }

    /// Runs one operation within the timeout, in a client span named after it, mapping Redis's
    /// errors to [`StoreError`].
    async fn bounded<T>(
        &self,
        limit: Duration,
        (name, key): (&'static str, &str),
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let span = tracing::info_span!(
            "redis",
            otel.name = name,
            otel.kind = "client",
            db.system = "redis",
            db.operation.name = name,
            db.redis.key = key,
            server.address = %self.inner.addr,
        );
        match tokio::time::timeout(limit, op).instrument(span).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(StoreError::Timeout {
                addr: self.inner.addr.clone(),
                after: self.inner.timeout,
            }),
        }
    }

    async fn run<T>(
        &self,
        what: (&'static str, &str),
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.bounded(self.inner.timeout, what, op).await
    }

    fn error(&self, e: RedisError) -> StoreError {
        let addr = self.inner.addr.clone();
        if e.is_timeout() {
            StoreError::Timeout {
                addr,
                after: self.inner.timeout,
            }
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            StoreError::Unreachable {
                addr,
                reason: e.to_string(),
            }
        } else {
            StoreError::Command {
                addr,
                reason: e.to_string(),
            }
        }
    }

    /// See [`super::Store::create`].
    pub async fn create(
        &self,
        task: &TaskRecord,
        trace: &[(String, String)],
    ) -> Result<String, StoreError> {
        let key = task_key(&task.task_id);
        let mut invocation = scripts::CREATE.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.inner.stream_key)
            .arg(&task.task_id)
            .arg(&task.original_file_key)
            .arg(&task.created_at);
        for (field, value) in trace {
            invocation.arg(field).arg(value);
        }
        let mut conn = self.connection();
        self.run(("EVALSHA create", &key), invocation.invoke_async(&mut conn))
            .await
    }

    /// See [`super::Store::read`].
    pub async fn read(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let key = task_key(task_id);
        let mut invocation = scripts::READ.prepare_invoke();
        invocation.key(&key).arg(self.inner.ttl_secs);
        let mut conn = self.connection();
        let flat: Vec<String> = self
            .run(("EVALSHA read", &key), invocation.invoke_async(&mut conn))
            .await?;
        let mut items = flat.into_iter();
        let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
        let record = TaskRecord::from_pairs(pairs);
        Ok(record)
    }

    /// See [`super::Store::fail`].
    pub async fn fail(&self, request: FailRequest<'_>) -> Result<FailOutcome, StoreError> {
        let key = task_key(request.task_id);
        let mut invocation = scripts::FAIL.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.inner.stream_key)
            .key(&self.inner.watch_key)
            .arg(request.task_id)
            .arg(request.message)
            .arg(request.now)
            .arg(self.inner.ttl_secs)
            .arg(GROUP)
            .arg(request.entry_id.unwrap_or_default())
            .arg(request.expect_updated_at.unwrap_or_default());
        let mut conn = self.connection();
        let outcome: String = self
            .run(("EVALSHA fail", &key), invocation.invoke_async(&mut conn))
            .await?;
        match outcome.as_str() {
            "failed" => Ok(FailOutcome::Failed),
            "final" => Ok(FailOutcome::AlreadyFinal),
            "missing" => Ok(FailOutcome::Missing),
            "changed" => Ok(FailOutcome::Changed),
            other => Err(StoreError::Corrupt(format!(
                "fail script answered {other:?}"
            ))),
        }
    }

    /// See [`super::Store::accepted`].
    pub async fn accepted(
        &self,
        entry: &QueueEntry,
        next_check_ms: u64,
    ) -> Result<AcceptOutcome, StoreError> {
        let key = task_key(&entry.task_id);
        let mut invocation = scripts::ACCEPTED.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.inner.stream_key)
            .key(&self.inner.watch_key)
            .arg(&entry.task_id)
            .arg(GROUP)
            .arg(&entry.id)
            .arg(self.inner.ttl_secs)
            .arg(next_check_ms);
        let mut conn = self.connection();
        let outcome: String = self
            .run(
                ("EVALSHA accepted", &key),
                invocation.invoke_async(&mut conn),
            )
            .await?;
        match outcome.as_str() {
            "watching" => Ok(AcceptOutcome::Watching),
            "missing" => Ok(AcceptOutcome::Missing),
            "COMPLETED" | "FAILED" => Ok(AcceptOutcome::Final(outcome)),
            other => Err(StoreError::Corrupt(format!(
                "accepted script answered {other:?}"
            ))),
        }
    }

    /// See [`super::Store::ensure_queue`].
    pub async fn ensure_queue(&self) -> Result<(), StoreError> {
        let mut conn = self.connection();
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(&self.inner.stream_key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self
            .run(
                ("XGROUP CREATE", &self.inner.stream_key),
                create.query_async::<()>(&mut conn),
            )
            .await
        {
            Err(StoreError::Command { reason, .. }) if reason.contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Recreates the group when Redis lost it (restart without persistence, FLUSHALL).
    async fn on_missing_group<T>(
        &self,
        result: Result<T, StoreError>,
        empty: T,
    ) -> Result<T, StoreError> {
        match result {
            Err(StoreError::Command { reason, .. }) if reason.contains("NOGROUP") => {
                tracing::warn!(stream = %self.inner.stream_key, "the dispatch queue's consumer group is missing; recreating it");
                self.ensure_queue().await?;
                Ok(empty)
            }
            other => other,
        }
    }

    /// See [`super::Store::read_new`]. A missing group (Redis lost its data) is recreated and
    /// the read made again, so that entries queued since are not skipped.
    pub async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        match self.read_new_once(consumer, count, block).await {
            Err(StoreError::Command { reason, .. }) if reason.contains("NOGROUP") => {
                tracing::warn!(stream = %self.inner.stream_key, "the dispatch queue's consumer group is missing; recreating it");
                self.ensure_queue().await?;
                self.read_new_once(consumer, count, block).await
            }
            other => other,
        }
    }

    async fn read_new_once(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let limit = block + self.inner.timeout;
        self.bounded(limit, ("XREADGROUP", &self.inner.stream_key), async {
            let mut conn = self.inner.pool.get().await.map_err(|e| match e {
                bb8::RunError::User(e) => e,
                bb8::RunError::TimedOut => RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no pooled connection could be made in time",
                )),
            })?;
            conn.set_response_timeout(limit);
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count);
            if !block.is_zero() {
                // BLOCK 0 would wait forever; no BLOCK at all returns at once.
                read.arg("BLOCK").arg(block.as_millis() as u64);
            }
            read.arg("STREAMS")
                .arg(&self.inner.stream_key)
                .arg(">")
                .query_async::<Option<StreamReadReply>>(&mut *conn)
                .await
        })
        .await
        .map(|reply| {
            reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .map(|id| stream_entry(id, 1))
                .collect()
        })
    }

    /// See [`super::Store::idle_entries`].
    pub async fn idle_entries(
        &self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let mut conn = self.connection();
        let result = self
            .run(
                ("XPENDING", &self.inner.stream_key),
                redis::cmd("XPENDING")
                    .arg(&self.inner.stream_key)
                    .arg(GROUP)
                    .arg("IDLE")
                    .arg(min_idle.as_millis() as u64)
                    .arg("-")
                    .arg("+")
                    .arg(count)
                    .query_async::<StreamPendingCountReply>(&mut conn),
            )
            .await
            .map(|reply| {
                reply
                    .ids
                    .into_iter()
                    .map(|p| PendingEntry {
                        id: p.id,
                        consumer: p.consumer,
                        deliveries: p.times_delivered as u32,
                    })
                    .collect()
            });
        self.on_missing_group(result, Vec::new()).await
    }

    /// See [`super::Store::claim`].
    pub async fn claim(
        &self,
        consumer: &str,
        min_idle: Duration,
        ids: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection();
        let result = self
            .run(
                ("XCLAIM", &self.inner.stream_key),
                redis::cmd("XCLAIM")
                    .arg(&self.inner.stream_key)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(min_idle.as_millis() as u64)
                    .arg(ids)
                    .query_async::<StreamClaimReply>(&mut conn),
            )
            .await
            .map(|reply| {
                reply
                    .ids
                    .into_iter()
                    .map(|id| stream_entry(id, 0))
                    .collect()
            });
        self.on_missing_group(result, Vec::new()).await
    }

    /// See [`super::Store::lease`].
    pub async fn lease(
        &self,
        consumer: &str,
        idle: Duration,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = scripts::LEASE.prepare_invoke();
        invocation
            .key(&self.inner.stream_key)
            .arg(GROUP)
            .arg(consumer)
            .arg(idle.as_millis() as u64)
            .arg(ids);
        let mut conn = self.connection();
        let result = self
            .run(
                ("EVALSHA lease", &self.inner.stream_key),
                invocation.invoke_async(&mut conn),
            )
            .await;
        self.on_missing_group(result, ids.to_vec()).await
    }

    /// See [`super::Store::forget_consumers`].
    pub async fn forget_consumers(&self, idle: Duration) -> Result<u64, StoreError> {
        let mut invocation = scripts::FORGET_CONSUMERS.prepare_invoke();
        invocation
            .key(&self.inner.stream_key)
            .arg(GROUP)
            .arg(idle.as_millis() as u64);
        let mut conn = self.connection();
        let result = self
            .run(
                ("EVALSHA forget_consumers", &self.inner.stream_key),
                invocation.invoke_async(&mut conn),
            )
            .await;
        self.on_missing_group(result, 0).await
    }

    /// See [`super::Store::due_watched`].
    pub async fn due_watched(&self, now_ms: u64, count: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection();
        self.run(
            ("ZRANGE BYSCORE", &self.inner.watch_key),
            redis::cmd("ZRANGE")
                .arg(&self.inner.watch_key)
                .arg("-inf")
                .arg(now_ms)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(count)
                .query_async(&mut conn),
        )
        .await
    }

    /// See [`super::Store::settle`]: one pipeline of script calls for the whole batch.
    pub async fn settle(
        &self,
        task_ids: &[String],
        next_check_ms: u64,
    ) -> Result<Vec<Settled>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in task_ids {
            pipe.cmd("EVALSHA")
                .arg(scripts::SETTLE.get_hash())
                .arg(2)
                .arg(task_key(id))
                .arg(&self.inner.watch_key)
                .arg(id)
                .arg(self.inner.ttl_secs)
                .arg(next_check_ms);
        }
        let mut conn = self.connection();
        let replies: Vec<(String, String, String)> = match self
            .run(
                ("EVALSHA settle", &self.inner.watch_key),
                pipe.query_async(&mut conn),
            )
            .await
        {
            // After a Redis restart its script cache is empty: load the script and run again.
            Err(StoreError::Command { reason, .. })
                if reason.to_ascii_lowercase().contains("noscript") =>
            {
                self.run(
                    ("SCRIPT LOAD settle", &self.inner.watch_key),
                    scripts::SETTLE.prepare_invoke().load_async(&mut conn),
                )
                .await?;
                self.run(
                    ("EVALSHA settle", &self.inner.watch_key),
                    pipe.query_async(&mut conn),
                )
                .await?
            }
            other => other?,
        };
        Ok(replies
            .into_iter()
            .map(|(status, updated_at, created_at)| Settled {
                status: (status != "missing").then_some(status),
                updated_at,
                created_at,
            })
            .collect())
    }

    /// See [`super::Store::queue_stats`].
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let mut conn = self.connection();
        let (depth, oldest, watched, pending): (u64, StreamRangeReply, u64, Value) = self
            .run(
                ("queue stats", &self.inner.stream_key),
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&self.inner.stream_key)
                    .cmd("XRANGE")
                    .arg(&self.inner.stream_key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .cmd("ZCARD")
                    .arg(&self.inner.watch_key)
                    .cmd("XPENDING")
                    .arg(&self.inner.stream_key)
                    .arg(GROUP)
                    .ignore_errors()
                    .query_async(&mut conn),
            )
            .await?;
        let pending = match pending {
            Value::Array(items) => items
                .first()
                .and_then(|v| i64::from_redis_value_ref(v).ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok(QueueStats {
            depth,
            pending: pending.max(0) as u64,
            oldest_ms: oldest.ids.first().map(|id| super::entry_ms(&id.id)),
            watched,
        })
    }

    /// See [`super::Store::ping`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection();
        self.run(
            ("PING", ""),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// See [`super::Store::ttl`].
    pub async fn ttl(&self, task_id: &str) -> Result<Option<Duration>, StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection();
        let ttl: i64 = self
            .run(
                ("TTL", &key),
                redis::cmd("TTL").arg(&key).query_async(&mut conn),
            )
            .await?;
        Ok((ttl >= 0).then(|| Duration::from_secs(ttl as u64)))
    }

    /// See [`super::Store::processor_write`].
    pub async fn processor_write(
        &self,
        task_id: &str,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection();
        self.run(
            ("HSET", &key),
            redis::cmd("HSET")
                .arg(&key)
                .arg(pairs)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// See [`super::Store::processor_status`].
    pub async fn processor_status(&self, task_id: &str) -> Result<Option<String>, StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection();
        self.run(
            ("HGET", &key),
            redis::cmd("HGET")
                .arg(&key)
                .arg("status")
                .query_async(&mut conn),
        )
        .await
    }
}

/// A stream entry as a [`QueueEntry`]; values that are not text are skipped.
fn stream_entry(id: redis::streams::StreamId, deliveries: u32) -> QueueEntry {
    let fields = id
        .map
        .into_iter()
        .filter_map(|(field, value)| Some((field, String::from_redis_value(value).ok()?)));
    QueueEntry::from_fields(id.id, fields, deliveries)
}
