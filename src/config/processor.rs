//! The Processor client's stack: retry → circuit breaker → per-attempt deadline, and the cap
//! on calls in flight.

use std::{path::PathBuf, time::Duration};

use middleware::{CircuitBreakerConfig, RetryConfig};

use super::{ConfigError, reader::Vars, vars};

/// The Processor client.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// The Processor's `host:port`.
    pub addr: String,
    /// Cap on calls in flight (and on dispatch entries held) per instance.
    pub concurrency: usize,
    /// Per-attempt deadline, sent as `grpc-timeout`.
    pub timeout: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Attempts and backoff within one dispatch round.
    pub retry: RetryConfig,
    /// How many retries the client may spend.
    pub retry_budget: RetryBudget,
    /// When the circuit opens, and how it probes.
    pub breaker: CircuitBreakerConfig,
    /// TLS to the Processor, if on.
    pub tls: Option<ProcessorTls>,
}

/// TLS to the Processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorTls {
    /// CA certificates the Processor's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate and its key, for a Processor that asks for one (mTLS).
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the Processor's certificate must carry; `None`: the host of its address.
    pub server_name: Option<String>,
}

/// A tower `TpsBudget`'s settings: retries allowed per successful call, plus a floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries allowed per successful call.
    pub ratio: f32,
    /// Retries per second always allowed.
    pub min_per_sec: u32,
}

impl ProcessorConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        let retry = RetryConfig {
            max_attempts: v.positive(vars::RETRY_ATTEMPTS, 4)?,
            base_delay: v.duration(vars::RETRY_BASE_DELAY, Duration::from_millis(100))?,
            max_delay: v.duration(vars::RETRY_MAX_DELAY, Duration::from_secs(2))?,
        };
        if retry.max_delay < retry.base_delay {
            return Err(v.error(
                vars::RETRY_MAX_DELAY,
                "a duration at least TASK_PROCESSOR_RETRY_BASE_DELAY",
            ));
        }
        Ok(Self {
            addr: v.host_port(vars::PROCESSOR_GRPC_ADDR, "processor:50051")?,
            concurrency: v.positive(vars::PROCESSOR_CONCURRENCY, 64)?,
            timeout: v.duration(vars::PROCESSOR_TIMEOUT, Duration::from_secs(30))?,
            connect_timeout: v.duration(vars::PROCESSOR_CONNECT_TIMEOUT, Duration::from_secs(2))?,
            retry,
            retry_budget: RetryBudget {
                ratio: v.fraction(vars::RETRY_BUDGET_RATIO, 0.2)? as f32,
                min_per_sec: v.parse(vars::RETRY_BUDGET_MIN_PER_SEC, 10, "a whole number")?,
            },
            breaker: CircuitBreakerConfig {
                consecutive_failures: v.positive(vars::BREAKER_CONSECUTIVE_FAILURES, 5)?,
                failure_rate: v.fraction(vars::BREAKER_FAILURE_RATE, 0.5)?,
                window: v.duration(vars::BREAKER_WINDOW, Duration::from_secs(10))?,
                minimum_calls: v.positive(vars::BREAKER_MIN_CALLS, 20)?,
                open_for: v.duration(vars::BREAKER_OPEN_FOR, Duration::from_secs(5))?,
                half_open_probes: v.positive(vars::BREAKER_HALF_OPEN_PROBES, 1)?,
            },
            tls: tls(v)?,
        })
    }
}

fn tls(v: Vars<'_>) -> Result<Option<ProcessorTls>, ConfigError> {
    let ca = v.file(vars::PROCESSOR_TLS_CA_FILE)?;
    let client = match (
        v.file(vars::PROCESSOR_TLS_CERT_FILE)?,
        v.file(vars::PROCESSOR_TLS_KEY_FILE)?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(v.error(
                vars::PROCESSOR_TLS_KEY_FILE,
                "the key of PROCESSOR_TLS_CERT_FILE",
            ));
        }
        (None, Some(_)) => {
            return Err(v.error(
                vars::PROCESSOR_TLS_CERT_FILE,
                "the certificate of PROCESSOR_TLS_KEY_FILE",
            ));
        }
    };
    let server_name = v
        .raw(vars::PROCESSOR_TLS_SERVER_NAME)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    match ca {
        Some(ca) => Ok(Some(ProcessorTls {
            ca,
            client,
            server_name,
        })),
        None if client.is_some() || server_name.is_some() => Err(v.error(
            vars::PROCESSOR_TLS_CA_FILE,
            "set: it turns TLS to the Processor on, which PROCESSOR_TLS_* settings need",
        )),
        None => Ok(None),
    }
}
