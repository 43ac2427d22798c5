//! The dispatcher, its leases and the reaper.

use std::time::Duration;

use super::{ConfigError, reader::Vars, vars};

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

impl DispatchConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
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
        })
    }
}
