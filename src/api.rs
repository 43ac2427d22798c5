//! The `task.Task` gRPC API: CreateTask and GetTaskStatus with the contract's semantics.

use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    metrics::Metrics,
    proto::task::{
        CreateTaskRequest, CreateTaskResponse, GetTaskStatusRequest, GetTaskStatusResponse,
        task_server,
    },
    store::Store,
    task::{TaskId, TaskRecord, TaskStatus, now_timestamp},
    validate::StorageRoot,
};

/// The API's state: the store and the storage root that file keys are checked against.
#[derive(Clone, Debug)]
pub struct TaskApi {
    store: Store,
    storage: StorageRoot,
    metrics: Metrics,
}

impl TaskApi {
    /// An API over `store`, counting in `metrics`.
    pub fn new(store: Store, storage: StorageRoot, metrics: Metrics) -> Self {
        Self {
            store,
            storage,
            metrics,
        }
    }

    /// Creates a PENDING task and its dispatch entry in one atomic step; the dispatcher hands
    /// it to the Processor later, so the caller never waits for the Processor. `caller_trace` is
    /// the caller's W3C context, carried on when this service records no spans of its own.
    pub async fn create(
        &self,
        original_file_key: &str,
        caller_trace: &http::HeaderMap,
    ) -> Result<TaskId, Error> {
        self.storage
            .check_key(original_file_key)
            .map_err(Error::InvalidArgument)?;
        let id = TaskId::new_v4();
        let record = TaskRecord::new_pending(id, original_file_key, &now_timestamp());
        let span = tracing::Span::current();
        span.record("task.id", tracing::field::display(id));
        // The request's trace context travels with the queue entry, so that the dispatch and
        // the Processor's spans join this request's trace.
        let mut trace = observability::propagation::to_fields(&span);
        if trace.is_empty() {
            trace = observability::propagation::passthrough(caller_trace);
        }
        self.store.create(&record, &trace).await?;
        self.metrics.tasks_created.inc();
        tracing::debug!(task.id = %id, "task created");
        Ok(id)
    }

    /// Reads a task's status; fields that belong to other statuses are answered empty.
    pub async fn status(&self, task_id: &str) -> Result<GetTaskStatusResponse, Error> {
        let id = TaskId::parse(task_id).map_err(Error::InvalidArgument)?;
        let record = self
            .store
            .read(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_text()))?;
        let status = record.status.known();
        if status.is_none() {
            tracing::warn!(task.id = %id, status = %record.status, "task hash holds a status outside the contract");
        }
        Ok(GetTaskStatusResponse {
            task_id: id.to_text(),
            result_file_key: if status == Some(TaskStatus::Completed) {
                record.result_file_key
            } else {
                String::new()
            },
            error_message: if status == Some(TaskStatus::Failed) {
                record.error_message
            } else {
                String::new()
            },
            status: record.status.as_str().to_owned(),
        })
    }
}

#[tonic::async_trait]
impl task_server::Task for TaskApi {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let id = self
            .create(
                &request.get_ref().original_file_key,
                request.metadata().as_ref(),
            )
            .await?;
        Ok(Response::new(CreateTaskResponse {
            task_id: id.to_text(),
        }))
    }

    async fn get_task_status(
        &self,
        request: Request<GetTaskStatusRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        Ok(Response::new(
            self.status(&request.get_ref().task_id).await?,
        ))
    }
}
