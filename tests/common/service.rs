//! The service under test: in-process (`TestService`, through `app::serve`) or as a real process
//! (`ServiceProcess`, the built `task-service` binary) for tests that kill it.

use std::{collections::HashMap, net::SocketAddr, process::Stdio, time::Duration};

use task_service::{
    api::TaskApi,
    app::{self, AppError},
    config::Config,
    proto::task::task_client::TaskClient,
    proto::task::task_server::Task,
    store::{RedisStore, Store},
};
use tokio::{net::TcpListener, process::Child, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Settings that make tests fast; a test's own variables override them.
pub fn fast_settings() -> Vec<(String, String)> {
    [
        ("TASK_REDIS_TIMEOUT", "1s"),
        ("TASK_DISPATCH_VISIBILITY_TIMEOUT", "2s"),
        ("TASK_REAPER_INTERVAL", "200ms"),
        ("TASK_WATCH_INTERVAL", "300ms"),
        ("TASK_PROCESSOR_TIMEOUT", "2s"),
        ("TASK_PROCESSOR_CONNECT_TIMEOUT", "500ms"),
        ("TASK_PROCESSOR_RETRY_BASE_DELAY", "10ms"),
        ("TASK_PROCESSOR_RETRY_MAX_DELAY", "100ms"),
        ("TASK_DISPATCH_ROUND_DELAY", "100ms"),
        ("TASK_BREAKER_OPEN_FOR", "300ms"),
        ("TASK_SHUTDOWN_GRACE", "3s"),
        ("TASK_METRICS_PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Builds a config from the fast settings overridden by `vars`.
pub fn config(vars: &[(String, String)]) -> Config {
    let mut map: HashMap<String, String> = fast_settings().into_iter().collect();
    map.extend(vars.iter().cloned());
    Config::from_vars(&map).expect("test configuration is valid")
}

/// A Redis store for `config`.
pub fn redis_store(config: &Config) -> Store {
    Store::Redis(RedisStore::connect(&config.redis, config.task_ttl).unwrap())
}

/// The service running in this process on 127.0.0.1:0.
pub struct TestService {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its store.
    pub store: Store,
    /// Its configuration.
    pub config: Config,
    /// Where its Prometheus endpoint listens.
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    join: JoinHandle<Result<(), AppError>>,
}

impl TestService {
    /// Starts it over Redis as `vars` say.
    pub async fn start(vars: &[(String, String)]) -> Self {
        let config = config(vars);
        let store = redis_store(&config);
        Self::start_with(config, store).await
    }

    /// Starts it with a given store.
    pub async fn start_with(config: Config, store: Store) -> Self {
        Self::start_wrapped(config, store, |api| api).await
    }

    /// Starts it with the API wrapped by `wrap` (to add slow or panicking handlers).
    pub async fn start_wrapped<T: Task>(
        mut config: Config,
        store: Store,
        wrap: impl FnOnce(TaskApi) -> T + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if config.metrics_addr.port() == 0 {
            config.metrics_addr = SocketAddr::from(([127, 0, 0, 1], super::redis::free_port()));
        }
        let metrics_addr = config.metrics_addr;
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(app::serve_with(
            config.clone(),
            store.clone(),
            listener,
            shutdown.clone(),
            wrap,
        ));
        Self {
            addr,
            metrics_addr,
            store,
            config,
            shutdown,
            join,
        }
    }

    /// A client connected to it.
    pub async fn client(&self) -> TaskClient<Channel> {
        client(self.addr).await
    }

    /// Shuts it down gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.join.await.unwrap().unwrap();
    }
}

/// A client of the service at `addr`.
pub async fn client(addr: SocketAddr) -> TaskClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    TaskClient::new(channel)
}

/// The `task-service` binary running as a child process.
pub struct ServiceProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl ServiceProcess {
    /// Starts the binary with the fast settings and `vars`, and waits until it accepts connections.
    pub async fn start(vars: &[(String, String)]) -> Self {
        Self::start_on(vars, super::redis::free_port()).await
    }

    /// [`ServiceProcess::start`] on a given port (to come back where clients look for it).
    pub async fn start_on(vars: &[(String, String)], port: u16) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_task-service"));
        command
            .env_clear()
            .envs(fast_settings())
            .envs(vars.iter().cloned())
            .env("TASK_GRPC_HOST", "127.0.0.1")
            .env("TASK_GRPC_PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("the task-service binary runs");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "task-service did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { addr, child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .try_wait()
            .expect("the child's status is readable")
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("task-service exits after SIGTERM")
            .unwrap()
    }
}
