//! Typed configuration, parsed once at start from the environment and `.env` (CONTRACT §6).
//!
//! Every variable is a named constant in [`vars`]; every value is checked here, and a bad one
//! is a [`ConfigError`] naming the variable, never a silent default. Tests feed [`Config::from_vars`]
//! a map.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

/// The names of the environment variables.
pub mod vars {
    /// Port of the gRPC server.
    pub const GRPC_PORT: &str = "TASK_GRPC_PORT";
    /// Address the gRPC server binds to.
    pub const GRPC_HOST: &str = "TASK_GRPC_HOST";
    /// The shared storage root.
    pub const LOCAL_STORAGE_PATH: &str = "LOCAL_STORAGE_PATH";
    /// The Processor's `host:port`.
    pub const PROCESSOR_GRPC_ADDR: &str = "PROCESSOR_GRPC_ADDR";
    /// Redis host.
    pub const REDIS_HOST: &str = "REDIS_HOST";
    /// Redis port.
    pub const REDIS_PORT: &str = "REDIS_PORT";
    /// Days a finished task is kept.
    pub const TASK_TTL_DAYS: &str = "TASK_TTL_DAYS";
    /// A finished task's time to live as a duration; overrides `TASK_TTL_DAYS` (tests, drills).
    pub const TASK_TTL: &str = "TASK_TTL";
    /// Bound on any one Redis operation, connecting included.
    pub const REDIS_TIMEOUT: &str = "TASK_REDIS_TIMEOUT";
    /// Connections of the bb8 pool (blocking queue reads).
    pub const REDIS_POOL_SIZE: &str = "TASK_REDIS_POOL_SIZE";
    /// Multiplexed connections serving requests.
    pub const REDIS_CONNECTIONS: &str = "TASK_REDIS_CONNECTIONS";
    /// Prefix of the service's own keys (queue, watch list).
    pub const REDIS_KEY_PREFIX: &str = "TASK_REDIS_KEY_PREFIX";
    /// Cap on ProcessVideo calls in flight.
    pub const PROCESSOR_CONCURRENCY: &str = "TASK_PROCESSOR_CONCURRENCY";
    /// Per-attempt deadline of ProcessVideo.
    pub const PROCESSOR_TIMEOUT: &str = "TASK_PROCESSOR_TIMEOUT";
    /// Bound on connecting to the Processor.
    pub const PROCESSOR_CONNECT_TIMEOUT: &str = "TASK_PROCESSOR_CONNECT_TIMEOUT";
    /// Attempts per dispatch round, the first included.
    pub const RETRY_ATTEMPTS: &str = "TASK_PROCESSOR_RETRY_ATTEMPTS";
    /// First backoff delay.
    pub const RETRY_BASE_DELAY: &str = "TASK_PROCESSOR_RETRY_BASE_DELAY";
    /// Largest backoff delay.
    pub const RETRY_MAX_DELAY: &str = "TASK_PROCESSOR_RETRY_MAX_DELAY";
    /// Retries allowed as a fraction of successful calls.
    pub const RETRY_BUDGET_RATIO: &str = "TASK_PROCESSOR_RETRY_BUDGET_RATIO";
    /// Retries per second always allowed.
    pub const RETRY_BUDGET_MIN_PER_SEC: &str = "TASK_PROCESSOR_RETRY_BUDGET_MIN_PER_SEC";
    /// Consecutive failures that open the circuit.
    pub const BREAKER_CONSECUTIVE_FAILURES: &str = "TASK_BREAKER_CONSECUTIVE_FAILURES";
    /// Failure rate (0..1) over the window that opens the circuit.
    pub const BREAKER_FAILURE_RATE: &str = "TASK_BREAKER_FAILURE_RATE";
    /// Window over which the failure rate is judged.
    pub const BREAKER_WINDOW: &str = "TASK_BREAKER_WINDOW";
    /// Calls needed in the window before the rate is judged.
    pub const BREAKER_MIN_CALLS: &str = "TASK_BREAKER_MIN_CALLS";
    /// How long an open circuit stays open before probing.
    pub const BREAKER_OPEN_FOR: &str = "TASK_BREAKER_OPEN_FOR";
    /// Concurrent probes allowed while half-open.
    pub const BREAKER_HALF_OPEN_PROBES: &str = "TASK_BREAKER_HALF_OPEN_PROBES";
    /// Queue entries taken per read.
    pub const DISPATCH_BATCH: &str = "TASK_DISPATCH_BATCH";
    /// Idle time after which another instance takes over an entry.
    pub const DISPATCH_VISIBILITY_TIMEOUT: &str = "TASK_DISPATCH_VISIBILITY_TIMEOUT";
    /// Deliveries after which an entry that keeps losing its consumer fails its task.
    pub const DISPATCH_MAX_DELIVERIES: &str = "TASK_DISPATCH_MAX_DELIVERIES";
    /// Age after which a task the Processor never accepted is failed.
    pub const DISPATCH_MAX_AGE: &str = "TASK_DISPATCH_MAX_AGE";
    /// ProcessVideo attempts after which a task is failed.
    pub const DISPATCH_MAX_ATTEMPTS: &str = "TASK_DISPATCH_MAX_ATTEMPTS";
    /// Pause between dispatch rounds of one task.
    pub const DISPATCH_ROUND_DELAY: &str = "TASK_DISPATCH_ROUND_DELAY";
    /// Time without an update after which an accepted task is failed as stalled.
    pub const STALL_TIMEOUT: &str = "TASK_STALL_TIMEOUT";
    /// How often an accepted, unfinished task is looked at.
    pub const WATCH_INTERVAL: &str = "TASK_WATCH_INTERVAL";
    /// How often the reaper runs (reclaims, watch list, dead consumers).
    pub const REAPER_INTERVAL: &str = "TASK_REAPER_INTERVAL";
    /// Time given to in-flight work at shutdown.
    pub const SHUTDOWN_GRACE: &str = "TASK_SHUTDOWN_GRACE";
    /// Requests in flight beyond which new ones are shed (0: no limit).
    pub const MAX_IN_FLIGHT: &str = "TASK_MAX_IN_FLIGHT";
    /// Deadline of a request whose client sent none.
    pub const REQUEST_TIMEOUT: &str = "TASK_REQUEST_TIMEOUT";
    /// Longest deadline granted, whatever the client asks.
    pub const REQUEST_TIMEOUT_MAX: &str = "TASK_REQUEST_TIMEOUT_MAX";
    /// Requests per second across all clients (0: no limit).
    pub const RATE_LIMIT_GLOBAL: &str = "TASK_RATE_LIMIT_GLOBAL";
    /// Burst of the global limit.
    pub const RATE_LIMIT_GLOBAL_BURST: &str = "TASK_RATE_LIMIT_GLOBAL_BURST";
    /// Requests per second per client (0: no limit).
    pub const RATE_LIMIT_PER_CLIENT: &str = "TASK_RATE_LIMIT_PER_CLIENT";
    /// Burst of the per-client limit.
    pub const RATE_LIMIT_PER_CLIENT_BURST: &str = "TASK_RATE_LIMIT_PER_CLIENT_BURST";
    /// What identifies a client: `peer-ip`, `x-forwarded-for` or `metadata:<key>`.
    pub const RATE_LIMIT_KEY: &str = "TASK_RATE_LIMIT_KEY";
    /// Clients with their own rate-limit state, at most.
    pub const RATE_LIMIT_MAX_CLIENTS: &str = "TASK_RATE_LIMIT_MAX_CLIENTS";
    /// Whether each request gets a span and a request id (`on` or `off`).
    pub const REQUEST_TRACING: &str = "TASK_REQUEST_TRACING";
    /// How often health checks Redis.
    pub const HEALTH_INTERVAL: &str = "TASK_HEALTH_INTERVAL";
    /// Largest request message accepted, in bytes.
    pub const MAX_MESSAGE_BYTES: &str = "TASK_MAX_MESSAGE_BYTES";
    /// Port of the Prometheus endpoint (`0`: any free port).
    pub const METRICS_PORT: &str = "TASK_METRICS_PORT";
}

/// A setting that could not be used; names the variable and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {expected}")]
pub struct ConfigError {
    /// The variable's name.
    pub variable: String,
    /// The value found.
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where the Prometheus endpoint listens (same host as the gRPC server).
    pub metrics_addr: SocketAddr,
    /// The shared storage root.
    pub storage_root: PathBuf,
    /// The Processor's `host:port`.
    pub processor_addr: String,
    /// Redis.
    pub redis: RedisConfig,
    /// How long a finished task is kept.
    pub task_ttl: Duration,
    /// The Processor client.
    pub processor: ProcessorConfig,
    /// The dispatcher and reaper.
    pub dispatch: DispatchConfig,
    /// Time given to in-flight requests and calls at shutdown.
    pub shutdown_grace: Duration,
    /// The gRPC server's layers.
    pub server: ServerConfig,
}

/// The gRPC server's middleware, health and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests in flight beyond which new ones are shed; `None`: no limit.
    pub max_in_flight: Option<usize>,
    /// Deadline of a request whose client sent none.
    pub request_timeout: Duration,
    /// Longest deadline granted.
    pub request_timeout_max: Duration,
    /// Global limit: requests per second and burst; `None`: off.
    pub rate_limit_global: Option<(u32, u32)>,
    /// Per-client limit: requests per second and burst; `None`: off.
    pub rate_limit_per_client: Option<(u32, u32)>,
    /// What identifies a client.
    pub rate_limit_key: RateLimitKey,
    /// Clients with their own rate-limit state, at most.
    pub rate_limit_max_clients: usize,
    /// Span and request id per request.
    pub request_tracing: bool,
    /// How often health checks Redis.
    pub health_interval: Duration,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
}

/// What identifies a client for the per-client rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The connection's peer address.
    PeerIp,
    /// The first address of `x-forwarded-for`, set by a trusted proxy.
    ForwardedFor,
    /// A metadata key's value, such as a client id.
    Metadata(String),
}

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

/// The Processor client's stack: retry → circuit breaker → concurrency → deadline.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Cap on calls in flight.
    pub concurrency: usize,
    /// Per-attempt deadline, sent as `grpc-timeout`.
    pub timeout: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Attempts per round (first included).
    pub retry_attempts: u32,
    /// First backoff delay.
    pub retry_base_delay: Duration,
    /// Largest backoff delay.
    pub retry_max_delay: Duration,
    /// Retries allowed per successful call.
    pub retry_budget_ratio: f32,
    /// Retries per second always allowed.
    pub retry_budget_min_per_sec: u32,
    /// Consecutive failures that open the circuit.
    pub breaker_consecutive_failures: u32,
    /// Failure rate that opens the circuit.
    pub breaker_failure_rate: f64,
    /// Window of the failure rate.
    pub breaker_window: Duration,
    /// Calls needed before the rate counts.
    pub breaker_min_calls: u32,
    /// Time open before probing.
    pub breaker_open_for: Duration,
    /// Concurrent probes while half-open.
    pub breaker_half_open_probes: u32,
}

/// The dispatcher, the leases and the reaper.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Entries taken per read.
    pub batch: usize,
    /// Idle time after which an entry is taken over by another instance.
    pub visibility_timeout: Duration,
    /// Deliveries after which the task is failed as poison.
    pub max_deliveries: u32,
    /// Age after which a task never accepted by the Processor is failed.
    pub max_age: Duration,
    /// Attempts after which a task is failed.
    pub max_attempts: u32,
    /// Pause between rounds of one task.
    pub round_delay: Duration,
    /// Time without update after which an accepted task is failed as stalled.
    pub stall_timeout: Duration,
    /// How often an accepted task is looked at.
    pub watch_interval: Duration,
    /// How often the reaper runs.
    pub reaper_interval: Duration,
}

impl Config {
    /// Reads the process environment over the `.env` file of the working directory.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_with_dotenv(Path::new(".env"))?)
    }

    /// Parses a map of variables; absent ones take their defaults.
    pub fn from_vars(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(map);
        let grpc_host: IpAddr = v.parse(
            vars::GRPC_HOST,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "an IP address",
        )?;
        let grpc_port: u16 = v.parse(vars::GRPC_PORT, 50050, "a port number 0-65535")?;
        let storage_root = PathBuf::from(v.nonempty(vars::LOCAL_STORAGE_PATH, "./data/videos")?);
        let processor_addr = v.host_port(vars::PROCESSOR_GRPC_ADDR, "processor:50051")?;
        let redis = RedisConfig {
            host: v.nonempty(vars::REDIS_HOST, "redis")?,
            port: v.positive(vars::REDIS_PORT, 6379u16)?,
            timeout: v.duration(vars::REDIS_TIMEOUT, Duration::from_secs(2))?,
            pool_size: v.positive(vars::REDIS_POOL_SIZE, 8)?,
            connections: v.positive(vars::REDIS_CONNECTIONS, 2)?,
            key_prefix: v.key_prefix(vars::REDIS_KEY_PREFIX, "task-service")?,
        };
        let ttl_days: u64 = v.positive(vars::TASK_TTL_DAYS, 7)?;
        if ttl_days > 36_500 {
            return Err(v.error(
                vars::TASK_TTL_DAYS,
                "a whole number of days from 1 to 36500",
            ));
        }
        let processor = ProcessorConfig {
            concurrency: v.positive(vars::PROCESSOR_CONCURRENCY, 64)?,
            timeout: v.duration(vars::PROCESSOR_TIMEOUT, Duration::from_secs(30))?,
            connect_timeout: v.duration(vars::PROCESSOR_CONNECT_TIMEOUT, Duration::from_secs(2))?,
            retry_attempts: v.positive(vars::RETRY_ATTEMPTS, 4)?,
            retry_base_delay: v.duration(vars::RETRY_BASE_DELAY, Duration::from_millis(100))?,
            retry_max_delay: v.duration(vars::RETRY_MAX_DELAY, Duration::from_secs(2))?,
            retry_budget_ratio: v.fraction(vars::RETRY_BUDGET_RATIO, 0.2)? as f32,
            retry_budget_min_per_sec: v.parse(
                vars::RETRY_BUDGET_MIN_PER_SEC,
                10,
                "a whole number",
            )?,
            breaker_consecutive_failures: v.positive(vars::BREAKER_CONSECUTIVE_FAILURES, 5)?,
            breaker_failure_rate: v.fraction(vars::BREAKER_FAILURE_RATE, 0.5)?,
            breaker_window: v.duration(vars::BREAKER_WINDOW, Duration::from_secs(10))?,
            breaker_min_calls: v.positive(vars::BREAKER_MIN_CALLS, 20)?,
            breaker_open_for: v.duration(vars::BREAKER_OPEN_FOR, Duration::from_secs(5))?,
            breaker_half_open_probes: v.positive(vars::BREAKER_HALF_OPEN_PROBES, 1)?,
        };
        if processor.retry_max_delay < processor.retry_base_delay {
            return Err(v.error(
                vars::RETRY_MAX_DELAY,
                "a duration at least TASK_PROCESSOR_RETRY_BASE_DELAY",
            ));
        }
        let dispatch = DispatchConfig {
            batch: v.positive(vars::DISPATCH_BATCH, 64)?,
            visibility_timeout: v
                .duration(vars::DISPATCH_VISIBILITY_TIMEOUT, Duration::from_secs(30))?,
            max_deliveries: v.positive(vars::DISPATCH_MAX_DELIVERIES, 5)?,
            max_age: v.duration(vars::DISPATCH_MAX_AGE, Duration::from_secs(3600))?,
            max_attempts: v.positive(vars::DISPATCH_MAX_ATTEMPTS, 20)?,
            round_delay: v.duration(vars::DISPATCH_ROUND_DELAY, Duration::from_secs(1))?,
            stall_timeout: v.duration(vars::STALL_TIMEOUT, Duration::from_secs(2 * 3600))?,
            watch_interval: v.duration(vars::WATCH_INTERVAL, Duration::from_secs(60))?,
            reaper_interval: v.duration(vars::REAPER_INTERVAL, Duration::from_secs(5))?,
        };
        let server = ServerConfig {
            max_in_flight: Some(v.parse(
                vars::MAX_IN_FLIGHT,
                1024usize,
                "a whole number (0: no limit)",
            )?)
            .filter(|n| *n > 0),
            request_timeout: v.duration(vars::REQUEST_TIMEOUT, Duration::from_secs(10))?,
            request_timeout_max: v.duration(vars::REQUEST_TIMEOUT_MAX, Duration::from_secs(60))?,
            rate_limit_global: v.rate(vars::RATE_LIMIT_GLOBAL, vars::RATE_LIMIT_GLOBAL_BURST, 0)?,
            rate_limit_per_client: v.rate(
                vars::RATE_LIMIT_PER_CLIENT,
                vars::RATE_LIMIT_PER_CLIENT_BURST,
                10_000,
            )?,
            rate_limit_key: v.rate_limit_key(vars::RATE_LIMIT_KEY)?,
            rate_limit_max_clients: v.positive(vars::RATE_LIMIT_MAX_CLIENTS, 10_000)?,
            request_tracing: v.switch(vars::REQUEST_TRACING, true)?,
            health_interval: v.duration(vars::HEALTH_INTERVAL, Duration::from_secs(2))?,
            max_message_bytes: v.positive(vars::MAX_MESSAGE_BYTES, 16 * 1024)?,
        };
        if server.request_timeout_max < server.request_timeout {
            return Err(v.error(
                vars::REQUEST_TIMEOUT_MAX,
                "a duration at least TASK_REQUEST_TIMEOUT",
            ));
        }
        let metrics_port: u16 = v.parse(
            vars::METRICS_PORT,
            9464,
            "a port number 0-65535 (0: any free port)",
        )?;
        Ok(Self {
            server,
            metrics_addr: SocketAddr::new(grpc_host, metrics_port),
            grpc_addr: SocketAddr::new(grpc_host, grpc_port),
            storage_root,
            processor_addr,
            redis,
            task_ttl: v.duration(vars::TASK_TTL, Duration::from_secs(ttl_days * 86_400))?,
            processor,
            dispatch,
            shutdown_grace: v.duration(vars::SHUTDOWN_GRACE, Duration::from_secs(20))?,
        })
    }
}

/// The process environment over the variables of a `.env` file (the environment wins).
fn env_with_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let mut map = HashMap::new();
    match dotenvy::from_path_iter(path) {
        Ok(items) => {
            for item in items {
                let (key, value) = item.map_err(|e| ConfigError {
                    variable: path.display().to_string(),
                    value: String::new(),
                    expected: format!("a readable .env file ({e})"),
                })?;
                map.insert(key, value);
            }
        }
        Err(e) if e.not_found() => {}
        Err(e) => {
            return Err(ConfigError {
                variable: path.display().to_string(),
                value: String::new(),
                expected: format!("a readable .env file ({e})"),
            });
        }
    }
    map.extend(std::env::vars());
    Ok(map)
}

/// Typed readers over the variable map.
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim())
    }

    fn error(&self, name: &str, expected: &str) -> ConfigError {
        ConfigError {
            variable: name.to_owned(),
            value: self.raw(name).unwrap_or_default().to_owned(),
            expected: expected.to_owned(),
        }
    }

    fn parse<T: FromStr>(&self, name: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| self.error(name, expected)),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.parse(name, default, "a whole number greater than 0")?;
        if value > T::default() {
            Ok(value)
        } else {
            Err(self.error(name, "a whole number greater than 0"))
        }
    }

    fn fraction(&self, name: &str, default: f64) -> Result<f64, ConfigError> {
        let expected = "a number from 0 to 1, like 0.5";
        let value: f64 = self.parse(name, default, expected)?;
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(self.error(name, expected))
        }
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let expected = "a duration greater than 0, like 500ms, 30s, 5m or 2h";
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => match humantime::parse_duration(raw) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => Err(self.error(name, expected)),
            },
        }
    }

    fn nonempty(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        match self.raw(name) {
            None => Ok(default.to_owned()),
            Some("") => Err(self.error(name, "a non-empty value")),
            Some(raw) => Ok(raw.to_owned()),
        }
    }

    fn host_port(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.nonempty(name, default)?;
        let expected = "host:port, like processor:50051 or 127.0.0.1:50051";
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| self.error(name, expected))?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        if host.is_empty() || !port_ok || host.contains(['/', ' ']) {
            return Err(self.error(name, expected));
        }
        Ok(value)
    }

    /// A rate in requests per second (0: off) and its burst (default: twice the rate).
    fn rate(
        &self,
        name: &str,
        burst_name: &str,
        default: u32,
    ) -> Result<Option<(u32, u32)>, ConfigError> {
        let per_second: u32 = self.parse(
            name,
            default,
            "a whole number of requests per second (0: no limit)",
        )?;
        if per_second == 0 {
            return Ok(None);
        }
        let burst = self.positive(burst_name, per_second.saturating_mul(2))?;
        Ok(Some((per_second, burst)))
    }

    fn rate_limit_key(&self, name: &str) -> Result<RateLimitKey, ConfigError> {
        let expected =
            "peer-ip, x-forwarded-for (only behind a proxy that sets it), or metadata:<key>";
        match self.raw(name) {
            None | Some("peer-ip") => Ok(RateLimitKey::PeerIp),
            Some("x-forwarded-for") => Ok(RateLimitKey::ForwardedFor),
            Some(other) => match other.strip_prefix("metadata:") {
                Some(key)
                    if http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                        && key == key.to_ascii_lowercase() =>
                {
                    Ok(RateLimitKey::Metadata(key.to_owned()))
                }
                _ => Err(self.error(name, expected)),
            },
        }
    }

    fn switch(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(_) => Err(self.error(name, "on or off")),
        }
    }

    fn key_prefix(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.nonempty(name, default)?;
        let expected = "a prefix of printable characters without spaces, '*', '?', '[' or ']', \
                        that does not start with \"task:\" (operators' SCAN MATCH task:* must find task hashes only)";
        let bad_char = value
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "*?[]".contains(c));
        if bad_char || value.starts_with("task:") {
            return Err(self.error(name, expected));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&map)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.grpc_addr.port(), 50050);
        assert_eq!(config.storage_root, PathBuf::from("./data/videos"));
        assert_eq!(config.processor_addr, "processor:50051");
        assert_eq!(config.redis.host, "redis");
        assert_eq!(config.redis.port, 6379);
        assert_eq!(config.task_ttl, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn values_are_read() {
        let config = parse(&[
            ("TASK_GRPC_PORT", "6000"),
            ("REDIS_PORT", "7000"),
            ("TASK_TTL_DAYS", "2"),
            ("TASK_REDIS_TIMEOUT", "750ms"),
            ("PROCESSOR_GRPC_ADDR", "127.0.0.1:9"),
        ])
        .unwrap();
        assert_eq!(config.grpc_addr.port(), 6000);
        assert_eq!(config.redis.port, 7000);
        assert_eq!(config.task_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(config.redis.timeout, Duration::from_millis(750));
        let short = parse(&[("TASK_TTL_DAYS", "2"), ("TASK_TTL", "30s")]).unwrap();
        assert_eq!(short.task_ttl, Duration::from_secs(30));
        assert_eq!(config.processor_addr, "127.0.0.1:9");
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("TASK_GRPC_PORT", "http"),
            ("TASK_GRPC_PORT", "70000"),
            ("REDIS_PORT", "0"),
            ("REDIS_HOST", ""),
            ("TASK_TTL_DAYS", "0"),
            ("TASK_TTL_DAYS", "-1"),
            ("TASK_TTL_DAYS", "seven"),
            ("PROCESSOR_GRPC_ADDR", "processor"),
            ("PROCESSOR_GRPC_ADDR", "http://processor:1"),
            ("TASK_REDIS_TIMEOUT", "0s"),
            ("TASK_REDIS_TIMEOUT", "soon"),
            ("TASK_REDIS_KEY_PREFIX", "task:queue"),
            ("TASK_REDIS_KEY_PREFIX", "a*b"),
            ("TASK_BREAKER_FAILURE_RATE", "1.5"),
            ("TASK_PROCESSOR_CONCURRENCY", "0"),
            ("TASK_GRPC_HOST", "localhost:1"),
            ("TASK_RATE_LIMIT_KEY", "cookie"),
            ("TASK_RATE_LIMIT_KEY", "metadata:Bad Key"),
            ("TASK_REQUEST_TRACING", "maybe"),
            ("TASK_MAX_IN_FLIGHT", "-1"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn server_layers_can_be_switched_off() {
        let on = parse(&[]).unwrap().server;
        assert_eq!(on.max_in_flight, Some(1024));
        assert_eq!(on.rate_limit_per_client, Some((10_000, 20_000)));
        assert_eq!(on.rate_limit_global, None);
        let off = parse(&[
            ("TASK_MAX_IN_FLIGHT", "0"),
            ("TASK_RATE_LIMIT_PER_CLIENT", "0"),
            ("TASK_REQUEST_TRACING", "off"),
            ("TASK_RATE_LIMIT_GLOBAL", "100"),
            ("TASK_RATE_LIMIT_KEY", "metadata:x-client-id"),
        ])
        .unwrap()
        .server;
        assert_eq!(off.max_in_flight, None);
        assert_eq!(off.rate_limit_per_client, None);
        assert!(!off.request_tracing);
        assert_eq!(off.rate_limit_global, Some((100, 200)));
        assert_eq!(
            off.rate_limit_key,
            RateLimitKey::Metadata("x-client-id".into())
        );
    }

    #[test]
    fn retry_delays_must_be_ordered() {
        let err = parse(&[
            ("TASK_PROCESSOR_RETRY_BASE_DELAY", "3s"),
            ("TASK_PROCESSOR_RETRY_MAX_DELAY", "1s"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "TASK_PROCESSOR_RETRY_MAX_DELAY");
    }

    #[test]
    fn environment_wins_over_dotenv_file() {
        let dir = std::env::temp_dir().join(format!("task-service-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".env");
        std::fs::write(
            &file,
            "TASK_CONFIG_TEST_ONLY_IN_FILE=file\nPATH=from-file\n",
        )
        .unwrap();
        let map = env_with_dotenv(&file).unwrap();
        assert_eq!(map["TASK_CONFIG_TEST_ONLY_IN_FILE"], "file");
        assert_ne!(map["PATH"], "from-file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
