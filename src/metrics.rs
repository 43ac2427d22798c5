//! The figures a queue is judged by, for Prometheus: RPCs by method and code with latency,
//! tasks created and ended by outcome, queue depth and age of the oldest entry, Processor calls
//! in flight, retries, rescues, the circuit breaker, rate-limited requests. Served as text on
//! `TASK_METRICS_PORT` at `/metrics`, beside the console.
//!
//! Counters are prometheus-client metrics updated where things happen; what other components
//! already count (the breaker, the rate limiter, the semaphores) is read at scrape time by
//! [`Live`].

use std::{fmt, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use middleware::{BreakerHandle, BreakerState, LoadShedLayer, RateLimitLayer, RateLimitScope};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use crate::{
    task::TaskStatus,
    transport::{Conn, ConnectionStats},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;

/// Labels of an RPC count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `/package.Service/Method`, or `other`.
    pub method: &'static str,
    /// The gRPC status code's name, like `OK` or `NOT_FOUND`.
    pub code: &'static str,
}

/// Labels of an RPC latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `/package.Service/Method`, or `other`.
    pub method: &'static str,
}

/// Labels of a task's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// How it ended; see [`TaskEnd`].
    pub outcome: &'static str,
}

/// How a task ended, as this service saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// The Processor wrote COMPLETED.
    Completed,
    /// The Processor wrote FAILED.
    FailedByProcessor,
    /// The Processor refused the task.
    Rejected,
    /// The Processor could not be reached within the attempts.
    Unreachable,
    /// The Processor did not accept the task within the maximum age.
    Expired,
    /// The entry kept losing its consumer.
    Poisoned,
    /// No update for the stall timeout.
    Stalled,
    /// A dispatch entry without a valid task id.
    Malformed,
    /// Cancelled (CancelTask).
    Cancelled,
}

impl TaskEnd {
    /// Every way a task ends.
    pub const ALL: [Self; 9] = [
        Self::Completed,
        Self::FailedByProcessor,
        Self::Rejected,
        Self::Unreachable,
        Self::Expired,
        Self::Poisoned,
        Self::Stalled,
        Self::Malformed,
        Self::Cancelled,
    ];

    /// Its `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::FailedByProcessor => "failed_by_processor",
            Self::Rejected => "rejected",
            Self::Unreachable => "unreachable",
            Self::Expired => "expired",
            Self::Poisoned => "poisoned",
            Self::Stalled => "stalled",
            Self::Malformed => "malformed",
            Self::Cancelled => "cancelled",
        }
    }

    /// How a task ended whose final status the Processor wrote.
    pub fn of_final(status: TaskStatus) -> Self {
        if status == TaskStatus::Completed {
            Self::Completed
        } else {
            Self::FailedByProcessor
        }
    }
}

/// Every metric this service updates. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// RPCs answered, by method and code.
    pub rpc_requests: Family<RpcLabels, Counter>,
    /// RPC latency to the response headers, by method.
    pub rpc_duration: Family<MethodLabels, Histogram>,
    /// Tasks created.
    pub tasks_created: Counter,
    /// Tasks ended, by outcome.
    pub tasks_ended: Family<OutcomeLabels, Counter>,
    /// Tasks the Processor accepted.
    pub dispatch_accepted: Counter,
    /// ProcessVideo attempts beyond the first of each round.
    pub dispatch_retries: Counter,
    /// Entries taken over from an instance that stopped renewing them.
    pub dispatch_rescues: Counter,
    /// Held entries whose lease another instance took.
    pub dispatch_leases_lost: Counter,
    /// Calls the circuit breaker held back.
    pub dispatch_deferred: Counter,
    /// Entries in the queue (waiting plus delivered and unacknowledged).
    pub queue_depth: Gauge,
    /// Entries delivered and not yet acknowledged.
    pub queue_pending: Gauge,
    /// Age of the oldest entry in the queue, in seconds.
    pub queue_oldest_age: Gauge<f64, AtomicU64>,
    /// Accepted tasks not yet final.
    pub watched_tasks: Gauge,
    /// CreateTask calls answered with an earlier call's task (their request_id).
    pub idempotent_replays: Counter,
    /// WatchTask streams open.
    pub watches_open: Gauge,
    /// 1 while the reaper's last read of the queue figures succeeded, 0 after one failed.
    pub store_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
            }),
            tasks_created: Counter::default(),
            tasks_ended: Family::default(),
            dispatch_accepted: Counter::default(),
            dispatch_retries: Counter::default(),
            dispatch_rescues: Counter::default(),
            dispatch_leases_lost: Counter::default(),
            dispatch_deferred: Counter::default(),
            queue_depth: Gauge::default(),
            queue_pending: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            watched_tasks: Gauge::default(),
            idempotent_replays: Counter::default(),
            watches_open: Gauge::default(),
            store_up: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Counts a task's end.
    pub fn ended(&self, end: TaskEnd) {
        self.tasks_ended
            .get_or_create(&OutcomeLabels {
                outcome: end.label(),
            })
            .inc();
    }

    /// Tasks seen ending this way since start.
    pub fn ended_count(&self, end: TaskEnd) -> u64 {
        self.tasks_ended
            .get_or_create(&OutcomeLabels {
                outcome: end.label(),
            })
            .get()
    }

    /// A registry of every metric, plus the `live` ones read at scrape time.
    pub fn registry(&self, live: Live) -> Registry {
        let mut r = Registry::with_prefix("task");
        r.register(
            "rpc_requests",
            "RPCs answered, by method and gRPC code",
            self.rpc_requests.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "RPC latency until the response headers, by method",
            self.rpc_duration.clone(),
        );
        r.register("tasks_created", "Tasks created", self.tasks_created.clone());
        r.register(
            "tasks_ended",
            "Tasks seen ending, by outcome",
            self.tasks_ended.clone(),
        );
        r.register(
            "dispatch_accepted",
            "Tasks the Processor accepted",
            self.dispatch_accepted.clone(),
        );
        r.register(
            "dispatch_retries",
            "ProcessVideo attempts beyond the first of each round",
            self.dispatch_retries.clone(),
        );
        r.register(
            "dispatch_rescues",
            "Queue entries taken over from an instance that stopped renewing them",
            self.dispatch_rescues.clone(),
        );
        r.register(
            "dispatch_leases_lost",
            "Held entries whose lease another instance took",
            self.dispatch_leases_lost.clone(),
        );
        r.register(
            "dispatch_deferred",
            "ProcessVideo calls the open circuit held back",
            self.dispatch_deferred.clone(),
        );
        r.register(
            "queue_depth",
            "Entries in the dispatch queue",
            self.queue_depth.clone(),
        );
        r.register(
            "queue_pending",
            "Entries delivered and not yet acknowledged",
            self.queue_pending.clone(),
        );
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest entry in the dispatch queue",
            self.queue_oldest_age.clone(),
        );
        r.register(
            "watched_tasks",
            "Accepted tasks not yet final",
            self.watched_tasks.clone(),
        );
        r.register(
            "idempotent_replays",
            "CreateTask calls answered with an earlier call's task (same request_id)",
            self.idempotent_replays.clone(),
        );
        r.register(
            "watches_open",
            "WatchTask streams open",
            self.watches_open.clone(),
        );
        r.register(
            "store_up",
            "1 while the last periodic read of the store (Redis) succeeded, 0 after one failed",
            self.store_up.clone(),
        );
        r.register_collector(Box::new(live));
        r
    }
}

/// Figures other components keep, read at scrape time (named under the registry's `task_` prefix).
#[derive(Debug, Default)]
pub struct Live {
    /// The Processor client's breaker.
    pub breaker: Option<BreakerHandle>,
    /// ProcessVideo calls in flight, as the Processor client counts them.
    pub processor_in_flight: Option<Arc<AtomicUsize>>,
    /// The server's rate limiter.
    pub rate_limit: Option<RateLimitLayer>,
    /// The server's load shedder.
    pub load_shed: Option<LoadShedLayer>,
    /// What the gRPC server's connections did.
    pub connections: Option<Arc<ConnectionStats>>,
    /// The Redis store (its failovers and unreplicated writes).
    pub redis: Option<crate::store::RedisStore>,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(breaker) = &self.breaker {
            let state = match breaker.state() {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            gauge(
                &mut encoder,
                "circuit_breaker_state",
                "The Processor circuit: 0 closed, 1 half-open, 2 open",
                state,
            )?;
            counter(
                &mut encoder,
                "circuit_breaker_opened",
                "Times the Processor circuit opened",
                breaker.opened_total(),
            )?;
            counter(
                &mut encoder,
                "circuit_breaker_rejected",
                "Calls the open Processor circuit refused",
                breaker.rejected_total(),
            )?;
        }
        if let Some(in_flight) = &self.processor_in_flight {
            let in_flight = in_flight.load(Ordering::Relaxed) as i64;
            gauge(
                &mut encoder,
                "processor_calls_in_flight",
                "ProcessVideo calls in flight",
                in_flight,
            )?;
        }
        if let Some(limiter) = &self.rate_limit {
            let family = encoder.encode_descriptor(
                "rate_limited",
                "Requests refused by the rate limit, by scope",
                None,
                MetricType::Counter,
            )?;
            let mut family = family;
            for scope in [RateLimitScope::PerClient, RateLimitScope::Global] {
                ConstCounter::new(limiter.rejected(scope))
                    .encode(family.encode_family(&[("scope", scope.as_str())])?)?;
            }
        }
        if let Some(connections) = &self.connections {
            encode_connections(&mut encoder, connections)?;
            counter(
                &mut encoder,
                "http2_protocol_errors",
                "Connections the HTTP/2 library closed for misbehaving (too many resets, say)",
                observability::protocol_warnings::count(),
            )?;
        }
        if let Some(redis) = &self.redis {
            counter(
                &mut encoder,
                "redis_replication_shortfalls",
                "Writes answered UNAVAILABLE: fewer replicas than TASK_REDIS_MIN_REPLICAS_ACKED held them in time",
                redis.replication_shortfalls(),
            )?;
            counter(
                &mut encoder,
                "redis_primary_changes",
                "Times the service moved to another Redis primary (the first one found included)",
                redis.primary_changes(),
            )?;
            if let Some(cache) = redis.read_cache_stats() {
                let family = encoder.encode_descriptor(
                    "read_cache_reads",
                    "GetTaskStatus reads through the read cache, by whether memory answered",
                    None,
                    MetricType::Counter,
                )?;
                let mut family = family;
                for (result, value) in [("hit", cache.hits), ("miss", cache.misses)] {
                    ConstCounter::new(value)
                        .encode(family.encode_family(&[("result", result)])?)?;
                }
                counter(
                    &mut encoder,
                    "read_cache_invalidations",
                    "Keys Redis said were written, expired or deleted (RESP3 invalidations)",
                    cache.invalidations,
                )?;
                counter(
                    &mut encoder,
                    "read_cache_resets",
                    "Times the read cache was emptied: its tracked connection lost or replaced, a FLUSHALL",
                    cache.resets,
                )?;
                gauge(
                    &mut encoder,
                    "read_cache_entries",
                    "Tasks the read cache holds (reads in flight included)",
                    i64::try_from(cache.entries).unwrap_or(i64::MAX),
                )?;
            }
        }
        if let Some(shed) = &self.load_shed {
            gauge(
                &mut encoder,
                "requests_in_flight",
                "Requests in flight (the shedding cap counts these)",
                shed.in_flight() as i64,
            )?;
        }
        Ok(())
    }
}

fn encode_connections(
    encoder: &mut DescriptorEncoder,
    stats: &ConnectionStats,
) -> Result<(), fmt::Error> {
    gauge(
        encoder,
        "connections_open",
        "gRPC connections open",
        stats.open() as i64,
    )?;
    gauge(
        encoder,
        "connections_limit",
        "gRPC connections allowed open at once (TASK_MAX_CONNECTIONS)",
        stats.limit() as i64,
    )?;
    for (name, help, counted) in [
        (
            "connections_refused",
            "Connections closed at once because the connection cap was reached",
            &stats.refused,
        ),
        (
            "connection_accept_errors",
            "Failed accepts (out of file descriptors or memory, mostly)",
            &stats.accept_errors,
        ),
        (
            "connection_preface_timeouts",
            "Connections closed for no TLS handshake or HTTP/2 preface in time",
            &stats.preface_timeouts,
        ),
        (
            "connection_bad_prefaces",
            "Connections closed for not speaking HTTP/2 (or TLS)",
            &stats.bad_prefaces,
        ),
        (
            "tls_handshake_failures",
            "TLS handshakes that failed (no or an untrusted client certificate, not TLS)",
            &stats.tls_failures,
        ),
    ] {
        counter(encoder, name, help, counted.get())?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// `/metrics`: the registry in the OpenMetrics text format.
pub fn router(registry: Registry) -> Router {
    let registry = Arc::new(registry);
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                prometheus_client::encoding::text::encode(&mut text, &registry)
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)?;
                Ok::<_, http::StatusCode>(([(http::header::CONTENT_TYPE, OPENMETRICS)], text))
            }
        }),
    )
}

/// Serves `app` (`/metrics`, and the console) on the connections of `incoming` until
/// `shutdown`: HTTP/1.1 (or h2c), each request's headers within `header_timeout`.
pub async fn serve(
    mut incoming: ReceiverStream<std::io::Result<Conn>>,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            conn = incoming.next() => conn,
            () = shutdown.cancelled() => break,
        };
        let Some(Ok(conn)) = conn else { break };
        let service = TowerToHyperService::new(app.clone());
        let serving = builder
            .serve_connection(TokioIo::new(conn), service)
            .into_owned();
        let serving = graceful.watch(serving);
        tokio::spawn(async move {
            let _ = serving.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// The exposition format's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
