//! The RPCs beyond the contract's two, against a real Redis and real gRPC (two instances where
//! the semantics say "any replica"): idempotent CreateTask, GetTaskStatus's fields 5–7,
//! CancelTask in every state, WatchTask with and without Redis's notifications, and ListTasks.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use bb8_redis::redis::{self, AsyncCommands};
use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis, TestService,
    calls::{Watched, create, follow, open_watch, status, vars, wait_for_status, watch},
    eventually, storage_with_video,
};
use task_service::{
    processor::reference::ReferenceProcessor,
    proto::task::{
        CancelTaskRequest, CreateTaskRequest, GetTaskStatusResponse, ListTasksRequest,
        task_client::TaskClient,
    },
    validate::StorageRoot,
};
use tonic::{Code, transport::Channel};

const LONG: Duration = Duration::from_secs(20);

fn create_with(key: &str, request_id: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        original_file_key: key.into(),
        request_id: request_id.into(),
    }
}

async fn cancel(
    client: &TaskClient<Channel>,
    task_id: &str,
    reason: &str,
) -> Result<GetTaskStatusResponse, tonic::Status> {
    client
        .clone()
        .cancel_task(CancelTaskRequest {
            task_id: task_id.into(),
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn task_keys(redis: &TestRedis) -> Vec<String> {
    redis.connection().await.keys("task:*").await.unwrap()
}

/// Waits until the Processor has been called for `task_id`.
async fn called(processor: &FakeProcessor, task_id: &str) {
    eventually(
        LONG,
        &format!("the Processor to be called for {task_id}"),
        || {
            let called = processor.calls_for(task_id) > 0;
            async move { called.then_some(()) }
        },
    )
    .await;
}

/// Opens a watch of `task_id`, checks that its first message is `first`, and follows the rest
/// in the background.
async fn watching(
    client: &TaskClient<Channel>,
    task_id: &str,
    first: &str,
) -> tokio::task::JoinHandle<Watched> {
    let mut stream = open_watch(client, task_id).await.unwrap();
    let current = stream.message().await.unwrap().expect("a first message");
    assert_eq!(current.status, first);
    tokio::spawn(follow(stream, vec![current], LONG))
}

async fn stream_length(redis: &TestRedis) -> u64 {
    redis
        .connection()
        .await
        .xlen("task-service:dispatch")
        .await
        .unwrap()
}

// --- CreateTask with a request_id -------------------------------------------------------------

#[tokio::test]
async fn twenty_identical_creates_on_two_replicas_make_one_task() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let env = vars(&redis, &processor, &[]);
    let (a, b) = (
        TestService::start(&env).await,
        TestService::start(&env).await,
    );
    let clients = [a.client().await, b.client().await];
    let calls = (0..20).map(|i| {
        let mut client = clients[i % 2].clone();
        async move {
            client
                .create_task(create_with("a.mp4", "upload-7"))
                .await
                .unwrap()
                .into_inner()
                .task_id
        }
    });
    let answers: HashSet<String> = futures::future::join_all(calls).await.into_iter().collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let task = answers.into_iter().next().unwrap();
    assert_eq!(task_keys(&redis).await, [format!("task:{task}")]);
    called(&processor, &task).await;
    redis.wait_accepted(&task).await;
    assert_eq!(processor.calls(), 1, "one task, delivered once");

    // The same request id for another file: a conflict naming the task it belongs to.
    let conflict = clients[1]
        .clone()
        .create_task(create_with("b.mp4", "upload-7"))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert!(conflict.message().contains(&task), "{}", conflict.message());
    // Another request id: another task.
    let other = clients[0]
        .clone()
        .create_task(create_with("a.mp4", "upload-8"))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    assert_ne!(other, task);
    // The record lives beside the task, not under task:*, and expires with the window.
    let ttl: i64 = redis
        .connection()
        .await
        .ttl("task-service:request:upload-7")
        .await
        .unwrap();
    assert!((86_000..=86_400).contains(&ttl), "TTL {ttl}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_gets_the_first_calls_task() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service =
        TestService::start(&vars(&redis, &processor, &[("TASK_REDIS_TIMEOUT", "5s")])).await;
    let client = service.client().await;
    // Redis freezes: the first call's script waits in its socket; the caller gives up.
    redis.pause().await;
    let first = tokio::time::timeout(
        Duration::from_millis(500),
        client.clone().create_task(create_with("a.mp4", "lost-1")),
    )
    .await;
    assert!(first.is_err(), "the first call's answer is lost");
    redis.unpause().await;
    let retry = client
        .clone()
        .create_task(create_with("a.mp4", "lost-1"))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    assert_eq!(
        task_keys(&redis).await,
        [format!("task:{retry}")],
        "the retry answers the task the lost call created"
    );
    service.stop().await;
}

#[tokio::test]
async fn bad_request_ids_are_invalid_argument_and_fields_5_to_7_are_filled() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    for bad in ["a b".to_owned(), "x".repeat(129), "é".into(), "a/b".into()] {
        let refused = client
            .create_task(create_with("a.mp4", &bad))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            refused.message().contains("request_id"),
            "{}",
            refused.message()
        );
    }
    assert!(task_keys(&redis).await.is_empty());

    let task = create(&mut client, "dir/a.mp4").await;
    let found = status(&mut client, &task).await;
    assert_eq!(found.original_file_key, "dir/a.mp4");
    assert_eq!(found.created_at.len(), 20, "{}", found.created_at);
    assert!(found.created_at.ends_with('Z'));
    assert_eq!(found.updated_at, found.created_at);
    chrono::DateTime::parse_from_rfc3339(&found.created_at).unwrap();
    service.stop().await;
}

// --- CancelTask -------------------------------------------------------------------------------

#[tokio::test]
async fn cancel_of_a_queued_task_fails_it_and_it_is_never_delivered() {
    let redis = TestRedis::start().await;
    // Every call fails for a while: the task waits for a retry.
    let processor = FakeProcessor::start(Reply::Fail(Code::Unavailable, "busy"), None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    called(&processor, &task).await;
    let answer = cancel(&client, &task, "wrong file").await.unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.error_message.as_str()),
        ("FAILED", "cancelled: wrong file")
    );
    assert_eq!(answer.task_id, task);
    assert_eq!(answer.original_file_key, "a.mp4");
    assert_eq!(stream_length(&redis).await, 0, "its entry left the queue");
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("task-service:dispatch")
        .arg("dispatchers")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "nothing left to deliver");

    // No reason: "cancelled". A final task: FAILED_PRECONDITION naming its state.
    let second = create(&mut client, "a.mp4").await;
    assert_eq!(
        cancel(&client, &second, "").await.unwrap().error_message,
        "cancelled"
    );
    let again = cancel(&client, &second, "").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("FAILED"), "{}", again.message());
    let unknown = cancel(&client, &uuid::Uuid::new_v4().to_string(), "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let invalid = cancel(&client, "nope", "").await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let control = cancel(&client, &second, "a\u{7}b").await.unwrap_err();
    assert_eq!(control.code(), Code::InvalidArgument);
    service.stop().await;
}

#[tokio::test]
async fn cancel_reaches_a_call_in_flight_on_the_other_replica() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_secs(60), Box::new(Reply::Accept)),
        None,
    )
    .await;
    let env = vars(
        &redis,
        &processor,
        &[
            ("TASK_PROCESSOR_TIMEOUT", "90s"),
            ("TASK_SHUTDOWN_GRACE", "1s"),
        ],
    );
    // Only `delivering` runs while the call starts, so the call is in flight on it.
    let delivering = TestService::start(&env).await;
    let task = create(&mut delivering.client().await, "a.mp4").await;
    called(&processor, &task).await;
    let other = TestService::start(&env).await;
    let answer = cancel(&other.client().await, &task, "operator")
        .await
        .unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.error_message.as_str()),
        ("FAILED", "cancelled: operator")
    );
    eventually(LONG, "the Processor to see its call cancelled", || {
        let abandoned = processor.abandoned();
        let task = task.clone();
        async move { abandoned.contains(&task).then_some(()) }
    })
    .await;
    assert_eq!(processor.calls_for(&task), 1);
    assert_eq!(stream_length(&redis).await, 0);
    let mut client = other.client().await;
    assert_eq!(
        status(&mut client, &task).await.error_message,
        "cancelled: operator"
    );
    delivering.stop().await;
    other.stop().await;
}

/// Cancellations were missed (the notification connection lost) while a call was in flight
/// whose task the Processor had just made COMPLETED: that task was not cancelled, so its call
/// goes on, its answer acknowledges the entry, and nothing asks the Processor to cancel it.
#[tokio::test]
async fn a_task_the_processor_finished_during_its_call_is_not_taken_for_a_cancelled_one() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_secs(4), Box::new(Reply::Accept)),
        None,
    )
    .await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_PROCESSOR_TIMEOUT", "15s")],
    ))
    .await;
    let mut client = service.client().await;
    let mut conn = redis.connection().await;
    let task = create(&mut client, "a.mp4").await;
    called(&processor, &task).await;
    // The Processor writes its result before it answers the call.
    let _: () = conn
        .hset_multiple(
            format!("task:{task}"),
            &[("status", "COMPLETED"), ("result_file_key", "done.mp4")],
        )
        .await
        .unwrap();
    // The service's pub/sub connection is cut: it looks again at every task it holds.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(killed >= 1, "no pub/sub connection to cut");
    redis.wait_accepted(&task).await;
    assert_eq!(stream_length(&redis).await, 0, "the entry is acknowledged");
    assert!(processor.cancels().is_empty(), "{:?}", processor.cancels());
    assert!(processor.abandoned().is_empty(), "the call was not cut");
    assert_eq!(processor.calls_for(&task), 1);
    let seen = status(&mut client, &task).await;
    assert_eq!(
        (seen.status.as_str(), seen.result_file_key.as_str()),
        ("COMPLETED", "done.mp4")
    );
    service.stop().await;
}

#[tokio::test]
async fn cancel_of_an_accepted_task_asks_the_processor() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let mut conn = redis.connection().await;

    // Accepted and PROCESSING: CancelVideo OK → FAILED.
    let task = create(&mut client, "a.mp4").await;
    redis.wait_accepted(&task).await;
    let _: () = conn
        .hset(format!("task:{task}"), "status", "PROCESSING")
        .await
        .unwrap();
    let answer = cancel(&client, &task, "too long").await.unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.error_message.as_str()),
        ("FAILED", "cancelled: too long")
    );
    assert_eq!(processor.cancels(), std::slice::from_ref(&task));

    // A Processor that cannot cancel: FAILED_PRECONDITION, the task unchanged.
    processor.set_cancel_reply(Some((Code::Unimplemented, "no")));
    let task = create(&mut client, "a.mp4").await;
    redis.wait_accepted(&task).await;
    let refused = cancel(&client, &task, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "the processor cannot cancel a task it has accepted"
    );
    assert_eq!(status(&mut client, &task).await.status, "PENDING");

    // An unreachable Processor: UNAVAILABLE, the task unchanged.
    // (Until its open connection closes, the stopping Processor still answers UNIMPLEMENTED.)
    processor.stop();
    let down = eventually(LONG, "the Processor to be unreachable", || {
        let client = client.clone();
        let task = task.clone();
        async move {
            let refused = cancel(&client, &task, "").await.unwrap_err();
            (refused.code() != Code::FailedPrecondition).then_some(refused)
        }
    })
    .await;
    assert_eq!(down.code(), Code::Unavailable, "{}", down.message());
    assert!(down.message().contains("unchanged"), "{}", down.message());
    assert_eq!(status(&mut client, &task).await.status, "PENDING");
    service.stop().await;
}

#[tokio::test]
async fn cancel_of_a_processing_task_stops_the_reference_processor() {
    let redis = TestRedis::start().await;
    let (storage, key) = storage_with_video();
    let store = common::service::redis_store(&common::service::config(&redis.vars()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let processor_addr = listener.local_addr().unwrap();
    // It answers ProcessVideo when done: the call stays in flight while it works.
    let reference = ReferenceProcessor::new(store, StorageRoot::new(storage.path()))
        .with_work_time(Duration::from_secs(60));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(reference.into_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut env = redis.vars();
    env.extend(
        [
            ("PROCESSOR_GRPC_ADDR", processor_addr.to_string()),
            ("LOCAL_STORAGE_PATH", storage.text()),
            ("TASK_PROCESSOR_TIMEOUT", "90s".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let service = TestService::start(&env).await;
    let mut client = service.client().await;
    let task = create(&mut client, &key).await;
    wait_for_status(&client, &task, "PROCESSING", LONG).await;
    let answer = cancel(&client, &task, "stop").await.unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.error_message.as_str()),
        ("FAILED", "cancelled: stop")
    );
    // Its entry is gone (the call in flight was cut), and the Processor wrote nothing after.
    assert_eq!(stream_length(&redis).await, 0);
    let after = status(&mut client, &task).await;
    assert_eq!(
        (after.status.as_str(), after.error_message.as_str()),
        ("FAILED", "cancelled: stop")
    );
    assert!(!storage.path().join(&task).join("result.mp4").exists());
    service.stop().await;
}

// --- WatchTask --------------------------------------------------------------------------------

/// Watches a task the Processor accepted, writes PROCESSING and COMPLETED 1 ms apart, and checks
/// what the watch sent.
async fn watch_a_quick_processor(service: &TestService, redis: &TestRedis, rounds: usize) {
    let mut client = service.client().await;
    let mut conn = redis.connection().await;
    for _ in 0..rounds {
        let task = create(&mut client, "a.mp4").await;
        redis.wait_accepted(&task).await;
        let following = watching(&client, &task, "PENDING").await;
        let _: () = conn
            .hset(format!("task:{task}"), "status", "PROCESSING")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let _: () = conn
            .hset_multiple(
                format!("task:{task}"),
                &[("status", "COMPLETED"), ("result_file_key", "r.mp4")],
            )
            .await
            .unwrap();
        let seen: Watched = following.await.unwrap();
        assert!(seen.end.is_ok(), "{:?}", seen.end);
        let statuses = seen.statuses();
        assert!(
            statuses == ["PENDING", "PROCESSING", "COMPLETED"]
                || statuses == ["PENDING", "COMPLETED"],
            "{statuses:?}"
        );
        let last = seen.states.last().unwrap();
        assert_eq!(
            (last.task_id.as_str(), last.result_file_key.as_str()),
            (task.as_str(), "r.mp4")
        );
        wait_for_open_watches(service, 0).await;
    }
}

/// Redis's `notify-keyspace-events` setting.
async fn notification_flags(redis: &TestRedis) -> String {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    reply[1].clone()
}

async fn wait_for_open_watches(service: &TestService, n: u32) {
    common::metrics::wait_for_metric(service.metrics_addr, "task_watches_open", LONG, |open| {
        open == f64::from(n)
    })
    .await;
}

#[tokio::test]
async fn watches_woken_by_redis_end_with_completed() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    // No safety net within the test: only notifications can wake the watch.
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_WATCH_RECHECK_INTERVAL", "1h")],
    ))
    .await;
    watch_a_quick_processor(&service, &redis, 10).await;

    // Someone turns notifications off: the service turns them on again and looks again.
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    redis.wait_accepted(&task).await;
    let following = watching(&client, &task, "PENDING").await;
    let _: () = conn
        .hset(format!("task:{task}"), "status", "COMPLETED")
        .await
        .unwrap();
    let seen = following.await.unwrap();
    assert_eq!(seen.statuses(), ["PENDING", "COMPLETED"]);
    let flags = notification_flags(&redis).await;
    assert!(flags.contains('K'), "turned on again: {flags:?}");
    service.stop().await;
}

#[tokio::test]
async fn watches_without_notifications_end_with_completed() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[
            ("TASK_WATCH_NOTIFICATIONS", "off"),
            ("TASK_WATCH_POLL_INTERVAL", "200ms"),
        ],
    ))
    .await;
    watch_a_quick_processor(&service, &redis, 5).await;
    assert_eq!(notification_flags(&redis).await, "", "left as it was");
    service.stop().await;
}

#[tokio::test]
async fn watches_end_not_found_when_the_task_goes_and_are_bounded() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[
            ("TASK_WATCH_MAX_PER_CLIENT", "2"),
            ("TASK_REQUEST_TIMEOUT", "300ms"),
            ("TASK_WATCH_MAX", "2s"),
        ],
    ))
    .await;
    let mut client = service.client().await;
    let unknown = watch(&client, &uuid::Uuid::new_v4().to_string(), LONG).await;
    assert_eq!(unknown.end.unwrap_err().code(), Code::NotFound);
    let invalid = watch(&client, "nope", LONG).await;
    assert_eq!(invalid.end.unwrap_err().code(), Code::InvalidArgument);

    // Deleted mid-watch: NOT_FOUND after the state it had.
    let task = create(&mut client, "a.mp4").await;
    let following = watching(&client, &task, "PENDING").await;
    let _: () = redis
        .connection()
        .await
        .del(format!("task:{task}"))
        .await
        .unwrap();
    let seen = following.await.unwrap();
    assert_eq!(seen.statuses(), ["PENDING"]);
    assert_eq!(seen.end.unwrap_err().code(), Code::NotFound);
    wait_for_open_watches(&service, 0).await;

    // Two watches per client; the third is refused; one ends, and another is admitted.
    let task = create(&mut client, "b.mp4").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(open_watch(&client, &task).await.unwrap());
    }
    wait_for_open_watches(&service, 2).await;
    let third = watch(&client, &task, LONG).await;
    let refused = third.end.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("TASK_WATCH_MAX_PER_CLIENT"),
        "{}",
        refused.message()
    );
    drop(open.pop());
    wait_for_open_watches(&service, 1).await;

    // Not cut by TASK_REQUEST_TIMEOUT (300 ms), but by TASK_WATCH_MAX (2 s).
    let started = std::time::Instant::now();
    let bounded = watch(&client, &task, LONG).await;
    assert_eq!(bounded.statuses(), ["PENDING"]);
    assert_eq!(bounded.end.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    drop(open);
    service.stop().await;
}

#[tokio::test]
async fn sigterm_ends_open_watches_with_unavailable() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let instance = ServiceProcess::start(&vars(&redis, &processor, &[])).await;
    let mut client = common::service::client(instance.addr).await;
    let task = create(&mut client, "a.mp4").await;
    let following: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            let task = task.clone();
            tokio::spawn(async move { watch(&client, &task, LONG).await })
        })
        .collect();
    common::metrics::wait_for_metric(instance.metrics_addr, "task_watches_open", LONG, |open| {
        open == 3.0
    })
    .await;
    assert!(instance.terminate().await.success());
    for watch in following {
        let seen = watch.await.unwrap();
        assert_eq!(seen.statuses(), ["PENDING"]);
        let end = seen.end.unwrap_err();
        assert_eq!(end.code(), Code::Unavailable, "{}", end.message());
    }
}

// --- ListTasks --------------------------------------------------------------------------------

async fn list_all(
    client: &TaskClient<Channel>,
    status: &str,
    page_size: i32,
    mut between_pages: impl AsyncFnMut(),
) -> Vec<GetTaskStatusResponse> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .clone()
            .list_tasks(ListTasksRequest {
                status: status.into(),
                page_size,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.tasks.len() <= page_size as usize);
        all.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
        between_pages().await;
    }
}

#[tokio::test]
async fn paging_while_tasks_are_created_lists_each_earlier_task_once() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let env = vars(&redis, &processor, &[]);
    let (a, b) = (
        TestService::start(&env).await,
        TestService::start(&env).await,
    );
    let mut client = a.client().await;
    let mut earlier = Vec::new();
    for _ in 0..120 {
        earlier.push(create(&mut client, "a.mp4").await);
    }
    let mut other = b.client().await;
    let listed = list_all(&client, "", 7, async || {
        for _ in 0..3 {
            create(&mut other, "a.mp4").await;
        }
    })
    .await;
    let ids: Vec<&str> = listed.iter().map(|t| t.task_id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no task twice");
    for task in &earlier {
        assert!(unique.contains(task.as_str()), "{task} missing");
    }
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at),
        "newest first"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn listing_filters_by_status_checks_its_arguments_and_skips_gone_tasks() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service =
        TestService::start(&vars(&redis, &processor, &[("TASK_REAPER_INTERVAL", "1h")])).await;
    let mut client = service.client().await;
    let mut conn = redis.connection().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(create(&mut client, "a.mp4").await);
    }
    for task in &tasks[..3] {
        let _: () = conn
            .hset(format!("task:{task}"), "status", "COMPLETED")
            .await
            .unwrap();
    }
    let completed = list_all(&client, "COMPLETED", 2, async || {}).await;
    let completed: HashSet<String> = completed.into_iter().map(|t| t.task_id).collect();
    assert_eq!(completed, tasks[..3].iter().cloned().collect());
    let pending = list_all(&client, "PENDING", 50, async || {}).await;
    assert_eq!(pending.len(), 7);
    assert!(
        pending
            .iter()
            .all(|t| t.status == "PENDING" && t.original_file_key == "a.mp4")
    );

    // Gone (expired or lost): not listed, and its index member trimmed.
    for task in &tasks[5..] {
        let _: () = conn.del(format!("task:{task}")).await.unwrap();
    }
    let _: () = conn.expire(format!("task:{}", tasks[4]), 1).await.unwrap();
    eventually(LONG, "the expired task to go", || {
        let mut conn = conn.clone();
        let key = format!("task:{}", tasks[4]);
        async move { (!conn.exists::<_, bool>(key).await.unwrap()).then_some(()) }
    })
    .await;
    let all = list_all(&client, "", 3, async || {}).await;
    let listed: HashSet<&str> = all.iter().map(|t| t.task_id.as_str()).collect();
    let remaining: HashSet<&str> = tasks[..4].iter().map(String::as_str).collect();
    assert_eq!((listed, all.len()), (remaining, 4));
    let members: u64 = conn.zcard("task-service:tasks").await.unwrap();
    assert_eq!(members, 4, "index members of gone tasks are trimmed");

    // Arguments.
    let cases: HashMap<&str, ListTasksRequest> = HashMap::from([
        (
            "unknown status",
            ListTasksRequest {
                status: "DONE".into(),
                ..Default::default()
            },
        ),
        (
            "negative page size",
            ListTasksRequest {
                page_size: -1,
                ..Default::default()
            },
        ),
        (
            "a token not ours",
            ListTasksRequest {
                page_token: "bm90IG91cnM".into(),
                ..Default::default()
            },
        ),
    ]);
    for (what, request) in cases {
        let refused = client.list_tasks(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}");
    }
    let first = client
        .list_tasks(ListTasksRequest {
            status: "COMPLETED".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let other_filter = client
        .list_tasks(ListTasksRequest {
            status: "PENDING".into(),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(other_filter.code(), Code::InvalidArgument);
    assert!(
        other_filter.message().contains("COMPLETED"),
        "{}",
        other_filter.message()
    );
    let capped = client
        .list_tasks(ListTasksRequest {
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.tasks.len(), 4);
    service.stop().await;
}
