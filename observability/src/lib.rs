//! Tracing setup for the Task service's binaries: one [`init`] that installs the subscriber.
//!
//! `RUST_LOG` filters (default `info`); `TASK_LOG_FORMAT=json` switches from human-readable lines
//! to one JSON object per line.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `TASK_LOG_FORMAT` (`human`, the default, or `json`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("TASK_LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("human") => Ok(Self::Human),
            Ok("json") => Ok(Self::Json),
            Ok(other) => Err(format!(
                "invalid TASK_LOG_FORMAT={other:?}: expected human or json"
            )),
        }
    }
}

/// Installs the global subscriber; the returned guard flushes what is buffered when dropped.
pub fn init(format: LogFormat) -> Guard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Human => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json()).try_init(),
    };
    Guard { _private: () }
}

/// Flushes telemetry when dropped.
#[derive(Debug)]
pub struct Guard {
    _private: (),
}
