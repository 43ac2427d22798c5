//! `dev-processor`: the reference Processor as a process of its own.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use clap::Parser;
use task_service::{
    app,
    config::{self, Config},
    processor::reference::ReferenceProcessor,
    store::{RedisStore, Store},
    transport::{self, Lifetime, ListenerLimits, ReloadingTls, TlsFiles},
    validate::StorageRoot,
};
use tokio_util::sync::CancellationToken;

/// A stand-in Processor for local runs and tests — NOT the real video processor.
///
/// It serves processor.Processor/ProcessVideo; for each task it sets PROCESSING in Redis, copies
/// the original file to {LOCAL_STORAGE_PATH}/{task_id}/result.mp4 and sets COMPLETED with
/// result_file_key (or FAILED with the reason when the original is missing), writing the task hash
/// with plain HSETs as the contract's Processor does. It answers when it has finished. It checks
/// every file key as the service does (INVALID_ARGUMENT otherwise) and never reads a file through
/// a symlink out of the storage root. Redis and the storage root come from the service's settings
/// (REDIS_*, LOCAL_STORAGE_PATH, TASK_STORAGE_CHECK).
#[derive(Debug, Parser)]
#[command(name = "dev-processor", version)]
struct Cli {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, env = "DEV_PROCESSOR_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Simulated processing time spent in PROCESSING before the result is written.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    work_time: std::time::Duration,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key-file.
    #[arg(long, env = "DEV_PROCESSOR_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "DEV_PROCESSOR_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Require client certificates that chain to these CAs (mTLS).
    #[arg(
        long,
        env = "DEV_PROCESSOR_TLS_CLIENT_CA_FILE",
        requires = "tls_cert_file"
    )]
    tls_client_ca_file: Option<PathBuf>,
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
    let redis = match RedisStore::connect(&config.redis, config.task_ttl) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("dev-processor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    // Under Sentinel: finds the primary, and follows it through failovers.
    tokio::spawn({
        let (redis, shutdown) = (redis.clone(), shutdown.clone());
        async move { redis.follow_primary(shutdown).await }
    });
    let store = Store::Redis(redis);
    let processor = ReferenceProcessor::new(
        store,
        StorageRoot::with_check(&config.storage_root, config.storage_check),
    )
    .with_work_time(cli.work_time);
    let tls = match (cli.tls_cert_file, cli.tls_key_file) {
        (Some(cert), Some(key)) => match ReloadingTls::load(TlsFiles {
            cert,
            key,
            client_ca: cli.tls_client_ca_file,
        }) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("dev-processor: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("dev-processor: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let bound = listener
        .local_addr()
        .map_or_else(|_| cli.listen.to_string(), |a| a.to_string());
    let t = &config.transport;
    let incoming = transport::accept(
        listener,
        ListenerLimits {
            max_connections: transport::under_fd_limit(t.max_connections),
            preface_timeout: t.preface_timeout,
            lifetime: Lifetime {
                idle_timeout: t.idle_timeout,
                hard_age_limit: t.max_connection_age + t.max_connection_age_grace,
            },
            max_connections_per_peer: t.max_connections_per_peer,
            http2_only: true,
        },
        tls.as_ref().map(ReloadingTls::acceptor),
        Arc::default(),
    );
    if let Some(tls) = tls.clone() {
        tokio::spawn(tls.follow_files(t.tls_reload_interval, shutdown.clone()));
    }
    tokio::spawn(app::cancel_on_signal(shutdown.clone()));
    tracing::info!(addr = %bound, tls = tls.is_some(), redis = %match &config.redis.sentinel {
        Some(sentinel) => format!("the primary of {} (Sentinel)", sentinel.master),
        None => format!("{}:{}", config.redis.host, config.redis.port),
    }, "dev-processor (reference Processor) listening");
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(t.max_concurrent_streams)
        // A span per call, joined to the dispatcher's trace by its traceparent.
        .layer(task_service::server::trace::layer(true))
        .add_service(processor.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
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
