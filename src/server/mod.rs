//! The gRPC server: the Task API behind the middleware stack, with health and reflection.
//! [`run`] is what `main`, the tests and the benchmarks all call.
//!
//! Shutdown, when `shutdown` is cancelled: health turns NOT_SERVING, the listener stops
//! accepting, requests in flight are drained for up to `grace`, then `run` returns (the caller
//! stops the dispatcher and flushes telemetry).

mod errors_as_status;
pub mod health;
pub mod layers;
pub mod rpc_metrics;
pub mod trace;
mod unary_framing;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

pub use errors_as_status::{ErrorsAsStatus, ErrorsAsStatusLayer};
pub use layers::Limits;

use crate::{
    config::ServerConfig,
    error::BoxError,
    metrics::Metrics,
    proto::{
        self,
        task::task_server::{Task, TaskServer},
    },
    store::Store,
    supervisor::Supervisor,
};

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
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let task =
        TaskServer::new(serve.task).max_decoding_message_size(serve.config.max_message_bytes);
    let draining = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Load balancers see NOT_SERVING before the listener closes.
            stop_health.cancel();
            health::set(&reporter, ServingStatus::NotServing).await;
            tracing::info!("shutting down: no new connections; draining requests in flight");
        }
    };
    let served = Server::builder()
        .layer(layers::stack(&serve.config, &serve.limits, &serve.metrics))
        .add_service(task)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), draining);
    tokio::pin!(served);
    let grace = serve.grace;
    let result = tokio::select! {
        result = &mut served => result.map_err(BoxError::from),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "grace period over: dropping the requests still in flight");
            Ok(())
        }
    };
    let _ = health.await;
    result
}
