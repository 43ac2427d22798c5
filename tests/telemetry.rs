//! Traces and metrics end to end: an in-process OTLP receiver gets one CreateTask's spans, all in
//! the caller's trace, and the Prometheus endpoint's figures move by known amounts.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{FakeProcessor, Reply, TestRedis, TestService, eventually, metrics::scrape};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::{Span, span::SpanKind},
};
use task_service::{
    proto::task::{CreateTaskRequest, GetTaskStatusRequest},
    store::NewTask,
    task::{TaskId, TaskRecord, now_timestamp},
};
use tonic::{Code, Request, Response, Status};

/// An OTLP trace receiver that keeps every span it gets.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_task_is_one_trace_from_the_caller_to_the_processor() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let telemetry = observability::init(&observability::TelemetryConfig {
        log_format: observability::LogFormat::Human,
        otlp_endpoint: Some(format!("http://{otlp}")),
        default_service_name: "task-service".into(),
        test_writer: true,
    })
    .unwrap();
    assert!(telemetry.is_exporting());

    let redis = TestRedis::start().await;
    let config = common::service::config(&redis.vars());
    let processor =
        FakeProcessor::start(Reply::Complete, Some(common::service::redis_store(&config))).await;
    let mut vars = redis.vars();
    vars.push(processor.addr_var());
    let service = TestService::start(&vars).await;
    let mut client = service.client().await;

    let trace_id = hex(&rand_bytes::<16>());
    let caller_span = hex(&rand_bytes::<8>());
    let mut request = Request::new(CreateTaskRequest {
        original_file_key: "a.mp4".into(),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let task_id = client
        .create_task(request)
        .await
        .unwrap()
        .into_inner()
        .task_id;
    eventually(Duration::from_secs(10), "the task to complete", || {
        let mut client = client.clone();
        let task_id = task_id.clone();
        async move {
            let status = client
                .get_task_status(GetTaskStatusRequest { task_id })
                .await
                .ok()?
                .into_inner();
            (status.status == "COMPLETED").then_some(())
        }
    })
    .await;
    redis.wait_queue_drained().await;

    let spans = eventually(Duration::from_secs(20), "the spans to be exported", || {
        let receiver = receiver.clone();
        let telemetry = &telemetry;
        let trace_id = trace_id.clone();
        async move {
            telemetry.flush().await;
            let spans: Vec<Span> = receiver
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            let complete = [
                "task.Task/CreateTask",
                "EVALSHA create",
                "dispatch ProcessVideo",
                "processor.Processor/ProcessVideo",
            ]
            .iter()
            .all(|n| names.contains(n));
            complete.then_some(spans)
        }
    })
    .await;
    let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap();

    let server = named("task.Task/CreateTask");
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "the server span is the caller's child"
    );
    assert_eq!(server.kind, SpanKind::Server as i32);
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
    };
    assert!(attribute(server, "rpc.system").unwrap().contains("grpc"));
    assert!(
        attribute(server, "rpc.method")
            .unwrap()
            .contains("CreateTask")
    );
    assert!(attribute(server, "task.id").unwrap().contains(&task_id));
    assert!(attribute(server, "rpc.grpc.status_code").is_some());

    let redis_span = named("EVALSHA create");
    assert_eq!(
        redis_span.parent_span_id, server.span_id,
        "the Redis call is part of the request"
    );
    assert!(
        attribute(redis_span, "db.system")
            .unwrap()
            .contains("redis")
    );

    let dispatch = named("dispatch ProcessVideo");
    assert_eq!(
        dispatch.parent_span_id, server.span_id,
        "the dispatch joins the creating request's trace"
    );
    let attempt = named("dispatch.attempt");
    assert_eq!(attempt.parent_span_id, dispatch.span_id);
    assert!(
        attribute(attempt, "dispatch.attempt")
            .unwrap()
            .contains('1')
    );
    assert!(
        attribute(attempt, "circuit_breaker.state")
            .unwrap()
            .contains("closed")
    );
    let call = named("processor.Processor/ProcessVideo");
    assert_eq!(call.parent_span_id, attempt.span_id);
    assert_eq!(call.kind, SpanKind::Client as i32);

    let received = processor.received();
    let traceparent = received[0]
        .traceparent
        .as_deref()
        .expect("the Processor got a traceparent");
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", hex(&call.span_id)),
        "the Processor's parent is the client span"
    );
    service.stop().await;
    telemetry.shutdown().await;
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for b in &mut bytes {
        *b = rand::random();
    }
    bytes[0] |= 1;
    bytes
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_metrics_move_by_known_amounts() {
    let redis = TestRedis::start().await;
    let config = common::service::config(&redis.vars());
    let store = common::service::redis_store(&config);
    // An entry held by an instance that is gone: it will be taken over (a rescue).
    store.ensure_queue().await.unwrap();
    let orphan = TaskRecord::new_pending(TaskId::new_v4(), "orphan.mp4", &now_timestamp());
    store.create(NewTask::now(&orphan, &[])).await.unwrap();
    assert_eq!(
        store
            .read_new("gone-instance", 1, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );

    let processor = FakeProcessor::start(Reply::Complete, Some(store.clone())).await;
    let mut vars = redis.vars();
    vars.push(processor.addr_var());
    vars.push(("TASK_RATE_LIMIT_PER_CLIENT".into(), "1".into()));
    vars.push(("TASK_RATE_LIMIT_PER_CLIENT_BURST".into(), "20".into()));
    vars.push(("TASK_DISPATCH_VISIBILITY_TIMEOUT".into(), "1s".into()));
    let service = TestService::start(&vars).await;
    let mut client = service.client().await;
    let before = scrape(service.metrics_addr).await;

    for _ in 0..3 {
        client
            .create_task(CreateTaskRequest {
                original_file_key: "a.mp4".into(),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let after = scrape(service.metrics_addr).await;
    assert_eq!(delta(&before, &after, "task_tasks_created_total"), 3.0);
    assert_eq!(
        delta(
            &before,
            &after,
            r#"task_rpc_requests_total{method="/task.Task/CreateTask",code="OK"}"#
        ),
        3.0
    );

    // Spend the burst until one request is refused.
    let before = scrape(service.metrics_addr).await;
    let mut created = 0.0;
    loop {
        match client
            .create_task(CreateTaskRequest {
                original_file_key: "a.mp4".into(),
                request_id: String::new(),
            })
            .await
        {
            Ok(_) => created += 1.0,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                break;
            }
        }
    }
    let after = scrape(service.metrics_addr).await;
    assert_eq!(
        delta(
            &before,
            &after,
            r#"task_rate_limited_total{scope="per_client"}"#
        ),
        1.0
    );
    assert_eq!(delta(&before, &after, "task_tasks_created_total"), created);
    assert_eq!(
        delta(
            &before,
            &after,
            r#"task_rpc_requests_total{method="/task.Task/CreateTask",code="RESOURCE_EXHAUSTED"}"#
        ),
        1.0
    );

    // The orphan is taken over once, and completes.
    let after = eventually(
        Duration::from_secs(15),
        "the orphan to be rescued and completed",
        || async {
            let now = scrape(service.metrics_addr).await;
            (now.get("task_dispatch_rescues_total") == Some(&1.0)
                && processor.calls_for(&orphan.task_id) == 1)
                .then_some(now)
        },
    )
    .await;
    assert_eq!(after.get("task_circuit_breaker_state"), Some(&0.0));
    assert!(after.contains_key("task_processor_calls_in_flight"));
    assert!(after.contains_key("task_queue_depth"));
    assert!(after.contains_key("task_queue_oldest_age_seconds"));
    service.stop().await;
}
