//! Resilient dispatch against a real Redis and a fake Processor the test controls: retries,
//! the circuit breaker, the concurrency cap, takeovers, stalls, caps and graceful shutdown.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bb8_redis::redis::AsyncCommands;
use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis, TestService,
    calls::{create, final_status, status, vars},
    eventually,
    metrics::wait_for_metric,
};
use task_service::{proto::task::CreateTaskRequest, task::TaskId};
use tonic::Code;

async fn store_for(redis: &TestRedis) -> task_service::store::Store {
    common::service::redis_store(&common::service::config(&redis.vars()))
}

#[tokio::test]
async fn unavailable_three_times_then_ok_completes_with_exactly_four_calls() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Complete, Some(store_for(&redis).await)).await;
    processor.script([
        Reply::Fail(Code::Unavailable, "warming up"),
        Reply::Fail(Code::Unavailable, "warming up"),
        Reply::Fail(Code::Unavailable, "warming up"),
    ]);
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_PROCESSOR_RETRY_ATTEMPTS", "4")],
    ))
    .await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    let done = final_status(&client, &task, Duration::from_secs(10)).await;
    assert_eq!(done.status, "COMPLETED");
    assert_eq!(processor.calls(), 4);
    // Each attempt carried the per-attempt deadline.
    assert!(
        processor
            .received()
            .iter()
            .all(|r| r.grpc_timeout.is_some())
    );
    service.stop().await;
}

#[tokio::test]
async fn a_processor_that_rejects_the_task_fails_it_with_its_words_after_one_call() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::Fail(Code::InvalidArgument, "unsupported container format"),
        None,
    )
    .await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    let done = final_status(&client, &task, Duration::from_secs(10)).await;
    assert_eq!(done.status, "FAILED");
    assert!(
        done.error_message.contains("InvalidArgument")
            && done.error_message.contains("unsupported container format"),
        "{}",
        done.error_message
    );
    // FAILED and the entry's acknowledgement are one atomic write: nothing is left to deliver.
    assert_eq!(processor.calls(), 1);
    service.stop().await;
}

#[tokio::test]
async fn a_down_processor_opens_the_circuit_and_queued_tasks_complete_when_it_returns() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::Fail(Code::Unavailable, "down"),
        Some(store_for(&redis).await),
    )
    .await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[
            ("TASK_BREAKER_CONSECUTIVE_FAILURES", "3"),
            ("TASK_BREAKER_OPEN_FOR", "500ms"),
        ],
    ))
    .await;
    let mut client = service.client().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(create(&mut client, "a.mp4").await);
    }
    // Once the circuit is open, only the half-open probes (one per 500 ms) reach the Processor.
    wait_for_metric(
        service.metrics_addr,
        "task_circuit_breaker_state",
        Duration::from_secs(5),
        |state| state == 2.0,
    )
    .await;
    let before = processor.calls();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = processor.calls() - before;
    assert!(
        during <= 6,
        "{during} calls reached a down Processor in 2 s with the circuit open"
    );
    for task in &tasks {
        assert_eq!(
            status(&mut client, task).await.status,
            "PENDING",
            "a short outage fails no task"
        );
    }

    processor.set_default(Reply::Complete);
    for task in &tasks {
        assert_eq!(
            final_status(&client, task, Duration::from_secs(15))
                .await
                .status,
            "COMPLETED"
        );
    }
    service.stop().await;
}

#[tokio::test]
async fn two_hundred_tasks_never_exceed_a_concurrency_cap_of_four() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_millis(10), Box::new(Reply::Complete)),
        Some(store_for(&redis).await),
    )
    .await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_PROCESSOR_CONCURRENCY", "4")],
    ))
    .await;
    let mut client = service.client().await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks.push(create(&mut client, "a.mp4").await);
    }
    for task in &tasks {
        assert_eq!(
            final_status(&client, task, Duration::from_secs(60))
                .await
                .status,
            "COMPLETED"
        );
    }
    assert_eq!(
        processor.max_in_flight(),
        4,
        "the cap is reached and never exceeded"
    );
    assert_eq!(processor.calls(), 200);
    service.stop().await;
}

#[tokio::test]
async fn an_instance_killed_mid_call_leaves_its_entry_to_the_next_one() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Complete, Some(store_for(&redis).await)).await;
    processor.script([Reply::After(
        Duration::from_secs(60),
        Box::new(Reply::Accept),
    )]);
    let vars = vars(&redis, &processor, &[("TASK_PROCESSOR_TIMEOUT", "120s")]);
    let first = ServiceProcess::start(&vars).await;
    let mut client = common::service::client(first.addr).await;
    let task = create(&mut client, "a.mp4").await;
    eventually(
        Duration::from_secs(10),
        "the call to be in flight",
        || async { (processor.calls() == 1).then_some(()) },
    )
    .await;
    first.kill().await;

    let second = ServiceProcess::start(&vars).await;
    let client = common::service::client(second.addr).await;
    let done = final_status(&client, &task, Duration::from_secs(20)).await;
    assert_eq!(done.status, "COMPLETED");
    assert_eq!(
        processor.calls_for(&task),
        2,
        "delivered again exactly once"
    );
    assert!(second.terminate().await.success());
}

#[tokio::test]
async fn an_entry_that_keeps_losing_its_instance_ends_failed_as_poison() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_secs(60), Box::new(Reply::Accept)),
        None,
    )
    .await;
    let vars = vars(
        &redis,
        &processor,
        &[
            ("TASK_PROCESSOR_TIMEOUT", "120s"),
            ("TASK_DISPATCH_MAX_DELIVERIES", "2"),
        ],
    );
    let mut task = None;
    for round in 1..=2 {
        let instance = ServiceProcess::start(&vars).await;
        let mut client = common::service::client(instance.addr).await;
        if task.is_none() {
            task = Some(create(&mut client, "a.mp4").await);
        }
        eventually(
            Duration::from_secs(20),
            "the call to be in flight",
            || async { (processor.calls() == round).then_some(()) },
        )
        .await;
        instance.kill().await;
    }
    let task = task.unwrap();
    let last = ServiceProcess::start(&vars).await;
    let client = common::service::client(last.addr).await;
    let done = final_status(&client, &task, Duration::from_secs(20)).await;
    assert_eq!(done.status, "FAILED");
    assert!(
        done.error_message.contains("abandoned after 2 deliveries"),
        "{}",
        done.error_message
    );
    assert_eq!(
        processor.calls(),
        2,
        "the poison entry is not handed out a third time"
    );
    assert!(last.terminate().await.success());
}

#[tokio::test]
async fn an_accepted_task_with_no_update_ends_failed_as_stalled() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service =
        TestService::start(&vars(&redis, &processor, &[("TASK_STALL_TIMEOUT", "1s")])).await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    let done = final_status(&client, &task, Duration::from_secs(10)).await;
    assert_eq!(done.status, "FAILED");
    assert!(
        done.error_message
            .starts_with("stalled: no update from the processor"),
        "{}",
        done.error_message
    );
    service.stop().await;
}

#[tokio::test]
async fn a_processor_that_stays_down_fails_tasks_after_the_maximum_age() {
    let redis = TestRedis::start().await;
    let processor =
        FakeProcessor::start(Reply::Fail(Code::Unavailable, "down for maintenance"), None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_DISPATCH_MAX_AGE", "2s")],
    ))
    .await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    let done = final_status(&client, &task, Duration::from_secs(10)).await;
    assert_eq!(done.status, "FAILED");
    assert!(
        done.error_message
            .contains("within 2s (TASK_DISPATCH_MAX_AGE)"),
        "{}",
        done.error_message
    );
    assert!(
        done.error_message.contains("down for maintenance"),
        "{}",
        done.error_message
    );
    service.stop().await;
}

#[tokio::test]
async fn attempts_run_out_with_a_message_that_says_so() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Fail(Code::Unavailable, "no route"), None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[
            ("TASK_DISPATCH_MAX_ATTEMPTS", "6"),
            ("TASK_PROCESSOR_RETRY_ATTEMPTS", "3"),
            ("TASK_BREAKER_CONSECUTIVE_FAILURES", "100"),
        ],
    ))
    .await;
    let mut client = service.client().await;
    let task = create(&mut client, "a.mp4").await;
    let done = final_status(&client, &task, Duration::from_secs(10)).await;
    assert_eq!(done.status, "FAILED");
    assert!(
        done.error_message
            .starts_with("the processor was unreachable after 6 attempts"),
        "{}",
        done.error_message
    );
    assert_eq!(processor.calls(), 6);
    service.stop().await;
}

#[tokio::test]
async fn a_redis_restart_mid_run_loses_no_accepted_task() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Complete, Some(store_for(&redis).await)).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let client = service.client().await;
    let created = Arc::new(AtomicUsize::new(0));
    let creator = {
        let mut client = client.clone();
        let created = created.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for _ in 0..150 {
                match client
                    .create_task(CreateTaskRequest {
                        original_file_key: "a.mp4".into(),
                        request_id: String::new(),
                    })
                    .await
                {
                    Ok(response) => {
                        accepted.push(response.into_inner().task_id);
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::Internal, "{status:?}");
                        refused += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, refused)
        })
    };
    eventually(
        Duration::from_secs(10),
        "tasks created before the restart",
        || async { (created.load(Ordering::Relaxed) >= 20).then_some(()) },
    )
    .await;
    redis.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;
    let (accepted, refused) = creator.await.unwrap();
    assert!(refused > 0, "the outage was seen");
    for task in &accepted {
        let done = final_status(&client, task, Duration::from_secs(30)).await;
        assert_eq!(done.status, "COMPLETED", "{}", done.error_message);
    }
    redis.wait_queue_drained().await;
    service.stop().await;
}

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish_and_exits_zero() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_millis(1500), Box::new(Reply::Complete)),
        Some(store_for(&redis).await),
    )
    .await;
    let instance =
        ServiceProcess::start(&vars(&redis, &processor, &[("TASK_SHUTDOWN_GRACE", "10s")])).await;
    let mut client = common::service::client(instance.addr).await;
    let task = create(&mut client, "a.mp4").await;
    eventually(
        Duration::from_secs(10),
        "the call to be in flight",
        || async { (processor.calls() == 1).then_some(()) },
    )
    .await;
    assert!(instance.terminate().await.success(), "exit 0");
    let store = store_for(&redis).await;
    let record = store
        .read(TaskId::parse(&task).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status.as_str(), "COMPLETED");
    let mut conn = redis.connection().await;
    assert_eq!(
        conn.xlen::<_, u64>("task-service:dispatch").await.unwrap(),
        0,
        "acknowledged before exit"
    );
}

#[tokio::test]
async fn at_shutdown_an_entry_waiting_for_the_circuit_is_given_back_at_once() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::Fail(Code::Unavailable, "down"),
        Some(store_for(&redis).await),
    )
    .await;
    let vars = vars(
        &redis,
        &processor,
        &[
            ("TASK_BREAKER_CONSECUTIVE_FAILURES", "1"),
            ("TASK_BREAKER_OPEN_FOR", "60s"),
            ("TASK_DISPATCH_VISIBILITY_TIMEOUT", "60s"),
        ],
    );
    let first = ServiceProcess::start(&vars).await;
    let mut client = common::service::client(first.addr).await;
    let task = create(&mut client, "a.mp4").await;
    eventually(Duration::from_secs(10), "the circuit to open", || async {
        (processor.calls() >= 1).then_some(())
    })
    .await;
    assert!(first.terminate().await.success());

    processor.set_default(Reply::Complete);
    let second = ServiceProcess::start(&vars).await;
    let client = common::service::client(second.addr).await;
    // Far sooner than the 60 s visibility timeout: the entry was given back.
    let done = final_status(&client, &task, Duration::from_secs(15)).await;
    assert_eq!(done.status, "COMPLETED");
    assert!(second.terminate().await.success());
}

#[tokio::test]
async fn the_callers_trace_context_reaches_the_processor() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = tonic::Request::new(CreateTaskRequest {
        original_file_key: "a.mp4".into(),
        request_id: String::new(),
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    client.create_task(request).await.unwrap();
    eventually(Duration::from_secs(10), "the call", || async {
        (processor.calls() == 1).then_some(())
    })
    .await;
    // This test records no spans: the caller's context is carried through the queue unchanged.
    assert_eq!(
        processor.received()[0].traceparent.as_deref(),
        Some(traceparent)
    );
    service.stop().await;
}
