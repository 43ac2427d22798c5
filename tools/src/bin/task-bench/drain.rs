//! Watches the dispatch queue drain: its depth each second, the drain rate, and the service's
//! peak resident memory meanwhile.

use std::time::Duration;

use bb8_redis::redis;
use serde::Serialize;
use tokio::time::Instant;

use crate::BoxError;

/// What to watch.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    redis: crate::RedisAddr,
    /// The dispatch stream (`{TASK_REDIS_KEY_PREFIX}:dispatch`).
    #[arg(long, default_value = "task-service:dispatch")]
    stream: String,
    /// The service's process id, for its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Give up after this long.
    #[arg(long, value_parser = crate::duration, default_value = "30m")]
    timeout: Duration,
    /// Print one JSON object at the end (per-second lines go to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Drained {
    start_depth: u64,
    end_depth: u64,
    seconds: f64,
    tasks_per_sec: f64,
    first_10s_tasks_per_sec: f64,
    service_rss_peak_bytes: Option<u64>,
}

pub(crate) async fn run(args: Args) -> Result<(), BoxError> {
    let client = args.redis.client()?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut xlen = redis::cmd("XLEN");
    xlen.arg(&args.stream);
    let start_depth: u64 = xlen.query_async(&mut conn).await?;
    let started = Instant::now();
    let mut rss_peak = None;
    let mut at_10s = None;
    let mut current = start_depth;
    let mut last_print = Instant::now();
    while current > 0 && started.elapsed() < args.timeout {
        tokio::time::sleep(Duration::from_millis(200)).await;
        current = xlen.query_async(&mut conn).await?;
        if let Some(pid) = args.pid {
            let rss = observability::process::resident_bytes(pid).unwrap_or(0);
            rss_peak = Some(rss_peak.unwrap_or(0).max(rss));
        }
        if at_10s.is_none() && started.elapsed() >= Duration::from_secs(10) {
            at_10s = Some(current);
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "  {:>5.0} s: {current} waiting{}",
                started.elapsed().as_secs_f64(),
                rss_peak
                    .map(|r| format!(", service RSS peak {:.1} MiB", r as f64 / 1_048_576.0))
                    .unwrap_or_default()
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let drained = Drained {
        start_depth,
        end_depth: current,
        seconds,
        tasks_per_sec: (start_depth - current) as f64 / seconds,
        first_10s_tasks_per_sec: at_10s.map_or((start_depth - current) as f64 / seconds, |d| {
            (start_depth - d) as f64 / 10.0
        }),
        service_rss_peak_bytes: rss_peak,
    };
    if args.json {
        println!("{}", serde_json::to_string(&drained)?);
    } else {
        println!(
            "drained {} of {} entries in {:.1} s: {:.0} tasks/s ({:.0}/s over the first 10 s)",
            start_depth - current,
            start_depth,
            seconds,
            drained.tasks_per_sec,
            drained.first_10s_tasks_per_sec
        );
    }
    Ok(())
}
