//! Telemetry for the Task service's binaries: logs, OpenTelemetry traces exported over OTLP,
//! and W3C trace-context propagation.
//!
//! # Layout
//! - [`init`] installs the `tracing` subscriber: an env-filtered log layer (human lines or JSON)
//!   and an OpenTelemetry layer. It returns a [`Telemetry`] guard that flushes on shutdown.
//! - [`config`]: what to set up, from the standard `OTEL_*` variables and `TASK_LOG_FORMAT`.
//! - [`propagation`]: W3C `traceparent`/`tracestate` in and out of gRPC metadata and queue entries.
//! - [`protocol_warnings`]: the HTTP/2 library's per-connection warnings, counted, not logged.
//! - [`process`]: what `/proc` says of a process (its resident memory), for the service's
//!   metrics, the benchmarks and the tests that bound memory.
//!
//! Spans get OpenTelemetry contexts and are exported when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Without it no OpenTelemetry layer is installed
//! (spans cost nothing beyond logging) and the caller's trace context is passed through
//! unchanged — see [`propagation`] — so a Gateway's trace still reaches the Processor. Export
//! runs in a batch task: an unreachable collector costs dropped spans and a warning a minute,
//! never a blocked or slower request.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod config;
mod otlp;
pub mod process;
pub mod propagation;
pub mod protocol_warnings;

pub use config::{LogFormat, TelemetryConfig};
pub use otlp::Telemetry;

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter, fmt, prelude::*};

/// The log filter when `RUST_LOG` is not set: our own `info`, and only warnings from the
/// libraries underneath (OpenTelemetry's export errors among them) — but h2's, which are counted
/// instead ([`protocol_warnings`]).
const DEFAULT_FILTER: &str = "info,h2=error,hyper=warn,tower=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// Installs the global subscriber and the W3C propagator; call once, inside the Tokio runtime
/// when an OTLP endpoint is configured. A second call leaves the first subscriber in place.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, opentelemetry_otlp::ExporterBuildError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let telemetry = Telemetry::new(config)?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only on a terminal: a file or a pipe gets plain text.
    let ansi = std::io::stdout().is_terminal();
    let logs = match (config.log_format, config.test_writer) {
        (LogFormat::Human, false) => fmt::layer().with_target(false).with_ansi(ansi).boxed(),
        (LogFormat::Human, true) => fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_test_writer()
            .boxed(),
        (LogFormat::Json, false) => fmt::layer().json().boxed(),
        (LogFormat::Json, true) => fmt::layer().json().with_test_writer().boxed(),
    };
    let traces = telemetry.tracer().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .with(protocol_warnings::layer())
        .try_init();
    Ok(telemetry)
}
