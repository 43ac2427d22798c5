//! CancelVideo: asking the Processor to stop the work on a task it accepted. Called by
//! CancelTask for accepted tasks, and by the dispatcher when a task is cancelled while its
//! ProcessVideo call is in flight (the Processor may have accepted it just then).

use std::time::Duration;

use tonic::{Status, transport::Channel};
use tracing::Instrument;

use crate::{
    proto::processor::{CancelVideoRequest, processor_client::ProcessorClient},
    task::TaskId,
};

/// The CancelVideo client.
#[derive(Clone, Debug)]
pub struct Canceller {
    client: ProcessorClient<Channel>,
    timeout: Duration,
}

impl Canceller {
    /// A client on `channel`, each call bounded by `timeout`.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        Self {
            client: ProcessorClient::new(channel),
            timeout,
        }
    }

    /// Asks the Processor to cancel `task_id`; its status (UNIMPLEMENTED for a Processor that
    /// cannot) or a DEADLINE_EXCEEDED of ours.
    pub async fn cancel(&self, task_id: TaskId) -> Result<(), Status> {
        let span = tracing::info_span!(
            "processor.Processor/CancelVideo",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "processor.Processor",
            rpc.method = "CancelVideo",
            task.id = %task_id,
        );
        let mut request = tonic::Request::new(CancelVideoRequest {
            task_id: task_id.to_string(),
        });
        request.set_timeout(self.timeout);
        observability::propagation::inject_headers(&span, request.metadata_mut().as_mut());
        let mut client = self.client.clone();
        let call = async move {
            match tokio::time::timeout(self.timeout, client.cancel_video(request)).await {
                Ok(answer) => answer.map(drop),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "the processor did not answer CancelVideo within {} (TASK_PROCESSOR_TIMEOUT)",
                    humantime::format_duration(self.timeout)
                ))),
            }
        };
        call.instrument(span).await
    }
}
