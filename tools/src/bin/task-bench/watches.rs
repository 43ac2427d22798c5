//! Many open WatchTask streams: what they cost the service (resident memory) and Redis (commands
//! per second while nothing changes, against the same idle period with none open), and how soon
//! every one of them sees its task end once the Processor writes COMPLETED.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bb8_redis::redis::{self, aio::MultiplexedConnection};
use hdrhistogram::Histogram;
use serde::Serialize;
use task_service::{
    proto::task::{WatchTaskRequest, task_client::TaskClient},
    store::task_key,
    task::{TaskId, TaskRecord, now_timestamp},
};
use tokio::{sync::Notify, time::Instant};
use tonic::transport::Channel;

use crate::{BoxError, report::Latency};

/// Watches being opened at once, at most.
const OPENING_AT_ONCE: usize = 256;

/// What to run.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The Task service.
    #[arg(long, default_value = "http://127.0.0.1:50050")]
    addr: String,
    #[command(flatten)]
    redis: crate::RedisAddr,
    /// Watches to open, each on a task of its own.
    #[arg(long, default_value_t = 10_000)]
    watches: usize,
    /// Watches per HTTP/2 connection (the service allows 64 requests in flight on one,
    /// `TASK_MAX_IN_FLIGHT_PER_CONNECTION`).
    #[arg(long, default_value_t = 50)]
    per_connection: usize,
    /// How long each idle period is measured.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    idle: Duration,
    /// The service's process id, for its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// A name for this run in the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Figures {
    label: String,
    watches: usize,
    opened: usize,
    rss_before_bytes: Option<u64>,
    rss_open_bytes: Option<u64>,
    redis_commands_per_sec_idle_without: f64,
    redis_commands_per_sec_idle_with: f64,
    ended_completed: usize,
    ended_otherwise: usize,
    /// How the others ended, by gRPC code.
    errors: std::collections::BTreeMap<String, usize>,
    /// From the start of the COMPLETED writes to each watch's last message.
    end_latency: Latency,
}

pub(crate) async fn run(args: Args) -> Result<(), BoxError> {
    let mut redis = args
        .redis
        .client()?
        .get_multiplexed_async_connection()
        .await?;
    let ids: Vec<TaskId> = (0..args.watches).map(|_| TaskId::new_v4()).collect();
    write_pending(&mut redis, &ids).await?;
    let rss = |pid: Option<u32>| pid.and_then(observability::process::resident_bytes);
    let rss_before_bytes = rss(args.pid);
    let without = commands_per_sec(&mut redis, args.idle).await?;

    let connections = args.watches.div_ceil(args.per_connection.max(1)).max(1);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(args.addr.clone())?
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", args.addr))?,
        );
    }
    let opened = Arc::new(AtomicUsize::new(0));
    let all_open = Arc::new(Notify::new());
    // Opened a few hundred at a time, as clients connecting over time do: 10,000 at once are
    // 10,000 requests in flight, which the service sheds past TASK_MAX_IN_FLIGHT.
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let watchers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let client = TaskClient::new(channels[i % connections].clone());
            let (opened, all_open, total) = (opened.clone(), all_open.clone(), args.watches);
            let (opening, id) = (opening.clone(), *id);
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.ok();
                watch_one(client, id, move || {
                    drop(permit);
                    if opened.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        all_open.notify_one();
                    }
                })
                .await
            })
        })
        .collect();
    if tokio::time::timeout(Duration::from_secs(60), all_open.notified())
        .await
        .is_err()
    {
        eprintln!(
            "task-bench: only {} of {} watches opened within 60 s",
            opened.load(Ordering::SeqCst),
            args.watches
        );
    }
    let rss_open_bytes = rss(args.pid);
    let with = commands_per_sec(&mut redis, args.idle).await?;

    let written = Instant::now();
    write_completed(&mut redis, &ids).await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut completed, mut otherwise) = (0, 0);
    let mut errors = std::collections::BTreeMap::new();
    for watcher in watchers {
        match watcher.await? {
            Ok(ended) if ended >= written => {
                completed += 1;
                latency.saturating_record((ended - written).as_micros().max(1) as u64);
            }
            Ok(_) => otherwise += 1,
            Err(reason) => {
                otherwise += 1;
                *errors.entry(reason).or_default() += 1;
            }
        }
    }
    let figures = Figures {
        label: args.label,
        watches: args.watches,
        opened: opened.load(Ordering::SeqCst),
        rss_before_bytes,
        rss_open_bytes,
        redis_commands_per_sec_idle_without: without,
        redis_commands_per_sec_idle_with: with,
        ended_completed: completed,
        ended_otherwise: otherwise,
        errors,
        end_latency: Latency::of(&latency),
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("{figures:#?}");
    }
    Ok(())
}

/// Follows one task: `opened` once its first message came; the time its stream ended with a
/// final state (`None`: it ended otherwise).
async fn watch_one(
    mut client: TaskClient<Channel>,
    id: TaskId,
    opened: impl FnOnce(),
) -> Result<Instant, String> {
    let code = |status: tonic::Status| format!("{:?}", status.code());
    let request = WatchTaskRequest {
        task_id: id.to_text(),
    };
    let mut stream = client.watch_task(request).await.map_err(code)?.into_inner();
    stream
        .message()
        .await
        .map_err(code)?
        .ok_or("ended before its first message")?;
    opened();
    let mut last = None;
    while let Some(state) = stream.message().await.map_err(code)? {
        last = Some(state.status);
    }
    match last.as_deref() {
        Some("COMPLETED") => Ok(Instant::now()),
        other => Err(format!("ended after {other:?}")),
    }
}

/// Writes a PENDING task hash for each id (a day's TTL, so that nothing outlives the run long).
async fn write_pending(redis: &mut MultiplexedConnection, ids: &[TaskId]) -> Result<(), BoxError> {
    let now = now_timestamp();
    for chunk in ids.chunks(2000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let record = TaskRecord::new_pending(*id, "bench/original.mp4", &now);
            pipe.cmd("HSET")
                .arg(task_key(*id))
                .arg(&record.to_pairs())
                .ignore()
                .cmd("EXPIRE")
                .arg(task_key(*id))
                .arg(86_400)
                .ignore();
        }
        pipe.query_async::<()>(redis).await?;
    }
    Ok(())
}

/// Writes COMPLETED on every task, as the Processor does (plain HSETs, pipelined).
async fn write_completed(
    redis: &mut MultiplexedConnection,
    ids: &[TaskId],
) -> Result<(), BoxError> {
    for chunk in ids.chunks(2000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HSET")
                .arg(task_key(*id))
                .arg("status")
                .arg("COMPLETED")
                .arg("result_file_key")
                .arg("bench/result.mp4")
                .ignore();
        }
        pipe.query_async::<()>(redis).await?;
    }
    Ok(())
}

/// Commands Redis processed per second over `period` (less the two INFO calls that measure it).
async fn commands_per_sec(
    redis: &mut MultiplexedConnection,
    period: Duration,
) -> Result<f64, BoxError> {
    let before = total_commands(redis).await?;
    let started = Instant::now();
    tokio::time::sleep(period).await;
    let after = total_commands(redis).await?;
    Ok(after.saturating_sub(before + 1) as f64 / started.elapsed().as_secs_f64())
}

async fn total_commands(redis: &mut MultiplexedConnection) -> Result<u64, BoxError> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(redis).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO stats has no total_commands_processed".into())
}
