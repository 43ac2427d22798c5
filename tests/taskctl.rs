//! taskctl, the built binary, against a real service on a real Redis: each command in text and
//! JSON, its exit codes, and what it says when the service cannot be reached.

mod common;

use std::{net::SocketAddr, process::Output};

use common::{FakeProcessor, Reply, TestRedis, TestService, calls::vars};
use serde_json::Value;

/// Runs taskctl against `addr` with `args`.
async fn taskctl(addr: SocketAddr, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_taskctl"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Every stdout line as a JSON object.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

async fn service(reply: Reply) -> (TestRedis, FakeProcessor, TestService) {
    let redis = TestRedis::start().await;
    let processor_store = common::service::redis_store(&common::service::config(&redis.vars()));
    let processor = FakeProcessor::start(reply, Some(processor_store)).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    (redis, processor, service)
}

#[tokio::test]
async fn create_wait_status_list_in_text_and_json() {
    let (_redis, _processor, service) = service(Reply::Complete).await;
    let addr = service.addr;

    let waited = taskctl(addr, &["create", "a.mp4", "--wait", "--request-id", "up-1"]).await;
    assert!(waited.status.success(), "{}", stderr(&waited));
    let text = stdout(&waited);
    let task = text
        .lines()
        .find_map(|l| l.strip_prefix("task_id: "))
        .expect("the task id")
        .to_owned();
    assert_eq!(
        text.matches("task_id").count(),
        1,
        "the id printed once:\n{text}"
    );
    assert!(text.contains("status: COMPLETED"), "{text}");

    // The same request id: the same task, in JSON this time.
    let again = taskctl(addr, &["--json", "create", "a.mp4", "--request-id", "up-1"]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json_lines(&again), [serde_json::json!({ "task_id": task })]);
    let waited = taskctl(addr, &["--json", "create", "b.mp4", "--wait"]).await;
    assert!(waited.status.success(), "{}", stderr(&waited));
    let lines = json_lines(&waited);
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "COMPLETED");
    assert!(last["elapsed_ms"].is_u64());
    let second = last["task_id"].as_str().unwrap().to_owned();

    let status = taskctl(addr, &["--json", "status", &task]).await;
    let found = &json_lines(&status)[0];
    assert_eq!(
        (
            found["task_id"].as_str(),
            found["status"].as_str(),
            found["original_file_key"].as_str()
        ),
        (Some(task.as_str()), Some("COMPLETED"), Some("a.mp4"))
    );

    let table = stdout(&taskctl(addr, &["list"]).await);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("TASK_ID"), "{table}");
    assert!(
        rows[1].starts_with(&second) && rows[2].starts_with(&task),
        "newest first:\n{table}"
    );
    let listed = json_lines(
        &taskctl(
            addr,
            &["--json", "list", "--status", "COMPLETED", "--limit", "1"],
        )
        .await,
    );
    assert_eq!(listed.len(), 1);
    let bad = taskctl(addr, &["list", "--status", "DONE"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is not one of"), "{}", stderr(&bad));
    service.stop().await;
}

#[tokio::test]
async fn cancel_and_watch_exit_by_outcome() {
    let (_redis, processor, service) = service(Reply::Accept).await;
    let addr = service.addr;
    let created = json_lines(&taskctl(addr, &["--json", "create", "a.mp4"]).await);
    let task = created[0]["task_id"].as_str().unwrap().to_owned();
    let watching = tokio::spawn({
        let task = task.clone();
        async move { taskctl(addr, &["watch", &task]).await }
    });
    common::metrics::wait_for_metric(
        service.metrics_addr,
        "task_watches_open",
        std::time::Duration::from_secs(20),
        |open| open == 1.0,
    )
    .await;
    let cancelled = taskctl(addr, &["cancel", &task, "--reason", "not needed"]).await;
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert!(stdout(&cancelled).contains("error_message: cancelled: not needed"));
    let watched = watching.await.unwrap();
    assert_eq!(
        watched.status.code(),
        Some(3),
        "FAILED: {}",
        stdout(&watched)
    );
    assert!(stdout(&watched).contains("FAILED"), "{}", stdout(&watched));
    assert_eq!(
        processor.cancels(),
        std::slice::from_ref(&task),
        "the Processor had accepted it"
    );

    let again = taskctl(addr, &["cancel", &task]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already FAILED"),
        "{}",
        stderr(&again)
    );
    let usage = taskctl(addr, &["cancel"]).await;
    assert_eq!(usage.status.code(), Some(2));
    service.stop().await;
}

#[tokio::test]
async fn an_unreachable_service_is_explained() {
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = nothing.local_addr().unwrap();
    drop(nothing);
    let refused = taskctl(addr, &["status", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("cannot reach the task service at {addr}")),
        "{message}"
    );
    assert!(!message.contains("Unknown: transport error"), "{message}");
}
