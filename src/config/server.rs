//! The gRPC server's layers, health and limits, as the middleware's own types.

use std::{path::PathBuf, time::Duration};

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
    /// Time a request has to send its whole body (checked before it takes an in-flight slot).
    pub request_body_timeout: Duration,
    /// Requests in flight on one connection, at most; `None`: no limit.
    pub max_in_flight_per_connection: Option<usize>,
    /// The callers' tokens and scopes; `None`: no authentication.
    pub auth_tokens_file: Option<PathBuf>,
    /// Who may use reflection.
    pub reflection: Reflection,
}

/// Who may use gRPC reflection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflection {
    /// Anyone.
    On,
    /// Authenticated callers (any scope).
    Authenticated,
    /// Nobody: not served.
    Off,
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
        let auth_tokens_file = v.file(vars::AUTH_TOKENS_FILE)?;
        let per_connection: usize = v.parse(
            vars::MAX_IN_FLIGHT_PER_CONNECTION,
            64,
            "a whole number (0: no limit)",
        )?;
        let reflection_default = if auth_tokens_file.is_some() {
            "authenticated"
        } else {
            "on"
        };
        let reflection = match v.choice(
            vars::REFLECTION,
            &["on", "authenticated", "off"],
            reflection_default,
        )? {
            "on" => Reflection::On,
            "authenticated" => Reflection::Authenticated,
            _ => Reflection::Off,
        };
        if reflection == Reflection::Authenticated && auth_tokens_file.is_none() {
            return Err(v.error(
                vars::REFLECTION,
                "on or off: authenticated needs TASK_AUTH_TOKENS_FILE",
            ));
        }
        Ok(Self {
            rate_limit: rate_limit(v, auth_tokens_file.is_some())?,
            request_body_timeout: v.duration(vars::REQUEST_BODY_TIMEOUT, Duration::from_secs(2))?,
            max_in_flight_per_connection: (per_connection > 0).then_some(per_connection),
            auth_tokens_file,
            reflection,
            max_in_flight: (max_in_flight > 0).then_some(max_in_flight),
            request_timeout,
            request_timeout_max,
            request_tracing: v.switch(vars::REQUEST_TRACING, true)?,
            health_interval: v.duration(vars::HEALTH_INTERVAL, Duration::from_secs(2))?,
            max_message_bytes: v.positive(vars::MAX_MESSAGE_BYTES, 16 * 1024)?,
        })
    }
}

fn rate_limit(v: Vars<'_>, authenticated: bool) -> Result<Option<RateLimitConfig>, ConfigError> {
    let global = v.quota(vars::RATE_LIMIT_GLOBAL, vars::RATE_LIMIT_GLOBAL_BURST, 0)?;
    // Above what one instance serves (about 40,000 GetTaskStatus/s on two cores, measured): the
    // Gateway is one client, and must meet the service's capacity (where load shedding answers)
    // before this limit; deployments with many clients lower it (README, "Performance").
    let per_client = v.quota(
        vars::RATE_LIMIT_PER_CLIENT,
        vars::RATE_LIMIT_PER_CLIENT_BURST,
        100_000,
    )?;
    let key = client_key(v, vars::RATE_LIMIT_KEY, authenticated)?;
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

/// What identifies a client: as set; else the authenticated caller when authentication is on,
/// the peer's address otherwise.
fn client_key(v: Vars<'_>, name: &str, authenticated: bool) -> Result<ClientKey, ConfigError> {
    let expected = "peer-ip, x-forwarded-for (only behind a proxy that sets it), caller (with \
                    TASK_AUTH_TOKENS_FILE), or metadata:<key>";
    match v.raw(name) {
        None if authenticated => Ok(ClientKey::Identity),
        None | Some("peer-ip") => Ok(ClientKey::PeerIp),
        Some("caller") if authenticated => Ok(ClientKey::Identity),
        Some("x-forwarded-for") => Ok(ClientKey::ForwardedFor {
            trusted_hops: v.positive(vars::TRUSTED_PROXY_HOPS, 1)?,
        }),
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
