//! `dev-processor`: the reference Processor as a process of its own.

use std::{net::SocketAddr, path::Path, process::ExitCode};

use clap::Parser;
use task_service::{
    app,
    config::{self, Config},
    processor::reference::ReferenceProcessor,
    store::{RedisStore, Store},
    validate::StorageRoot,
};

/// A stand-in Processor for local runs and tests — NOT the real video processor.
///
/// It serves processor.Processor/ProcessVideo; for each task it sets PROCESSING in Redis, copies
/// the original file to {LOCAL_STORAGE_PATH}/{task_id}/result.mp4 and sets COMPLETED with
/// result_file_key (or FAILED with the reason when the original is missing), writing the task hash
/// with plain HSETs as the contract's Processor does. It answers when it has finished. Redis and
/// the storage root come from REDIS_HOST, REDIS_PORT and LOCAL_STORAGE_PATH.
#[derive(Debug, Parser)]
#[command(name = "dev-processor", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Simulated processing time spent in PROCESSING before the result is written.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    work_time: std::time::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // First, while this is the only thread: everything after reads .env's settings too.
    if let Err(e) = config::load_dotenv(Path::new(".env")) {
        eprintln!("dev-processor: {e}");
        return ExitCode::from(2);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("dev-processor: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let telemetry = match observability::TelemetryConfig::from_env("dev-processor")
        .map(|config| observability::init(&config))
    {
        Ok(Ok(telemetry)) => telemetry,
        Ok(Err(e)) => {
            eprintln!("dev-processor: cannot set up trace export: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("dev-processor: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dev-processor: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match RedisStore::connect(&config.redis, config.task_ttl) {
        Ok(store) => Store::Redis(store),
        Err(e) => {
            eprintln!("dev-processor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let processor = ReferenceProcessor::new(store, StorageRoot::new(&config.storage_root))
        .with_work_time(cli.work_time);
    tracing::info!(listen = %cli.listen, redis = %format!("{}:{}", config.redis.host, config.redis.port), "dev-processor (reference Processor) listening");
    let served = tonic::transport::Server::builder()
        // A span per call, joined to the dispatcher's trace by its traceparent.
        .layer(task_service::server::trace::layer(true))
        .add_service(processor.into_service())
        .serve_with_shutdown(cli.listen, async {
            let shutdown = tokio_util::sync::CancellationToken::new();
            app::cancel_on_signal(shutdown.clone()).await;
        })
        .await;
    telemetry.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dev-processor: {e}");
            ExitCode::FAILURE
        }
    }
}
