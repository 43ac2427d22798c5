//! The chaos suite: real faults under a steady stream of CreateTask — Redis stopped, paused and
//! cut off the network; the Processor killed, slow and failing; service instances SIGKILLed —
//! then the invariants: every accepted task ends COMPLETED, or FAILED with a reason, within the
//! bound; none moved backwards; duplicates counted; Redis memory back to its baseline after the
//! TTLs; what a Redis that lost its data leaves; and GetTaskStatus through the read cache.
//! `TASK_CHAOS=full` runs each scenario four times longer.

mod common;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use bb8_redis::redis;
use common::{
    Reply,
    chaos::{Cast, secs},
};
use task_service::proto::task::GetTaskStatusRequest;
use tokio::time::sleep;

/// The time, after the last fault, within which every accepted task must be final.
const BOUND: Duration = Duration::from_secs(60);
/// CreateTask calls per second.
const RATE: u32 = 40;

#[tokio::test]
async fn redis_stopped_and_started_again() {
    let cast = Cast::start("redis stop/start", 1, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(3)).await;
    cast.redis.stop().await;
    sleep(secs(3)).await;
    cast.redis.restart().await;
    sleep(secs(4)).await;
    let created = load.stop().await;
    assert!(
        created.refused.contains_key("Internal"),
        "the outage was seen: {:?}",
        created.refused
    );
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn redis_paused() {
    let cast = Cast::start("redis paused", 1, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(3)).await;
    cast.redis.pause().await;
    sleep(secs(4)).await;
    cast.redis.unpause().await;
    sleep(secs(4)).await;
    let created = load.stop().await;
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn network_cut_between_the_service_and_redis() {
    let cast = Cast::start("network cut", 1, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(3)).await;
    cast.redis.disconnect().await;
    sleep(secs(3)).await;
    cast.redis.reconnect().await;
    sleep(secs(4)).await;
    let created = load.stop().await;
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn redis_loses_its_data() {
    let cast = Cast::start("redis lost its data", 1, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(3)).await;
    let before = load.stop().await;
    // Some of these are still being dispatched or processed when their data goes.
    cast.redis.flush_all().await;
    let load = cast.load(RATE);
    sleep(secs(5)).await;
    let after = load.stop().await;

    // The lost tasks answer at once: NOT_FOUND, or what the Processor wrote after the loss (its
    // plain HSET recreates the hash, which a read gives its TTL); never an error, never a hang.
    let mut client =
        common::service::client(SocketAddr::from(([127, 0, 0, 1], cast.ports[0]))).await;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for id in &before.accepted {
        let answer = client
            .get_task_status(GetTaskStatusRequest {
                task_id: id.clone(),
            })
            .await;
        let label = match answer {
            Ok(response) => response.into_inner().status,
            Err(status) => format!("{:?}", status.code()),
        };
        *answers.entry(label).or_default() += 1;
    }
    println!(
        "chaos {}: {} tasks created before the loss answer {answers:?}",
        cast.name,
        before.accepted.len()
    );
    assert!(
        answers
            .keys()
            .all(|label| label == "NotFound" || label == "COMPLETED"),
        "tasks lost with the data answer NOT_FOUND (or COMPLETED if the Processor wrote after the loss): {answers:?}"
    );
    // The service carries on without a restart: the queue and its group are recreated, and
    // every task created after the loss completes.
    cast.verify(after, BOUND).await;
}

#[tokio::test]
async fn processor_killed_then_back() {
    let mut cast = Cast::start("processor killed", 1, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(3)).await;
    let addr = cast.processor.addr;
    cast.processor.stop();
    sleep(secs(4)).await;
    let store = common::service::redis_store(&common::service::config(&cast.redis.vars()));
    // The port frees up as soon as the old server's listener is dropped.
    let listener = common::eventually(Duration::from_secs(10), "the Processor's port", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let old = std::mem::replace(
        &mut cast.processor,
        common::FakeProcessor::serve(listener, Reply::Idempotent, Some(store)).await,
    );
    sleep(secs(4)).await;
    let created = load.stop().await;
    // Calls that reached the killed Processor are reported here; the verdict's duplicates
    // count the new one's only.
    let before = old.received().len();
    println!("chaos processor killed: {before} calls reached the first Processor");
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn processor_slow_for_a_while() {
    let cast = Cast::start(
        "processor slow (10 s answers)",
        1,
        &[("TASK_PROCESSOR_TIMEOUT", "15s")],
    )
    .await;
    let load = cast.load(RATE);
    sleep(secs(2)).await;
    cast.processor.set_default(Reply::After(
        Duration::from_secs(10),
        Box::new(Reply::Idempotent),
    ));
    sleep(secs(4)).await;
    cast.processor.set_default(Reply::Idempotent);
    sleep(secs(3)).await;
    let created = load.stop().await;
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn processor_failing_one_call_in_three() {
    let cast = Cast::start(
        "processor failing 1 in 3",
        1,
        &[("TASK_BREAKER_CONSECUTIVE_FAILURES", "20")],
    )
    .await;
    cast.processor.fail_every(3);
    let load = cast.load(RATE);
    sleep(secs(8)).await;
    let created = load.stop().await;
    let verdict = cast.verify(created, BOUND).await;
    assert_eq!(
        verdict.failed, 0,
        "transient failures are retried, not turned into FAILED"
    );
}

#[tokio::test]
async fn service_sigkilled_five_times_in_a_row() {
    let mut cast = Cast::start("service SIGKILLed 5 times", 1, &[]).await;
    let load = cast.load(RATE);
    for _ in 0..5 {
        sleep(secs(2)).await;
        cast.kill(0).await;
        cast.restart(0).await;
    }
    sleep(secs(3)).await;
    let created = load.stop().await;
    cast.verify(created, BOUND).await;
}

#[tokio::test]
async fn one_of_two_replicas_killed() {
    let mut cast = Cast::start("one of two replicas killed", 2, &[]).await;
    let load = cast.load(RATE);
    sleep(secs(4)).await;
    cast.kill(0).await;
    sleep(secs(6)).await;
    let created = load.stop().await;
    assert!(
        created.refused.contains_key("Unavailable"),
        "calls to the dead replica fail: {:?}",
        created.refused
    );
    cast.verify(created, BOUND).await;
}

/// The read cache under faults: clients poll every task through an instance with
/// `TASK_READ_CACHE_ENTRIES` on while Redis is paused, then stopped and started again. No task is
/// seen going backwards through GetTaskStatus, and once the faults are over every answer comes
/// to what Redis holds: no entry outlives a connection that lost its invalidations.
#[tokio::test]
async fn polled_through_the_read_cache_across_redis_faults() {
    let cast = Cast::start(
        "read cache under faults",
        1,
        &[
            ("TASK_READ_CACHE_ENTRIES", "10000"),
            ("TASK_READ_CACHE_LEASE", "100ms"),
        ],
    )
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], cast.ports[0]));
    let load = cast.load(RATE);
    let poller = Poller::start(addr, cast.tracker());
    sleep(secs(3)).await;
    cast.redis.pause().await;
    sleep(secs(2)).await;
    cast.redis.unpause().await;
    sleep(secs(2)).await;
    cast.redis.stop().await;
    sleep(secs(2)).await;
    cast.redis.restart().await;
    sleep(secs(3)).await;
    let created = load.stop().await;

    // Every answer comes to Redis's own, final, state.
    let mut redis = cast.redis.connection().await;
    let mut client = common::service::client(addr).await;
    let deadline = tokio::time::Instant::now() + BOUND;
    for id in &created.accepted {
        loop {
            let held: Option<String> =
                redis::AsyncCommands::hget(&mut redis, format!("task:{id}"), "status")
                    .await
                    .unwrap();
            let answered = client
                .get_task_status(GetTaskStatusRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|r| r.into_inner().status)
                .map_err(|s| s.code());
            let agree = match (&held, &answered) {
                (Some(held), Ok(answered)) => {
                    held == answered && matches!(held.as_str(), "COMPLETED" | "FAILED")
                }
                (None, Err(tonic::Code::NotFound)) => true,
                _ => false,
            };
            if agree {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id}: Redis holds {held:?}, GetTaskStatus answers {answered:?}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
    let backwards = poller.stop().await;
    // The cache was in the way: it answered, and the restart emptied it.
    let metrics = common::metrics::scrape(cast.services[0].as_ref().unwrap().metrics_addr).await;
    let hits = metrics
        .get("task_read_cache_reads_total{result=\"hit\"}")
        .copied();
    let resets = metrics.get("task_read_cache_resets_total").copied();
    println!(
        "chaos {}: read cache hits {hits:?}, resets {resets:?}",
        cast.name
    );
    assert!(hits.is_some_and(|n| n > 0.0) && resets.is_some_and(|n| n >= 1.0));
    assert!(
        backwards.is_empty(),
        "seen going backwards through GetTaskStatus: {backwards:?}"
    );
    cast.verify(created, BOUND).await;
}

/// Polls every unfinished tracked task (and the newest hundred, finished or not) through
/// GetTaskStatus, 20 times a second, and keeps what each showed.
struct Poller {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Vec<(String, Vec<String>)>>,
}

impl Poller {
    fn start(addr: SocketAddr, ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let done = stop.clone();
        let task = tokio::spawn(async move {
            let mut client = common::service::client(addr).await;
            let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
            while !done.is_cancelled() {
                let ids = ids.lock().unwrap().clone();
                // The newest tasks are read again once final too: reads the cache can answer.
                let recent = ids.len().saturating_sub(100);
                for (i, id) in ids.into_iter().enumerate() {
                    let history = seen.entry(id.clone()).or_default();
                    let finished = history
                        .last()
                        .is_some_and(|s| s == "COMPLETED" || s == "FAILED");
                    if finished && i < recent {
                        continue;
                    }
                    let request = GetTaskStatusRequest { task_id: id };
                    // Errors (Redis away) and NOT_FOUND (not yet written) say nothing of order.
                    if let Ok(Ok(answer)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        client.get_task_status(request),
                    )
                    .await
                    {
                        let status = answer.into_inner().status;
                        if history.last() != Some(&status) {
                            history.push(status);
                        }
                    }
                }
                sleep(Duration::from_millis(50)).await;
            }
            let rank = |s: &str| match s {
                "PENDING" => 0,
                "PROCESSING" => 1,
                _ => 2,
            };
            seen.into_iter()
                .filter(|(_, h)| {
                    h.windows(2).any(|w| rank(&w[1]) < rank(&w[0]))
                        || h.iter().filter(|s| rank(s) == 2).count() > 1
                })
                .collect()
        });
        Self { stop, task }
    }

    /// Stops, and returns the tasks seen going backwards, with what they showed.
    async fn stop(self) -> Vec<(String, Vec<String>)> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}
