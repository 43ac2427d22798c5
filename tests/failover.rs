//! Redis failover for real: a primary, a replica and three sentinels in containers; the service
//! finds the primary through the sentinels, under steady CreateTask load. The primary is
//! SIGKILLed (then started again: it rejoins as a replica), or cut off from the sentinels and
//! the replica while the service still reaches it. With `TASK_REDIS_MIN_REPLICAS_ACKED=1` no
//! task whose CreateTask answered OK is lost, and every one ends COMPLETED; with 0 the test
//! reports how many were lost. Each run prints its table.
//!
//! `cargo test --test failover -- --nocapture` (about two minutes; the scenarios run one after
//! another, since a loaded machine can make sentinels fail over when nobody asked).

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{FakeProcessor, Reply, TestService, eventually, sentinel::SentinelCluster};
use task_service::{
    proto::task::{CreateTaskRequest, GetTaskStatusRequest, task_client::TaskClient},
    store::Store,
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A call with no answer within 5 s (TASK_REDIS_TIMEOUT is 1 s).
const NO_ANSWER: &str = "no answer in 5 s";

/// What the load saw.
#[derive(Default)]
struct Load {
    acked: Vec<(String, Instant)>,
    refused: BTreeMap<String, u64>,
}

/// Creates tasks one after another (every 10 ms) until `stop`, on two clients.
fn steady_load(
    client: TaskClient<Channel>,
    stop: CancellationToken,
) -> (Arc<Mutex<Load>>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Mutex::new(Load::default()));
    let workers = (0..2)
        .map(|i| {
            let (mut client, stop, load) = (client.clone(), stop.clone(), load.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    n += 1;
                    let request = CreateTaskRequest {
                        original_file_key: "a.mp4".into(),
                        request_id: format!("load-{i}-{n}"),
                    };
                    let call =
                        tokio::time::timeout(Duration::from_secs(5), client.create_task(request))
                            .await;
                    {
                        let mut load = load.lock().unwrap();
                        match call {
                            Ok(Ok(answer)) => {
                                load.acked
                                    .push((answer.into_inner().task_id, Instant::now()));
                            }
                            Ok(Err(status)) => {
                                *load
                                    .refused
                                    .entry(format!("{:?}", status.code()))
                                    .or_default() += 1
                            }
                            Err(_) => *load.refused.entry(NO_ANSWER.into()).or_default() += 1,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    (load, workers)
}

/// One scenario's figures.
struct Outcome {
    acked: usize,
    completed: usize,
    lost: usize,
    stuck: usize,
    refused: BTreeMap<String, u64>,
    /// From the fault to the sentinels naming another primary.
    without_primary: Duration,
    /// From the fault to the service using the new primary.
    followed: Duration,
    /// From the fault to the first acknowledged create after the promotion.
    until_written: Duration,
}

fn print(name: &str, o: &Outcome) {
    println!(
        "| {name} | {} | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:?} |",
        o.acked,
        o.completed,
        o.lost,
        o.stuck,
        o.without_primary.as_secs_f64(),
        o.followed.as_secs_f64(),
        o.until_written.as_secs_f64(),
        o.refused
    );
}

enum Fault {
    /// SIGKILL the primary; start it again 5 s after the sentinels promoted the replica.
    Kill,
    /// Cut the primary off from the sentinels and the replica; heal 5 s after the promotion.
    Partition,
}

async fn scenario(fault: Fault, min_replicas_acked: &str) -> Outcome {
    let mut cluster = SentinelCluster::start().await;
    let mut env = cluster.vars();
    env.push((
        "TASK_REDIS_MIN_REPLICAS_ACKED".into(),
        min_replicas_acked.into(),
    ));
    env.push(("TASK_REDIS_TIMEOUT".into(), "1s".into()));
    // The Processor completes each task in the same Redis, following the primary too.
    let processor_config = common::service::config(&env);
    let processor_store = common::service::redis_store(&processor_config);
    let stop_following = CancellationToken::new();
    if let Store::Redis(redis) = &processor_store {
        tokio::spawn({
            let redis = redis.clone();
            let stop = stop_following.clone();
            async move { redis.follow_primary(stop).await }
        });
    }
    let processor = FakeProcessor::start(Reply::Idempotent, Some(processor_store)).await;
    env.push(processor.addr_var());
    let service = TestService::start(&env).await;
    let client = service.client().await;
    eventually(
        Duration::from_secs(20),
        "the service to find the primary",
        || {
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
        },
    )
    .await;

    let stop = CancellationToken::new();
    let (load, workers) = steady_load(client.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let old = cluster.named_primary().await.expect("a primary");
    let moves = async || {
        common::metrics::scrape(service.metrics_addr)
            .await
            .get("task_redis_primary_changes_total")
            .copied()
            .unwrap_or(0.0)
    };
    let moves_before = moves().await;
    let fault_at = Instant::now();
    match fault {
        Fault::Kill => cluster.kill_primary().await,
        Fault::Partition => cluster.partition_primary().await,
    }
    let promoted = eventually(
        Duration::from_secs(60),
        "the sentinels to promote the replica",
        || {
            let (cluster, old) = (&cluster, old.clone());
            async move {
                cluster
                    .named_primary()
                    .await
                    .filter(|now| *now != old)
                    .map(|_| Instant::now())
            }
        },
    )
    .await;
    let followed = eventually(
        Duration::from_secs(60),
        "the service to follow the new primary",
        || async { (moves().await > moves_before).then(Instant::now) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    match fault {
        Fault::Kill => cluster.restart_old_primary().await,
        Fault::Partition => cluster.heal().await,
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    let load = std::mem::take(&mut *load.lock().unwrap());
    let first_after = load
        .acked
        .iter()
        .map(|(_, at)| *at)
        .find(|at| *at > promoted)
        .unwrap_or(fault_at);

    // Every acknowledged task: there, and final (the Processor completes each).
    let mut reader = client.clone();
    let (mut completed, mut lost, mut stuck) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (task, _) in &load.acked {
        loop {
            let found = reader
                .get_task_status(GetTaskStatusRequest {
                    task_id: task.clone(),
                })
                .await;
            match found {
                Ok(found) if found.get_ref().status == "COMPLETED" => {
                    completed += 1;
                    break;
                }
                Err(status) if status.code() == Code::NotFound => {
                    lost += 1;
                    break;
                }
                other if Instant::now() > deadline => {
                    stuck += 1;
                    println!("stuck: {task}: {other:?}");
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    // Health says SERVING again on the new primary.
    let health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", service.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    eventually(Duration::from_secs(20), "health to be SERVING", || {
        let mut health = health.clone();
        async move {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .ok()?;
            (answer.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                .then_some(())
        }
    })
    .await;
    stop_following.cancel();
    service.stop().await;
    Outcome {
        acked: load.acked.len(),
        completed,
        lost,
        stuck,
        refused: load.refused,
        without_primary: promoted - fault_at,
        followed: followed - fault_at,
        until_written: first_after - fault_at,
    }
}

fn header() {
    println!();
    println!(
        "| scenario | acknowledged | COMPLETED | lost | stuck | without a primary | service on the new primary | until written again | refused while failing over |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
}

/// Runs `fault` with the knob at 1 and at 0, prints both, and checks: with 1, no acknowledged task
/// lost or stuck; with either, none stuck and every call answered within its bound.
async fn with_and_without_the_knob(fault: fn() -> Fault, with_name: &str, without_name: &str) {
    let _one_at_a_time = SERIAL.lock().await;
    let with = scenario(fault(), "1").await;
    let without = scenario(fault(), "0").await;
    header();
    print(with_name, &with);
    print(without_name, &without);
    assert!(
        with.acked > 100,
        "the load went on: {} acknowledged",
        with.acked
    );
    assert_eq!(
        (with.lost, with.stuck),
        (0, 0),
        "no acknowledged task lost or stuck"
    );
    assert_eq!(with.completed, with.acked);
    assert_eq!(without.stuck, 0);
    for outcome in [&with, &without] {
        assert!(
            !outcome.refused.contains_key(NO_ANSWER),
            "every call answered within its bound: {:?}",
            outcome.refused
        );
    }
}

#[tokio::test]
async fn a_killed_primary_loses_no_acknowledged_task_with_one_replica_ack() {
    with_and_without_the_knob(
        || Fault::Kill,
        "primary SIGKILLed, TASK_REDIS_MIN_REPLICAS_ACKED=1",
        "primary SIGKILLed, TASK_REDIS_MIN_REPLICAS_ACKED=0",
    )
    .await;
}

#[tokio::test]
async fn a_partitioned_primary_stops_taking_writes_and_none_acknowledged_is_lost() {
    with_and_without_the_knob(
        || Fault::Partition,
        "primary partitioned, TASK_REDIS_MIN_REPLICAS_ACKED=1",
        "primary partitioned, TASK_REDIS_MIN_REPLICAS_ACKED=0 (min-replicas-to-write only)",
    )
    .await;
}
