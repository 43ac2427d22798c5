//! `otlp-sink`: an OTLP/gRPC trace receiver that prints every span it gets, one line each.

use std::{net::SocketAddr, process::ExitCode};

use clap::Parser;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::span::SpanKind,
};
use tonic::{Request, Response, Status};

/// A stand-in for a trace backend where none can be installed (a machine with no container
/// registry cannot pull Jaeger): it accepts OTLP/gRPC exports on port 4317, as Jaeger does, and
/// prints each span as one line — trace id, span id, parent, service, kind, name, duration and
/// task id — so that a task's trace can be followed with grep. Not a Jaeger replacement: use
/// Jaeger (docker-compose.yml) wherever its image can be pulled.
#[derive(Debug, Parser)]
#[command(name = "otlp-sink", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:4317")]
    listen: SocketAddr,
}

#[derive(Debug)]
struct Printer;

#[tonic::async_trait]
impl TraceService for Printer {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_else(|| "?".into());
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let task = span
                    .attributes
                    .iter()
                    .find(|a| a.key == "task.id")
                    .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                    .unwrap_or_default();
                let kind = SpanKind::try_from(span.kind).map_or("?", |k| k.as_str_name());
                let micros = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano)
                    / 1_000;
                println!(
                    "trace={} span={} parent={} service={service} kind={} name={:?} duration_us={micros} task.id={task}",
                    hex(&span.trace_id),
                    hex(&span.span_id),
                    if span.parent_span_id.is_empty() {
                        "-".into()
                    } else {
                        hex(&span.parent_span_id)
                    },
                    kind.trim_start_matches("SPAN_KIND_"),
                    span.name,
                );
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!("otlp-sink: receiving OTLP/gRPC traces on {}", cli.listen);
    let served = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Printer))
        .serve_with_shutdown(cli.listen, async {
            let stop = tokio_util::sync::CancellationToken::new();
            task_service::app::cancel_on_signal(stop.clone()).await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-sink: {e}");
            ExitCode::FAILURE
        }
    }
}
