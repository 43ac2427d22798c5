//! A bare tonic server answering task.Task from memory: what gRPC alone costs on this machine.

use std::{collections::HashMap, net::SocketAddr, sync::RwLock};

use task_service::{
    proto::task::{
        CancelTaskRequest, CreateTaskRequest, CreateTaskResponse, GetTaskStatusRequest,
        GetTaskStatusResponse, ListTasksRequest, ListTasksResponse, WatchTaskRequest,
        task_server::{Task, TaskServer},
    },
    task::TaskId,
};
use tonic::{Request, Response, Status};

use crate::BoxError;

#[derive(Debug, Default)]
struct Memory {
    tasks: RwLock<HashMap<String, String>>,
}

#[tonic::async_trait]
impl Task for Memory {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let id = TaskId::new_v4().to_text();
        let key = request.into_inner().original_file_key;
        self.tasks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), key);
        Ok(Response::new(CreateTaskResponse { task_id: id }))
    }

    async fn get_task_status(
        &self,
        request: Request<GetTaskStatusRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        let id = TaskId::parse(&request.get_ref().task_id)
            .map_err(Status::invalid_argument)?
            .to_text();
        // Every well-formed id answers, as a seeded store would: the figure is gRPC's cost.
        let known = self
            .tasks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id);
        Ok(Response::new(GetTaskStatusResponse {
            result_file_key: format!("./data/videos/{id}/result.mp4"),
            task_id: id,
            status: if known { "PENDING" } else { "COMPLETED" }.into(),
            ..GetTaskStatusResponse::default()
        }))
    }

    // The ceiling measures CreateTask and GetTaskStatus only.
    type WatchTaskStream = tokio_stream::Empty<Result<GetTaskStatusResponse, Status>>;

    async fn watch_task(
        &self,
        _: Request<WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        Err(Status::unimplemented(
            "the ceiling server measures CreateTask and GetTaskStatus",
        ))
    }

    async fn cancel_task(
        &self,
        _: Request<CancelTaskRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        Err(Status::unimplemented(
            "the ceiling server measures CreateTask and GetTaskStatus",
        ))
    }

    async fn list_tasks(
        &self,
        _: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        Err(Status::unimplemented(
            "the ceiling server measures CreateTask and GetTaskStatus",
        ))
    }
}

/// Serves until killed.
pub(crate) async fn serve(listen: SocketAddr) -> Result<(), BoxError> {
    eprintln!("task-bench ceiling: task.Task from memory on {listen}");
    tonic::transport::Server::builder()
        .add_service(TaskServer::new(Memory::default()))
        .serve(listen)
        .await?;
    Ok(())
}
