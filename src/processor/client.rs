//! One ProcessVideo attempt as a tower service: the innermost layer of the dispatcher's client
//! stack. It carries the per-attempt deadline (sent as `grpc-timeout` and enforced here), opens
//! the attempt's span and the client span, and sends the trace context as `traceparent`; its
//! request is cloneable so that retry can wrap it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use middleware::BreakerHandle;
use tonic::{
    Status,
    metadata::{MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tower::Service;
use tracing::{Instrument, field::Empty};

use crate::{
    config::{ProcessorConfig, ProcessorTls},
    proto::processor::{ProcessVideoRequest, processor_client::ProcessorClient},
    task::TaskId,
};

/// Errors of the client stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One task to hand to the Processor: the prost message, plus what every clone (every retry)
/// shares.
#[derive(Clone, Debug)]
pub struct ProcessCall {
    /// The message sent.
    pub message: ProcessVideoRequest,
    /// The creating request's trace context, sent as is when this service records no spans.
    pub trace: Arc<[(String, String)]>,
    /// Attempts made so far, shared by every clone (retries included).
    pub attempts: Arc<AtomicU32>,
}

impl ProcessCall {
    /// A call for one task.
    pub fn new(task_id: TaskId, original_file_key: &str, trace: &[(String, String)]) -> Self {
        Self {
            message: ProcessVideoRequest {
                task_id: task_id.to_string(),
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
    addr: Arc<str>,
    breaker: Option<BreakerHandle>,
    in_flight: Arc<AtomicUsize>,
}

impl ProcessVideoCall {
    /// A client of the Processor on `channel`, each attempt bounded by `config.timeout`.
    pub fn new(config: &ProcessorConfig, channel: Channel) -> Self {
        Self {
            client: ProcessorClient::new(channel),
            timeout: config.timeout,
            addr: config.addr.as_str().into(),
            breaker: None,
            in_flight: Arc::default(),
        }
    }

    /// Records the state of this breaker on each attempt's span.
    pub fn with_breaker(mut self, breaker: BreakerHandle) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Calls in flight at the Processor right now (read by the metrics at scrape time).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }
}

/// The channel to the Processor `config` names (over TLS if it says so); it connects on first
/// use and reconnects by itself.
pub fn channel(config: &ProcessorConfig) -> Result<Channel, BoxError> {
    let addr = &config.addr;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls_config(tls)?)?;
    }
    Ok(endpoint.connect_lazy())
}

/// The TLS settings of the Processor's channel; an error names the file.
fn tls_config(tls: &ProcessorTls) -> Result<ClientTlsConfig, BoxError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    if let Some((cert, key)) = &tls.client {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Counts a call as in flight until it is dropped, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Service<ProcessCall> for ProcessVideoCall {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The channel buffers requests itself; the dispatcher holds no more entries than
        // TASK_PROCESSOR_CONCURRENCY, which bounds the calls.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ProcessCall) -> Self::Future {
        let mut client = self.client.clone();
        let timeout = self.timeout;
        let attempt = call.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let breaker = self.breaker.as_ref().map_or("none", |b| b.state().as_str());
        let attempt_span = tracing::info_span!(
            "dispatch.attempt",
            task.id = %call.message.task_id,
            dispatch.attempt = attempt,
            circuit_breaker.state = breaker,
        );
        let client_span = tracing::info_span!(
            parent: &attempt_span,
            "processor.Processor/ProcessVideo",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "processor.Processor",
            rpc.method = "ProcessVideo",
            rpc.grpc.status_code = Empty,
            server.address = %self.addr,
            task.id = %call.message.task_id,
        );
        let mut request = tonic::Request::new(call.message);
        request.set_timeout(timeout);
        // This call's span context, or, when this service records no spans, the creating
        // request's context as the queue entry carried it.
        observability::propagation::inject_headers(&client_span, request.metadata_mut().as_mut());
        if request.metadata().get("traceparent").is_none() {
            for (field, value) in call.trace.iter() {
                if let (Ok(key), Ok(value)) = (
                    MetadataKey::from_bytes(field.as_bytes()),
                    MetadataValue::try_from(value.as_str()),
                ) {
                    request.metadata_mut().insert(key, value);
                }
            }
        }
        let span = client_span.clone();
        let in_flight = InFlight::enter(&self.in_flight);
        let answer = async move {
            let _in_flight = in_flight;
            let result = match tokio::time::timeout(timeout, client.process_video(request)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(status),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "the processor did not answer within {} (TASK_PROCESSOR_TIMEOUT)",
                    humantime::format_duration(timeout)
                ))),
            };
            let code = result
                .as_ref()
                .map_or_else(|s| s.code(), |()| tonic::Code::Ok);
            span.record("rpc.grpc.status_code", code as i32);
            result.map_err(BoxError::from)
        };
        Box::pin(answer.instrument(client_span).instrument(attempt_span))
    }
}
