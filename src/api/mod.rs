//! The `task.Task` gRPC API: CreateTask and GetTaskStatus with the contract's semantics, and the
//! additions a Gateway needs — idempotent create, WatchTask, CancelTask and ListTasks (the
//! README's "The API"). One file per RPC; [`response`] builds the answer they share.

mod cancel;
mod create;
mod list;
mod response;
mod traces;
mod watch;

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    config::ApiConfig,
    error::Error,
    events::Events,
    metrics::Metrics,
    processor::Canceller,
    proto::task::{
        CancelTaskRequest, CreateTaskRequest, CreateTaskResponse, GetTaskStatusRequest,
        GetTaskStatusResponse, ListTasksRequest, ListTasksResponse, WatchTaskRequest, task_server,
    },
    store::Store,
    task::TaskId,
    validate::StorageRoot,
};

pub use traces::CreationTraces;
pub use watch::Watches;

/// What the API needs.
#[derive(Clone, Debug)]
pub struct ApiParts {
    /// The store.
    pub store: Store,
    /// The storage root file keys are checked against.
    pub storage: StorageRoot,
    /// Where the figures go.
    pub metrics: Metrics,
    /// Changes to tasks, for watches.
    pub events: Events,
    /// CancelVideo, for cancelling accepted tasks (`None`: no Processor to ask).
    pub canceller: Option<Canceller>,
    /// Settings.
    pub config: ApiConfig,
    /// Cancelled at shutdown: open watches end.
    pub shutdown: CancellationToken,
}

/// The API's state. Cloning shares it.
#[derive(Clone, Debug)]
pub struct TaskApi {
    parts: Arc<ApiParts>,
    watches: Arc<Watches>,
    traces: Arc<CreationTraces>,
}

impl TaskApi {
    /// The API over `parts`.
    pub fn new(parts: ApiParts) -> Self {
        let watches = Arc::new(Watches::new(&parts.config, parts.metrics.clone()));
        Self {
            parts: Arc::new(parts),
            watches,
            traces: Arc::default(),
        }
    }

    /// The trace id of `task`'s creation, if this instance created it recently.
    pub fn creation_trace(&self, task: TaskId) -> Option<String> {
        self.traces.get(task)
    }

    /// Reads a task's status; fields that belong to other statuses are answered empty.
    pub async fn status(&self, task_id: &str) -> Result<GetTaskStatusResponse, Error> {
        let id = TaskId::parse(task_id).map_err(Error::InvalidArgument)?;
        let record = self
            .parts
            .store
            .read_status(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_text()))?;
        Ok(response::of(id, record))
    }
}

#[tonic::async_trait]
impl task_server::Task for TaskApi {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let id = self
            .create(request.get_ref(), request.metadata().as_ref())
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

    type WatchTaskStream = ReceiverStream<Result<GetTaskStatusResponse, Status>>;

    async fn watch_task(
        &self,
        request: Request<WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        Ok(Response::new(self.cancel(request.get_ref()).await?))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Ok(Response::new(self.list(request.get_ref()).await?))
    }
}
