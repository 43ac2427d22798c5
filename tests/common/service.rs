//! The service under test: in-process (`TestService`, through `app::serve`) or as a real process
//! (`ServiceProcess`, the built `task-service` binary) for tests that kill it.
//!
//! Both listen on ports the system chose (port 0, read back), so parallel tests never race for
//! a port. A process's output is captured and printed only if the test fails.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use task_service::{
    api::TaskApi,
    app::{self, AppError, Listeners, Run},
    config::Config,
    proto::task::{task_client::TaskClient, task_server::Task},
    store::{RedisStore, Store},
    supervisor::Supervisor,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    net::TcpListener,
    process::Child,
    sync::watch,
    task::JoinHandle,
};
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

/// The service running in this process on 127.0.0.1, ports chosen by the system.
pub struct TestService {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its store.
    pub store: Store,
    /// Its configuration.
    pub config: Config,
    /// Where its Prometheus endpoint listens.
    pub metrics_addr: SocketAddr,
    /// Its background tasks' supervisor (to kill one).
    pub supervisor: Supervisor,
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
        config: Config,
        store: Store,
        wrap: impl FnOnce(TaskApi) -> T + Send + 'static,
    ) -> Self {
        super::init_logs();
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listeners.grpc.local_addr().unwrap();
        let metrics_addr = listeners.metrics.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let run = Run::new(listeners, shutdown.clone());
        let supervisor = run.supervisor.clone();
        let join = tokio::spawn(app::serve_with(config.clone(), store.clone(), run, wrap));
        Self {
            addr,
            metrics_addr,
            store,
            config,
            supervisor,
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

    /// Waits for the service to stop by itself, and returns how its run ended.
    pub async fn stopped(self) -> Result<(), AppError> {
        self.join.await.unwrap()
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
    /// Where its Prometheus endpoint listens.
    pub metrics_addr: SocketAddr,
    child: CapturedChild,
}

impl ServiceProcess {
    /// Starts the binary with the fast settings and `vars` on a port the system chooses, and
    /// waits until it listens.
    pub async fn start(vars: &[(String, String)]) -> Self {
        Self::start_on(vars, 0).await
    }

    /// [`ServiceProcess::start`] on a given port (to come back where clients look for it).
    pub async fn start_on(vars: &[(String, String)], port: u16) -> Self {
        Self::start_with(vars, port, |_| {}).await
    }

    /// [`ServiceProcess::start_on`], with `adjust` given the command before it runs.
    pub async fn start_with(
        vars: &[(String, String)],
        port: u16,
        adjust: impl FnOnce(&mut tokio::process::Command),
    ) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_task-service"));
        command
            .env_clear()
            .envs(fast_settings())
            .envs(vars.iter().cloned())
            .env("TASK_GRPC_HOST", "127.0.0.1")
            .env("TASK_GRPC_PORT", port.to_string());
        adjust(&mut command);
        let child =
            CapturedChild::spawn(command, &["task service listening", "metrics at /metrics"]).await;
        Self {
            addr: child.announced["task service listening"],
            metrics_addr: child.announced["metrics at /metrics"],
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exited()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(self) {
        self.child.kill().await;
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.child.terminate().await
    }

    /// Every line it wrote so far.
    pub fn lines(&self) -> Vec<String> {
        self.child.lines()
    }
}

/// One of our binaries as a child process: its log lines (JSON) kept and printed if the test
/// fails, and the addresses its start-up lines announce.
pub struct CapturedChild {
    child: Child,
    output: Output,
    /// The `addr` of each awaited start-up line, by message.
    pub announced: HashMap<String, SocketAddr>,
}

impl CapturedChild {
    /// Spawns `command` (JSON logs; `RUST_LOG` passed on) and waits until it has logged each of
    /// `ready`, lines whose `addr` field says where it listens.
    pub async fn spawn(mut command: tokio::process::Command, ready: &[&str]) -> Self {
        let log_filter_set = command
            .as_std()
            .get_envs()
            .any(|(key, value)| key == "RUST_LOG" && value.is_some());
        // The binary's own default filter unless the test (or its runner) names one.
        if let (false, Ok(filter)) = (log_filter_set, std::env::var("RUST_LOG")) {
            command.env("RUST_LOG", filter);
        }
        command
            .env("TASK_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the binary runs");
        let output = Output::new(ready);
        output.follow(child.stdout.take().unwrap());
        output.follow(child.stderr.take().unwrap());
        let announced = tokio::time::timeout(Duration::from_secs(20), output.announced()).await;
        let Ok(announced) = announced else {
            output.print();
            panic!("the process did not announce {ready:?}");
        };
        Self {
            child,
            output,
            announced,
        }
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

    /// SIGKILL.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM").await;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the process exits after SIGTERM")
            .unwrap()
    }

    /// Every line it wrote so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lines.lock().unwrap().clone()
    }
}

impl Drop for CapturedChild {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.output.print();
        }
    }
}

/// Sends a signal (`TERM`, `STOP`, `CONT`) to a process.
pub async fn signal(pid: u32, name: &str) {
    let sent = tokio::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success(), "kill -{name} {pid}");
}

/// A child's output lines, and the addresses its start-up lines announce.
#[derive(Clone)]
struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    awaited: Arc<Vec<String>>,
    announced: Arc<watch::Sender<HashMap<String, SocketAddr>>>,
}

impl Output {
    fn new(awaited: &[&str]) -> Self {
        Self {
            lines: Arc::default(),
            awaited: Arc::new(awaited.iter().map(|m| (*m).to_owned()).collect()),
            announced: Arc::new(watch::Sender::new(HashMap::new())),
        }
    }

    /// Reads `stream` line by line in the background.
    fn follow(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                this.saw(&line);
                this.lines.lock().unwrap().push(line);
            }
        });
    }

    /// Picks the addresses out of the awaited JSON start-up lines.
    fn saw(&self, line: &str) {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let fields = &json["fields"];
        let (Some(message), Some(addr)) = (
            fields["message"].as_str(),
            fields["addr"].as_str().and_then(|a| a.parse().ok()),
        ) else {
            return;
        };
        if self.awaited.iter().any(|m| m == message) {
            self.announced.send_modify(|known| {
                known.insert(message.to_owned(), addr);
            });
        }
    }

    /// Waits until every awaited line was seen.
    async fn announced(&self) -> HashMap<String, SocketAddr> {
        let mut known = self.announced.subscribe();
        let awaited = self.awaited.len();
        known
            .wait_for(|known| known.len() == awaited)
            .await
            .expect("the sender lives in self")
            .clone()
    }

    /// Prints what the process wrote (a failing test shows it).
    fn print(&self) {
        let lines = self.lines.lock().unwrap();
        eprintln!("--- process output ({} lines) ---", lines.len());
        for line in lines.iter() {
            eprintln!("{line}");
        }
        eprintln!("--- end of process output ---");
    }
}
