//! CancelTask: a task the Processor has not accepted (PENDING: queued, waiting for a retry, or
//! its ProcessVideo call in flight on any replica) ends FAILED "cancelled: <reason>" in one
//! fenced step that also takes its entry out of the queue and tells the replica delivering it
//! (which cancels its call). A task the Processor accepted (or shows PROCESSING) is stopped by
//! the Processor first (CancelVideo), then cancelled the same way. Answers the task's state
//! after the call.

use crate::{
    error::Error,
    metrics::TaskEnd,
    proto::task::{CancelTaskRequest, GetTaskStatusResponse},
    store::{CancelAs, CancelOutcome},
    task::{TaskId, TaskStatus, now_timestamp},
};

use super::TaskApi;

/// Longest reason kept.
const MAX_REASON: usize = 1024;

impl TaskApi {
    /// Cancels the task.
    pub async fn cancel(
        &self,
        request: &CancelTaskRequest,
    ) -> Result<GetTaskStatusResponse, Error> {
        let id = TaskId::parse(&request.task_id).map_err(Error::InvalidArgument)?;
        let message = message(&request.reason)?;
        let now = now_timestamp();
        let parts = &self.parts;
        match parts
            .store
            .cancel(id, &message, &now, CancelAs::Unaccepted)
            .await?
        {
            CancelOutcome::Cancelled => self.cancelled(id).await,
            CancelOutcome::Missing => Err(Error::NotFound(id.to_text())),
            CancelOutcome::Final(status) => Err(final_already(id, status)),
            CancelOutcome::Accepted(_) => {
                let Some(canceller) = &parts.canceller else {
                    return Err(Error::FailedPrecondition(
                        "the processor has this task and none is configured to ask to cancel it"
                            .into(),
                    ));
                };
                if let Err(status) = canceller.cancel(id).await {
                    return Err(match status.code() {
                        tonic::Code::Unimplemented => Error::FailedPrecondition(
                            "the processor cannot cancel a task it has accepted".into(),
                        ),
                        code => Error::Unavailable(format!(
                            "the processor did not cancel the task ({code:?}: {}); the task is unchanged — retry",
                            status.message()
                        )),
                    });
                }
                // The Processor stopped it: cancelled whatever it showed, its entry (a call
                // still in flight) included.
                let now = now_timestamp();
                match parts
                    .store
                    .cancel(id, &message, &now, CancelAs::ProcessorAgreed)
                    .await?
                {
                    CancelOutcome::Cancelled => self.cancelled(id).await,
                    CancelOutcome::Missing => Err(Error::NotFound(id.to_text())),
                    // It ended (or another call cancelled it) meanwhile: its state says how.
                    CancelOutcome::Final(_) | CancelOutcome::Accepted(_) => {
                        self.status(&id.to_text()).await
                    }
                }
            }
        }
    }

    async fn cancelled(&self, id: TaskId) -> Result<GetTaskStatusResponse, Error> {
        self.parts.metrics.ended(TaskEnd::Cancelled);
        tracing::info!(task.id = %id, "task cancelled");
        self.status(&id.to_text()).await
    }
}

fn final_already(id: TaskId, status: TaskStatus) -> Error {
    Error::FailedPrecondition(format!(
        "task {id} is already {status}: only a task that is not final can be cancelled"
    ))
}

/// `cancelled`, or `cancelled: <reason>`; a reason must be printable and at most 1 KiB.
fn message(reason: &str) -> Result<String, Error> {
    if reason.len() > MAX_REASON {
        return Err(Error::InvalidArgument(format!(
            "reason is {} bytes long; the limit is {MAX_REASON}",
            reason.len()
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "reason contains a control character; give one printable line".into(),
        ));
    }
    Ok(match reason.trim() {
        "" => "cancelled".to_owned(),
        reason => format!("cancelled: {reason}"),
    })
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_message_starts_with_cancelled() {
        assert_eq!(message("").unwrap(), "cancelled");
        assert_eq!(message(" wrong file ").unwrap(), "cancelled: wrong file");
        assert!(message("a\nb").is_err());
        assert!(message(&"x".repeat(1025)).is_err());
    }
}
