//! Wiring: the store, the Processor client stack, the dispatcher and the server, started and
//! stopped in the right order.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::TaskApi,
    config::Config,
    dispatch::{self, DispatchCounters, Dispatcher, DispatcherParts},
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
    let (caller, breaker) = stack::build(&config.processor, &config.processor_addr)?;
    let counters = Arc::new(DispatchCounters::default());
    let dispatcher = Dispatcher::spawn(DispatcherParts {
        store: store.clone(),
        caller,
        breaker: Some(breaker),
        config: config.dispatch.clone(),
        concurrency: config.processor.concurrency,
        consumer: dispatch::consumer_name(),
        counters,
    });
    let api = TaskApi::new(store.clone(), StorageRoot::new(&config.storage_root));
    tracing::info!(addr = %listener.local_addr()?, processor = %config.processor_addr, "task service listening");
    let serve = server::Serve {
        task: wrap(api),
        store,
        limits: server::Limits::new(&config.server),
        config: config.server.clone(),
        grace: config.shutdown_grace,
    };
    let served = server::run(listener, serve, shutdown).await;
    dispatcher.shutdown(config.shutdown_grace).await;
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
