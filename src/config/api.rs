//! The API's own settings: the idempotency window of CreateTask, and WatchTask's bounds and
//! clocks.

use std::time::Duration;

use super::{ConfigError, reader::Vars, vars};

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long a `request_id` answers its first call's task.
    pub idempotency_window: Duration,
    /// Longest a watch lasts (the client's own `grpc-timeout` may end it sooner).
    pub watch_max: Duration,
    /// Open watches per client (its authenticated name, else its address).
    pub watch_max_per_client: usize,
    /// Open watches in all.
    pub watch_max_total: usize,
    /// Whether to use Redis's keyspace notifications (turning them on where allowed).
    pub watch_notifications: bool,
    /// A watch looks again this often by itself while notifications are off.
    pub watch_poll_interval: Duration,
    /// ... and this often while they are on (in case one was lost).
    pub watch_recheck_interval: Duration,
}

impl ApiConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            idempotency_window: v
                .duration(vars::IDEMPOTENCY_WINDOW, Duration::from_secs(24 * 3600))?,
            watch_max: v.duration(vars::WATCH_MAX, Duration::from_secs(3600))?,
            watch_max_per_client: v.positive(vars::WATCH_MAX_PER_CLIENT, 1000)?,
            watch_max_total: v.positive(vars::WATCH_MAX_TOTAL, 10_000)?,
            watch_notifications: v.choice(vars::WATCH_NOTIFICATIONS, &["auto", "off"], "auto")?
                == "auto",
            watch_poll_interval: v.duration(vars::WATCH_POLL_INTERVAL, Duration::from_secs(1))?,
            watch_recheck_interval: v
                .duration(vars::WATCH_RECHECK_INTERVAL, Duration::from_secs(300))?,
        })
    }
}
