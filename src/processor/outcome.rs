//! What a ProcessVideo call through the client stack came to, as the dispatcher acts on it:
//! accepted, rejected for good, held back by the circuit breaker, or a transient failure worth
//! another attempt. The same rules classify errors for the retry layer and the breaker.
//!
//! Transient (retried, then retried in later rounds): UNAVAILABLE, RESOURCE_EXHAUSTED (the
//! Processor sheds load; ProcessVideo is idempotent by `task_id`, so a retry is safe),
//! DEADLINE_EXCEEDED (same reason; see the dispatcher for a Processor that answers only when
//! finished), ABORTED, CANCELLED, INTERNAL and UNKNOWN (the Processor failed on its side — most
//! often its own Redis is unreachable, which must not fail tasks during a Redis restart; a task
//! that crashes the Processor every time still ends FAILED at `TASK_DISPATCH_MAX_ATTEMPTS`), and
//! every failure to reach the Processor (a status the client made from a transport error, or any
//! error that is not a status).
//! ALREADY_EXISTS means the Processor already has the task: accepted.
//! Everything else — INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED,
//! UNIMPLEMENTED, UNAUTHENTICATED, OUT_OF_RANGE, DATA_LOSS — is the Processor's answer about
//! this task, and ends it FAILED with that answer at once.

use middleware::{
    circuit_breaker::{CallOutcome, CircuitOpen},
    retry::{RetriesExhausted, RetryBudgetExhausted},
};
use tonic::{Code, Status};

use super::client::BoxError;

/// What one dispatch round (a call with its retries) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The Processor accepted the task.
    Accepted,
    /// The Processor refused the task; the text is its code and message.
    Rejected(String),
    /// The circuit breaker held the call back; nothing reached the Processor.
    CircuitOpen,
    /// The Processor could not be reached or was busy; the text says how.
    Transient {
        /// What happened, for the task's `error_message` should it end FAILED.
        message: String,
        /// Whether the last attempt ran out of time (the Processor may be working on it).
        deadline: bool,
    },
}

/// Classifies a result of the client stack.
pub fn classify(result: Result<(), BoxError>) -> Answer {
    let error = match result {
        Ok(()) => return Answer::Accepted,
        Err(error) => error,
    };
    let cause = root_cause(error.as_ref());
    if cause.is::<CircuitOpen>() {
        return Answer::CircuitOpen;
    }
    match cause.downcast_ref::<Status>() {
        Some(status) if status.code() == Code::AlreadyExists => Answer::Accepted,
        Some(status) if !is_transient_status(status) => Answer::Rejected(describe_status(status)),
        Some(status) => Answer::Transient {
            message: describe_status(status),
            deadline: status.code() == Code::DeadlineExceeded,
        },
        None => Answer::Transient {
            message: cause.to_string(),
            deadline: false,
        },
    }
}

/// Whether an error of the client stack is worth retrying (the retry layer's classifier).
pub fn is_transient(error: &BoxError) -> bool {
    let cause = root_cause(error.as_ref());
    if cause.is::<CircuitOpen>() {
        return false;
    }
    cause
        .downcast_ref::<Status>()
        .is_none_or(is_transient_status)
}

/// How a call's result speaks of the Processor's health (the circuit breaker's classifier):
/// only transient failures count against it; a refusal is a healthy Processor's answer.
pub fn breaker_outcome(result: Result<&(), &BoxError>) -> CallOutcome {
    match result {
        Ok(()) => CallOutcome::Success,
        Err(error) if is_transient(error) => CallOutcome::Failure,
        Err(_) => CallOutcome::Success,
    }
}

fn is_transient_status(status: &Status) -> bool {
    use std::error::Error as _;
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::Internal
        | Code::Unknown => true,
        // A status the client made from a transport error (connection reset, refused, h2
        // protocol error) carries that error as its source: the Processor never answered.
        _ => status.source().is_some(),
    }
}

fn describe_status(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The innermost error: retry's wrappers are looked through.
fn root_cause<'a>(
    error: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> &'a (dyn std::error::Error + Send + Sync + 'static) {
    if let Some(e) = error.downcast_ref::<RetriesExhausted>() {
        return root_cause(e.source.as_ref());
    }
    if let Some(e) = error.downcast_ref::<RetryBudgetExhausted>() {
        return root_cause(e.source.as_ref());
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code) -> Result<(), BoxError> {
        Err(Status::new(code, "said so").into())
    }

    #[test]
    fn the_never_retry_codes_end_the_task_with_the_processors_words() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            let outcome = classify(status(code));
            assert!(
                matches!(&outcome, Answer::Rejected(m) if m.contains("said so")),
                "{code:?}: {outcome:?}"
            );
            assert!(!is_transient(&Status::new(code, "x").into()));
        }
    }

    #[test]
    fn unavailable_busy_and_late_are_transient() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(
                matches!(classify(status(code)), Answer::Transient { .. }),
                "{code:?}"
            );
        }
        assert!(matches!(
            classify(status(Code::DeadlineExceeded)),
            Answer::Transient { deadline: true, .. }
        ));
    }

    #[test]
    fn already_exists_is_acceptance() {
        assert_eq!(classify(status(Code::AlreadyExists)), Answer::Accepted);
    }

    #[test]
    fn retry_wrappers_are_looked_through() {
        let wrapped: BoxError = Box::new(RetriesExhausted {
            attempts: 3,
            source: Status::unavailable("down").into(),
        });
        assert!(
            matches!(classify(Err(wrapped)), Answer::Transient { message, .. } if message.contains("down"))
        );
    }

    #[test]
    fn a_transport_failure_is_transient_whatever_its_code() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let status = Status::from_error(Box::new(io));
        assert!(is_transient(&status.into()));
    }
}
