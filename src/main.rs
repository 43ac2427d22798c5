//! `task-service`: the production server (no arguments) or the embedded default (`dev`).

mod dev;

use std::{path::Path, process::ExitCode};

use clap::{Parser, Subcommand};
use task_service::{
    app::{self, Listeners, Run},
    config::{self, Config},
};
use tokio_util::sync::CancellationToken;

/// mimalloc: the request path allocates a lot of small, short-lived objects (headers, spans,
/// Redis replies); it serves them faster than glibc's allocator (measured in the README's
/// Performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Task service: creates video-processing tasks, keeps their state in Redis, hands them to
/// the Processor and answers status queries over gRPC. Configured by environment variables and
/// `.env` (see the README).
#[derive(Debug, Parser)]
#[command(name = "task-service", version)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Run the embedded default on 127.0.0.1: an in-memory store and the reference Processor in
    /// this process; needs neither Redis nor a Processor.
    Dev,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // First, while this is the only thread: everything after reads .env's settings too.
    if let Err(e) = config::load_dotenv(Path::new(".env")) {
        eprintln!("task-service: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("task-service: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry_config = match observability::TelemetryConfig::from_env("task-service") {
        Ok(config) => config,
        Err(e) => {
            eprintln!("task-service: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("task-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let telemetry = observability::init(&telemetry_config).map_err(|e| {
            format!("cannot set up trace export (OTEL_EXPORTER_OTLP_ENDPOINT): {e}")
        })?;
        let shutdown = CancellationToken::new();
        tokio::spawn(app::cancel_on_signal(shutdown.clone()));
        let result = match cli.mode {
            Some(Mode::Dev) => dev::run(config, shutdown).await,
            None => {
                let store = app::redis_store(&config)?;
                let listeners = Listeners::bind(&config).await?;
                app::serve(config, store, Run::new(listeners, shutdown)).await
            }
        };
        // Last: the spans of the shutdown itself are exported too.
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-service: {e}");
            ExitCode::FAILURE
        }
    }
}
