//! The answer every RPC that carries a task gives: the contract's four fields (the result only
//! when COMPLETED, the error only when FAILED) and the file key and times as stored.

use crate::{
    proto::task::GetTaskStatusResponse,
    task::{TaskId, TaskRecord, TaskStatus},
};

/// `record` (of task `id`) as the API answers it.
pub(super) fn of(id: TaskId, record: TaskRecord) -> GetTaskStatusResponse {
    let status = record.status.known();
    if status.is_none() {
        tracing::warn!(task.id = %id, status = %record.status, "task hash holds a status outside the contract");
    }
    GetTaskStatusResponse {
        task_id: id.to_text(),
        result_file_key: if status == Some(TaskStatus::Completed) {
            record.result_file_key
        } else {
            String::new()
        },
        error_message: if status == Some(TaskStatus::Failed) {
            record.error_message
        } else {
            String::new()
        },
        status: record.status.as_str().to_owned(),
        original_file_key: record.original_file_key,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// A record read from the index, answered under its own id (a record whose id field is not a
/// task id is answered as it is written).
pub(super) fn of_listed(record: TaskRecord) -> GetTaskStatusResponse {
    match TaskId::parse(&record.task_id) {
        Ok(id) => of(id, record),
        Err(_) => GetTaskStatusResponse {
            task_id: record.task_id.clone(),
            status: record.status.as_str().to_owned(),
            original_file_key: record.original_file_key,
            created_at: record.created_at,
            updated_at: record.updated_at,
            ..GetTaskStatusResponse::default()
        },
    }
}
