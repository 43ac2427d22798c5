//! `taskctl`: a small client of the Task service, for people and scripts.

mod connect;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use connect::{Client, Connection};
use task_service::proto::task::{CreateTaskRequest, GetTaskStatusRequest, GetTaskStatusResponse};
use tonic::{Code, Status};

/// Creates tasks and reads their status.
///
/// Exit codes: 0 success (with --wait: the task COMPLETED); 1 the call failed; 2 bad usage;
/// 3 the task FAILED; 4 --wait gave up before the task was final.
#[derive(Debug, Parser)]
#[command(name = "taskctl", version)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a task for a video under the storage root; prints its task_id.
    Create {
        /// The video's key, relative to LOCAL_STORAGE_PATH (or starting with it).
        file_key: String,
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
}

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
    let outcome = match cli.command {
        Command::Create {
            file_key,
            wait,
            timeout,
        } => create(&mut client, file_key, wait, timeout).await,
        Command::Status { task_id } => match client
            .get_task_status(GetTaskStatusRequest { task_id })
            .await
        {
            Ok(response) => {
                print_status(response.get_ref());
                Ok(ExitCode::SUCCESS)
            }
            Err(status) => Err(status),
        },
    };
    outcome.unwrap_or_else(|status| {
        eprintln!("taskctl: {}", explain(&status, &cli.connection.addr));
        ExitCode::FAILURE
    })
}

async fn create(
    client: &mut Client,
    original_file_key: String,
    wait: bool,
    timeout: Duration,
) -> Result<ExitCode, Status> {
    let task_id = client
        .create_task(CreateTaskRequest { original_file_key })
        .await?
        .into_inner()
        .task_id;
    println!("task_id: {task_id}");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let status = client
            .get_task_status(GetTaskStatusRequest {
                task_id: task_id.clone(),
            })
            .await?
            .into_inner();
        if status.status != last {
            eprintln!("taskctl: {}", status.status);
            last = status.status.clone();
        }
        match status.status.as_str() {
            "COMPLETED" => {
                print_status(&status);
                return Ok(ExitCode::SUCCESS);
            }
            "FAILED" => {
                print_status(&status);
                return Ok(ExitCode::from(3));
            }
            _ if tokio::time::Instant::now() >= deadline => {
                eprintln!(
                    "taskctl: gave up waiting after {}; the task is still {}",
                    humantime::format_duration(timeout),
                    status.status
                );
                return Ok(ExitCode::from(4));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn print_status(status: &GetTaskStatusResponse) {
    println!("task_id: {}", status.task_id);
    println!("status: {}", status.status);
    if !status.result_file_key.is_empty() {
        println!("result_file_key: {}", status.result_file_key);
    }
    if !status.error_message.is_empty() {
        println!("error_message: {}", status.error_message);
    }
}

/// A sentence for each code, so that the person knows what to do next.
fn explain(status: &Status, addr: &str) -> String {
    let message = status.message();
    match status.code() {
        Code::InvalidArgument => format!("the request was rejected: {message}"),
        Code::NotFound => format!("not found: {message}"),
        Code::Internal => format!("the task service failed (is its Redis up?): {message}"),
        Code::Unavailable => format!(
            "cannot reach the task service at {addr} (is it running there? does it speak TLS, \
             needing --tls-ca-file?): {message}"
        ),
        Code::Unauthenticated => format!(
            "the service wants credentials (set TASKCTL_TOKEN, or a client certificate): {message}"
        ),
        Code::PermissionDenied => format!("this caller may not do that: {message}"),
        Code::DeadlineExceeded => format!("the task service did not answer in time: {message}"),
        Code::ResourceExhausted => {
            let retry = status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (retry after {v})"))
                .unwrap_or_default();
            format!("too many requests{retry}: {message}")
        }
        code => format!("{code:?}: {message}"),
    }
}
