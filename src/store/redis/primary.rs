//! Which Redis node the store talks to: one fixed node, or the primary Redis Sentinel names —
//! found again after a failover (a READONLY or NOREPLICAS answer, a lost connection, a
//! `+switch-master` message, or the periodic check), every connection then moved to it.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bb8_redis::{
    RedisConnectionManager,
    redis::{
        Client, ConnectionAddr, RedisError, RedisResult,
        aio::{ConnectionManager, ConnectionManagerConfig},
        sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
    },
};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cache::ReadCache;
use crate::config::{RedisConfig, SentinelConfig};

/// How often the sentinels are asked even when nothing seems wrong.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Fewest time between two look-ups that errors asked for.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// One node's connections: multiplexed ones for requests, a pool for blocking reads, and a
/// client for connections of their own (pub/sub).
pub(super) struct Node {
    /// `host:port`, for messages and spans.
    pub addr: String,
    pub client: Client,
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    pub pool: bb8::Pool<RedisConnectionManager>,
    /// With `TASK_REDIS_MIN_REPLICAS_ACKED`: connections of their own for writes followed by
    /// `WAIT`, which holds its connection until the replicas answer — on the shared multiplexed
    /// connections it would hold up every other request.
    pub durable: Option<bb8::Pool<RedisConnectionManager>>,
    /// With `TASK_READ_CACHE_ENTRIES`: `GetTaskStatus` answers kept by this node's
    /// invalidations; a node of its own (after a failover) starts empty.
    pub cache: Option<ReadCache>,
}

/// Connections for writes that wait for replicas, at most.
const DURABLE_CONNECTIONS: u32 = 32;

impl Node {
    /// Connections to `client`'s node, made when first used.
    pub fn open(client: Client, config: &RedisConfig) -> RedisResult<Self> {
        let addr = match host_port(client.get_connection_info().addr()) {
            Some((host, port)) => format!("{host}:{port}"),
            None => client.get_connection_info().addr().to_string(),
        };
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
            .collect::<Result<Vec<_>, _>>()?;
        // The pool connects with the same address, credentials, database and TLS settings.
        let pool_of = |size: u32| -> RedisResult<_> {
            Ok(bb8::Pool::builder()
                .max_size(size)
                .min_idle(None)
                .connection_timeout(config.timeout)
                .build_unchecked(RedisConnectionManager::new(
                    client.get_connection_info().clone(),
                )?))
        };
        let pool = pool_of(config.pool_size)?;
        let durable = match config.min_replicas_acked {
            0 => None,
            _ => Some(pool_of(DURABLE_CONNECTIONS)?),
        };
        let cache = match config.read_cache.entries {
            0 => None,
            entries => Some(ReadCache::new(
                &client,
                entries,
                config.read_cache.lease,
                config.timeout,
            )?),
        };
        Ok(Self {
            addr,
            client,
            connections,
            next: AtomicUsize::new(0),
            pool,
            durable,
            cache,
        })
    }

    /// A multiplexed connection, round robin.
    pub fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.connections[i % self.connections.len()].clone()
    }
}

/// The node in use, and (with Sentinel) how to find the next one.
pub(super) struct Nodes {
    current: RwLock<Option<Arc<Node>>>,
    /// Counts the moves to another node, so that long-lived connections move too.
    moved: watch::Sender<u64>,
    sentinels: Option<Sentinels>,
}

struct Sentinels {
    client: tokio::sync::Mutex<SentinelClient>,
    master: String,
    config: RedisConfig,
    build: fn(&RedisConfig, &str, u16) -> RedisResult<Client>,
    last_look: Mutex<Option<Instant>>,
}

impl Nodes {
    /// Always `node`.
    pub fn fixed(node: Node) -> Self {
        Self {
            current: RwLock::new(Some(Arc::new(node))),
            moved: watch::channel(0).0,
            sentinels: None,
        }
    }

    /// The primary `sentinel` names, none until it has been asked; `build` makes the client of
    /// a node from its address.
    pub fn under_sentinel(
        config: &RedisConfig,
        sentinel: &SentinelConfig,
        build: fn(&RedisConfig, &str, u16) -> RedisResult<Client>,
    ) -> RedisResult<Self> {
        let addrs = sentinel
            .addrs
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(addrs, &sentinel.master, SentinelServerType::Master)?
                .set_client_to_redis_db(config.db);
        if let Some(password) = &sentinel.password {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if let Some(username) = &config.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &config.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(tls) = &config.tls {
            builder = builder
                .set_client_to_redis_tls_mode(bb8_redis::redis::TlsMode::Secure)
                .set_client_to_redis_certificates(super::tls_certificates(tls)?);
        }
        Ok(Self {
            current: RwLock::new(None),
            moved: watch::channel(0).0,
            sentinels: Some(Sentinels {
                client: tokio::sync::Mutex::new(builder.build()?),
                master: sentinel.master.clone(),
                config: config.clone(),
                build,
                last_look: Mutex::new(None),
            }),
        })
    }

    /// The node in use; `None` while the sentinels have not named one yet.
    pub fn current(&self) -> Option<Arc<Node>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells of each move to another node.
    pub fn moves(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }

    /// Whether a primary is found through sentinels.
    pub fn has_sentinels(&self) -> bool {
        self.sentinels.is_some()
    }

    /// Something suggests the node is no longer the primary (or is gone): asks the sentinels
    /// again, in the background, at most every [`LOOK_AT_MOST_EVERY`].
    pub fn suspect(self: &Arc<Self>, timeout: Duration) {
        let Some(sentinels) = &self.sentinels else {
            return;
        };
        {
            let mut last = sentinels
                .last_look
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < LOOK_AT_MOST_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let nodes = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = nodes.look(timeout).await;
            });
        }
    }

    /// Asks the sentinels which node is primary (it must say so itself), and moves there if
    /// it is another. Bounded by `timeout`.
    pub async fn look(&self, timeout: Duration) -> Result<(), String> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(());
        };
        let found = tokio::time::timeout(timeout, async {
            sentinels.client.lock().await.async_get_client().await
        })
        .await
        .map_err(|_| "the sentinels did not answer within TASK_REDIS_TIMEOUT".to_owned())?
        .map_err(|e| format!("the sentinels named no primary that answers as one: {e}"))?;
        let Some((host, port)) = host_port(found.get_connection_info().addr()) else {
            let other = found.get_connection_info().addr();
            return Err(format!("the sentinels named {other}, not a TCP address"));
        };
        let addr = format!("{host}:{port}");
        if self.current().is_some_and(|node| node.addr == addr) {
            return Ok(());
        }
        let node = (sentinels.build)(&sentinels.config, host, port)
            .and_then(|client| Node::open(client, &sentinels.config))
            .map_err(|e| format!("cannot connect to the primary {addr}: {e}"))?;
        let was = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(node))
            .map(|old| old.addr.clone());
        match was {
            Some(was) => {
                tracing::warn!(primary = %addr, was = %was, master = %sentinels.master, "Redis failed over: following the new primary")
            }
            None => {
                tracing::info!(primary = %addr, master = %sentinels.master, "found the Redis primary through the sentinels")
            }
        }
        self.moved.send_modify(|n| *n += 1);
        Ok(())
    }

    /// With sentinels, until `stop`: looks every [`CHECK_EVERY`], and at once when a sentinel
    /// announces `+switch-master`.
    pub async fn follow(self: Arc<Self>, timeout: Duration, stop: CancellationToken) {
        let Some(sentinels) = &self.sentinels else {
            return;
        };
        let announcements = self.clone().announcements(timeout, stop.clone());
        let checks = async {
            let mut every = tokio::time::interval(CHECK_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = self.look(timeout).await {
                    tracing::warn!(error = %e, master = %sentinels.master, "no Redis primary found");
                }
            }
        };
        tokio::select! {
            () = announcements => {}
            () = checks => {}
            () = stop.cancelled() => {}
        }
    }

    /// Listens to a sentinel's `+switch-master`, moving on each; reconnects (to any sentinel)
    /// after a failure.
    async fn announcements(self: Arc<Self>, timeout: Duration, stop: CancellationToken) {
        let Some(sentinels) = &self.sentinels else {
            return;
        };
        let mut retry = Duration::from_millis(200);
        while !stop.is_cancelled() {
            let subscribed = tokio::time::timeout(timeout, async {
                let client = sentinels
                    .client
                    .lock()
                    .await
                    .async_get_sentinel_client()
                    .await?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, RedisError>(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(mut pubsub)) => {
                    retry = Duration::from_millis(200);
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        tracing::info!(master = %sentinels.master, "a sentinel announced a new primary");
                        let _ = self.look(timeout).await;
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to a sentinel"),
                Err(_) => tracing::debug!("no sentinel answered the subscription in time"),
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = stop.cancelled() => return,
            }
            retry = (retry * 2).min(Duration::from_secs(5));
        }
    }
}

/// The host and port of a TCP address (with or without TLS).
fn host_port(addr: &ConnectionAddr) -> Option<(&str, u16)> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host, *port))
        }
        _ => None,
    }
}
