//! The chaos suite: real faults under a steady stream of CreateTask — Redis stopped, paused and
//! cut off the network; the Processor killed, slow and failing; service instances SIGKILLed —
//! then the invariants: every accepted task ends COMPLETED, or FAILED with a reason, within the
//! bound; none moved backwards; duplicates counted; Redis memory back to its baseline after the
//! TTLs; and what a Redis that lost its data leaves. `TASK_CHAOS=full` runs each scenario four
//! times longer.

mod common;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

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
