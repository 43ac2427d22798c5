//! Typed configuration, parsed once at start from the environment (and `.env`, see [`env`]):
//! the variables are the README's "Configuration" table.
//!
//! Every variable is a named constant in [`vars`]; each section of [`Config`] has its own
//! parser and holds the types the code it configures takes (the middleware's quotas, breaker
//! and retry settings), so nothing downstream checks a value again. A bad value is a
//! [`ConfigError`] naming the variable, never a silent default. Tests feed [`Config::from_vars`]
//! a map.

mod api;
mod console;
mod dispatch;
pub mod env;
mod processor;
mod reader;
mod redis;
mod secret;
mod server;
mod transport;
pub mod vars;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

pub use api::ApiConfig;
pub use console::{ConsoleConfig, ConsoleMode};
pub use dispatch::DispatchConfig;
pub use env::load_dotenv;
pub use processor::{ProcessorConfig, ProcessorTls, RetryBudget};
pub use reader::ConfigError;
pub use redis::{ReadCacheConfig, RedisConfig, RedisTls, SentinelConfig};
pub use secret::Secret;
pub use server::{Reflection, ServerConfig};
pub use transport::TransportConfig;

use reader::Vars;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where the Prometheus endpoint listens (same host as the gRPC server).
    pub metrics_addr: SocketAddr,
    /// The shared storage root.
    pub storage_root: PathBuf,
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
    /// The servers' connections and TLS.
    pub transport: TransportConfig,
    /// How file keys are checked against the storage root.
    pub storage_check: StorageCheck,
    /// The API's idempotency window and watch bounds.
    pub api: ApiConfig,
    /// The operator's console on the metrics listener.
    pub console: ConsoleConfig,
}

/// How CreateTask checks a file key against the storage root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageCheck {
    /// `Resolve` if the storage root exists where the service runs when it starts serving,
    /// else `Text` (the default).
    Auto,
    /// The text rules, and where the key leads on disk: a key whose path goes out of the root
    /// through a symlink is refused (the root is mounted where the service runs).
    Resolve,
    /// The text rules only (the root is not mounted here).
    Text,
}

impl Config {
    /// Reads the process environment (into which `main` has loaded `.env`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env::vars())
    }

    /// Parses a map of variables; absent ones take their defaults.
    pub fn from_vars(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(map);
        let host: IpAddr = v.parse(
            vars::GRPC_HOST,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "an IP address",
        )?;
        let grpc_port: u16 = v.parse(vars::GRPC_PORT, 50050, "a port number 0-65535")?;
        let metrics_port: u16 = v.parse(
            vars::METRICS_PORT,
            9464,
            "a port number 0-65535 (0: any free port)",
        )?;
        let metrics_host: IpAddr = v.parse(
            vars::METRICS_HOST,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "an IP address (0.0.0.0 to open the metrics endpoint to the network)",
        )?;
        let storage_root = PathBuf::from(v.nonempty(vars::LOCAL_STORAGE_PATH, "./data/videos")?);
        let storage_check =
            match v.choice(vars::STORAGE_CHECK, &["auto", "resolve", "text"], "auto")? {
                "resolve" => StorageCheck::Resolve,
                "text" => StorageCheck::Text,
                _ => StorageCheck::Auto,
            };
        Ok(Self {
            grpc_addr: SocketAddr::new(host, grpc_port),
            metrics_addr: SocketAddr::new(metrics_host, metrics_port),
            storage_root,
            storage_check,
            api: ApiConfig::parse(v)?,
            console: ConsoleConfig::parse(v)?,
            transport: TransportConfig::parse(v)?,
            redis: RedisConfig::parse(v)?,
            task_ttl: redis::task_ttl(v)?,
            processor: ProcessorConfig::parse(v)?,
            dispatch: DispatchConfig::parse(v)?,
            shutdown_grace: v.duration(vars::SHUTDOWN_GRACE, Duration::from_secs(20))?,
            server: ServerConfig::parse(v)?,
        })
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
        assert_eq!(config.processor.addr, "processor:50051");
        assert_eq!(config.redis.host, "redis");
        assert_eq!(config.redis.port, 6379);
        assert_eq!(config.task_ttl, Duration::from_secs(7 * 86_400));
        // The read cache is opt-in: every GetTaskStatus reads Redis unless asked otherwise.
        assert_eq!(config.redis.read_cache.entries, 0);
        assert_eq!(config.redis.read_cache.lease, Duration::from_millis(200));
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
        assert_eq!(config.processor.addr, "127.0.0.1:9");
    }

    #[test]
    fn sentinels_are_read_with_their_default_port_and_master() {
        let plain = parse(&[]).unwrap();
        assert!(plain.redis.sentinel.is_none());
        assert_eq!(plain.redis.min_replicas_acked, 0);
        let config = parse(&[
            ("REDIS_SENTINELS", "s1:26380, s2 ,10.0.0.3:5000"),
            ("REDIS_SENTINEL_PASSWORD", "pw"),
            ("TASK_REDIS_MIN_REPLICAS_ACKED", "1"),
        ])
        .unwrap();
        let sentinel = config.redis.sentinel.unwrap();
        assert_eq!(
            sentinel.addrs,
            [
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), 26379),
                ("10.0.0.3".to_owned(), 5000)
            ]
        );
        assert_eq!(sentinel.master, "mymaster");
        assert_eq!(sentinel.password.unwrap().expose(), "pw");
        assert_eq!(config.redis.min_replicas_acked, 1);
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
            ("REDIS_SENTINELS", "s1:port"),
            ("REDIS_SENTINELS", "s1:0"),
            ("REDIS_SENTINELS", " , "),
            ("TASK_REDIS_MIN_REPLICAS_ACKED", "-1"),
            ("TASK_REDIS_MIN_REPLICAS_ACKED", "one"),
            ("TASK_READ_CACHE_ENTRIES", "-1"),
            ("TASK_READ_CACHE_ENTRIES", "1000001"),
            ("TASK_READ_CACHE_LEASE", "1ms"),
            ("TASK_READ_CACHE_LEASE", "1m"),
            ("TASK_IDEMPOTENCY_WINDOW", "0s"),
            ("TASK_WATCH_MAX", "forever"),
            ("TASK_WATCH_MAX_PER_CLIENT", "0"),
            ("TASK_WATCH_NOTIFICATIONS", "maybe"),
            ("TASK_DASHBOARD", "yes"),
            ("TASK_JAEGER_URL", "jaeger:16686"),
            ("TASK_JAEGER_URL", "http://jaeger/\"><script>"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_console_is_on_without_trace_links_by_default() {
        let console = parse(&[]).unwrap().console;
        assert_eq!(console.mode, ConsoleMode::On);
        assert_eq!(console.jaeger_url, None);
        let console = parse(&[
            ("TASK_DASHBOARD", "readonly"),
            ("TASK_JAEGER_URL", "http://localhost:16686/"),
        ])
        .unwrap()
        .console;
        assert_eq!(console.mode, ConsoleMode::ReadOnly);
        assert_eq!(
            console.jaeger_url.as_deref(),
            Some("http://localhost:16686")
        );
    }

    #[test]
    fn server_layers_can_be_switched_off() {
        let on = parse(&[]).unwrap().server;
        assert_eq!(on.max_in_flight, Some(1024));
        let limits = on
            .rate_limit
            .expect("the per-client limit is on by default");
        assert_eq!(limits.per_client, Some(quota(100_000, 200_000)));
        assert_eq!(limits.global, None);
        assert_eq!(limits.key, middleware::ClientKey::PeerIp);
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
        assert!(!off.request_tracing);
        let limits = off.rate_limit.expect("the global limit is on");
        assert_eq!(limits.per_client, None);
        assert_eq!(limits.global, Some(quota(100, 200)));
        assert_eq!(
            limits.key,
            middleware::ClientKey::Metadata(http::HeaderName::from_static("x-client-id"))
        );
        let none = parse(&[("TASK_RATE_LIMIT_PER_CLIENT", "0")])
            .unwrap()
            .server;
        assert!(none.rate_limit.is_none(), "no limit, no layer");
    }

    fn quota(per_second: u32, burst: u32) -> governor::Quota {
        use std::num::NonZeroU32;
        governor::Quota::per_second(NonZeroU32::new(per_second).unwrap())
            .allow_burst(NonZeroU32::new(burst).unwrap())
    }

    #[test]
    fn the_processor_section_builds_the_middlewares_settings() {
        let processor = parse(&[
            ("TASK_BREAKER_CONSECUTIVE_FAILURES", "3"),
            ("TASK_PROCESSOR_RETRY_ATTEMPTS", "2"),
        ])
        .unwrap()
        .processor;
        assert_eq!(processor.breaker.consecutive_failures, 3);
        assert_eq!(processor.breaker.open_for, Duration::from_secs(5));
        assert_eq!(processor.retry.max_attempts, 2);
        assert_eq!(processor.retry.base_delay, Duration::from_millis(100));
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
}
