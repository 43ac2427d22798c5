//! Shared test harness: a real Redis in a container, a fake Processor the test controls, and the
//! service started in-process or as a real process.

#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod browser;
pub mod calls;
pub mod chaos;
pub mod fake_processor;
pub mod metrics;
pub mod raw_grpc;
pub mod raw_h2;
pub mod redis;
pub mod sentinel;
pub mod service;
pub mod tls;

use std::{future::Future, time::Duration};

pub use fake_processor::{FakeProcessor, Reply};
pub use redis::TestRedis;
pub use service::{ServiceProcess, TestService};

/// Polls `check` every 25 ms until it returns `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fresh storage root with one original video in it; returns (root, file key).
pub fn storage_with_video() -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path().join("original.mp4"), b"not really a video").unwrap();
    (dir, "original.mp4".to_owned())
}

/// A temporary directory removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// The directory.
    #[derive(Debug)]
    pub struct Dir(PathBuf);

    impl Dir {
        /// A new empty directory under the system's temp dir.
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("task-service-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }

        /// Its path as text.
        pub fn text(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Logs of in-process services into the test's own output, which the test harness captures
/// and shows only when the test fails: warnings and errors, or what `RUST_LOG` asks for.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}
