//! The calls most tests make: the service's variables for a Redis and a Processor, CreateTask,
//! GetTaskStatus, waiting for a status, and following a WatchTask stream to its end.

use std::time::Duration;

use task_service::proto::task::{
    CreateTaskRequest, GetTaskStatusRequest, GetTaskStatusResponse, WatchTaskRequest,
    task_client::TaskClient,
};
use tonic::{Request, Status, Streaming, transport::Channel};

use super::{FakeProcessor, TestRedis, eventually};

/// The service's variables for `redis` and `processor`, plus `extra`.
pub fn vars(
    redis: &TestRedis,
    processor: &FakeProcessor,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars = redis.vars();
    vars.push(processor.addr_var());
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

/// A CreateTask request for `key`.
pub fn create_request(key: &str) -> Request<CreateTaskRequest> {
    Request::new(CreateTaskRequest {
        original_file_key: key.into(),
        request_id: String::new(),
    })
}

/// Creates a task for `key`; returns its id.
pub async fn create(client: &mut TaskClient<Channel>, key: &str) -> String {
    client
        .create_task(create_request(key))
        .await
        .unwrap()
        .into_inner()
        .task_id
}

/// The task's status.
pub async fn status(client: &mut TaskClient<Channel>, task_id: &str) -> GetTaskStatusResponse {
    client
        .get_task_status(GetTaskStatusRequest {
            task_id: task_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the task shows `wanted`, and returns it.
pub async fn wait_for_status(
    client: &TaskClient<Channel>,
    task_id: &str,
    wanted: &str,
    limit: Duration,
) -> GetTaskStatusResponse {
    wait_until(
        client,
        task_id,
        limit,
        &format!("to be {wanted}"),
        |found| found.status == wanted,
    )
    .await
}

/// Waits until the task is final (COMPLETED or FAILED), and returns it.
pub async fn final_status(
    client: &TaskClient<Channel>,
    task_id: &str,
    limit: Duration,
) -> GetTaskStatusResponse {
    wait_until(client, task_id, limit, "to be final", |found| {
        matches!(found.status.as_str(), "COMPLETED" | "FAILED")
    })
    .await
}

async fn wait_until(
    client: &TaskClient<Channel>,
    task_id: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&GetTaskStatusResponse) -> bool,
) -> GetTaskStatusResponse {
    eventually(limit, &format!("task {task_id} {what}"), || {
        let mut client = client.clone();
        let done = &done;
        async move {
            let found = status(&mut client, task_id).await;
            done(&found).then_some(found)
        }
    })
    .await
}

/// What a WatchTask stream sent, and how it ended (`Ok` for a clean end).
pub struct Watched {
    pub states: Vec<GetTaskStatusResponse>,
    pub end: Result<(), Status>,
}

impl Watched {
    /// The statuses sent, in order.
    pub fn statuses(&self) -> Vec<&str> {
        self.states.iter().map(|s| s.status.as_str()).collect()
    }
}

/// Follows WatchTask for `task_id` to the end of its stream (or `limit`, which panics).
pub async fn watch(client: &TaskClient<Channel>, task_id: &str, limit: Duration) -> Watched {
    match open_watch(client, task_id).await {
        Ok(stream) => follow(stream, Vec::new(), limit).await,
        Err(e) => Watched {
            states: Vec::new(),
            end: Err(e),
        },
    }
}

/// Opens a WatchTask stream.
pub async fn open_watch(
    client: &TaskClient<Channel>,
    task_id: &str,
) -> Result<Streaming<GetTaskStatusResponse>, Status> {
    let request = WatchTaskRequest {
        task_id: task_id.into(),
    };
    Ok(client.clone().watch_task(request).await?.into_inner())
}

/// Reads `stream` to its end (or `limit`, which panics), after the states already `seen`.
pub async fn follow(
    mut stream: Streaming<GetTaskStatusResponse>,
    seen: Vec<GetTaskStatusResponse>,
    limit: Duration,
) -> Watched {
    let read = async move {
        let mut states = seen;
        loop {
            match stream.message().await {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {
                    return Watched {
                        states,
                        end: Ok(()),
                    };
                }
                Err(e) => {
                    return Watched {
                        states,
                        end: Err(e),
                    };
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("a watch did not end within {limit:?}"))
}
