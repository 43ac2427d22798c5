//! What [`crate::init`] sets up, read from the environment: `TASK_LOG_FORMAT`, and the standard
//! OpenTelemetry variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_BSP_*`, read by the OpenTelemetry SDK itself).

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The telemetry settings.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// Where to export spans over OTLP/gRPC; `None`: no export.
    pub otlp_endpoint: Option<String>,
    /// The service name used when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub default_service_name: String,
    /// Write log lines through the test harness's output capture (tests only: a passing test
    /// then prints nothing).
    pub test_writer: bool,
}

impl TelemetryConfig {
    /// Reads the environment; the error names the bad variable.
    pub fn from_env(default_service_name: &str) -> Result<Self, String> {
        let log_format = match std::env::var("TASK_LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("human") => LogFormat::Human,
            Ok("json") => LogFormat::Json,
            Ok(other) => {
                return Err(format!(
                    "invalid TASK_LOG_FORMAT={other:?}: expected human or json"
                ));
            }
        };
        let otlp_endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        });
        if let Some((name, value)) = &otlp_endpoint
            && value
                .parse::<http::Uri>()
                .map_or(true, |uri| uri.scheme().is_none() || uri.host().is_none())
        {
            return Err(format!(
                "invalid {name}={value:?}: expected a URL like http://jaeger:4317"
            ));
        }
        Ok(Self {
            log_format,
            otlp_endpoint: otlp_endpoint.map(|(_, v)| v),
            default_service_name: default_service_name.to_owned(),
            test_writer: false,
        })
    }
}
