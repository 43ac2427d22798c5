//! Writes COMPLETED tasks straight into Redis (pipelined), and measures the memory per task.

use bb8_redis::redis::{self, aio::MultiplexedConnection};
use serde::Serialize;

use task_service::{
    store::{layout::index_member, task_key},
    task::{TaskId, TaskRecord, TaskStatus},
};

use crate::{BoxError, seeded_id};

/// What to write.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    redis: crate::RedisAddr,
    /// Tasks to write (ids 0..count of the deterministic id space).
    #[arg(long)]
    count: u64,
    /// Tasks per pipeline.
    #[arg(long, default_value_t = 2000)]
    batch: u64,
    /// Also list them in the creation index of the service with this key prefix (as
    /// CreateTask does), one millisecond apart.
    #[arg(long)]
    index_prefix: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Write them PROCESSING, without a TTL (live tasks a Processor is working on, for
    /// `run --churn`), instead of COMPLETED.
    #[arg(long)]
    live: bool,
}

#[derive(Debug, Serialize)]
struct Seeded {
    tasks: u64,
    used_memory_before: u64,
    used_memory_after: u64,
    bytes_per_task: f64,
}

pub(crate) async fn run(args: Args) -> Result<(), BoxError> {
    let client = args.redis.client()?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let before = used_memory(&mut conn).await?;
    let now = task_service::task::now_timestamp();
    let first_ms = task_service::task::now_ms().saturating_sub(args.count);
    let index = args
        .index_prefix
        .as_ref()
        .map(|prefix| format!("{prefix}:tasks"));
    let mut start = 0;
    while start < args.count {
        let end = (start + args.batch).min(args.count);
        let mut pipe = redis::pipe();
        for i in start..end {
            let id = seeded_id(i);
            let task_id = TaskId::parse(&id).expect("seeded ids are UUIDs");
            let key = task_key(task_id);
            if let Some(index) = &index {
                pipe.cmd("ZADD")
                    .arg(index)
                    .arg(0)
                    .arg(index_member(first_ms + i, task_id))
                    .ignore();
            }
            let (status, result_file_key) = match args.live {
                true => (TaskStatus::Processing, String::new()),
                false => (
                    TaskStatus::Completed,
                    format!("./data/videos/{id}/result.mp4"),
                ),
            };
            let record = TaskRecord {
                status: status.into(),
                original_file_key: "bench/original.mp4".to_owned(),
                result_file_key,
                error_message: String::new(),
                created_at: now.clone(),
                updated_at: now.clone(),
                task_id: id,
            };
            pipe.cmd("HSET").arg(&key).arg(&record.to_pairs()).ignore();
            if !args.live {
                pipe.cmd("EXPIRE").arg(&key).arg(7 * 86_400).ignore();
            }
        }
        pipe.query_async::<()>(&mut conn).await?;
        start = end;
    }
    let after = used_memory(&mut conn).await?;
    let seeded = Seeded {
        tasks: args.count,
        used_memory_before: before,
        used_memory_after: after,
        bytes_per_task: after.saturating_sub(before) as f64 / args.count.max(1) as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&seeded)?);
    } else {
        println!(
            "seeded {} tasks: Redis used_memory {} -> {} bytes, {:.0} bytes per task",
            seeded.tasks, before, after, seeded.bytes_per_task
        );
    }
    Ok(())
}

/// Redis's `used_memory`.
async fn used_memory(conn: &mut MultiplexedConnection) -> Result<u64, BoxError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO memory has no used_memory".into())
}
