//! What taskctl prints: text for people (a table for lists, a live status line for watches) or
//! one JSON object per line for scripts.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    time::Duration,
};

use serde_json::{Map, Value, json};
use task_service::proto::task::GetTaskStatusResponse;

/// How a command ended, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked (a followed task COMPLETED).
    Done,
    /// The followed task FAILED.
    Failed,
    /// The wait gave up before the task was final.
    GaveUp,
}

impl Outcome {
    /// The exit code the `--help` text promises.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Done => ExitCode::SUCCESS,
            Self::Failed => ExitCode::from(3),
            Self::GaveUp => ExitCode::from(4),
        }
    }
}

/// Where and how to print.
#[derive(Clone, Debug)]
pub struct Output {
    json: bool,
    /// Whether stdout is a terminal (a live line can be rewritten).
    live: bool,
    /// Leave the task id out of printed tasks (it was printed already).
    hide_task_id: bool,
}

impl Output {
    /// Text, or JSON lines if `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            live: !json && std::io::stdout().is_terminal(),
            hide_task_id: false,
        }
    }

    /// Whether the output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// The same output, printing tasks without their id in text (JSON keeps it).
    pub fn without_task_id(&self) -> Self {
        Self {
            hide_task_id: !self.json,
            ..self.clone()
        }
    }

    /// A task was created.
    pub fn created(&self, task_id: &str) {
        if self.json {
            line(&json!({ "task_id": task_id }));
        } else {
            println!("task_id: {task_id}");
        }
    }

    /// A task, in full; the outcome is always [`Outcome::Done`] (the call worked).
    pub fn task(&self, task: &GetTaskStatusResponse) -> Outcome {
        if self.json {
            line(&Value::Object(object(task)));
            return Outcome::Done;
        }
        for (name, value) in fields(task) {
            let hidden = self.hide_task_id && name == "task_id";
            if !value.is_empty() && !hidden {
                println!("{name}: {value}");
            }
        }
        Outcome::Done
    }

    /// A followed task's state, `elapsed` after the follow began. Text on a terminal rewrites
    /// one line; elsewhere each state is a line of its own.
    pub fn state(&self, task: &GetTaskStatusResponse, elapsed: Duration) {
        if self.json {
            let mut object = object(task);
            object.insert("elapsed_ms".into(), json!(elapsed.as_millis()));
            line(&Value::Object(object));
        } else if self.live {
            print!("\r\x1b[2K{:<10} {}", task.status, seconds(elapsed));
            let _ = std::io::stdout().flush();
        } else {
            println!("{} after {}", task.status, seconds(elapsed));
        }
    }

    /// The live line ticks on while nothing changes.
    pub fn tick(&self, status: &str, elapsed: Duration) {
        if self.live {
            print!("\r\x1b[2K{status:<10} {}", seconds(elapsed));
            let _ = std::io::stdout().flush();
        }
    }

    /// A followed task ended: its whole state (text) under the live line.
    pub fn ended(&self, task: &GetTaskStatusResponse) {
        if self.json {
            return;
        }
        if self.live {
            println!();
        }
        self.task(task);
    }

    /// Ends the live line (before a message on stderr).
    pub fn interrupt(&self) {
        if self.live {
            println!();
        }
    }

    /// A list of tasks: a table, or one object per task.
    pub fn table(&self, tasks: &[GetTaskStatusResponse]) {
        if self.json {
            for task in tasks {
                line(&Value::Object(object(task)));
            }
            return;
        }
        println!(
            "{:<36}  {:<10}  {:<24}  {:<24}  FILE",
            "TASK_ID", "STATUS", "CREATED", "UPDATED"
        );
        for task in tasks {
            println!(
                "{:<36}  {:<10}  {:<24}  {:<24}  {}",
                task.task_id, task.status, task.created_at, task.updated_at, task.original_file_key
            );
        }
        if tasks.is_empty() {
            println!("(no tasks)");
        }
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

fn line(value: &Value) {
    println!("{value}");
}

fn fields(task: &GetTaskStatusResponse) -> [(&'static str, &str); 7] {
    [
        ("task_id", &task.task_id),
        ("status", &task.status),
        ("result_file_key", &task.result_file_key),
        ("error_message", &task.error_message),
        ("original_file_key", &task.original_file_key),
        ("created_at", &task.created_at),
        ("updated_at", &task.updated_at),
    ]
}

/// A task as a JSON object: every field, empty ones too (a script need not test for keys).
fn object(task: &GetTaskStatusResponse) -> Map<String, Value> {
    fields(task)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), json!(value)))
        .collect()
}
