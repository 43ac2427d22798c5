//! The gRPC server: the Task API behind the middleware stack, with health and reflection.
//! [`run`] is what `main`, the tests and the benchmarks all call.
//!
//! Shutdown, when `shutdown` is cancelled: health turns NOT_SERVING, the listener stops
//! accepting, requests in flight are drained for up to `grace`, then `run` returns (the caller
//! stops the dispatcher and flushes telemetry).

pub mod auth;
pub mod connection;
mod errors_as_status;
pub mod health;
pub mod layers;
pub mod metadata;
pub mod rpc_metrics;
pub mod trace;
mod unary_framing;

use std::{sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

pub use errors_as_status::{ErrorsAsStatus, ErrorsAsStatusLayer};
pub use layers::Limits;

use crate::{
    config::{Reflection, ServerConfig, TransportConfig},
    error::BoxError,
    metrics::Metrics,
    proto::{
        self,
        task::task_server::{Task, TaskServer},
    },
    store::Store,
    supervisor::Supervisor,
    transport::{self, ConnectionStats, Lifetime, ListenerLimits, ReloadingTls},
};

/// Largest header block (metadata) a request may send.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// What the server serves, besides its listener.
#[derive(Debug)]
pub struct Serve<T> {
    /// The Task API (the real one, or a test's wrapper around it).
    pub task: T,
    /// The store whose health the server reports.
    pub store: Store,
    /// Settings.
    pub config: ServerConfig,
    /// The limiting layers (built by the caller so that it can read their figures).
    pub limits: Limits,
    /// Where RPC figures go.
    pub metrics: Metrics,
    /// Time given to requests in flight at shutdown.
    pub grace: Duration,
    /// Where the health task runs.
    pub supervisor: Supervisor,
    /// The connections' limits and clocks.
    pub transport: TransportConfig,
    /// TLS, if on.
    pub tls: Option<ReloadingTls>,
    /// What the connections did (read by the metrics).
    pub connections: Arc<ConnectionStats>,
}

/// Serves until `shutdown` is cancelled, then shuts down as the module says.
pub async fn run<T: Task>(
    listener: TcpListener,
    serve: Serve<T>,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let stop_health = CancellationToken::new();
    let health = serve.supervisor.spawn(
        "health",
        health::follow_store(
            reporter.clone(),
            serve.store.clone(),
            serve.config.health_interval,
            stop_health.clone(),
        ),
    );
    // Both reflection versions: grpcurl and other tools ask for v1, older ones for v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_on = serve.config.reflection != Reflection::Off;
    let reflection_v1 = reflection_on.then(|| reflection().build_v1()).transpose()?;
    let reflection_v1alpha = reflection_on
        .then(|| reflection().build_v1alpha())
        .transpose()?;
    let t = &serve.transport;
    let incoming = transport::accept(
        listener,
        ListenerLimits {
            max_connections: t.max_connections,
            preface_timeout: t.preface_timeout,
            lifetime: Lifetime {
                idle_timeout: t.idle_timeout,
                hard_age_limit: t.max_connection_age + t.max_connection_age_grace,
            },
            max_connections_per_peer: t.max_connections_per_peer,
            http2_only: true,
        },
        serve.tls.as_ref().map(ReloadingTls::acceptor),
        serve.connections.clone(),
    );

    let task =
        TaskServer::new(serve.task).max_decoding_message_size(serve.config.max_message_bytes);
    let draining = {
        let shutdown = shutdown.clone();
        let stop_health = stop_health.clone();
        async move {
            shutdown.cancelled().await;
            // Load balancers see NOT_SERVING before the listener closes.
            stop_health.cancel();
            health::set(&reporter, ServingStatus::NotServing).await;
            tracing::info!("shutting down: no new connections; draining requests in flight");
        }
    };
    let served = Server::builder()
        // What one connection may claim: streams open at once, header bytes, and its life (a
        // GOAWAY at the maximum age; the connection itself closes after the grace).
        .max_concurrent_streams(t.max_concurrent_streams)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(t.keepalive_interval))
        .http2_keepalive_timeout(Some(t.keepalive_timeout))
        .max_connection_age(t.max_connection_age)
        .layer(layers::stack(&serve.config, &serve.limits, &serve.metrics))
        .add_service(task)
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, draining);
    tokio::pin!(served);
    let grace = serve.grace;
    let result = tokio::select! {
        result = &mut served => result.map_err(BoxError::from),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "grace period over: dropping the requests still in flight");
            Ok(())
        }
    };
    // However serving ended (its drain signal may never have run, if it failed first).
    stop_health.cancel();
    let _ = health.await;
    result
}
