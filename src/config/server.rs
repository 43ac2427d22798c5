//! The gRPC server's layers, health and limits, as the middleware's own types.

use std::time::Duration;

use middleware::{ClientKey, RateLimitConfig};

use super::{ConfigError, reader::Vars, vars};

/// The gRPC server's middleware, health and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests in flight beyond which new ones are shed; `None`: no limit.
    pub max_in_flight: Option<usize>,
    /// Deadline of a request whose client sent none.
    pub request_timeout: Duration,
    /// Longest deadline granted.
    pub request_timeout_max: Duration,
    /// The global and per-client rate limits; `None` when both are off.
    pub rate_limit: Option<RateLimitConfig>,
    /// Span and request id per request.
    pub request_tracing: bool,
    /// How often health checks Redis.
    pub health_interval: Duration,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl ServerConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        let request_timeout = v.duration(vars::REQUEST_TIMEOUT, Duration::from_secs(10))?;
        let request_timeout_max = v.duration(vars::REQUEST_TIMEOUT_MAX, Duration::from_secs(60))?;
        if request_timeout_max < request_timeout {
            return Err(v.error(
                vars::REQUEST_TIMEOUT_MAX,
                "a duration at least TASK_REQUEST_TIMEOUT",
            ));
        }
        let max_in_flight: usize =
            v.parse(vars::MAX_IN_FLIGHT, 1024, "a whole number (0: no limit)")?;
        Ok(Self {
            max_in_flight: (max_in_flight > 0).then_some(max_in_flight),
            request_timeout,
            request_timeout_max,
            rate_limit: rate_limit(v)?,
            request_tracing: v.switch(vars::REQUEST_TRACING, true)?,
            health_interval: v.duration(vars::HEALTH_INTERVAL, Duration::from_secs(2))?,
            max_message_bytes: v.positive(vars::MAX_MESSAGE_BYTES, 16 * 1024)?,
        })
    }
}

fn rate_limit(v: Vars<'_>) -> Result<Option<RateLimitConfig>, ConfigError> {
    let global = v.quota(vars::RATE_LIMIT_GLOBAL, vars::RATE_LIMIT_GLOBAL_BURST, 0)?;
    let per_client = v.quota(
        vars::RATE_LIMIT_PER_CLIENT,
        vars::RATE_LIMIT_PER_CLIENT_BURST,
        10_000,
    )?;
    let key = client_key(v, vars::RATE_LIMIT_KEY)?;
    let max_tracked_clients = v.positive(vars::RATE_LIMIT_MAX_CLIENTS, 10_000)?;
    Ok(
        (global.is_some() || per_client.is_some()).then_some(RateLimitConfig {
            global,
            per_client,
            key,
            max_tracked_clients,
        }),
    )
}

fn client_key(v: Vars<'_>, name: &str) -> Result<ClientKey, ConfigError> {
    let expected = "peer-ip, x-forwarded-for (only behind a proxy that sets it), or metadata:<key>";
    match v.raw(name) {
        None | Some("peer-ip") => Ok(ClientKey::PeerIp),
        Some("x-forwarded-for") => Ok(ClientKey::ForwardedFor),
        Some(other) => match other.strip_prefix("metadata:") {
            Some(key) if key == key.to_ascii_lowercase() => {
                http::HeaderName::from_bytes(key.as_bytes())
                    .map(ClientKey::Metadata)
                    .map_err(|_| v.error(name, expected))
            }
            _ => Err(v.error(name, expected)),
        },
    }
}
