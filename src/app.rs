//! Wiring: the store, the Processor client stack, the dispatcher and the server, started and
//! stopped in the right order.

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

/// Runs the service on `listener` with `store` until `shutdown` is cancelled; then stops
/// accepting, drains requests, and stops the dispatcher within the grace period.
pub async fn serve(
    config: Config,
    store: Store,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    serve_with(config, store, listener, shutdown, |api| api).await
}

/// [`serve`], with the API wrapped by `wrap` (tests wrap it to add slow or failing handlers).
pub async fn serve_with<T: Task>(
    config: Config,
    store: Store,
    listener: TcpListener,
    shutdown: CancellationToken,
    wrap: impl FnOnce(TaskApi) -> T,
) -> Result<(), AppError> {
    let metrics = Metrics::default();
    let processor = stack::build(&config.processor, &config.processor_addr)?;
    let limits = server::Limits::new(&config.server);
    let registry = metrics.registry(Live {
        breaker: Some(processor.breaker.clone()),
        processor_slots: Some((processor.slots.clone(), config.processor.concurrency)),
        rate_limit: limits.rate_limit.clone(),
        load_shed: limits.load_shed.clone(),
    });
    let metrics_listener = TcpListener::bind(config.metrics_addr).await.map_err(|e| {
        format!(
            "cannot listen on {} (TASK_METRICS_PORT): {e}",
            config.metrics_addr
        )
    })?;
    tracing::info!(addr = %metrics_listener.local_addr()?, "metrics at /metrics");
    let metrics_server = tokio::spawn(metrics::serve(metrics_listener, registry, shutdown.clone()));

    let dispatcher = Dispatcher::spawn(DispatcherParts {
        store: store.clone(),
        caller: processor.caller,
        breaker: Some(processor.breaker),
        config: config.dispatch.clone(),
        concurrency: config.processor.concurrency,
        consumer: dispatch::consumer_name(),
        metrics: metrics.clone(),
    });
    let api = TaskApi::new(
        store.clone(),
        StorageRoot::new(&config.storage_root),
        metrics.clone(),
    );
    tracing::info!(addr = %listener.local_addr()?, processor = %config.processor_addr, "task service listening");
    let serve = server::Serve {
        task: wrap(api),
        store,
        limits,
        metrics,
        config: config.server.clone(),
        grace: config.shutdown_grace,
    };
    let served = server::run(listener, serve, shutdown).await;
    dispatcher.shutdown(config.shutdown_grace).await;
    let _ = metrics_server.await;
    served
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
