//! The Redis backend: hot-path commands on auto-reconnecting multiplexed connections, blocking
//! queue reads on a bb8-redis pool, every operation bounded by `TASK_REDIS_TIMEOUT`.
//!
//! This file holds the connections, the one place Redis's errors become [`StoreError`]s, and
//! the task operations; [`queue`] holds the dispatch queue's and the watch list's, [`index`]
//! the task index's (ListTasks), [`notify`] the change notifications.

mod index;
mod notify;
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
        aio::{ConnectionManager, ConnectionManagerConfig},
    },
};
use tracing::Instrument;

use super::{
    AcceptOutcome, CancelAs, CancelOutcome, Created, FailOutcome, FailRequest, GROUP, NewTask,
    QueueEntry, StoreError,
    layout::{Keys, entry_fields, index_member, task_key},
};
use crate::{
    config::RedisConfig,
    task::{RawStatus, TaskId, TaskRecord, TaskStatus, fields},
};

/// The Redis store. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    /// For connections of its own (notifications).
    client: Client,
    /// The database, for the keyspace notification channels.
    db: i64,
    connections: Vec<ConnectionManager>,
    next_connection: AtomicUsize,
    pool: bb8::Pool<RedisConnectionManager>,
    keys: Keys,
    timeout: Duration,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.inner.addr)
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
}

impl RedisStore {
    /// Prepares the connections without waiting for Redis: the service starts while Redis is
    /// down, answers INTERNAL until it is up, and reconnects by itself.
    pub fn connect(config: &RedisConfig, task_ttl: Duration) -> Result<Self, StoreError> {
        let addr = format!("{}:{}", config.host, config.port);
        let unreachable = |e: RedisError| StoreError::Unreachable {
            addr: addr.clone(),
            reason: e.to_string(),
        };
        let client = client(config).map_err(unreachable)?;
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
        // The pool connects with the same address, credentials, database and TLS settings.
        let info = client.get_connection_info().clone();
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(None)
            .connection_timeout(config.timeout)
            .build_unchecked(RedisConnectionManager::new(info).map_err(unreachable)?);
        Ok(Self {
            inner: Arc::new(Inner {
                addr,
                client: client.clone(),
                db: config.db,
                connections,
                next_connection: AtomicUsize::new(0),
                pool,
                keys: Keys::new(&config.key_prefix),
                timeout: config.timeout,
                ttl_secs: task_ttl.as_secs().max(1),
            }),
        })
    }

    /// A multiplexed connection, round robin.
    fn connection(&self) -> ConnectionManager {
        let i = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        self.inner.connections[i % self.inner.connections.len()].clone()
    }

    /// Runs one operation within `limit`, in a client span named after it.
    async fn call<T>(
        &self,
        limit: Duration,
        (name, key): (&'static str, &str),
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
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

    /// The one mapping from Redis's failures to [`StoreError`], by the error's kind.
    fn error(&self, failure: Failure) -> StoreError {
        let addr = self.inner.addr.clone();
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
        } else if e.kind() == ErrorKind::Io
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
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
        let mut conn = self.connection();
        let (outcome, value): (String, String) = self
            .run(("EVALSHA create", &key), invocation.invoke_async(&mut conn))
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
        let mut conn = self.connection();
        let (outcome, status): (String, String) = self
            .run(("EVALSHA cancel", &key), invocation.invoke_async(&mut conn))
            .await?;
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
        let key = task_key(task_id);
        let mut invocation = scripts::READ.prepare_invoke();
        invocation.key(&key).arg(self.inner.ttl_secs);
        let mut conn = self.connection();
        let flat: Vec<String> = self
            .run(("EVALSHA read", &key), invocation.invoke_async(&mut conn))
            .await?;
        let mut items = flat.into_iter();
        let pairs = std::iter::from_fn(|| Some((items.next()?, items.next()?)));
        Ok(TaskRecord::from_pairs(pairs))
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
        let mut conn = self.connection();
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
        let mut conn = self.connection();
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
    pub async fn processor_status(&self, task_id: TaskId) -> Result<Option<RawStatus>, StoreError> {
        let key = task_key(task_id);
        let mut conn = self.connection();
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
fn client(config: &RedisConfig) -> RedisResult<Client> {
    let addr = match &config.tls {
        None => ConnectionAddr::Tcp(config.host.clone(), config.port),
        Some(_) => ConnectionAddr::TcpTls {
            host: config.host.clone(),
            port: config.port,
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
    let info = (config.host.as_str(), config.port)
        .into_connection_info()?
        .set_addr(addr)
        .set_redis_settings(settings);
    let Some(tls) = &config.tls else {
        return Client::open(info);
    };
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
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
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
