//! The Redis backend: hot-path commands on auto-reconnecting multiplexed connections, blocking
//! queue reads on a bb8-redis pool, every operation bounded by `TASK_REDIS_TIMEOUT`.
//!
//! This file holds the one place Redis's errors become [`StoreError`]s, and the task
//! operations; [`primary`] the connections (to a fixed node, or the primary Sentinel names),
//! [`queue`] the dispatch queue's and the watch list's operations, [`index`] the task index's
//! (ListTasks), [`notify`] the change notifications.

mod cache;
mod index;
mod notify;
mod primary;
mod queue;
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
        self, Client, ClientTlsConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo,
        RedisConnectionInfo, RedisError, RedisResult, ServerErrorKind, TlsCertificates,
        aio::ConnectionManager,
    },
};
pub use cache::ReadCacheStats;
use primary::{Node, Nodes};
use tracing::Instrument;

use super::{
    AcceptOutcome, CancelAs, CancelOutcome, Created, FailOutcome, FailRequest, GROUP, NewTask,
    QueueEntry, StoreError,
    layout::{Keys, entry_fields, index_member, task_key},
};
use crate::{
    config::{RedisConfig, RedisTls},
    task::{RawStatus, TaskId, TaskRecord, TaskStatus, fields},
};

/// The Redis store. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Arc<Nodes>,
    /// The database, for the keyspace notification channels.
    db: i64,
    keys: Keys,
    timeout: Duration,
    ttl_secs: u64,
    /// Replicas a write the service answers for must reach (`WAIT`), and how long it waits.
    min_replicas_acked: u32,
    shortfalls: AtomicUsize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.addr())
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

/// Why one bounded Redis operation failed, before it becomes a [`StoreError`].
enum Failure {
    /// Redis answered with an error, or the connection failed.
    Redis(RedisError),
    /// No answer within the bound.
    Timeout,
}

impl Failure {
    /// The Redis error code (`NOGROUP`, `BUSYGROUP`, `NOSCRIPT`, `READONLY`, ...), if Redis
    /// answered one.
    fn code(&self) -> Option<&str> {
        match self {
            Self::Redis(e) => e.code(),
            Self::Timeout => None,
        }
    }

    /// Redis lost the consumer group (a restart without persistence, FLUSHALL).
    fn is_missing_group(&self) -> bool {
        self.code() == Some("NOGROUP")
    }

    /// The node may no longer be the primary, or be gone: a replica's READONLY, a primary cut
    /// off from its replicas (NOREPLICAS, with `min-replicas-to-write`), no answer, no
    /// connection.
    fn suggests_failover(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Redis(e) => {
                matches!(e.code(), Some("READONLY" | "NOREPLICAS" | "MASTERDOWN"))
                    || is_connection_lost(e)
                    || e.is_timeout()
            }
        }
    }
}

impl RedisStore {
    /// Prepares the connections without waiting for Redis: the service starts while Redis is
    /// down, answers INTERNAL until it is up, and reconnects by itself. With sentinels, the
    /// primary is found (and found again after each failover) by [`RedisStore::follow_primary`].
    pub fn connect(config: &RedisConfig, task_ttl: Duration) -> Result<Self, StoreError> {
        let addr = match &config.sentinel {
            None => format!("{}:{}", config.host, config.port),
            Some(sentinel) => format!("the sentinels of {:?}", sentinel.master),
        };
        let unreachable = |e: RedisError| StoreError::Unreachable {
            addr: addr.clone(),
            reason: e.to_string(),
        };
        let nodes = match &config.sentinel {
            None => {
                let client = client(config, &config.host, config.port).map_err(unreachable)?;
                Nodes::fixed(Node::open(client, config).map_err(unreachable)?)
            }
            Some(sentinel) => {
                Nodes::under_sentinel(config, sentinel, client).map_err(unreachable)?
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                nodes: Arc::new(nodes),
                db: config.db,
                keys: Keys::new(&config.key_prefix),
                timeout: config.timeout,
                ttl_secs: task_ttl.as_secs().max(1),
                min_replicas_acked: config.min_replicas_acked,
                shortfalls: AtomicUsize::new(0),
            }),
        })
    }

    /// With sentinels, follows the primary they name until `stop` (see [`primary`]); returns at
    /// once without.
    pub async fn follow_primary(&self, stop: tokio_util::sync::CancellationToken) {
        let nodes = self.inner.nodes.clone();
        if nodes.has_sentinels() {
            if let Err(e) = nodes.look(self.inner.timeout).await {
                tracing::warn!(error = %e, "no Redis primary found yet; asking the sentinels again");
            }
            nodes.follow(self.inner.timeout, stop).await;
        }
    }

    /// Writes answered UNAVAILABLE because too few replicas acknowledged them.
    pub fn replication_shortfalls(&self) -> u64 {
        self.inner.shortfalls.load(Ordering::Relaxed) as u64
    }

    /// Times the store moved to another primary (the first one found included).
    pub fn primary_changes(&self) -> u64 {
        *self.inner.nodes.moves().borrow()
    }

    /// The node in use, or why there is none.
    fn node(&self) -> Result<Arc<Node>, StoreError> {
        self.inner.nodes.current().ok_or_else(|| {
            self.inner.nodes.suspect(self.inner.timeout);
            StoreError::Unreachable {
                addr: self.addr(),
                reason: "the sentinels have named no primary that answers yet".into(),
            }
        })
    }

    /// Where requests go, for messages.
    fn addr(&self) -> String {
        self.inner
            .nodes
            .current()
            .map_or_else(|| NO_PRIMARY_YET.to_owned(), |n| n.addr.clone())
    }

    /// A multiplexed connection to the node in use, round robin.
    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self.node()?.connection())
    }

    /// The pool of the node in use, for blocking reads.
    fn pool(&self) -> Result<bb8::Pool<RedisConnectionManager>, StoreError> {
        Ok(self.node()?.pool.clone())
    }

    /// A client of the node in use, for connections of their own.
    fn node_client(&self) -> Result<Client, StoreError> {
        Ok(self.node()?.client.clone())
    }

    /// Runs one operation within `limit`, in a client span named after it.
    async fn call<T>(
        &self,
        limit: Duration,
        (name, key): (&'static str, &str),
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
        // The node's own address, borrowed: no string is made per call.
        let node = self.inner.nodes.current();
        let span = tracing::info_span!(
            "redis",
            otel.name = name,
            otel.kind = "client",
            db.system = "redis",
            db.operation.name = name,
            db.redis.key = key,
            server.address = node.as_deref().map_or(NO_PRIMARY_YET, |n| n.addr.as_str()),
        );
        match tokio::time::timeout(limit, op).instrument(span).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// [`RedisStore::call`] within `TASK_REDIS_TIMEOUT`, its failure as a [`StoreError`].
    async fn run<T>(
        &self,
        what: (&'static str, &str),
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.call(self.inner.timeout, what, op)
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs a script whose write must survive a failover. With `TASK_REDIS_MIN_REPLICAS_ACKED`
    /// N > 0 the script and `WAIT N` go in one pipeline on one connection, so that WAIT counts
    /// the replicas holding this write (WAIT waits at most half of `TASK_REDIS_TIMEOUT`); fewer
    /// than N is [`StoreError::NotReplicated`].
    async fn run_durable<T: redis::FromRedisValue>(
        &self,
        what: (&'static str, &str),
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let wanted = self.inner.min_replicas_acked;
        let node = self.node()?;
        let Some(durable) = node.durable.clone() else {
            let mut conn = node.connection();
            return self.run(what, invocation.invoke_async(&mut conn)).await;
        };
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation)
            .cmd("WAIT")
            .arg(wanted)
            .arg(self.wait_ms());
        let attempt = async {
            let mut conn = durable.get().await.map_err(pooled_error)?;
            match pipe.query_async::<(T, u32)>(&mut *conn).await {
                // After a Redis restart (or a failover) its script cache is empty: load, run
                // again.
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    invocation.load_async(&mut *conn).await?;
                    pipe.query_async(&mut *conn).await
                }
                other => other,
            }
        };
        let (value, acked) = self.run(what, attempt).await?;
        self.replicated(acked)?;
        Ok(value)
    }

    /// How long `WAIT` waits: half of `TASK_REDIS_TIMEOUT`, so that its answer comes in time.
    fn wait_ms(&self) -> u64 {
        u64::try_from((self.inner.timeout / 2).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether `acked` replicas (WAIT's answer) are enough.
    fn replicated(&self, acked: u32) -> Result<(), StoreError> {
        let wanted = self.inner.min_replicas_acked;
        if acked >= wanted {
            return Ok(());
        }
        self.inner.shortfalls.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::NotReplicated {
            addr: self.addr(),
            wanted,
            acked,
        })
    }

    /// The one mapping from Redis's failures to [`StoreError`], by the error's kind.
    fn error(&self, failure: Failure) -> StoreError {
        let addr = self.addr();
        if failure.suggests_failover() {
            self.inner.nodes.suspect(self.inner.timeout);
        }
        let e = match failure {
            Failure::Timeout => {
                return StoreError::Timeout {
                    addr,
                    after: self.inner.timeout,
                };
            }
            Failure::Redis(e) => e,
        };
        if e.is_timeout() {
            StoreError::Timeout {
                addr,
                after: self.inner.timeout,
            }
        } else if is_connection_lost(&e) {
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
    pub async fn create(&self, new: NewTask<'_>) -> Result<Created, StoreError> {
        let task = new.record;
        let id = TaskId::parse(&task.task_id).map_err(StoreError::Corrupt)?;
        let key = task_key(id);
        let hash = task.to_pairs();
        let keys = &self.inner.keys;
        let mut invocation = scripts::CREATE.prepare_invoke();
        invocation
            .key(&key)
            .key(&keys.stream)
            .key(&keys.entries)
            .key(&keys.index);
        if let Some((request_id, _)) = new.request {
            invocation.key(keys.request(request_id));
        }
        invocation.arg(hash.len() * 2);
        for (field, value) in hash {
            invocation.arg(field).arg(value);
        }
        let (record, window) = match new.request {
            Some((_, window)) => (
                format!("{} {}", task.task_id, task.original_file_key),
                window.as_secs().max(1),
            ),
            None => (String::new(), 0),
        };
        invocation
            .arg(&task.task_id)
            .arg(index_member(new.created_ms, id))
            .arg(record)
            .arg(window)
            .arg(entry_fields::TASK_ID)
            .arg(&task.task_id)
            .arg(entry_fields::ORIGINAL_FILE_KEY)
            .arg(&task.original_file_key);
        for (field, value) in new.trace {
            invocation.arg(field).arg(value);
        }
        let (outcome, value): (String, String) = self
            .run_durable(("EVALSHA create", &key), &invocation)
            .await?;
        let task_of = |value: &str| TaskId::parse(value).map_err(StoreError::Corrupt);
        match outcome.as_str() {
            "created" => Ok(Created::New { entry_id: value }),
            "existing" => Ok(Created::Existing(task_of(&value)?)),
            "conflict" => Ok(Created::Conflict(task_of(&value)?)),
            other => Err(StoreError::Corrupt(format!(
                "create script answered {other:?}"
            ))),
        }
    }

    /// See [`super::Store::cancel`].
    pub async fn cancel(
        &self,
        task_id: TaskId,
        message: &str,
        now: &str,
        how: CancelAs,
    ) -> Result<CancelOutcome, StoreError> {
        let key = task_key(task_id);
        let keys = &self.inner.keys;
        let mut invocation = scripts::CANCEL.prepare_invoke();
        invocation
            .key(&key)
            .key(&keys.stream)
            .key(&keys.entries)
            .key(&keys.watch)
            .arg(task_id.to_string())
            .arg(message)
            .arg(now)
            .arg(self.inner.ttl_secs)
            .arg(GROUP)
            .arg(&keys.cancellations)
            .arg(match how {
                CancelAs::Unaccepted => "unaccepted",
                CancelAs::ProcessorAgreed => "agreed",
            });
        let answer = self
            .run_durable(("EVALSHA cancel", &key), &invocation)
            .await;
        self.forget(task_id);
        let (outcome, status): (String, String) = answer?;
        match outcome.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "accepted" => Ok(CancelOutcome::Accepted(RawStatus::parse(&status))),
            "missing" => Ok(CancelOutcome::Missing),
            "final" => match RawStatus::parse(&status).final_status() {
                Some(status) => Ok(CancelOutcome::Final(status)),
                None => Err(StoreError::Corrupt(format!(
                    "cancel script said final for {status:?}"
                ))),
            },
            other => Err(StoreError::Corrupt(format!(
                "cancel script answered {other:?}"
            ))),
        }
    }

    /// See [`super::Store::read`].
    pub async fn read(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut conn = self.connection()?;
        Ok(self.read_on(&mut conn, task_id).await?.0)
    }

    /// See [`super::Store::read_status`]: through the read cache, with `TASK_READ_CACHE_ENTRIES`.
    pub async fn read_status(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let node = self.node()?;
        let Some(cache) = &node.cache else {
            return self.read(task_id).await;
        };
        if let Some(record) = cache.hit(task_id) {
            return Ok(Some(record));
        }
        let mut miss = cache.miss(task_id);
        let read = match miss.connection.as_mut() {
            Some(tracked) => self.read_on(tracked, task_id).await,
            None => self.read_on(&mut node.connection(), task_id).await,
        };
        cache.finish(
            task_id,
            miss,
            read.as_ref().ok().map(|(record, ttl)| (record, *ttl)),
        );
        Ok(read?.0)
    }

    /// The read itself, on `conn`: the task and its TTL in seconds (`TTL`'s answer).
    ///
    /// HGETALL and TTL go in one pipeline, one round trip: a script doing the same costs Redis
    /// several times as much (4.5 µs against 0.9 µs per read, `INFO commandstats`). A final
    /// task without a TTL (the Processor wrote its final state with a plain HSET) then gets it
    /// with `EXPIRE … NX`, which leaves a TTL set in between alone and creates no key.
    async fn read_on<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
        task_id: TaskId,
    ) -> Result<(Option<TaskRecord>, i64), StoreError> {
        let key = task_key(task_id);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&key).cmd("TTL").arg(&key);
        let (fields, ttl): (redis::Value, i64) =
            self.run(("HGETALL", &key), pipe.query_async(conn)).await?;
        let record = TaskRecord::from_pairs(hash_pairs(fields).map_err(StoreError::Corrupt)?);
        if ttl == NO_TTL && record.as_ref().is_some_and(|r| r.status.is_final()) {
            let mut expire = redis::cmd("EXPIRE");
            expire.arg(&key).arg(self.inner.ttl_secs).arg("NX");
            // The read stands either way: without the TTL now, the next read or the reaper
            // gives it.
            if let Err(e) = self
                .run(("EXPIRE", &key), expire.query_async::<i64>(conn))
                .await
            {
                tracing::warn!(task.id = %task_id, error = %e, "could not give a final task its TTL");
            }
        }
        Ok((record, ttl))
    }

    /// The service wrote `task_id` itself: its next read through this instance goes to Redis.
    fn forget(&self, task_id: TaskId) {
        if let Some(cache) = self.inner.nodes.current().and_then(|n| n.cache.clone()) {
            cache.forget(task_id);
        }
    }

    /// Figures about the read cache of the node in use; `None` without one.
    pub fn read_cache_stats(&self) -> Option<ReadCacheStats> {
        Some(self.inner.nodes.current()?.cache.as_ref()?.stats())
    }

    /// See [`super::Store::fail`].
    pub async fn fail(&self, request: FailRequest<'_>) -> Result<FailOutcome, StoreError> {
        let key = task_key(request.task_id);
        let mut invocation = scripts::FAIL.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.inner.keys.stream)
            .key(&self.inner.keys.watch)
            .key(&self.inner.keys.entries)
            .arg(request.task_id.to_string())
            .arg(request.message)
            .arg(request.now)
            .arg(self.inner.ttl_secs)
            .arg(GROUP)
            .arg(request.entry_id.unwrap_or_default())
            .arg(request.expect_updated_at.unwrap_or_default());
        let answer = self.run_durable(("EVALSHA fail", &key), &invocation).await;
        self.forget(request.task_id);
        let outcome: String = answer?;
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
        let key = task_key(entry.task_id);
        let mut invocation = scripts::ACCEPTED.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.inner.keys.stream)
            .key(&self.inner.keys.watch)
            .key(&self.inner.keys.entries)
            .arg(entry.task_id.to_string())
            .arg(GROUP)
            .arg(&entry.id)
            .arg(self.inner.ttl_secs)
            .arg(next_check_ms);
        let outcome: String = self
            .run_durable(("EVALSHA accepted", &key), &invocation)
            .await?;
        match outcome.as_str() {
            "watching" => Ok(AcceptOutcome::Watching),
            "missing" => Ok(AcceptOutcome::Missing),
            other => match RawStatus::parse(other).final_status() {
                Some(status) => Ok(AcceptOutcome::Final(status)),
                None => Err(StoreError::Corrupt(format!(
                    "accepted script answered {other:?}"
                ))),
            },
        }
    }

    /// See [`super::Store::ping`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        self.run(
            ("PING", ""),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// See [`super::Store::ttl`].
    pub async fn ttl(&self, task_id: TaskId) -> Result<Option<Duration>, StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection()?;
        let ttl: i64 = self
            .run(
                ("TTL", &key),
                redis::cmd("TTL").arg(&key).query_async(&mut conn),
            )
            .await?;
        Ok((ttl >= 0).then(|| Duration::from_secs(ttl as u64)))
    }

    /// A Processor's plain HSET of hash fields (see [`super::ProcessorReport`]).
    pub(super) async fn processor_write(
        &self,
        task_id: TaskId,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let key = task_key(task_id);
        let node = self.node()?;
        let Some(durable) = node.durable.clone() else {
            let mut conn = node.connection();
            return self
                .run(
                    ("HSET", &key),
                    redis::cmd("HSET")
                        .arg(&key)
                        .arg(pairs)
                        .query_async::<i64>(&mut conn),
                )
                .await
                .map(drop);
        };
        // A Processor that must survive failovers waits for its replicas too, on the
        // connections kept for waited writes (a WAIT holds its connection).
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(pairs)
            .ignore()
            .cmd("WAIT")
            .arg(self.inner.min_replicas_acked)
            .arg(self.wait_ms());
        let attempt = async {
            let mut conn = durable.get().await.map_err(pooled_error)?;
            pipe.query_async::<(u32,)>(&mut *conn).await
        };
        let (acked,) = self.run(("HSET", &key), attempt).await?;
        self.replicated(acked)
    }

    /// See [`super::Store::processor_status`].
    pub async fn processor_status(&self, task_id: TaskId) -> Result<Option<RawStatus>, StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection()?;
        let status: Option<String> = self
            .run(
                ("HGET", &key),
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(fields::STATUS)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(status.as_deref().map(RawStatus::parse))
    }
}

/// A client for `config`: its address, ACL user and password, database, and TLS (with the CA
/// and client certificate files given).
fn client(config: &RedisConfig, host: &str, port: u16) -> RedisResult<Client> {
    let addr = match &config.tls {
        None => ConnectionAddr::Tcp(host.to_owned(), port),
        Some(_) => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        },
    };
    let mut settings = RedisConnectionInfo::default().set_db(config.db);
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    let info = (host, port)
        .into_connection_info()?
        .set_addr(addr)
        .set_redis_settings(settings);
    match &config.tls {
        None => Client::open(info),
        Some(tls) => Client::build_with_tls(info, tls_certificates(tls)?),
    }
}

/// The CA and client certificate of `tls`, read from their files.
fn tls_certificates(tls: &RedisTls) -> RedisResult<TlsCertificates> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read a TLS file",
                format!("{}: {e}", path.display()),
            ))
        })
    };
    let client_tls = match &tls.client {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        None => None,
    };
    let root_cert = tls.ca.as_deref().map(read).transpose()?;
    // One crypto provider for the process (ring, as the servers use).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// What [`RedisStore::addr`] says before Sentinel has named a primary.
const NO_PRIMARY_YET: &str = "the Redis primary (not found yet)";

/// TTL's answer for a key that exists and has no expiry.
const NO_TTL: i64 = -1;

/// A hash's fields and values as HGETALL answers them: a flat array in RESP2, a map in RESP3.
fn hash_pairs(value: redis::Value) -> Result<Vec<(String, String)>, String> {
    use redis::Value;
    let text = |value: Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|_| "HGETALL answered a field that is not UTF-8".to_owned()),
        Value::SimpleString(text) => Ok(text),
        other => Err(format!("HGETALL answered {other:?} for a field")),
    };
    match value {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((text(field)?, text(value)?));
            }
            Ok(pairs)
        }
        Value::Map(items) => items
            .into_iter()
            .map(|(field, value)| Ok((text(field)?, text(value)?)))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("HGETALL answered {other:?}")),
    }
}

/// No connection could be made, or it broke.
fn is_connection_lost(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Io || e.is_connection_dropped() || e.is_connection_refusal()
}

/// A pool's failure to hand out a connection, as Redis's error.
fn pooled_error(e: bb8::RunError<RedisError>) -> RedisError {
    match e {
        bb8::RunError::User(e) => e,
        bb8::RunError::TimedOut => RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no pooled connection could be made in time",
        )),
    }
}

/// Whether Redis answered that it does not know a script (its cache is empty after a restart).
fn is_no_script(failure: &Failure) -> bool {
    matches!(failure, Failure::Redis(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

/// The final status a script reported, or what it found instead.
fn final_or_raw(status: &str) -> Result<TaskStatus, RawStatus> {
    let raw = RawStatus::parse(status);
    raw.final_status().ok_or(raw)
}
