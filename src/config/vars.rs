//! The names of the environment variables, one constant each.

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
