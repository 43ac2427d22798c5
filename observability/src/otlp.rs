//! The OpenTelemetry tracer provider: a batch exporter over OTLP/gRPC when an endpoint is set,
//! and the guard that flushes it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    runtime,
    trace::{
        SdkTracerProvider, SpanData, Tracer, span_processor_with_async_runtime::BatchSpanProcessor,
    },
};

use crate::TelemetryConfig;

/// Keeps the tracer provider; [`Telemetry::shutdown`] flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    pub(crate) fn new(
        config: &TelemetryConfig,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let mut builder =
            SdkTracerProvider::builder().with_resource(resource(&config.default_service_name));
        if let Some(endpoint) = &config.otlp_endpoint {
            let exporter = Logged::new(
                SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()?,
            );
            builder = builder
                .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
        }
        Ok(Self {
            provider: builder.build(),
            exporting: config.otlp_endpoint.is_some(),
        })
    }

    /// The tracer, when spans are exported.
    pub(crate) fn tracer(&self) -> Option<Tracer> {
        self.exporting.then(|| self.provider.tracer("task-service"))
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is buffered now (off the async threads: the SDK call blocks).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Flushes and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.provider.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || provider.shutdown()).await {
            tracing::warn!(error = %e, "telemetry: could not flush the last spans");
        }
    }
}

/// The resource: the SDK's detectors (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), with our
/// default service name when they name none.
fn resource(default_service_name: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder
            .with_service_name(default_service_name.to_owned())
            .build()
    }
}

/// How often, at most, a failing export is logged.
const EXPORT_ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// An exporter that logs its failures at most once a minute (with the count since the last
/// line), and once when exports work again: a down collector is visible without flooding logs.
#[derive(Debug)]
struct Logged<E> {
    inner: E,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl<E> Logged<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failures: Mutex::default(),
        }
    }

    fn record(&self, result: &OTelSdkResult) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) if failures.logged_at.is_some() => {
                tracing::info!("telemetry: span export works again");
                *failures = Failures::default();
            }
            Ok(()) => {}
            Err(error) => {
                failures.since_logged += 1;
                if failures
                    .logged_at
                    .is_none_or(|at| at.elapsed() >= EXPORT_ERROR_LOG_EVERY)
                {
                    tracing::warn!(
                        %error,
                        failed_exports = failures.since_logged,
                        "telemetry: cannot export spans (they are dropped; requests are not affected)"
                    );
                    failures.since_logged = 0;
                    failures.logged_at = Some(Instant::now());
                }
            }
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Logged<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.record(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
