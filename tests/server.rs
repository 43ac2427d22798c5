//! The server's tower stack against a real server on 127.0.0.1:0: rate limits, deadlines, load
//! shedding, panics, request ids, health, reflection and graceful shutdown.

mod common;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis, TestService,
    calls::{create_request, vars},
    eventually,
    metrics::wait_for_metric,
    raw_grpc,
};
use prost::Message;
use task_service::{
    api::TaskApi,
    proto::task::{
        CancelTaskRequest, CreateTaskRequest, CreateTaskResponse, GetTaskStatusRequest,
        GetTaskStatusResponse, ListTasksRequest, ListTasksResponse, WatchTaskRequest,
        task_client::TaskClient, task_server::Task,
    },
};
use tonic::{Code, Request, Response, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long the slow test handler takes: far longer than any deadline the tests set.
const SLOW: Duration = Duration::from_secs(5);

/// The real API, with two test handlers: `slow.mp4` takes [`SLOW`], `panic.mp4` panics.
struct WithTestHandlers(TaskApi);

#[tonic::async_trait]
impl Task for WithTestHandlers {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        match request.get_ref().original_file_key.as_str() {
            "slow.mp4" => tokio::time::sleep(SLOW).await,
            "panic.mp4" => panic!("a test handler panics"),
            _ => {}
        }
        self.0.create_task(request).await
    }

    async fn get_task_status(
        &self,
        request: Request<GetTaskStatusRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        self.0.get_task_status(request).await
    }

    type WatchTaskStream = <TaskApi as Task>::WatchTaskStream;

    async fn watch_task(
        &self,
        request: Request<WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        self.0.watch_task(request).await
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<GetTaskStatusResponse>, Status> {
        self.0.cancel_task(request).await
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        self.0.list_tasks(request).await
    }
}

async fn start(
    redis: &TestRedis,
    processor: &FakeProcessor,
    extra: &[(&str, &str)],
) -> TestService {
    let config = common::service::config(&vars(redis, processor, extra));
    let store = common::service::redis_store(&config);
    TestService::start_wrapped(config, store, WithTestHandlers).await
}

/// A client whose connections come from `local` (a loopback address of its own).
async fn client_from(addr: std::net::SocketAddr, local: &str) -> TaskClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(local.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap();
    TaskClient::new(channel)
}

#[tokio::test]
async fn a_burst_beyond_one_clients_limit_is_refused_while_another_client_is_served() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(
        &redis,
        &processor,
        &[
            ("TASK_RATE_LIMIT_PER_CLIENT", "5"),
            ("TASK_RATE_LIMIT_PER_CLIENT_BURST", "5"),
        ],
    )
    .await;
    let mut noisy = client_from(service.addr, "127.0.0.2").await;
    let mut quiet = client_from(service.addr, "127.0.0.3").await;
    let mut refused = Vec::new();
    for _ in 0..20 {
        if let Err(status) = noisy.create_task(create_request("a.mp4")).await {
            refused.push(status);
        }
    }
    assert!(
        refused.len() >= 14,
        "only {} of 20 refused beyond a burst of 5",
        refused.len()
    );
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("TASK_RATE_LIMIT_PER_CLIENT"),
            "{}",
            status.message()
        );
        let seconds: u64 = status
            .metadata()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(seconds >= 1);
        assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
    }
    for _ in 0..5 {
        quiet
            .create_task(create_request("a.mp4"))
            .await
            .expect("the other client is unaffected");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_slow_handler_answers_deadline_exceeded_at_the_clients_deadline() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[]).await;
    // Raw HTTP/2, so that no client-side timer races the server's answer: what is checked is
    // the server's own DEADLINE_EXCEEDED, from the client's grpc-timeout.
    let connection_errors = Arc::new(Mutex::new(Vec::new()));
    let mut sender = raw_grpc::connect(service.addr, connection_errors.clone()).await;
    let message = create_request("slow.mp4").into_inner().encode_to_vec();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = raw_grpc::exchange(
            &mut sender,
            service.addr,
            "/task.Task/CreateTask",
            &[("grpc-timeout", "50m")],
            &[raw_grpc::well_framed(&message)],
        )
        .await
        .expect("a proper gRPC answer");
        let took = started.elapsed();
        assert_eq!(answer.code, Code::DeadlineExceeded, "{answer:?}");
        assert!(answer.message.contains("deadline"), "{}", answer.message);
        assert!(
            took >= Duration::from_millis(40) && took < SLOW,
            "took {took:?}: not cut at the 50 ms deadline"
        );
    }
    assert!(connection_errors.lock().unwrap().is_empty());
    service.stop().await;
}

#[tokio::test]
async fn without_a_client_deadline_the_server_default_applies() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[("TASK_REQUEST_TIMEOUT", "200ms")]).await;
    let mut client = service.client().await;
    let started = Instant::now();
    let status = client
        .create_task(create_request("slow.mp4"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < SLOW,
        "took {took:?}: not cut at the 200 ms default"
    );
    service.stop().await;
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_are_shed_at_once() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[("TASK_MAX_IN_FLIGHT", "3")]).await;
    let client = service.client().await;
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.create_task(create_request("slow.mp4")).await })
        })
        .collect();
    wait_for_metric(
        service.metrics_addr,
        "task_requests_in_flight",
        Duration::from_secs(5),
        |n| n == 3.0,
    )
    .await;
    for _ in 0..5 {
        let status = client
            .clone()
            .create_task(create_request("a.mp4"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("TASK_MAX_IN_FLIGHT"),
            "{}",
            status.message()
        );
    }
    // Refused while the slots were still held: shed, not queued behind them.
    assert!(
        slow.iter().all(|call| !call.is_finished()),
        "the admitted requests were still running"
    );
    for call in slow {
        call.await.unwrap().expect("the admitted requests complete");
    }
    client
        .clone()
        .create_task(create_request("a.mp4"))
        .await
        .expect("admitted again once slots free up");
    service.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_server_keeps_serving() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[]).await;
    let mut client = service.client().await;
    let status = client
        .create_task(create_request("panic.mp4"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.metadata().get("x-request-id").is_some(),
        "the id to look the panic up by"
    );
    client
        .create_task(create_request("a.mp4"))
        .await
        .expect("the same connection still works");
    service.stop().await;
}

#[tokio::test]
async fn request_ids_are_made_or_kept_and_sent_back() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[]).await;
    let mut client = service.client().await;
    let response = client.create_task(create_request("a.mp4")).await.unwrap();
    let made = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");

    let mut request = create_request("a.mp4");
    request
        .metadata_mut()
        .insert("x-request-id", "gateway-42".parse().unwrap());
    let response = client.create_task(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "gateway-42"
    );

    let mut request = Request::new(GetTaskStatusRequest {
        task_id: "bad".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "gateway-43".parse().unwrap());
    let status = client.get_task_status(request).await.unwrap_err();
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "gateway-43",
        "on errors too"
    );
    service.stop().await;
}

#[tokio::test]
async fn health_follows_redis() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(
        &redis,
        &processor,
        &[
            ("TASK_HEALTH_INTERVAL", "200ms"),
            ("TASK_REDIS_TIMEOUT", "300ms"),
        ],
    )
    .await;
    let channel = Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    let status_of = |service: &'static str| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .ok()
                .map(|r| r.into_inner().status())
        }
    };
    for name in ["", "task.Task"] {
        eventually(Duration::from_secs(5), "SERVING", || async {
            (status_of(name).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await;
    }
    redis.pause().await;
    for name in ["", "task.Task"] {
        eventually(
            Duration::from_secs(5),
            "NOT_SERVING while Redis is paused",
            || async { (status_of(name).await == Some(ServingStatus::NotServing)).then_some(()) },
        )
        .await;
    }
    redis.unpause().await;
    for name in ["", "task.Task"] {
        eventually(Duration::from_secs(10), "SERVING again", || async {
            (status_of(name).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await;
    }
    service.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_task_service() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = start(&redis, &processor, &[]).await;
    let channel = Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a list: {answer:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"task.Task".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    // Every method of task.Task, the additive ones included.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("task.Task".into())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("not a file descriptor: {answer:?}");
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            <prost_types::FileDescriptorProto as prost::Message>::decode(&bytes[..]).unwrap()
        })
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "Task")
        .flat_map(|service| service.method)
        .map(|method| method.name().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "CreateTask",
            "GetTaskStatus",
            "WatchTask",
            "CancelTask",
            "ListTasks"
        ]
    );
    service.stop().await;
}

#[tokio::test]
async fn sigterm_completes_requests_in_flight_refuses_new_connections_and_exits_zero() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let mut vars = redis.vars();
    vars.push(processor.addr_var());
    vars.push(("TASK_REDIS_TIMEOUT".into(), "10s".into()));
    vars.push(("TASK_SHUTDOWN_GRACE".into(), "10s".into()));
    let instance = ServiceProcess::start(&vars).await;
    let addr = instance.addr;
    let client = common::service::client(addr).await;
    let task = client
        .clone()
        .create_task(create_request("a.mp4"))
        .await
        .unwrap()
        .into_inner()
        .task_id;

    // Requests wait on a frozen Redis: they are in flight.
    let metrics_addr = instance.metrics_addr;
    redis.pause().await;
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let mut client = client.clone();
            let task = task.clone();
            tokio::spawn(async move {
                client
                    .get_task_status(GetTaskStatusRequest { task_id: task })
                    .await
            })
        })
        .collect();
    wait_for_metric(
        metrics_addr,
        "task_requests_in_flight",
        Duration::from_secs(5),
        |n| n == 3.0,
    )
    .await;
    let exit = tokio::spawn(instance.terminate());
    eventually(
        Duration::from_secs(5),
        "new connections to be refused",
        || async {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    redis.unpause().await;
    for call in in_flight {
        let status = call
            .await
            .unwrap()
            .expect("a request in flight at SIGTERM completes");
        assert_eq!(status.into_inner().task_id, task);
    }
    assert!(exit.await.unwrap().success(), "exit code 0");
}
