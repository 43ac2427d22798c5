//! Wiring: the store, the Processor client stack, the dispatcher, the metrics endpoint and the
//! server, started and stopped in the right order, every background task under one
//! [`Supervisor`].
//!
//! [`serve`] is mini-redis's `run(listener, shutdown)`: the caller binds the listeners (tests
//! bind port 0) and owns the shutdown signal. It returns when the service has stopped: `Ok`
//! after a shutdown that was asked for, an error when it could not start or when a background
//! task died (the binary then exits non-zero, for an orchestrator to restart it).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::TaskApi,
    config::Config,
    dispatch::{self, Dispatcher, DispatcherParts},
    metrics::{self, Live, Metrics},
    processor::stack,
    proto::task::task_server::Task,
    server,
    store::{RedisStore, Store},
    supervisor::Supervisor,
    validate::StorageRoot,
};

/// Errors that stop the service.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The production store: Redis as configured.
pub fn redis_store(config: &Config) -> Result<Store, AppError> {
    Ok(Store::Redis(RedisStore::connect(
        &config.redis,
        config.task_ttl,
    )?))
}

/// The service's listeners.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC API.
    pub grpc: TcpListener,
    /// The Prometheus endpoint.
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses; an error names the settings to change.
    pub async fn bind(config: &Config) -> Result<Self, AppError> {
        Ok(Self {
            grpc: bind(config.grpc_addr, "TASK_GRPC_HOST/TASK_GRPC_PORT").await?,
            metrics: bind(config.metrics_addr, "TASK_METRICS_PORT").await?,
        })
    }
}

async fn bind(addr: SocketAddr, settings: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({settings}): {e}").into())
}

/// What a run needs besides its configuration and store.
#[derive(Debug)]
pub struct Run {
    /// Where to listen.
    pub listeners: Listeners,
    /// Cancelled to stop the service (SIGTERM, or a test).
    pub shutdown: CancellationToken,
    /// Supervises the background tasks; its first death stops the service.
    pub supervisor: Supervisor,
}

impl Run {
    /// A run on `listeners` until `shutdown`.
    pub fn new(listeners: Listeners, shutdown: CancellationToken) -> Self {
        Self {
            supervisor: Supervisor::new(shutdown.clone()),
            listeners,
            shutdown,
        }
    }
}

/// Runs the service until `run.shutdown` is cancelled or a background task dies; then stops
/// accepting, drains requests, and stops the dispatcher within the grace period.
pub async fn serve(config: Config, store: Store, run: Run) -> Result<(), AppError> {
    serve_with(config, store, run, |api| api).await
}

/// [`serve`], with the API wrapped by `wrap` (tests wrap it to add slow or failing handlers).
pub async fn serve_with<T: Task>(
    config: Config,
    store: Store,
    run: Run,
    wrap: impl FnOnce(TaskApi) -> T,
) -> Result<(), AppError> {
    let Run {
        listeners,
        shutdown,
        supervisor,
    } = run;
    let metrics = Metrics::default();
    let processor = stack::build(&config.processor)?;
    let limits = server::Limits::new(&config.server);
    let registry = metrics.registry(Live {
        breaker: Some(processor.breaker.clone()),
        processor_in_flight: Some(processor.in_flight.clone()),
        rate_limit: limits.rate_limit.clone(),
        load_shed: limits.load_shed.clone(),
    });
    tracing::info!(addr = %listeners.metrics.local_addr()?, "metrics at /metrics");
    let metrics_server = supervisor.spawn_fallible(
        "metrics endpoint",
        metrics::serve(listeners.metrics, registry, shutdown.clone()),
    );
    let dispatcher = Dispatcher::spawn(
        DispatcherParts {
            store: store.clone(),
            caller: processor.caller,
            breaker: Some(processor.breaker),
            config: config.dispatch.clone(),
            concurrency: config.processor.concurrency,
            consumer: dispatch::consumer_name(),
            metrics: metrics.clone(),
        },
        &supervisor,
    );
    let api = TaskApi::new(
        store.clone(),
        StorageRoot::new(&config.storage_root),
        metrics.clone(),
    );
    tracing::info!(addr = %listeners.grpc.local_addr()?, processor = %config.processor.addr, "task service listening");
    let serve = server::Serve {
        task: wrap(api),
        store,
        limits,
        metrics,
        config: config.server.clone(),
        grace: config.shutdown_grace,
        supervisor: supervisor.clone(),
    };
    // A death stops the service the way SIGTERM does (health NOT_SERVING, no new connections,
    // requests drained), and makes the run fail.
    let death = async {
        tokio::select! {
            death = supervisor.died() => {
                tracing::error!(task = death.task, cause = %death.cause, "a background task died; stopping so that the service is restarted");
                shutdown.cancel();
                Some(death)
            }
            () = shutdown.cancelled() => None,
        }
    };
    let (served, death) = tokio::join!(server::run(listeners.grpc, serve, shutdown.clone()), death);
    dispatcher.shutdown(config.shutdown_grace).await;
    let _ = metrics_server.await;
    match death {
        Some(death) => Err(death.into()),
        None => served,
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
