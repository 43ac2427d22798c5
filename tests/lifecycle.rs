//! The service's life: settings from `.env` reach every part (the logs included), a bad one
//! stops it at start, and a background task that dies stops it with health NOT_SERVING and an
//! error, instead of leaving it to take tasks that nothing dispatches.

mod common;

use std::{process::Stdio, time::Duration};

use common::{FakeProcessor, Reply, TestRedis, TestService, calls::vars, service::signal, tempdir};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The binary, started in `dir` with only `env` in its environment.
fn service_in(dir: &tempdir::Dir, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_task-service"));
    command
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn dotenv_settings_reach_the_logs_and_the_environment_wins() {
    let dir = tempdir::Dir::new();
    std::fs::write(
        dir.path().join(".env"),
        "TASK_LOG_FORMAT=json\nRUST_LOG=info\nTASK_GRPC_HOST=127.0.0.1\nTASK_GRPC_PORT=0\n\
         TASK_METRICS_PORT=0\nREDIS_HOST=127.0.0.1\nREDIS_PORT=1\nTASK_REQUEST_TRACING=maybe\n",
    )
    .unwrap();
    // The file's TASK_REQUEST_TRACING is invalid; the environment's value wins over it.
    let mut child = service_in(&dir, &[("TASK_REQUEST_TRACING", "on")])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            seen.push(line);
            if json["fields"]["message"] == "task service listening" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "lines so far: {seen:#?}");
    assert!(
        seen.iter().all(|line| !line.contains('\u{1b}')),
        "no colour codes in a pipe"
    );
    signal(child.id().unwrap(), "TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_bad_value_in_dotenv_stops_the_start_naming_it() {
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path().join(".env"), "TASK_REDIS_TIMEOUT=soon\n").unwrap();
    let output = service_in(&dir, &[]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TASK_REDIS_TIMEOUT"), "{stderr}");
}

#[tokio::test]
async fn a_dead_background_task_turns_health_not_serving_and_fails_the_run() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_HEALTH_INTERVAL", "100ms")],
    ))
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let serving = async {
        loop {
            let status = health
                .message()
                .await
                .unwrap()
                .expect("health keeps watching");
            if status.status == ServingStatus::Serving as i32 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("SERVING while Redis answers");
    // A watch hears of changes only: three more health checks pass without a message.
    assert!(
        tokio::time::timeout(Duration::from_millis(350), health.message())
            .await
            .is_err(),
        "health sent a status that did not change"
    );

    assert!(
        service.supervisor.kill("dispatcher"),
        "the dispatcher runs supervised"
    );

    let next = tokio::time::timeout(Duration::from_secs(10), health.message())
        .await
        .expect("health changes at once")
        .unwrap()
        .expect("a status, not the end of the watch");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(health);
    let ended = tokio::time::timeout(Duration::from_secs(20), service.stopped())
        .await
        .expect("the service stops by itself");
    let error = ended.expect_err("a run whose dispatcher died fails");
    assert!(
        error.to_string().contains("\"dispatcher\" was cancelled"),
        "{error}"
    );
}
