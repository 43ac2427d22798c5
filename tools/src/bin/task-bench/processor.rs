//! A Processor that finishes at once: one HSET writing COMPLETED, then OK.
//! Redis comes from REDIS_HOST and REDIS_PORT (the process environment).

use std::net::SocketAddr;

use task_service::{
    config::Config,
    proto::processor::{
        CancelVideoRequest, CancelVideoResponse, ProcessVideoRequest, ProcessVideoResponse,
        processor_server,
    },
    store::{ProcessorReport, Store},
    task::{TaskId, now_timestamp},
};
use tonic::{Request, Response, Status};

use crate::BoxError;

#[derive(Debug)]
struct Instant {
    store: Store,
}

#[tonic::async_trait]
impl processor_server::Processor for Instant {
    async fn process_video(
        &self,
        request: Request<ProcessVideoRequest>,
    ) -> Result<Response<ProcessVideoResponse>, Status> {
        let id = TaskId::parse(&request.into_inner().task_id).map_err(Status::invalid_argument)?;
        let result = format!("./data/videos/{id}/result.mp4");
        self.store
            .processor_report(
                id,
                ProcessorReport::Completed {
                    result_file_key: &result,
                },
                &now_timestamp(),
            )
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ProcessVideoResponse {}))
    }

    /// Every task ends at once: there is never work left to stop.
    async fn cancel_video(
        &self,
        _: Request<CancelVideoRequest>,
    ) -> Result<Response<CancelVideoResponse>, Status> {
        Ok(Response::new(CancelVideoResponse {}))
    }
}

/// Serves until killed; Redis comes from REDIS_HOST and REDIS_PORT.
pub(crate) async fn serve(listen: SocketAddr) -> Result<(), BoxError> {
    let config = Config::from_env()?;
    let store = task_service::app::redis_store(&config)?;
    eprintln!("task-bench processor: completes every task at once, on {listen}");
    tonic::transport::Server::builder()
        .add_service(processor_server::ProcessorServer::new(Instant { store }))
        .serve(listen)
        .await?;
    Ok(())
}
