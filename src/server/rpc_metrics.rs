//! A layer that counts every answered RPC by method and gRPC code, and times it.
//!
//! The code is read from the response headers: tonic sends every error as a trailers-only
//! response (`grpc-status` in the headers), so a response without one is an OK unary answer.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, Service};

use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};

use crate::metrics::{MethodLabels, Metrics, RpcLabels};

/// The two metric families this layer writes, shared by one pointer per request.
#[derive(Debug)]
struct Families {
    requests: Family<RpcLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
}

/// Wraps services in [`RpcMetrics`].
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    families: Arc<Families>,
}

impl RpcMetricsLayer {
    /// Counts into `metrics`' RPC families.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            families: Arc::new(Families {
                requests: metrics.rpc_requests.clone(),
                duration: metrics.rpc_duration.clone(),
            }),
        }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            families: self.families.clone(),
        }
    }
}

/// Counts and times the RPCs that go through it.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    families: Arc<Families>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            families: self.families.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Records the RPC when the response headers are ready.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        method: &'static str,
        started: Instant,
        families: Arc<Families>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let code = match &result {
            Ok(response) => super::trace::grpc_status(response.headers())
                .map_or(Code::Ok, |c| Code::from(c as i32)),
            Err(_) => Code::Internal,
        };
        let method = *this.method;
        this.families
            .duration
            .get_or_create(&MethodLabels { method })
            .observe(this.started.elapsed().as_secs_f64());
        this.families
            .requests
            .get_or_create(&RpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        Poll::Ready(result)
    }
}

/// The methods this server serves are labelled by their path; anything else (a probe of an
/// unknown path) is `other`, so that callers cannot grow the label set without bound.
fn method_label(path: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "/task.Task/CreateTask",
        "/task.Task/GetTaskStatus",
        "/task.Task/WatchTask",
        "/task.Task/CancelTask",
        "/task.Task/ListTasks",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == path)
        .unwrap_or("other")
}

/// The canonical name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
