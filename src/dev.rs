//! The embedded default (`task-service dev`): the in-memory store and the reference Processor in
//! this process, so that the service runs with neither Redis nor a Processor.

use std::net::{Ipv4Addr, SocketAddr};

use task_service::{
    app::{self, AppError, Listeners, Run},
    config::Config,
    processor::reference::ReferenceProcessor,
    store::{MemoryStore, Store},
    validate::StorageRoot,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// Runs the dev mode on 127.0.0.1 at the configured port until `shutdown`.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let store = Store::Memory(MemoryStore::new(config.task_ttl));
    std::fs::create_dir_all(&config.storage_root).map_err(|e| {
        format!(
            "cannot create LOCAL_STORAGE_PATH {}: {e}",
            config.storage_root.display()
        )
    })?;
    // Made once the root exists, so that keys are checked on disk.
    let storage = StorageRoot::with_check(&config.storage_root, config.storage_check);

    let processor_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    config.processor.addr = processor_listener.local_addr()?.to_string();
    let processor = ReferenceProcessor::new(store.clone(), storage).into_service();
    let processor_shutdown = shutdown.clone();
    let processor_task = tokio::spawn(
        tonic::transport::Server::builder()
            // A span per call, joined to the dispatcher's trace by its traceparent.
            .layer(task_service::server::trace::layer(true))
            .add_service(processor)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(processor_listener),
                processor_shutdown.cancelled_owned(),
            ),
    );

    config.grpc_addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), config.grpc_addr.port());
    config.metrics_addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), config.metrics_addr.port());
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.grpc.local_addr()?;
    let web = listeners.metrics.local_addr()?;
    let console = match config.console.mode {
        task_service::config::ConsoleMode::Off => "off (TASK_DASHBOARD=off)".to_owned(),
        _ => format!("http://{web}/console"),
    };
    println!(
        "task-service dev: in-memory store, reference processor in-process, listening on {addr}\n\
         Console: {console}   Metrics: http://{web}/metrics\n\
         Try it (in another terminal):\n  \
         mkdir -p {root} && echo demo > {root}/demo.mp4\n  \
         cargo run --bin taskctl -- --addr {addr} create demo.mp4 --wait\n\
         Stop with Ctrl-C.",
        root = config.storage_root.display()
    );
    let served = app::serve(config, store, Run::new(listeners, shutdown)).await;
    let _ = processor_task.await;
    served
}
