//! CreateTask: a PENDING task and its dispatch entry in one atomic step (the caller never waits
//! for the Processor). With a `request_id` (AIP-155) a retry — also one whose first answer was
//! lost, also many at once on several replicas — answers the first call's task and creates
//! nothing; the same `request_id` for another file is ALREADY_EXISTS.

use chrono::Utc;

use crate::{
    error::Error,
    proto::task::CreateTaskRequest,
    store::{Created, NewTask},
    task::{TaskId, TaskRecord, timestamp},
};

use super::TaskApi;

/// Longest `request_id` accepted.
const MAX_REQUEST_ID: usize = 128;

impl TaskApi {
    /// Creates the task (or finds the one its `request_id` stands for). `caller_trace` is the
    /// caller's W3C context, carried on when this service records no spans of its own.
    pub async fn create(
        &self,
        request: &CreateTaskRequest,
        caller_trace: &http::HeaderMap,
    ) -> Result<TaskId, Error> {
        let parts = &self.parts;
        parts
            .storage
            .check_key(&request.original_file_key)
            .map_err(Error::InvalidArgument)?;
        let request_id = check_request_id(&request.request_id)?;
        let id = TaskId::new_v4();
        let now = Utc::now();
        let record = TaskRecord::new_pending(id, &request.original_file_key, &timestamp(now));
        let span = tracing::Span::current();
        span.record("task.id", tracing::field::display(id));
        // The request's trace context travels with the queue entry, so that the dispatch and
        // the Processor's spans join this request's trace.
        let mut trace = observability::propagation::to_fields(&span);
        if trace.is_empty() {
            trace = observability::propagation::passthrough(caller_trace);
        }
        let created = parts
            .store
            .create(NewTask {
                record: &record,
                created_ms: u64::try_from(now.timestamp_millis()).unwrap_or(0),
                trace: &trace,
                request: request_id.map(|rid| (rid, parts.config.idempotency_window)),
            })
            .await?;
        match created {
            Created::New { .. } => {
                parts.metrics.tasks_created.inc();
                self.traces.remember(id, &trace);
                tracing::debug!(task.id = %id, "task created");
                Ok(id)
            }
            Created::Existing(first) => {
                parts.metrics.idempotent_replays.inc();
                span.record("task.id", tracing::field::display(first));
                Ok(first)
            }
            Created::Conflict(first) => Err(Error::RequestIdTaken {
                request_id: request.request_id.clone(),
                task_id: first.to_text(),
            }),
        }
    }
}

/// `None` for no request id; else 1–128 characters of `[A-Za-z0-9._:-]`.
fn check_request_id(raw: &str) -> Result<Option<&str>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_REQUEST_ID {
        return Err(Error::InvalidArgument(format!(
            "request_id is {} characters long; the limit is {MAX_REQUEST_ID}",
            raw.len()
        )));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(Error::InvalidArgument(format!(
            "request_id may hold only A-Z, a-z, 0-9, '.', '_', ':' and '-'; it holds {bad:?}"
        )));
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::check_request_id;

    #[test]
    fn request_ids_are_short_and_plain() {
        assert_eq!(check_request_id("").unwrap(), None);
        assert_eq!(
            check_request_id("upload-42:v1.b_c").unwrap(),
            Some("upload-42:v1.b_c")
        );
        assert!(check_request_id(&"a".repeat(128)).is_ok());
        for bad in [
            "a".repeat(129),
            "with space".into(),
            "ünï".into(),
            "a/b".into(),
        ] {
            assert!(check_request_id(&bad).is_err(), "{bad:?}");
        }
    }
}
