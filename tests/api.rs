//! The Task API against a real Redis and real gRPC: the contract's hash, validation, codes,
//! Redis outages, restarts, fencing and TTLs.

mod common;

use std::time::{Duration, Instant};

use bb8_redis::redis::{self, AsyncCommands};
use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis, TestService,
    calls::{create, status, vars, wait_for_status},
    eventually, storage_with_video,
};
use task_service::{
    processor::reference::ReferenceProcessor,
    proto::task::{CreateTaskRequest, GetTaskStatusRequest},
    validate::StorageRoot,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;

fn is_contract_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn create_writes_exactly_the_contract_hash_and_nothing_else_matches_task_keys() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;

    let task_id = create(&mut client, "abc/original.mp4").await;
    assert_eq!(
        uuid::Uuid::parse_str(&task_id).unwrap().get_version_num(),
        4
    );
    assert_eq!(task_id, task_id.to_lowercase());

    let mut conn = redis.connection().await;
    let hash: std::collections::BTreeMap<String, String> =
        conn.hgetall(format!("task:{task_id}")).await.unwrap();
    let fields: Vec<&str> = hash.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "created_at",
            "error_message",
            "original_file_key",
            "result_file_key",
            "status",
            "task_id",
            "updated_at"
        ]
    );
    assert_eq!(hash["task_id"], task_id);
    assert_eq!(hash["original_file_key"], "abc/original.mp4");
    assert_eq!(hash["result_file_key"], "");
    assert_eq!(hash["error_message"], "");
    assert!(
        ["PENDING"].contains(&hash["status"].as_str()),
        "{}",
        hash["status"]
    );
    assert!(
        is_contract_timestamp(&hash["created_at"]),
        "{}",
        hash["created_at"]
    );
    assert_eq!(hash["created_at"], hash["updated_at"]);
    let ttl: i64 = conn.ttl(format!("task:{task_id}")).await.unwrap();
    assert_eq!(ttl, -1, "no TTL before the task is final");

    // Only task hashes match task:* (the service's own keys live under its prefix).
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("task:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, vec![format!("task:{task_id}")]);
    let all: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        all.iter()
            .all(|k| k.starts_with("task:") || k.starts_with("task-service:")),
        "{all:?}"
    );
    service.stop().await;
}

#[tokio::test]
async fn the_reference_processor_takes_a_task_through_processing_to_completed() {
    let redis = TestRedis::start().await;
    let (storage, key) = storage_with_video();
    let config = common::service::config(&redis.vars());
    let store = common::service::redis_store(&config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let processor_addr = listener.local_addr().unwrap();
    let reference = ReferenceProcessor::new(store.clone(), StorageRoot::new(storage.path()))
        .with_work_time(Duration::from_millis(300));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(reference.into_service())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut vars = redis.vars();
    vars.push(("PROCESSOR_GRPC_ADDR".into(), processor_addr.to_string()));
    vars.push(("LOCAL_STORAGE_PATH".into(), storage.text()));
    let service = TestService::start(&vars).await;
    let mut client = service.client().await;

    let task_id = create(&mut client, &key).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![
        status(&mut client, &task_id).await.status,
    ]));
    let done = eventually(Duration::from_secs(20), "COMPLETED", || {
        let mut client = client.clone();
        let task_id = task_id.clone();
        let seen = seen.clone();
        async move {
            let found = status(&mut client, &task_id).await;
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&found.status) {
                seen.push(found.status.clone());
            }
            (found.status == "COMPLETED").then_some(found)
        }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.ends_with(&["PROCESSING".to_owned(), "COMPLETED".to_owned()]),
        "{seen:?}"
    );
    assert!(
        seen.len() <= 3 && (seen.len() == 2 || seen[0] == "PENDING"),
        "{seen:?}"
    );
    let expected_key = format!("{}/{task_id}/result.mp4", storage.text());
    assert_eq!(done.result_file_key, expected_key);
    assert_eq!(done.error_message, "");
    assert_eq!(std::fs::read(&expected_key).unwrap(), b"not really a video");

    // A missing original ends FAILED with the reason.
    let missing = create(&mut client, "nowhere/gone.mp4").await;
    let failed = wait_for_status(&client, &missing, "FAILED", Duration::from_secs(20)).await;
    assert!(
        failed.error_message.contains("original file not found"),
        "{}",
        failed.error_message
    );
    assert_eq!(failed.result_file_key, "");
    service.stop().await;
}

#[tokio::test]
async fn every_bad_input_is_invalid_argument_and_nothing_is_written() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let long = "a".repeat(1025);
    for (key, hint) in [
        ("", "empty"),
        ("/etc/passwd", "absolute path outside"),
        ("../secret.mp4", ".."),
        ("abc/../../etc/passwd", ".."),
        ("abc\0def.mp4", "control character"),
        ("abc\u{1b}[31m.mp4", "control character"),
        (long.as_str(), "1024"),
    ] {
        let error = client
            .create_task(CreateTaskRequest {
                original_file_key: key.into(),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{key:?}");
        assert!(
            error.message().contains("original_file_key") && error.message().contains(hint),
            "{key:?}: {}",
            error.message()
        );
    }
    for id in [
        "",
        "not-a-uuid",
        "123e4567-e89b-42d3-a456-42661417400Z",
        "../../etc/passwd",
    ] {
        let error = client
            .get_task_status(GetTaskStatusRequest { task_id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{id:?}");
        assert!(error.message().contains("task_id"), "{}", error.message());
    }
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("task:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let queued: u64 = conn.xlen("task-service:dispatch").await.unwrap();
    assert_eq!(queued, 0);
    assert_eq!(processor.calls(), 0);
    service.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let id = uuid::Uuid::new_v4().to_string();
    let error = client
        .get_task_status(GetTaskStatusRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().contains(&id), "{}", error.message());
    service.stop().await;
}

#[tokio::test]
async fn while_redis_is_down_calls_fail_internal_within_the_bound_and_recover_after() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service =
        TestService::start(&vars(&redis, &processor, &[("TASK_REDIS_TIMEOUT", "1s")])).await;
    let mut client = service.client().await;
    let before = create(&mut client, "a.mp4").await;

    for outage in ["stopped", "paused"] {
        match outage {
            "stopped" => redis.stop().await,
            _ => redis.pause().await,
        }
        for _ in 0..3 {
            let started = Instant::now();
            let error = client
                .create_task(CreateTaskRequest {
                    original_file_key: "a.mp4".into(),
                    request_id: String::new(),
                })
                .await
                .unwrap_err();
            let took = started.elapsed();
            assert_eq!(error.code(), Code::Internal, "{outage}: {error:?}");
            assert!(
                error.message().contains("Redis") && error.message().contains("unreachable"),
                "{}",
                error.message()
            );
            assert!(
                took < Duration::from_secs(3),
                "{outage}: took {took:?}, the bound is 1s"
            );

            let started = Instant::now();
            let error = client
                .get_task_status(GetTaskStatusRequest {
                    task_id: before.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(error.code(), Code::Internal, "{outage}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{outage}: took {:?}",
                started.elapsed()
            );
        }
        match outage {
            "stopped" => redis.restart().await,
            _ => redis.unpause().await,
        }
        let after = eventually(Duration::from_secs(15), "CreateTask to work again", || {
            let mut client = client.clone();
            async move {
                client
                    .create_task(CreateTaskRequest {
                        original_file_key: "a.mp4".into(),
                        request_id: String::new(),
                    })
                    .await
                    .ok()
            }
        })
        .await
        .into_inner()
        .task_id;
        assert_eq!(
            status(&mut client, &before).await.task_id,
            before,
            "data survived ({outage})"
        );
        assert_eq!(status(&mut client, &after).await.status, "PENDING");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_task_created_before_a_sigkill_is_dispatched_by_the_next_instance() {
    let redis = TestRedis::start().await;
    // The Processor's address refuses connections until the second instance runs.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let processor_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let mut vars = redis.vars();
    vars.push(("PROCESSOR_GRPC_ADDR".into(), processor_addr.to_string()));
    vars.push(("TASK_DISPATCH_MAX_ATTEMPTS".into(), "100000".into()));

    let first = ServiceProcess::start(&vars).await;
    let mut client = common::service::client(first.addr).await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        tasks.push(create(&mut client, &format!("video-{i}.mp4")).await);
    }
    // The first instance has taken the entries and is trying to call the Processor.
    let conn = redis.connection().await;
    eventually(
        Duration::from_secs(10),
        "the entries to be held by the first instance",
        || {
            let mut conn = conn.clone();
            async move {
                let pending: (u64, Option<String>, Option<String>, redis::Value) =
                    redis::cmd("XPENDING")
                        .arg("task-service:dispatch")
                        .arg("dispatchers")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                (pending.0 == 5).then_some(())
            }
        },
    )
    .await;
    first.kill().await;

    let config = common::service::config(&redis.vars());
    let store = common::service::redis_store(&config);
    let listener = TcpListener::bind(processor_addr).await.unwrap();
    let processor = FakeProcessor::serve(listener, Reply::Complete, Some(store)).await;
    let second = ServiceProcess::start(&vars).await;
    let client = common::service::client(second.addr).await;
    for task in &tasks {
        let done = wait_for_status(&client, task, "COMPLETED", Duration::from_secs(20)).await;
        assert_eq!(done.error_message, "");
        assert!(processor.calls_for(task) >= 1);
    }
    redis.wait_queue_drained().await;
    assert!(second.terminate().await.success());
}

#[tokio::test]
async fn a_final_state_written_by_someone_else_is_never_overwritten() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(
        Reply::After(
            Duration::from_millis(500),
            Box::new(Reply::Fail(Code::InvalidArgument, "cannot decode")),
        ),
        None,
    )
    .await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    let task_id = create(&mut client, "a.mp4").await;
    eventually(
        Duration::from_secs(10),
        "the call to reach the Processor",
        || async { (processor.calls() == 1).then_some(()) },
    )
    .await;
    // While the Processor still holds the call, someone else finishes the task.
    let mut conn = redis.connection().await;
    let _: () = conn
        .hset_multiple(
            format!("task:{task_id}"),
            &[
                ("status", "COMPLETED"),
                ("result_file_key", "./data/videos/x/result.mp4"),
            ],
        )
        .await
        .unwrap();
    // The Processor's rejection arrives; the service's FAILED must not undo COMPLETED.
    redis.wait_queue_drained().await;
    let found = status(&mut client, &task_id).await;
    assert_eq!(found.status, "COMPLETED");
    assert_eq!(found.result_file_key, "./data/videos/x/result.mp4");
    assert_eq!(found.error_message, "");
    let ttl: i64 = conn.ttl(format!("task:{task_id}")).await.unwrap();
    assert!(ttl > 0, "the final task got its TTL");
    service.stop().await;
}

#[tokio::test]
async fn final_tasks_get_the_ttl_also_when_the_processor_wrote_them_and_nobody_reads() {
    common::init_logs();
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[("TASK_TTL_DAYS", "2")])).await;
    let mut client = service.client().await;
    let task_id = create(&mut client, "a.mp4").await;
    let key = format!("task:{task_id}");
    let mut conn = redis.connection().await;
    // Accepted (the Processor answered OK at once: the task is on the watch list) and not
    // final: no TTL.
    eventually(Duration::from_secs(10), "the task to be accepted", || {
        let mut conn = conn.clone();
        let task_id = task_id.clone();
        async move {
            let watched: Option<f64> = conn.zscore("task-service:watch", &task_id).await.unwrap();
            watched.map(drop)
        }
    })
    .await;
    assert_eq!(processor.calls(), 1);
    assert_eq!(conn.ttl::<_, i64>(&key).await.unwrap(), -1);
    // The Processor finishes with plain HSETs; nobody calls GetTaskStatus.
    let _: () = conn
        .hset_multiple(
            &key,
            &[
                ("status", "PROCESSING"),
                ("updated_at", &task_service::task::now_timestamp()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        conn.ttl::<_, i64>(&key).await.unwrap(),
        -1,
        "PROCESSING keeps no TTL"
    );
    let _: () = conn
        .hset_multiple(&key, &[("status", "FAILED"), ("error_message", "codec")])
        .await
        .unwrap();
    let ttl = eventually(
        Duration::from_secs(10),
        "the reaper to give the TTL",
        || {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                let ttl: i64 = conn.ttl(&key).await.ok()?;
                (ttl > 0).then_some(ttl)
            }
        },
    )
    .await;
    assert!((2 * 86_400 - 60..=2 * 86_400).contains(&ttl), "{ttl}");
    service.stop().await;
}
