//! One ProcessVideo attempt as a tower service: the innermost layer of the dispatcher's client
//! stack. It carries the per-attempt deadline (sent as `grpc-timeout` and enforced here) and the
//! task's trace context; its request is cloneable so that retry can wrap it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tonic::{
    Status,
    metadata::{MetadataKey, MetadataValue},
    transport::{Channel, Endpoint},
};
use tower::Service;

use crate::proto::processor::{ProcessVideoRequest, processor_client::ProcessorClient};

/// Errors of the client stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One task to hand to the Processor: the prost message plus what travels with every attempt.
#[derive(Clone, Debug)]
pub struct ProcessCall {
    /// The message sent.
    pub message: ProcessVideoRequest,
    /// The creating request's trace context, sent as metadata.
    pub trace: Arc<[(String, String)]>,
    /// Attempts made so far, shared by every clone (retries included).
    pub attempts: Arc<AtomicU32>,
}

impl ProcessCall {
    /// A call for one task.
    pub fn new(task_id: &str, original_file_key: &str, trace: &[(String, String)]) -> Self {
        Self {
            message: ProcessVideoRequest {
                task_id: task_id.to_owned(),
                original_file_key: original_file_key.to_owned(),
            },
            trace: trace.into(),
            attempts: Arc::default(),
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// The generated client with a per-attempt deadline.
#[derive(Clone, Debug)]
pub struct ProcessVideoCall {
    client: ProcessorClient<Channel>,
    timeout: Duration,
}

impl ProcessVideoCall {
    /// A client of the Processor at `host:port`; it connects on first use and reconnects by itself.
    pub fn new(
        addr: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Self {
            client: ProcessorClient::new(channel),
            timeout,
        })
    }
}

impl Service<ProcessCall> for ProcessVideoCall {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The channel buffers requests itself; the concurrency layer above bounds them.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ProcessCall) -> Self::Future {
        let mut client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            call.attempts.fetch_add(1, Ordering::Relaxed);
            let mut request = tonic::Request::new(call.message);
            request.set_timeout(timeout);
            for (field, value) in call.trace.iter() {
                if let (Ok(key), Ok(value)) = (
                    MetadataKey::from_bytes(field.as_bytes()),
                    MetadataValue::try_from(value.as_str()),
                ) {
                    request.metadata_mut().insert(key, value);
                }
            }
            match tokio::time::timeout(timeout, client.process_video(request)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(status.into()),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "the processor did not answer within {} (TASK_PROCESSOR_TIMEOUT)",
                    humantime::format_duration(timeout)
                ))
                .into()),
            }
        })
    }
}
