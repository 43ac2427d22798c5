//! WatchTask: the task's current state, then one message per change of state, in order; the
//! stream ends (OK) right after a final state. It never sends a state the task did not have,
//! nor the same state twice in a row, nor one older than a state already sent (a Processor's
//! late PROCESSING after FAILED is not passed on). States that lasted less than the time to
//! wake up and read may be coalesced (PENDING → COMPLETED). A watch wakes when the store tells
//! of a change ([`crate::events`]) and, as a safety net, on a timer of its own (often while
//! notifications are off, rarely while they are on); each wake-up is one read.
//!
//! Bounds: the client's `grpc-timeout`, else `TASK_WATCH_MAX` (then DEADLINE_EXCEEDED);
//! `TASK_WATCH_MAX_PER_CLIENT` and `TASK_WATCH_MAX_TOTAL` open watches (RESOURCE_EXHAUSTED
//! beyond). A task that expires or is lost mid-watch ends it with NOT_FOUND; at shutdown open
//! watches end with UNAVAILABLE, so that clients move to another replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, transport::server::TcpConnectInfo};

use crate::{
    auth::Caller,
    config::ApiConfig,
    error::Error,
    events::Follow,
    metrics::Metrics,
    proto::task::{GetTaskStatusResponse, WatchTaskRequest},
    store::Store,
    task::{RawStatus, TaskId, TaskRecord, TaskStatus},
};

use super::{TaskApi, response};

/// Messages a watch may have waiting for a slow client.
const BUFFER: usize = 4;

/// The open watches, counted per client and in all.
#[derive(Debug)]
pub struct Watches {
    per_client: usize,
    total: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
    metrics: Metrics,
}

/// One open watch, counted until dropped.
#[derive(Debug)]
struct Admission {
    watches: Arc<Watches>,
    client: String,
}

impl Watches {
    /// The bounds of `config`.
    pub fn new(config: &ApiConfig, metrics: Metrics) -> Self {
        Self {
            per_client: config.watch_max_per_client,
            total: config.watch_max_total,
            open: Mutex::default(),
            metrics,
        }
    }

    fn admit(self: &Arc<Self>, client: String) -> Result<Admission, Error> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.total {
            return Err(Error::TooMany(format!(
                "this instance has {} open watches, its limit (TASK_WATCH_MAX_TOTAL); retry later or on another replica",
                self.total
            )));
        }
        let mine = open.1.entry(client.clone()).or_insert(0);
        if *mine >= self.per_client {
            return Err(Error::TooMany(format!(
                "this client has {} open watches, the most one client may have (TASK_WATCH_MAX_PER_CLIENT)",
                self.per_client
            )));
        }
        *mine += 1;
        open.0 += 1;
        self.metrics.watches_open.set(open.0 as i64);
        Ok(Admission {
            watches: self.clone(),
            client,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(mine) = open.1.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                open.1.remove(&self.client);
            }
        }
        self.watches.metrics.watches_open.set(open.0 as i64);
    }
}

impl TaskApi {
    /// Opens a watch.
    pub async fn watch(
        &self,
        request: Request<WatchTaskRequest>,
    ) -> Result<ReceiverStream<Result<GetTaskStatusResponse, Status>>, Error> {
        let id = TaskId::parse(&request.get_ref().task_id).map_err(Error::InvalidArgument)?;
        let parts = &self.parts;
        let admission = self.watches.admit(client_of(&request))?;
        let limit = request
            .metadata()
            .get(middleware::grpc_timeout::GRPC_TIMEOUT)
            .and_then(|v| {
                middleware::grpc_timeout::parse(&http::HeaderValue::from_bytes(v.as_bytes()).ok()?)
            })
            .map_or(parts.config.watch_max, |client| {
                client.min(parts.config.watch_max)
            });
        // Followed before the first read, so that no change after it is missed.
        let follow = parts.events.follow(id);
        let first = parts
            .store
            .read(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_text()))?;
        let recheck = if parts.events.notifications() {
            parts.config.watch_recheck_interval
        } else {
            parts.config.watch_poll_interval
        };
        let (sender, receiver) = mpsc::channel(BUFFER);
        let watch = Watch {
            id,
            store: parts.store.clone(),
            follow,
            sender,
            deadline: Instant::now() + limit,
            recheck,
            _admission: admission,
        };
        tokio::spawn(watch.run(first, parts.shutdown.clone()));
        Ok(ReceiverStream::new(receiver))
    }
}

/// Who a watch counts for: the authenticated caller, else the peer's address.
fn client_of<T>(request: &Request<T>) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return format!("caller {}", caller.name);
    }
    request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map_or_else(
            || "unknown".to_owned(),
            |addr| addr.ip().to_canonical().to_string(),
        )
}

/// One open watch.
struct Watch {
    id: TaskId,
    store: Store,
    follow: Follow,
    sender: mpsc::Sender<Result<GetTaskStatusResponse, Status>>,
    deadline: Instant,
    recheck: Duration,
    _admission: Admission,
}

impl Watch {
    async fn run(mut self, first: TaskRecord, shutdown: tokio_util::sync::CancellationToken) {
        let mut last = first.status.clone();
        if !self.send(first).await || last.is_final() {
            return;
        }
        // Spread the watches' own timers, so that they do not all read at once.
        let mut next_look = Instant::now() + self.recheck.mul_f64(rand::random_range(0.5..1.0));
        loop {
            tokio::select! {
                () = self.follow.changed() => {}
                () = tokio::time::sleep_until(next_look) => {}
                () = tokio::time::sleep_until(self.deadline) => {
                    let _ = self.sender.send(Err(Status::deadline_exceeded(
                        "the watch reached its limit (the client's grpc-timeout, at most TASK_WATCH_MAX); watch again to go on"
                    ))).await;
                    return;
                }
                () = shutdown.cancelled() => {
                    let _ = self.sender.send(Err(Status::unavailable(
                        "this instance is shutting down; watch again (another replica answers)"
                    ))).await;
                    return;
                }
                () = self.sender.closed() => return,
            }
            next_look = Instant::now() + self.recheck;
            // Boxed: the read's state is large, and a watch is idle most of its life.
            let record = match Box::pin(self.store.read(self.id)).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    let gone = Error::Gone(self.id.to_text());
                    let _ = self.sender.send(Err(gone.into())).await;
                    return;
                }
                // Redis is down or slow: look again at the next wake-up; the client's deadline
                // bounds the wait.
                Err(e) => {
                    tracing::debug!(error = %e, task.id = %self.id, "a watch could not read its task");
                    continue;
                }
            };
            if !comes_after(&record.status, &last) {
                continue;
            }
            last = record.status.clone();
            if !self.send(record).await || last.is_final() {
                return;
            }
        }
    }

    /// Sends a state; false once the client is gone.
    async fn send(&self, record: TaskRecord) -> bool {
        self.sender
            .send(Ok(response::of(self.id, record)))
            .await
            .is_ok()
    }
}

/// Whether `now` is a new state that does not go back from `last`: PENDING, then PROCESSING (or
/// a status outside the contract, treated as in progress), then COMPLETED or FAILED.
fn comes_after(now: &RawStatus, last: &RawStatus) -> bool {
    fn rank(status: &RawStatus) -> u8 {
        match status.known() {
            Some(TaskStatus::Pending) => 0,
            Some(TaskStatus::Processing) | None => 1,
            Some(TaskStatus::Completed | TaskStatus::Failed) => 2,
        }
    }
    now != last && !last.is_final() && rank(now) >= rank(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> RawStatus {
        RawStatus::parse(text)
    }

    #[test]
    fn states_move_forward_only_and_never_twice() {
        assert!(comes_after(&status("PROCESSING"), &status("PENDING")));
        assert!(comes_after(&status("COMPLETED"), &status("PENDING")));
        assert!(comes_after(&status("FAILED"), &status("PROCESSING")));
        assert!(
            !comes_after(&status("PROCESSING"), &status("PROCESSING")),
            "twice"
        );
        assert!(
            !comes_after(&status("PENDING"), &status("PROCESSING")),
            "backwards"
        );
        assert!(
            !comes_after(&status("PROCESSING"), &status("FAILED")),
            "after final"
        );
        assert!(
            comes_after(&status("RETRYING"), &status("PROCESSING")),
            "unknown text in progress"
        );
    }
}
