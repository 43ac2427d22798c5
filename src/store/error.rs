//! The store's one error type, worded for the person who reads it in a gRPC status.

use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No connection could be made or kept.
    #[error("Redis at {addr} is unreachable: {reason}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The operation did not finish within the configured bound.
    #[error("Redis at {addr} is unreachable: no answer within {after:?} (TASK_REDIS_TIMEOUT)")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The bound.
        after: Duration,
    },
    /// Redis answered with an error.
    #[error("Redis at {addr} failed the command: {reason}")]
    Command {
        /// `host:port`.
        addr: String,
        /// Redis's error.
        reason: String,
    },
    /// The write is on the primary, but fewer replicas than `TASK_REDIS_MIN_REPLICAS_ACKED`
    /// acknowledged it in time: a failover now could lose it.
    #[error(
        "written to the Redis primary at {addr} but not yet to {wanted} replica(s) ({acked} acknowledged in time, TASK_REDIS_MIN_REPLICAS_ACKED); retry — with the same request_id, a retried CreateTask creates nothing twice"
    )]
    NotReplicated {
        /// `host:port` of the primary.
        addr: String,
        /// Replicas wanted.
        wanted: u32,
        /// Replicas that acknowledged.
        acked: u32,
    },
    /// Redis answered something the service cannot read.
    #[error("unexpected data in Redis: {0}")]
    Corrupt(String),
}
