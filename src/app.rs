//! Wiring: the store, the Processor client stack, the dispatcher, the metrics endpoint with the
//! console, and the server, started and stopped in the right order, every background task under one
//! [`Supervisor`].
//!
//! [`serve`] is mini-redis's `run(listener, shutdown)`: the caller binds the listeners (tests
//! bind port 0) and owns the shutdown signal. It returns when the service has stopped: `Ok`
//! after a shutdown that was asked for, an error when it could not start or when a background
//! task died (the binary then exits non-zero, for an orchestrator to restart it).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{ApiParts, TaskApi},
    auth::Authenticator,
    config::Config,
    console::{Console, ConsoleParts, ProcessorView},
    dispatch::{self, Dispatcher, DispatcherParts},
    events::Events,
    metrics::{self, Live, Metrics},
    processor::stack,
    proto::task::task_server::Task,
    server,
    store::{RedisStore, Store},
    supervisor::Supervisor,
    transport::{self, ConnectionStats, Lifetime, ListenerLimits, ReloadingTls},
    validate::StorageRoot,
};

/// A metrics connection with no request for this long is closed (Prometheus scrapes every few
/// seconds and reconnects as it needs).
const METRICS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let authenticator = match &config.server.auth_tokens_file {
        Some(file) => {
            let authenticator = Authenticator::load(file)?;
            tracing::info!(file = %file.display(), callers = authenticator.callers().len(), "authentication on");
            supervisor.spawn(
                "tokens file",
                authenticator
                    .clone()
                    .follow_file(config.transport.tls_reload_interval, shutdown.clone()),
            );
            Some(authenticator)
        }
        None => None,
    };
    let tls = match &config.transport.tls {
        Some(files) => {
            let tls = ReloadingTls::load(files.clone())?;
            tracing::info!(cert = %files.cert.display(), client_certificates = tls.requires_client_certificates(), "TLS on");
            supervisor.spawn(
                "TLS certificates",
                tls.clone()
                    .follow_files(config.transport.tls_reload_interval, shutdown.clone()),
            );
            Some(tls)
        }
        None => None,
    };
    let console_authenticator = authenticator.clone();
    let limits = server::Limits::new(&config.server, authenticator);
    let connections = Arc::new(ConnectionStats::default());
    let console_processor = ProcessorView {
        breaker: processor.breaker.clone(),
        in_flight: processor.in_flight.clone(),
        concurrency: config.processor.concurrency,
    };
    let registry = metrics.registry(Live {
        breaker: Some(processor.breaker.clone()),
        processor_in_flight: Some(processor.in_flight.clone()),
        rate_limit: limits.rate_limit.clone(),
        load_shed: limits.load_shed.clone(),
        connections: Some(connections.clone()),
        redis: match &store {
            Store::Redis(redis) => Some(redis.clone()),
            Store::Memory(_) => None,
        },
    });
    if let (Store::Redis(redis), Some(sentinel)) = (&store, &config.redis.sentinel) {
        tracing::info!(sentinels = ?sentinel.addrs, master = %sentinel.master, "Redis through Sentinel: REDIS_HOST and REDIS_PORT are ignored");
        // Runs until shutdown: finds the primary, and follows it through failovers.
        supervisor.spawn("Redis primary", {
            let redis = redis.clone();
            let shutdown = shutdown.clone();
            async move { redis.follow_primary(shutdown).await }
        });
    }
    let metrics_addr = listeners.metrics.local_addr()?;
    let metrics_connections = transport::accept(
        listeners.metrics,
        ListenerLimits {
            max_connections: config.transport.metrics_max_connections,
            max_connections_per_peer: config.transport.metrics_max_connections,
            preface_timeout: config.transport.metrics_header_timeout,
            lifetime: Lifetime {
                idle_timeout: METRICS_IDLE_TIMEOUT,
                hard_age_limit: METRICS_IDLE_TIMEOUT * 10,
            },
            http2_only: false,
        },
        None,
        Arc::default(),
    );
    let events = Events::start(
        &store,
        config.api.watch_notifications,
        &supervisor,
        shutdown.clone(),
    )
    .await;
    let dispatcher = Dispatcher::spawn(
        DispatcherParts {
            store: store.clone(),
            caller: processor.caller,
            breaker: Some(processor.breaker),
            config: config.dispatch.clone(),
            concurrency: config.processor.concurrency,
            consumer: dispatch::consumer_name(),
            metrics: metrics.clone(),
            events: events.clone(),
            canceller: processor.canceller.clone(),
        },
        &supervisor,
    );
    let api = TaskApi::new(ApiParts {
        store: store.clone(),
        storage: StorageRoot::with_check(&config.storage_root, config.storage_check),
        metrics: metrics.clone(),
        events,
        canceller: Some(processor.canceller),
        config: config.api.clone(),
        shutdown: shutdown.clone(),
    });
    let mut web = metrics::router(registry);
    let console = Console::new(ConsoleParts {
        api: api.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        processor: console_processor,
        config: config.console.clone(),
        authenticator: console_authenticator,
    });
    match console {
        Some(console) => {
            web = web.merge(console.router());
            supervisor.spawn(
                "console activity",
                console.sample_activity(shutdown.clone()),
            );
            tracing::info!(addr = %metrics_addr, console = ?config.console.mode, "metrics at /metrics");
        }
        None => tracing::info!(addr = %metrics_addr, console = "off", "metrics at /metrics"),
    }
    let metrics_server = supervisor.spawn_fallible(
        "metrics endpoint",
        metrics::serve(
            metrics_connections,
            web,
            config.transport.metrics_header_timeout,
            shutdown.clone(),
        ),
    );
    tracing::info!(addr = %listeners.grpc.local_addr()?, processor = %config.processor.addr, "task service listening");
    let mut transport = config.transport.clone();
    transport.max_connections = transport::under_fd_limit(transport.max_connections);
    let serve = server::Serve {
        task: wrap(api),
        store,
        limits,
        metrics,
        config: config.server.clone(),
        grace: config.shutdown_grace,
        supervisor: supervisor.clone(),
        transport,
        tls,
        connections,
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
