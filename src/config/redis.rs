//! How the service reaches Redis, and how long finished tasks are kept there.

use std::time::Duration;

use super::{ConfigError, reader::Vars, vars};

/// How the service reaches Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Bound on one operation; a call fails with INTERNAL after it.
    pub timeout: Duration,
    /// Connections of the bb8 pool used for blocking queue reads.
    pub pool_size: u32,
    /// Multiplexed connections used for requests.
    pub connections: usize,
    /// Prefix of the service's own keys; never matches `task:*`.
    pub key_prefix: String,
}

impl RedisConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            host: v.nonempty(vars::REDIS_HOST, "redis")?,
            port: v.positive(vars::REDIS_PORT, 6379u16)?,
            timeout: v.duration(vars::REDIS_TIMEOUT, Duration::from_secs(2))?,
            pool_size: v.positive(vars::REDIS_POOL_SIZE, 8)?,
            connections: v.positive(vars::REDIS_CONNECTIONS, 2)?,
            key_prefix: key_prefix(v, vars::REDIS_KEY_PREFIX, "task-service")?,
        })
    }
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
