//! A real Redis in a container. The image is `redis:7-alpine` unless `TASK_TEST_REDIS_IMAGE`
//! names another (machines with no registry build one locally; see scripts/build-redis-image.sh).
//! Docker must be reachable: a test that needs it fails rather than skipping.

use std::time::Duration;

use bb8_redis::redis::{self, aio::MultiplexedConnection};
use testcontainers_modules::{
    redis::Redis,
    testcontainers::{ContainerAsync, ImageExt, core::IntoContainerPort, runners::AsyncRunner},
};

/// The image used when `TASK_TEST_REDIS_IMAGE` is not set.
pub const DEFAULT_IMAGE: &str = "redis:7-alpine";

/// A Redis container with a fixed host port (so that it keeps its address across restarts: a
/// port Docker chose could change when the container starts again) and AOF on (so that its data
/// survives them).
pub struct TestRedis {
    container: ContainerAsync<Redis>,
    /// The host port it answers on.
    pub port: u16,
    /// The host port of its TLS listener, if it has one.
    pub tls_port: Option<u16>,
}

/// The container's port for TLS.
const TLS_PORT: u16 = 6380;

/// How a test's Redis differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// Extra `redis-server` arguments.
    pub args: Vec<String>,
    /// Files copied into the container: path and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether it also listens for TLS (on [`TestRedis::tls_port`]).
    pub tls: bool,
}

impl TestRedis {
    /// Starts one.
    pub async fn start() -> Self {
        Self::start_with(RedisOptions::default()).await
    }

    /// Starts one with extra server arguments, files copied in, and a TLS port.
    pub async fn start_with(options: RedisOptions) -> Self {
        let image =
            std::env::var("TASK_TEST_REDIS_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let mut args: Vec<String> = [
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            "/tmp",
        ]
        .map(str::to_owned)
        .into();
        if options.tls {
            args.extend(["--tls-port".to_owned(), TLS_PORT.to_string()]);
        }
        args.extend(options.args.iter().cloned());
        // The port is free when picked but may be taken before Docker binds it (by a parallel
        // test): then Docker refuses it, and another is tried.
        let mut tries = 0;
        loop {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            let mut request = Redis::default()
                .with_name(name)
                .with_tag(tag)
                .with_cmd(args.clone())
                .with_mapped_port(port, 6379.tcp());
            if let Some(tls_port) = tls_port {
                request = request.with_mapped_port(tls_port, TLS_PORT.tcp());
            }
            for (path, bytes) in &options.files {
                request = request.with_copy_to(path.clone(), bytes.clone());
            }
            match request.start().await {
                Ok(container) => {
                    return Self {
                        container,
                        port,
                        tls_port,
                    };
                }
                Err(e) if tries < 5 && e.to_string().contains("already") => tries += 1,
                Err(e) => panic!(
                    "cannot start the Redis container from image {image} (is Docker running? set \
                     TASK_TEST_REDIS_IMAGE to a local image on machines with no registry): {e}"
                ),
            }
        }
    }

    /// The service's variables pointing at this Redis.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("REDIS_HOST".into(), "127.0.0.1".into()),
            ("REDIS_PORT".into(), self.port.to_string()),
        ]
    }

    /// A direct connection, for looking at what the service wrote.
    pub async fn connection(&self) -> MultiplexedConnection {
        let client = redis::Client::open(("127.0.0.1", self.port)).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// Waits until every dispatch entry has been acknowledged (the queue is empty).
    pub async fn wait_queue_drained(&self) {
        let conn = self.connection().await;
        super::eventually(
            Duration::from_secs(20),
            "the dispatch queue to drain",
            || {
                let mut conn = conn.clone();
                async move {
                    let len: u64 = redis::cmd("XLEN")
                        .arg("task-service:dispatch")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    (len == 0).then_some(())
                }
            },
        )
        .await;
    }

    /// Waits until the task's dispatch entry is gone from the entry index (the Processor
    /// accepted it).
    pub async fn wait_accepted(&self, task_id: &str) {
        let conn = self.connection().await;
        super::eventually(
            Duration::from_secs(20),
            &format!("task {task_id} to be accepted"),
            || {
                let mut conn = conn.clone();
                async move {
                    let entry: Option<String> = redis::cmd("HGET")
                        .arg("task-service:entries")
                        .arg(task_id)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    entry.is_none().then_some(())
                }
            },
        )
        .await;
    }

    /// Stops the container (Redis exits cleanly and keeps its AOF).
    pub async fn stop(&self) {
        self.container.stop_with_timeout(Some(5)).await.unwrap();
    }

    /// Starts it again and waits until it answers.
    pub async fn restart(&self) {
        self.container.start().await.unwrap();
        self.wait_ready().await;
    }

    /// Cuts the container off the network (connections through the published port fail) until
    /// [`TestRedis::reconnect`].
    pub async fn disconnect(&self) {
        docker(&["network", "disconnect", "bridge", self.container.id()]).await;
    }

    /// Puts the container back on the network.
    pub async fn reconnect(&self) {
        docker(&["network", "connect", "bridge", self.container.id()]).await;
        self.wait_ready().await;
    }

    /// Redis's `used_memory`, in bytes.
    pub async fn used_memory(&self) -> u64 {
        let mut conn = self.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// Empties Redis (FLUSHALL): what a Redis that lost its data, or a failover to an empty
    /// replica, looks like to its clients.
    pub async fn flush_all(&self) {
        let mut conn = self.connection().await;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    }

    /// Freezes the container: connections stay open, nothing answers.
    pub async fn pause(&self) {
        self.container.pause().await.unwrap();
    }

    /// Thaws it.
    pub async fn unpause(&self) {
        self.container.unpause().await.unwrap();
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = redis::Client::open(("127.0.0.1", self.port))
                && let Ok(Ok(mut conn)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Redis did not come back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A port free on 127.0.0.1 right now (only for Docker's port mappings, which take a number).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a docker command, failing the test if it fails.
async fn docker(args: &[&str]) {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
