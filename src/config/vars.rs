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
/// Tasks the GetTaskStatus read cache keeps (0: off).
pub const READ_CACHE_ENTRIES: &str = "TASK_READ_CACHE_ENTRIES";
/// Oldest proof that invalidations arrive for the read cache to answer.
pub const READ_CACHE_LEASE: &str = "TASK_READ_CACHE_LEASE";
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
/// Trusted proxies in front of the service, for `TASK_RATE_LIMIT_KEY=x-forwarded-for`.
pub const TRUSTED_PROXY_HOPS: &str = "TASK_TRUSTED_PROXY_HOPS";
/// Address the Prometheus endpoint binds to.
pub const METRICS_HOST: &str = "TASK_METRICS_HOST";
/// Connections open at once the metrics endpoint allows.
pub const METRICS_MAX_CONNECTIONS: &str = "TASK_METRICS_MAX_CONNECTIONS";
/// Time a metrics client has to send its request's headers.
pub const METRICS_HEADER_TIMEOUT: &str = "TASK_METRICS_HEADER_TIMEOUT";
/// Time a request has to send its whole body.
pub const REQUEST_BODY_TIMEOUT: &str = "TASK_REQUEST_BODY_TIMEOUT";
/// Requests in flight on one connection, at most.
pub const MAX_IN_FLIGHT_PER_CONNECTION: &str = "TASK_MAX_IN_FLIGHT_PER_CONNECTION";
/// Connections open at once the gRPC server allows.
pub const MAX_CONNECTIONS: &str = "TASK_MAX_CONNECTIONS";
/// Time a new connection has for its TLS handshake and HTTP/2 preface.
pub const CONNECTION_PREFACE_TIMEOUT: &str = "TASK_CONNECTION_PREFACE_TIMEOUT";
/// Time a connection may stay open with no request.
pub const CONNECTION_IDLE_TIMEOUT: &str = "TASK_CONNECTION_IDLE_TIMEOUT";
/// Age at which a connection is asked to close (HTTP/2 GOAWAY).
pub const MAX_CONNECTION_AGE: &str = "TASK_MAX_CONNECTION_AGE";
/// Time after that age before the connection is closed whatever is in flight.
pub const MAX_CONNECTION_AGE_GRACE: &str = "TASK_MAX_CONNECTION_AGE_GRACE";
/// Streams one HTTP/2 connection may have open at once (advertised to clients).
pub const MAX_CONCURRENT_STREAMS: &str = "TASK_MAX_CONCURRENT_STREAMS";
/// How often the server pings an HTTP/2 connection.
pub const HTTP2_KEEPALIVE_INTERVAL: &str = "TASK_HTTP2_KEEPALIVE_INTERVAL";
/// Time a ping's answer may take before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: &str = "TASK_HTTP2_KEEPALIVE_TIMEOUT";
/// The server's certificate chain (PEM); with the key, the server speaks TLS only.
pub const TLS_CERT_FILE: &str = "TASK_TLS_CERT_FILE";
/// The server's private key (PEM).
pub const TLS_KEY_FILE: &str = "TASK_TLS_KEY_FILE";
/// CA certificates client certificates must chain to (mTLS).
pub const TLS_CLIENT_CA_FILE: &str = "TASK_TLS_CLIENT_CA_FILE";
/// How often the TLS files are looked at for changes.
pub const TLS_RELOAD_INTERVAL: &str = "TASK_TLS_RELOAD_INTERVAL";
/// The callers and their scopes: `<name> <scope> <sha256 hex>|cert:<CN>` lines.
pub const AUTH_TOKENS_FILE: &str = "TASK_AUTH_TOKENS_FILE";
/// Reflection: `on`, `authenticated` or `off`.
pub const REFLECTION: &str = "TASK_REFLECTION";
/// How a file key is checked against the storage root: `resolve` or `text`.
pub const STORAGE_CHECK: &str = "TASK_STORAGE_CHECK";
/// CA certificates the Processor's certificate must chain to; set, calls use TLS.
pub const PROCESSOR_TLS_CA_FILE: &str = "PROCESSOR_TLS_CA_FILE";
/// The client certificate presented to the Processor (PEM).
pub const PROCESSOR_TLS_CERT_FILE: &str = "PROCESSOR_TLS_CERT_FILE";
/// Its private key (PEM).
pub const PROCESSOR_TLS_KEY_FILE: &str = "PROCESSOR_TLS_KEY_FILE";
/// The name the Processor's certificate must carry (default: the host of its address).
pub const PROCESSOR_TLS_SERVER_NAME: &str = "PROCESSOR_TLS_SERVER_NAME";
/// The Redis ACL user.
pub const REDIS_USERNAME: &str = "REDIS_USERNAME";
/// The Redis password.
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
/// A file holding the Redis password.
pub const REDIS_PASSWORD_FILE: &str = "REDIS_PASSWORD_FILE";
/// The Redis database number.
pub const REDIS_DB: &str = "REDIS_DB";
/// TLS to Redis: `on` or `off`.
pub const REDIS_TLS: &str = "REDIS_TLS";
/// CA certificates Redis's certificate must chain to.
pub const REDIS_TLS_CA_FILE: &str = "REDIS_TLS_CA_FILE";
/// The client certificate presented to Redis (PEM).
pub const REDIS_TLS_CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
/// Its private key (PEM).
pub const REDIS_TLS_KEY_FILE: &str = "REDIS_TLS_KEY_FILE";
/// Connections one peer address may keep open at once.
pub const MAX_CONNECTIONS_PER_PEER: &str = "TASK_MAX_CONNECTIONS_PER_PEER";
/// How long a CreateTask `request_id` answers its first call's task.
pub const IDEMPOTENCY_WINDOW: &str = "TASK_IDEMPOTENCY_WINDOW";
/// Longest a WatchTask stream lasts.
pub const WATCH_MAX: &str = "TASK_WATCH_MAX";
/// Open watches one client may have.
pub const WATCH_MAX_PER_CLIENT: &str = "TASK_WATCH_MAX_PER_CLIENT";
/// Open watches in all, per instance.
pub const WATCH_MAX_TOTAL: &str = "TASK_WATCH_MAX_TOTAL";
/// Whether watches are woken by Redis's keyspace notifications: `auto` or `off`.
pub const WATCH_NOTIFICATIONS: &str = "TASK_WATCH_NOTIFICATIONS";
/// How often a watch looks again by itself when notifications are off.
pub const WATCH_POLL_INTERVAL: &str = "TASK_WATCH_POLL_INTERVAL";
/// How often a watch looks again by itself when notifications are on (the safety net).
pub const WATCH_RECHECK_INTERVAL: &str = "TASK_WATCH_RECHECK_INTERVAL";
/// Redis Sentinel addresses, `host:port,host:port,...`.
pub const REDIS_SENTINELS: &str = "REDIS_SENTINELS";
/// The master name the sentinels watch.
pub const REDIS_SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
/// The sentinels' password.
pub const REDIS_SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";
/// Replicas that must hold a write before the service answers it (`WAIT`).
pub const REDIS_MIN_REPLICAS_ACKED: &str = "TASK_REDIS_MIN_REPLICAS_ACKED";
/// The operator's console on the metrics listener: `on`, `readonly` (no actions) or `off`.
pub const DASHBOARD: &str = "TASK_DASHBOARD";
/// The Jaeger UI's base URL, for links from a task to its trace (unset: no links).
pub const JAEGER_URL: &str = "TASK_JAEGER_URL";
