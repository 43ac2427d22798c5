//! The soak: mixed load at about 80% of the peak rate for `TASK_SOAK_MINUTES` (10) minutes, with a
//! fault every minute or two, printing per minute the service's resident memory, p99 latency,
//! errors by code, and tasks lost and stuck (both must stay 0). Run it with
//!   TASK_TEST_REDIS_IMAGE=task-service-test/redis:local cargo test --release --test soak -- --ignored --nocapture

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::chaos::Cast;
use hdrhistogram::Histogram;
use observability::process::resident_bytes;
use rand::Rng;
use task_service::proto::task::{CreateTaskRequest, GetTaskStatusRequest, task_client::TaskClient};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// What one minute of load saw.
#[derive(Default)]
struct Window {
    latency: Option<Histogram<u64>>,
    codes: BTreeMap<String, u64>,
}

/// Closed-loop mixed load for `duration`: the rate it reaches.
async fn peak(
    client: &TaskClient<Channel>,
    ids: &Arc<Mutex<Vec<String>>>,
    duration: Duration,
) -> f64 {
    let window = Arc::new(Mutex::new(Window::default()));
    let stop = CancellationToken::new();
    let workers = spawn_workers(32, client, ids, &window, &stop, None);
    sleep(duration).await;
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    let total: u64 = window.lock().unwrap().codes.values().sum();
    total as f64 / duration.as_secs_f64()
}

/// `count` workers sharing `window` until `stop`.
fn spawn_workers(
    count: usize,
    client: &TaskClient<Channel>,
    ids: &Arc<Mutex<Vec<String>>>,
    window: &Arc<Mutex<Window>>,
    stop: &CancellationToken,
    interval: Option<Duration>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                ids.clone(),
                window.clone(),
                stop.clone(),
                interval,
            ))
        })
        .collect()
}

/// One client: 1 create in 10, otherwise a status read of a known task; paced if `interval`.
async fn worker(
    mut client: TaskClient<Channel>,
    ids: Arc<Mutex<Vec<String>>>,
    window: Arc<Mutex<Window>>,
    stop: CancellationToken,
    interval: Option<Duration>,
) {
    let mut next = Instant::now();
    let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
    while !stop.is_cancelled() {
        if let Some(interval) = interval {
            sleep(next.saturating_duration_since(Instant::now())).await;
            next += interval;
        }
        let started = Instant::now();
        let known = { ids.lock().unwrap().len() };
        let code = if known == 0 || rng.random_bool(0.1) {
            match client
                .create_task(CreateTaskRequest {
                    original_file_key: "soak.mp4".into(),
                    request_id: String::new(),
                })
                .await
            {
                Ok(response) => {
                    ids.lock().unwrap().push(response.into_inner().task_id);
                    "OK".to_owned()
                }
                Err(status) => format!("{:?}", status.code()),
            }
        } else {
            let task_id = ids.lock().unwrap()[rng.random_range(0..known)].clone();
            match client
                .get_task_status(GetTaskStatusRequest { task_id })
                .await
            {
                Ok(_) => "OK".to_owned(),
                Err(status) if status.code() == tonic::Code::NotFound => "OK".to_owned(),
                Err(status) => format!("{:?}", status.code()),
            }
        };
        let micros = started.elapsed().as_micros() as u64;
        let mut window = window.lock().unwrap();
        window
            .latency
            .get_or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
            .saturating_record(micros.max(1));
        *window.codes.entry(code).or_default() += 1;
    }
}

use rand::SeedableRng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes TASK_SOAK_MINUTES (10) minutes; run with --ignored"]
async fn soak() {
    let minutes: u32 = std::env::var("TASK_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let mut cast = Cast::start(
        "soak",
        1,
        &[
            ("TASK_RATE_LIMIT_PER_CLIENT", "0"),
            ("TASK_TTL", "120s"),
            ("RUST_LOG", "error"),
        ],
    )
    .await;
    let addr = format!("http://127.0.0.1:{}", cast.ports[0]);
    let channel = Endpoint::from_shared(addr)
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let client = TaskClient::new(channel);
    let ids = cast.tracker();

    let peak_rate = peak(&client, &ids, Duration::from_secs(10)).await;
    let rate = peak_rate * 0.8;
    let workers_count = 32;
    println!(
        "soak: peak {peak_rate:.0} requests/s (mixed 1:9); running at {rate:.0}/s for {minutes} minutes"
    );
    println!(
        "| minute | fault | requests | p99 ms | errors by code | service RSS MiB | lost | stuck |"
    );
    println!("| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |");

    let window = Arc::new(Mutex::new(Window::default()));
    let stop = CancellationToken::new();
    let interval = Duration::from_secs_f64(workers_count as f64 / rate);
    let workers = spawn_workers(workers_count, &client, &ids, &window, &stop, Some(interval));

    let mut rss_peak = 0;
    for minute in 1..=minutes {
        let minute_started = Instant::now();
        // A fault in most minutes, 20 s into it, rotating through the kinds the chaos suite
        // covers.
        let fault = match minute % 5 {
            0 => "",
            kind => {
                sleep(Duration::from_secs(20)).await;
                match kind {
                    1 => {
                        cast.redis.stop().await;
                        sleep(Duration::from_secs(3)).await;
                        cast.redis.restart().await;
                        "Redis restarted"
                    }
                    2 => {
                        cast.redis.pause().await;
                        sleep(Duration::from_secs(3)).await;
                        cast.redis.unpause().await;
                        "Redis paused 3 s"
                    }
                    3 => {
                        cast.processor.fail_every(3);
                        sleep(Duration::from_secs(15)).await;
                        cast.processor.fail_every(0);
                        "Processor failing 1 in 3"
                    }
                    _ => {
                        cast.kill(0).await;
                        cast.restart(0).await;
                        "service SIGKILLed"
                    }
                }
            }
        };
        let pid = cast.services[0].as_ref().map(|s| s.pid());
        while minute_started.elapsed() < Duration::from_secs(60) {
            if let Some(rss) = pid.and_then(resident_bytes) {
                rss_peak = rss_peak.max(rss);
            }
            sleep(Duration::from_millis(500)).await;
        }
        let seen = std::mem::take(&mut *window.lock().unwrap());
        let requests: u64 = seen.codes.values().sum();
        let errors: BTreeMap<_, _> = seen.codes.into_iter().filter(|(c, _)| c != "OK").collect();
        let p99 = seen
            .latency
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0);
        let rss = pid.and_then(resident_bytes).unwrap_or(0) as f64 / 1_048_576.0;
        let lost = cast.observer.lost_now();
        let stuck = cast.observer.stuck_now(Duration::from_secs(60));
        println!(
            "| {minute} | {fault} | {requests} | {p99:.1} | {errors:?} | {rss:.1} | {lost} | {stuck} |"
        );
        assert_eq!(lost, 0, "tasks lost by minute {minute}");
        assert_eq!(stuck, 0, "tasks stuck by minute {minute}");
    }
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    println!(
        "soak: service RSS peak {:.1} MiB",
        rss_peak as f64 / 1_048_576.0
    );
    let accepted = ids.lock().unwrap().clone();
    let created = common::chaos::Created {
        accepted,
        refused: BTreeMap::new(),
    };
    cast.verify(created, Duration::from_secs(120)).await;
}
