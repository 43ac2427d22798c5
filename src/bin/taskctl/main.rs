//! `taskctl`: a small client of the Task service, for people and scripts.

mod connect;
mod follow;
mod output;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use connect::{Client, Connection};
use output::{Outcome, Output};
use task_service::proto::task::{
    CancelTaskRequest, CreateTaskRequest, GetTaskStatusRequest, GetTaskStatusResponse,
    ListTasksRequest,
};
use tonic::Status;

/// Creates, watches, lists and cancels tasks.
///
/// Exit codes: 0 success (waiting or watching: the task COMPLETED); 1 the call failed; 2 bad
/// usage; 3 the task FAILED; 4 the wait gave up before the task was final.
#[derive(Debug, Parser)]
#[command(name = "taskctl", version)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a task for a video under the storage root; prints its task_id.
    Create {
        /// The video's key, relative to LOCAL_STORAGE_PATH (or starting with it).
        file_key: String,
        /// Makes retries safe: the same id within the service's idempotency window answers
        /// the first call's task instead of creating another (1-128 of A-Z a-z 0-9 . _ : -).
        #[arg(long)]
        request_id: Option<String>,
        /// Wait until the task is COMPLETED or FAILED, and print its final status.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a task's status.
    Status {
        /// The task's id.
        task_id: String,
    },
    /// Follow a task until it is COMPLETED or FAILED, showing its status as it changes.
    Watch {
        /// The task's id.
        task_id: String,
        /// Give up after this long (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks in this status (PENDING, PROCESSING, COMPLETED or FAILED).
        #[arg(long)]
        status: Option<String>,
        /// At most this many tasks.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Cancel a task that has not ended; prints its status after.
    Cancel {
        /// The task's id.
        task_id: String,
        /// Why (the task's error_message becomes "cancelled: <reason>").
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// A page as large as the service allows.
const MAX_PAGE: usize = 500;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut client = match cli.connection.client() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("taskctl: {e}");
            return ExitCode::from(2);
        }
    };
    let out = Output::new(cli.json);
    let outcome = match cli.command {
        Command::Create {
            file_key,
            request_id,
            wait,
            timeout,
        } => {
            create(
                &mut client,
                &out,
                CreateTaskRequest {
                    original_file_key: file_key,
                    request_id: request_id.unwrap_or_default(),
                },
                wait.then_some(timeout),
            )
            .await
        }
        Command::Status { task_id } => client
            .get_task_status(GetTaskStatusRequest { task_id })
            .await
            .map(|response| out.task(response.get_ref())),
        Command::Watch { task_id, timeout } => {
            follow::follow(&mut client, &out, task_id, timeout).await
        }
        Command::List { status, limit } => list(&mut client, &out, status, limit).await,
        Command::Cancel { task_id, reason } => client
            .cancel_task(CancelTaskRequest { task_id, reason })
            .await
            .map(|response| out.task(response.get_ref())),
    };
    match outcome {
        Ok(outcome) => outcome.exit_code(),
        Err(status) => {
            eprintln!(
                "taskctl: {}",
                connect::explain(&status, &cli.connection.addr)
            );
            ExitCode::FAILURE
        }
    }
}

async fn create(
    client: &mut Client,
    out: &Output,
    request: CreateTaskRequest,
    wait: Option<Duration>,
) -> Result<Outcome, Status> {
    let task_id = client.create_task(request).await?.into_inner().task_id;
    match wait {
        None => {
            out.created(&task_id);
            Ok(Outcome::Done)
        }
        Some(timeout) => {
            // In text the id comes at once (the wait may be long); in JSON it is in the final
            // object, so that each line is a whole answer.
            if !out.json() {
                out.created(&task_id);
            }
            follow::follow(client, &out.without_task_id(), task_id, Some(timeout)).await
        }
    }
}

async fn list(
    client: &mut Client,
    out: &Output,
    status: Option<String>,
    limit: usize,
) -> Result<Outcome, Status> {
    let mut tasks: Vec<GetTaskStatusResponse> = Vec::new();
    let mut page_token = String::new();
    while tasks.len() < limit {
        let page = client
            .list_tasks(ListTasksRequest {
                status: status.clone().unwrap_or_default(),
                page_size: i32::try_from((limit - tasks.len()).min(MAX_PAGE)).unwrap_or(1),
                page_token,
            })
            .await?
            .into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    tasks.truncate(limit);
    out.table(&tasks);
    Ok(Outcome::Done)
}
