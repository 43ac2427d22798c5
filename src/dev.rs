//! The embedded default (`task-service dev`): the in-memory store and the reference Processor in
//! this process, so that the service runs with neither Redis nor a Processor.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::{
    app::{self, AppError},
    config::Config,
    processor::reference::ReferenceProcessor,
    store::{MemoryStore, Store},
    validate::StorageRoot,
};

/// Runs the dev mode on 127.0.0.1 at the configured port until `shutdown`.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let store = Store::Memory(MemoryStore::new(config.task_ttl));
    let storage = StorageRoot::new(&config.storage_root);
    std::fs::create_dir_all(&config.storage_root).map_err(|e| {
        format!(
            "cannot create LOCAL_STORAGE_PATH {}: {e}",
            config.storage_root.display()
        )
    })?;

    let processor_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    config.processor_addr = processor_listener.local_addr()?.to_string();
    let processor = ReferenceProcessor::new(store.clone(), storage).into_service();
    let processor_shutdown = shutdown.clone();
    let processor_task = tokio::spawn(
        tonic::transport::Server::builder()
            // A span per call, joined to the dispatcher's trace by its traceparent.
            .layer(crate::server::trace::layer(true))
            .add_service(processor)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(processor_listener),
                processor_shutdown.cancelled_owned(),
            ),
    );

    config.grpc_addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), config.grpc_addr.port());
    config.metrics_addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), config.metrics_addr.port());
    let listener = TcpListener::bind(config.grpc_addr).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e} (set TASK_GRPC_PORT to another port)",
            config.grpc_addr
        )
    })?;
    let addr = listener.local_addr()?;
    println!(
        "task-service dev: in-memory store, reference processor in-process, listening on {addr}\n\
         Try it (in another terminal):\n  \
         mkdir -p {root} && echo demo > {root}/demo.mp4\n  \
         cargo run --bin taskctl -- --addr http://{addr} create demo.mp4 --wait\n\
         Stop with Ctrl-C.",
        root = config.storage_root.display()
    );
    let served = app::serve(config, store, listener, shutdown).await;
    let _ = processor_task.await;
    served
}
