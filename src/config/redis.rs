//! How the service reaches Redis, and how long finished tasks are kept there.

use std::{path::PathBuf, time::Duration};

use super::{ConfigError, Secret, reader::Vars, vars};

/// TLS to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// CA certificates Redis's certificate must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, for a Redis that asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Redis Sentinel: where the sentinels listen and which master of theirs holds the tasks.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// The sentinels, `(host, port)`.
    pub addrs: Vec<(String, u16)>,
    /// The master's name.
    pub master: String,
    /// The sentinels' password, if they ask for one.
    pub password: Option<Secret>,
}

/// How the service reaches Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Host (unused with sentinels).
    pub host: String,
    /// Port (unused with sentinels).
    pub port: u16,
    /// The sentinels that name the primary, if Redis runs under Sentinel.
    pub sentinel: Option<SentinelConfig>,
    /// Replicas that must acknowledge a write the service answers for (`WAIT`); 0: none.
    pub min_replicas_acked: u32,
    /// Bound on one operation; a call fails with INTERNAL after it.
    pub timeout: Duration,
    /// Connections of the bb8 pool used for blocking queue reads.
    pub pool_size: u32,
    /// Multiplexed connections used for requests.
    pub connections: usize,
    /// Prefix of the service's own keys; never matches `task:*`.
    pub key_prefix: String,
    /// The ACL user (`AUTH <user> <password>`); `None` with a password: the default user.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Secret>,
    /// The database number.
    pub db: i64,
    /// TLS, if on.
    pub tls: Option<RedisTls>,
    /// The cache of `GetTaskStatus` reads.
    pub read_cache: ReadCacheConfig,
}

/// The cache of `GetTaskStatus` reads, kept by Redis's invalidations (RESP3 `CLIENT TRACKING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCacheConfig {
    /// Tasks kept at most; 0: no cache, every read goes to Redis.
    pub entries: usize,
    /// How old the proof that invalidations arrive may be for a read to be answered from memory:
    /// the most a cached answer can miss of a write.
    pub lease: Duration,
}

/// The most tasks the read cache may be asked to keep.
const MAX_READ_CACHE_ENTRIES: usize = 1_000_000;

impl RedisConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            host: v.nonempty(vars::REDIS_HOST, "redis")?,
            port: v.positive(vars::REDIS_PORT, 6379u16)?,
            sentinel: sentinel(v)?,
            min_replicas_acked: v.parse(
                vars::REDIS_MIN_REPLICAS_ACKED,
                0,
                "a number of replicas from 0",
            )?,
            timeout: v.duration(vars::REDIS_TIMEOUT, Duration::from_secs(2))?,
            pool_size: v.positive(vars::REDIS_POOL_SIZE, 8)?,
            connections: v.positive(vars::REDIS_CONNECTIONS, 1)?,
            key_prefix: key_prefix(v, vars::REDIS_KEY_PREFIX, "task-service")?,
            username: v
                .raw(vars::REDIS_USERNAME)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            password: password(v)?,
            db: v.parse(vars::REDIS_DB, 0, "a database number from 0")?,
            tls: tls(v)?,
            read_cache: read_cache(v)?,
        })
    }
}

fn read_cache(v: Vars<'_>) -> Result<ReadCacheConfig, ConfigError> {
    let entries: usize = v.parse(
        vars::READ_CACHE_ENTRIES,
        0,
        "a number of tasks from 0 (off) to 1000000",
    )?;
    if entries > MAX_READ_CACHE_ENTRIES {
        return Err(v.error(
            vars::READ_CACHE_ENTRIES,
            "a number of tasks from 0 (off) to 1000000",
        ));
    }
    let lease = v.duration(vars::READ_CACHE_LEASE, Duration::from_millis(200))?;
    if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&lease) {
        return Err(v.error(vars::READ_CACHE_LEASE, "a duration from 10ms to 10s"));
    }
    Ok(ReadCacheConfig { entries, lease })
}

fn password(v: Vars<'_>) -> Result<Option<Secret>, ConfigError> {
    let file = v.file(vars::REDIS_PASSWORD_FILE)?;
    match (v.raw(vars::REDIS_PASSWORD), file) {
        (Some(_), Some(_)) => Err(ConfigError {
            variable: vars::REDIS_PASSWORD_FILE.into(),
            value: String::new(),
            expected: "unset when REDIS_PASSWORD is set: give the password one way".into(),
        }),
        (Some(""), None) | (None, None) => Ok(None),
        (Some(password), None) => Ok(Some(Secret::new(password))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                variable: vars::REDIS_PASSWORD_FILE.into(),
                value: path.display().to_string(),
                expected: format!("a readable file holding the password ({e})"),
            })?;
            Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
        }
    }
}

/// `REDIS_SENTINELS` (`host:port,...`; the port defaults to 26379), the master's name and the
/// sentinels' password.
fn sentinel(v: Vars<'_>) -> Result<Option<SentinelConfig>, ConfigError> {
    let Some(list) = v.raw(vars::REDIS_SENTINELS).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let expected = "a comma-separated list of host:port (or host, for port 26379)";
    let mut addrs = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, port) = match item.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| v.error(vars::REDIS_SENTINELS, expected))?,
            ),
            None => (item, 26379),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(v.error(vars::REDIS_SENTINELS, expected));
        }
        addrs.push((host.to_owned(), port));
    }
    if addrs.is_empty() {
        return Err(v.error(vars::REDIS_SENTINELS, expected));
    }
    Ok(Some(SentinelConfig {
        addrs,
        master: v.nonempty(vars::REDIS_SENTINEL_MASTER, "mymaster")?,
        password: v
            .raw(vars::REDIS_SENTINEL_PASSWORD)
            .filter(|p| !p.is_empty())
            .map(Secret::new),
    }))
}

fn tls(v: Vars<'_>) -> Result<Option<RedisTls>, ConfigError> {
    let on = v.switch(vars::REDIS_TLS, false)?;
    let ca = v.file(vars::REDIS_TLS_CA_FILE)?;
    let client = match (
        v.file(vars::REDIS_TLS_CERT_FILE)?,
        v.file(vars::REDIS_TLS_KEY_FILE)?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(v.error(vars::REDIS_TLS_KEY_FILE, "the key of REDIS_TLS_CERT_FILE"));
        }
        (None, Some(_)) => {
            return Err(v.error(
                vars::REDIS_TLS_CERT_FILE,
                "the certificate of REDIS_TLS_KEY_FILE",
            ));
        }
    };
    if !on && (ca.is_some() || client.is_some()) {
        return Err(v.error(vars::REDIS_TLS, "on, since REDIS_TLS_* files are set"));
    }
    Ok(on.then_some(RedisTls { ca, client }))
}

/// How long a COMPLETED or FAILED task is kept: `TASK_TTL` if set, else `TASK_TTL_DAYS`.
pub(super) fn task_ttl(v: Vars<'_>) -> Result<Duration, ConfigError> {
    let days: u64 = v.positive(vars::TASK_TTL_DAYS, 7)?;
    if days > 36_500 {
        return Err(v.error(
            vars::TASK_TTL_DAYS,
            "a whole number of days from 1 to 36500",
        ));
    }
    v.duration(vars::TASK_TTL, Duration::from_secs(days * 86_400))
}

fn key_prefix(v: Vars<'_>, name: &str, default: &str) -> Result<String, ConfigError> {
    let value = v.nonempty(name, default)?;
    let expected = "a prefix of printable characters without spaces, '*', '?', '[' or ']', \
                    that does not start with \"task:\" (operators' SCAN MATCH task:* must find task hashes only)";
    let bad_char = value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "*?[]".contains(c));
    if bad_char || value.starts_with("task:") {
        return Err(v.error(name, expected));
    }
    Ok(value)
}
