//! Supervision of the service's background tasks (the dispatcher, its lease renewal, the
//! reaper, health, the metrics endpoint): each runs until shutdown, so one that ends before —
//! it panicked, returned, or was cancelled — is a death. The first death is kept with its cause;
//! the wiring ([`crate::app`]) then turns health NOT_SERVING, shuts the service down and exits
//! non-zero, so that an orchestrator restarts it instead of leaving it to take CreateTask while
//! nothing is dispatched.

use std::{
    collections::HashMap,
    fmt,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
};

use futures::FutureExt;
use tokio::{
    sync::watch,
    task::{AbortHandle, JoinHandle},
};
use tokio_util::sync::CancellationToken;

/// A background task that ended before shutdown, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    /// The task's name.
    pub task: &'static str,
    /// How it ended: `panicked: <message>`, `failed: <error>`, `returned`, or `was cancelled`.
    pub cause: String,
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the background task {:?} {}", self.task, self.cause)
    }
}

impl std::error::Error for Death {}

/// Spawns supervised tasks and reports the first death. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Once cancelled, tasks are expected to end.
    shutdown: CancellationToken,
    first_death: watch::Sender<Option<Death>>,
    tasks: Mutex<HashMap<&'static str, AbortHandle>>,
}

impl Supervisor {
    /// A supervisor for which every end after `shutdown` is cancelled is expected.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                shutdown,
                first_death: watch::Sender::new(None),
                tasks: Mutex::default(),
            }),
        }
    }

    /// Spawns `task` under supervision; the handle lets its owner wait for it at shutdown.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_fallible(name, async move {
            task.await;
            Ok::<(), std::convert::Infallible>(())
        })
    }

    /// Spawns a task that may fail; its error is the cause of its death.
    pub fn spawn_fallible<F, E>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        // Made here and moved into the task, so that a task dropped before it first runs is
        // reported too.
        let watch = Watch {
            name,
            inner: self.inner.clone(),
            cause: "was cancelled".into(),
        };
        let handle = tokio::spawn(async move {
            let mut watch = watch;
            watch.cause = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(Ok(())) => "returned".into(),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            };
        });
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, handle.abort_handle());
        handle
    }

    /// Waits for the first death (forever, if there is none).
    pub async fn died(&self) -> Death {
        let mut deaths = self.inner.first_death.subscribe();
        let death = deaths
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        death.clone().expect("waited for Some")
    }

    /// Kills the task named `name`, as a crash would: for tests of what follows a death.
    #[cfg(feature = "test-util")]
    pub fn kill(&self, name: &str) -> bool {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.get(name).inspect(|task| task.abort()).is_some()
    }
}

/// Reports its task's end when dropped: after it returned or panicked, or when it was dropped
/// mid-way (cancelled).
struct Watch {
    name: &'static str,
    inner: Arc<Inner>,
    cause: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let death = Death {
            task: self.name,
            cause: std::mem::take(&mut self.cause),
        };
        self.inner.first_death.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            *first = Some(death);
            true
        });
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panic_is_a_death_with_its_message() {
        let supervisor = Supervisor::new(CancellationToken::new());
        let _quiet = supervisor.spawn("quiet", std::future::pending());
        let _loop = supervisor.spawn("loop", async { panic!("the loop broke") });
        let death = supervisor.died().await;
        assert_eq!(death.task, "loop");
        assert_eq!(death.cause, "panicked: the loop broke");
    }

    #[tokio::test]
    async fn returning_early_and_failing_are_deaths() {
        let supervisor = Supervisor::new(CancellationToken::new());
        let _ = supervisor.spawn("short", async {}).await;
        assert_eq!(supervisor.died().await.cause, "returned");

        let supervisor = Supervisor::new(CancellationToken::new());
        let _server = supervisor.spawn_fallible("server", async { Err::<(), _>("address in use") });
        assert_eq!(supervisor.died().await.cause, "failed: address in use");
    }

    #[tokio::test]
    async fn an_aborted_task_is_a_death() {
        let supervisor = Supervisor::new(CancellationToken::new());
        let handle = supervisor.spawn("reaper", std::future::pending());
        handle.abort();
        assert_eq!(supervisor.died().await.cause, "was cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn ends_after_shutdown_are_expected() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone());
        let stop = shutdown.clone();
        let handle = supervisor.spawn("dispatcher", async move { stop.cancelled().await });
        shutdown.cancel();
        handle.await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(60), supervisor.died())
                .await
                .is_err(),
            "an end after shutdown was reported as a death"
        );
    }
}
