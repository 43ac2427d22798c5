//! Following a task to its end: WatchTask, watched again where a replica ends the stream early
//! (shutting down, or its TASK_WATCH_MAX), and GetTaskStatus polling against a service too old
//! to have WatchTask.

use std::time::Duration;

use task_service::proto::task::{GetTaskStatusRequest, GetTaskStatusResponse, WatchTaskRequest};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::{
    connect::Client,
    output::{Outcome, Output},
};

/// How often the live line ticks, and an old service is polled.
const TICK: Duration = Duration::from_millis(200);

/// Watches again after a stream ended early this many times in a row without a message.
const MAX_BARREN_RETRIES: u32 = 5;

/// Follows `task_id` until it is final or `timeout` passes, printing each state.
pub async fn follow(
    client: &mut Client,
    out: &Output,
    task_id: String,
    timeout: Option<Duration>,
) -> Result<Outcome, Status> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut last: Option<GetTaskStatusResponse> = None;
    let mut barren = 0;
    loop {
        let mut request = tonic::Request::new(WatchTaskRequest {
            task_id: task_id.clone(),
        });
        if let Some(deadline) = deadline {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        let ended = match client.watch_task(request).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut ticks = tokio::time::interval(TICK);
                loop {
                    tokio::select! {
                        message = stream.message() => match message {
                            Ok(Some(task)) => {
                                barren = 0;
                                if last.as_ref().is_none_or(|l| l.status != task.status) {
                                    out.state(&task, started.elapsed());
                                }
                                let end = final_outcome(&task);
                                last = Some(task);
                                if let Some(outcome) = end {
                                    out.ended(last.as_ref().expect("just set"));
                                    return Ok(outcome);
                                }
                            }
                            Ok(None) => break Status::unavailable("the watch ended early"),
                            Err(status) => break status,
                        },
                        _ = ticks.tick() => {
                            if let Some(last) = &last {
                                out.tick(&last.status, started.elapsed());
                            }
                        }
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                return poll(client, out, task_id, started, deadline, last).await;
            }
            Err(status) => status,
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(gave_up(out, timeout, last.as_ref()));
        }
        // A replica going away, or the service's own bound on a watch: watch again (through the
        // same channel, which balances to another replica where there is one).
        let again = matches!(ended.code(), Code::Unavailable | Code::DeadlineExceeded);
        barren += 1;
        if !again || barren > MAX_BARREN_RETRIES {
            return Err(ended);
        }
        tokio::time::sleep(TICK * barren).await;
    }
}

/// Polling GetTaskStatus, for a service without WatchTask.
async fn poll(
    client: &mut Client,
    out: &Output,
    task_id: String,
    started: Instant,
    deadline: Option<Instant>,
    mut last: Option<GetTaskStatusResponse>,
) -> Result<Outcome, Status> {
    loop {
        let task = client
            .get_task_status(GetTaskStatusRequest {
                task_id: task_id.clone(),
            })
            .await?
            .into_inner();
        if last.as_ref().is_none_or(|l| l.status != task.status) {
            out.state(&task, started.elapsed());
        } else {
            out.tick(&task.status, started.elapsed());
        }
        if let Some(outcome) = final_outcome(&task) {
            out.ended(&task);
            return Ok(outcome);
        }
        last = Some(task);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let timeout = deadline.map(|d| d.duration_since(started));
            return Ok(gave_up(out, timeout, last.as_ref()));
        }
        tokio::time::sleep(TICK).await;
    }
}

fn final_outcome(task: &GetTaskStatusResponse) -> Option<Outcome> {
    match task.status.as_str() {
        "COMPLETED" => Some(Outcome::Done),
        "FAILED" => Some(Outcome::Failed),
        _ => None,
    }
}

fn gave_up(
    out: &Output,
    timeout: Option<Duration>,
    last: Option<&GetTaskStatusResponse>,
) -> Outcome {
    out.interrupt();
    eprintln!(
        "taskctl: gave up waiting after {}; the task is still {}",
        humantime::format_duration(timeout.unwrap_or_default()),
        last.map_or("unknown", |t| t.status.as_str())
    );
    Outcome::GaveUp
}
