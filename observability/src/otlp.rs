//! The OpenTelemetry tracer provider: a batch exporter over OTLP/gRPC when an endpoint is set,
//! and the guard that flushes it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{SdkTracerProvider, Tracer, span_processor_with_async_runtime::BatchSpanProcessor},
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
            let exporter = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            builder = builder
                .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
        }
        Ok(Self {
            provider: builder.build(),
            exporting: config.otlp_endpoint.is_some(),
        })
    }

    pub(crate) fn tracer(&self) -> Tracer {
        self.provider.tracer("task-service")
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
