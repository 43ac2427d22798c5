//! The reference Processor: a stand-in for local runs and tests, not the real video processor.
//!
//! It serves `processor.Processor/ProcessVideo` and writes the task hash the way the contract's
//! Processor does (plain HSET): PROCESSING, then a copy of the original file to
//! `{LOCAL_STORAGE_PATH}/{task_id}/result.mp4` and COMPLETED with `result_file_key`, or FAILED
//! with the reason. It answers when it has finished. Like the contract's Processor it treats
//! `task_id` as the idempotency key: a task already final, or already being worked on here,
//! is answered OK and left alone. A simulated work time (`--work-time`) lets a person watch a
//! task sit in PROCESSING. CancelVideo stops a task's work and answers once it has stopped (it
//! writes nothing after); so does the service dropping its ProcessVideo call. A cancelled task
//! delivered again is answered OK and not started (the last [`REMEMBERED`] are kept).

use tokio_util::sync::CancellationToken;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tonic::{Request, Response, Status};

use crate::{
    proto::processor::{
        CancelVideoRequest, CancelVideoResponse, ProcessVideoRequest, ProcessVideoResponse,
        processor_server,
    },
    store::{ProcessorReport, Store},
    task::{TaskId, now_timestamp},
    validate::StorageRoot,
};

/// The reference Processor's state.
#[derive(Clone, Debug)]
pub struct ReferenceProcessor {
    store: Store,
    storage: StorageRoot,
    work_time: Duration,
    /// The tasks being worked on.
    working: Arc<Mutex<HashMap<TaskId, Work>>>,
    /// Tasks cancelled here, never to be started again.
    cancelled: Arc<Mutex<Cancelled>>,
}

/// How long a report is tried again before the call fails.
const REPORT_FOR: Duration = Duration::from_secs(30);

/// Cancelled tasks remembered.
pub const REMEMBERED: usize = 100_000;

/// The last [`REMEMBERED`] cancelled tasks.
#[derive(Debug, Default)]
struct Cancelled {
    ids: HashSet<TaskId>,
    order: VecDeque<TaskId>,
}

impl Cancelled {
    fn insert(&mut self, id: TaskId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }
}

/// One task being worked on: `stop` stops it; `done` is cancelled once the work has ended
/// (written its last, or stopped), however it ends.
#[derive(Clone, Debug, Default)]
struct Work {
    stop: CancellationToken,
    done: CancellationToken,
}

impl ReferenceProcessor {
    /// A Processor that writes to `store` and reads files under `storage`.
    pub fn new(store: Store, storage: StorageRoot) -> Self {
        Self {
            store,
            storage,
            work_time: Duration::ZERO,
            working: Arc::default(),
            cancelled: Arc::default(),
        }
    }

    /// Spends `work_time` in PROCESSING before producing the result, like a real job would.
    pub fn with_work_time(mut self, work_time: Duration) -> Self {
        self.work_time = work_time;
        self
    }

    /// The gRPC service.
    pub fn into_service(self) -> processor_server::ProcessorServer<Self> {
        processor_server::ProcessorServer::new(self)
    }

    /// Writes a report, trying again for up to [`REPORT_FOR`] (Redis restarting, a failover
    /// under way, a write no replica acknowledged yet): a result is not given up at the first
    /// moment without a primary.
    async fn report(&self, task_id: TaskId, report: ProcessorReport<'_>) -> Result<(), Status> {
        let give_up = tokio::time::Instant::now() + REPORT_FOR;
        let mut delay = Duration::from_millis(100);
        loop {
            match self
                .store
                .processor_report(task_id, report, &now_timestamp())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + delay < give_up => {
                    tracing::debug!(task.id = %task_id, error = %e, "reference processor: writing the task again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(Status::internal(format!(
                        "reference processor could not write the task: {e}"
                    )));
                }
            }
        }
    }

    /// Copies the original to the result path; the error says what went wrong.
    /// Reads the original without following a symlink out of the storage root.
    async fn produce(&self, task_id: TaskId, original_file_key: &str) -> Result<String, String> {
        let source = self.storage.resolve(original_file_key);
        let storage = self.storage.clone();
        let key = original_file_key.to_owned();
        let opened = tokio::task::spawn_blocking(move || storage.open(&key))
            .await
            .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
        let original = match opened {
            Ok(file) => tokio::fs::File::from_std(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("original file not found: {}", source.display()));
            }
            Err(e) => return Err(format!("cannot open {}: {e}", source.display())),
        };
        let result_key = self.storage.result_key(&task_id.to_string());
        let target = std::path::Path::new(&result_key);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut result = tokio::fs::File::create(target)
            .await
            .map_err(|e| format!("cannot create {result_key}: {e}"))?;
        let mut original = original;
        tokio::io::copy(&mut original, &mut result)
            .await
            .map_err(|e| format!("cannot copy {} to {result_key}: {e}", source.display()))?;
        Ok(result_key)
    }
}

/// Removes a task from the set of tasks being worked on, and says its work is done, however the
/// work ends (its call cancelled by the caller included).
struct WorkingGuard<'a> {
    working: &'a Mutex<HashMap<TaskId, Work>>,
    task_id: TaskId,
}

impl Drop for WorkingGuard<'_> {
    fn drop(&mut self) {
        let work = self
            .working
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.task_id);
        if let Some(work) = work {
            work.done.cancel();
        }
    }
}

#[tonic::async_trait]
impl processor_server::Processor for ReferenceProcessor {
    async fn process_video(
        &self,
        request: Request<ProcessVideoRequest>,
    ) -> Result<Response<ProcessVideoResponse>, Status> {
        let ProcessVideoRequest {
            task_id,
            original_file_key,
        } = request.into_inner();
        let task_id = TaskId::parse(&task_id).map_err(Status::invalid_argument)?;
        // The same checks as the service's: a Processor is the last gate before a file is read.
        self.storage
            .check_key(&original_file_key)
            .map_err(Status::invalid_argument)?;
        let status = self.store.processor_status(task_id).await.map_err(|e| {
            Status::internal(format!("reference processor could not read the task: {e}"))
        })?;
        match status {
            None => return Err(Status::not_found(format!("no task {task_id}"))),
            Some(status) if status.is_final() => {
                return Ok(Response::new(ProcessVideoResponse {}));
            }
            Some(_) => {}
        }
        let work = Work::default();
        let stop = work.stop.clone();
        {
            let mut working = self.working.lock().unwrap_or_else(|p| p.into_inner());
            let cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
            if working.contains_key(&task_id) || cancelled.ids.contains(&task_id) {
                return Ok(Response::new(ProcessVideoResponse {}));
            }
            working.insert(task_id, work);
        }
        let _guard = WorkingGuard {
            working: &self.working,
            task_id,
        };
        self.report(task_id, ProcessorReport::Processing).await?;
        let produced = tokio::select! {
            produced = async {
                tokio::time::sleep(self.work_time).await;
                self.produce(task_id, &original_file_key).await
            } => produced,
            () = stop.cancelled() => {
                tracing::info!(task.id = %task_id, "reference processor stopped a cancelled task");
                return Err(Status::cancelled("the task was cancelled"));
            }
        };
        if stop.is_cancelled() {
            return Err(Status::cancelled("the task was cancelled"));
        }
        match produced {
            Ok(result_key) => {
                self.report(
                    task_id,
                    ProcessorReport::Completed {
                        result_file_key: &result_key,
                    },
                )
                .await?
            }
            Err(reason) => {
                tracing::info!(task.id = %task_id, %reason, "reference processor failed the task");
                self.report(
                    task_id,
                    ProcessorReport::Failed {
                        error_message: &reason,
                    },
                )
                .await?
            }
        }
        Ok(Response::new(ProcessVideoResponse {}))
    }

    /// Stops the work on a task being worked on here, and answers once it has stopped: nothing
    /// is written for the task after the answer (a write already under way finishes first). A
    /// task not being worked on here has nothing to stop: OK.
    async fn cancel_video(
        &self,
        request: Request<CancelVideoRequest>,
    ) -> Result<Response<CancelVideoResponse>, Status> {
        let task_id =
            TaskId::parse(&request.into_inner().task_id).map_err(Status::invalid_argument)?;
        let work = {
            let working = self.working.lock().unwrap_or_else(|p| p.into_inner());
            self.cancelled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(task_id);
            working.get(&task_id).cloned()
        };
        if let Some(work) = work {
            work.stop.cancel();
            work.done.cancelled().await;
        }
        Ok(Response::new(CancelVideoResponse {}))
    }
}
