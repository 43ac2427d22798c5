//! The one table that turns every failure into a `tonic::Status` with a message a person can
//! act on: the API's own errors ([`Error`]), the server middleware's ([`status_for`]) and
//! malformed gRPC input's ([`status_for_framing`], [`undecodable_message`]).

use std::time::Duration;

use middleware::{DeadlineExceeded, Overloaded, RateLimitScope, RateLimited};
use tonic::{Code, Status, metadata::MetadataValue};

use crate::store::StoreError;

/// Errors of the middleware stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is empty, malformed or unsafe; the text says which and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// No task has this id.
    #[error(
        "no task with task_id {0} (it never existed, or it finished more than TASK_TTL_DAYS ago and expired)"
    )]
    NotFound(String),
    /// A task seen while being watched is gone.
    #[error("task {0} is gone: it expired (TASK_TTL_DAYS after it finished) or Redis lost it")]
    Gone(String),
    /// A `request_id` already stands for a task of another file.
    #[error(
        "request_id {request_id:?} was already used, for task {task_id} of another file; use a \
         new request_id for a new task"
    )]
    RequestIdTaken {
        /// The request id.
        request_id: String,
        /// The task it stands for.
        task_id: String,
    },
    /// The call cannot be carried out in the task's state; the text says why.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer the call needs cannot be reached; the text says which and what to do.
    #[error("{0}")]
    Unavailable(String),
    /// A bound the caller reached; the text names it.
    #[error("{0}")]
    TooMany(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) | Error::Gone(_) => Code::NotFound,
            Error::RequestIdTaken { .. } => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::TooMany(_) => Code::ResourceExhausted,
            Error::Store(StoreError::NotReplicated { .. }) => Code::Unavailable,
            Error::Store(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}

/// The HTTP status that stands for a gRPC code, for the console's pages (as the gRPC-HTTP
/// gateways map them).
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::InvalidArgument | Code::OutOfRange => H::BAD_REQUEST,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => H::CONFLICT,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
            H::INTERNAL_SERVER_ERROR
        }
    }
}

/// What is wrong with a unary request's gRPC framing (see `server::unary_framing`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The body ended before any message.
    #[error("the request carries no message; a unary call needs exactly one")]
    NoMessage,
    /// A second message followed the first.
    #[error("the request carries more than one message; a unary call takes exactly one")]
    SeveralMessages,
    /// The compressed-flag is neither 0 nor 1.
    #[error("invalid compressed-flag {0} in a message prefix (valid flags are 0 and 1)")]
    InvalidFlag(u8),
    /// The compressed-flag is set, with no `grpc-encoding` saying how.
    #[error("a message has its compressed-flag set but the request has no grpc-encoding header")]
    CompressedWithoutEncoding,
    /// The declared length is over the server's limit.
    #[error(
        "the request message declares {declared} bytes; this server accepts at most {limit} \
         (TASK_MAX_MESSAGE_BYTES)"
    )]
    TooLarge {
        /// Declared by the prefix.
        declared: usize,
        /// The server's limit.
        limit: usize,
    },
    /// The body ended inside a 5-byte message prefix.
    #[error("the request body ended inside a message prefix ({got} of its 5 bytes)")]
    TruncatedPrefix {
        /// Prefix bytes received.
        got: usize,
    },
    /// The body ended before the declared length.
    #[error("the request body ended inside a message ({got} of the {declared} bytes it declares)")]
    TruncatedMessage {
        /// Message bytes received.
        got: usize,
        /// Declared by the prefix.
        declared: usize,
    },
}

/// A unary request's body did not arrive in time (see `server::unary_framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's body did not arrive within {} (TASK_REQUEST_BODY_TIMEOUT)", humantime::format_duration(*limit))]
pub struct RequestBodyTimedOut {
    /// The limit.
    pub limit: Duration,
}

/// One connection has as many requests in flight as it may (see `server::connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this connection has {limit} requests in flight, the most one connection may have \
     (TASK_MAX_IN_FLIGHT_PER_CONNECTION); wait for answers or open another connection"
)]
pub struct ConnectionBusy {
    /// The limit.
    pub limit: usize,
}

/// Why a request was refused by authentication (see `server::auth`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and no listed client certificate.
    #[error(
        "no credentials: send `authorization: Bearer <token>` (or, over mTLS, a client \
         certificate listed in TASK_AUTH_TOKENS_FILE)"
    )]
    NoCredentials,
    /// The `authorization` metadata is not `Bearer <token>`.
    #[error("the authorization metadata must be `Bearer <token>`")]
    Malformed,
    /// A token nobody is listed with.
    #[error("the token is not known to this service")]
    UnknownToken,
    /// A client certificate nobody is listed with.
    #[error("the client certificate {0:?} is not listed in TASK_AUTH_TOKENS_FILE")]
    UnknownCertificate(String),
    /// The caller's scope is too small for the method.
    #[error("{method} needs the {needed} scope; the caller {caller:?} has {has}")]
    Scope {
        /// The method called.
        method: String,
        /// The scope it needs.
        needed: &'static str,
        /// The caller's name.
        caller: String,
        /// The caller's scope.
        has: &'static str,
    },
}

/// The status for malformed framing: RESOURCE_EXHAUSTED for a message over the size limit (the
/// gRPC convention), INVALID_ARGUMENT for the rest.
pub fn status_for_framing(error: &FramingError) -> Status {
    let code = match error {
        FramingError::TooLarge { .. } => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    };
    Status::new(code, error.to_string())
}

/// The status for a message that is not valid protobuf of its type (e.g. invalid UTF-8 in a
/// string field): INVALID_ARGUMENT, where gRPC's default codec says INTERNAL.
pub fn undecodable_message(type_name: &str, error: &prost::DecodeError) -> Status {
    Status::invalid_argument(format!("the message is not a valid {type_name}: {error}"))
}

/// The status for an error that a server layer returned instead of a response.
pub fn status_for(error: &BoxError) -> Status {
    if let Some(e) = error.downcast_ref::<DeadlineExceeded>() {
        return Status::deadline_exceeded(format!(
            "the request did not finish within its deadline of {} (the client's grpc-timeout, \
             else TASK_REQUEST_TIMEOUT, at most TASK_REQUEST_TIMEOUT_MAX)",
            humantime::format_duration(e.timeout)
        ));
    }
    if let Some(e) = error.downcast_ref::<RateLimited>() {
        let whose = match e.scope {
            RateLimitScope::PerClient => {
                "this client's request rate is over TASK_RATE_LIMIT_PER_CLIENT"
            }
            RateLimitScope::Global => "the service's request rate is over TASK_RATE_LIMIT_GLOBAL",
        };
        let mut status = Status::resource_exhausted(format!(
            "rate limited: {whose}; retry after {}",
            humantime::format_duration(round_ms(e.retry_after))
        ));
        retry_hint(&mut status, e.retry_after);
        return status;
    }
    if let Some(e) = error.downcast_ref::<RequestBodyTimedOut>() {
        return Status::deadline_exceeded(e.to_string());
    }
    if let Some(e) = error.downcast_ref::<ConnectionBusy>() {
        return Status::resource_exhausted(e.to_string());
    }
    if let Some(e) = error.downcast_ref::<AuthError>() {
        return match e {
            AuthError::Scope { .. } => Status::permission_denied(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        };
    }
    if error.is::<Overloaded>() {
        return Status::unavailable(
            "the server is shedding load: too many requests in flight (TASK_MAX_IN_FLIGHT); retry with backoff",
        );
    }
    if let Some(status) = error.downcast_ref::<Status>() {
        return status.clone();
    }
    tracing::error!(%error, "a request failed with an error no layer turned into a status");
    Status::internal(format!("the server failed to handle the request: {error}"))
}

/// `retry-after` in whole seconds (HTTP's convention, rounded up) and gRPC's retry pushback in
/// milliseconds, so that both kinds of client can wait the right time.
fn retry_hint(status: &mut Status, after: Duration) {
    let seconds = after.as_millis().div_ceil(1000).max(1);
    let metadata = status.metadata_mut();
    metadata.insert("retry-after", MetadataValue::from(seconds as u64));
    metadata.insert(
        "grpc-retry-pushback-ms",
        MetadataValue::from(after.as_millis().max(1) as u64),
    );
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middleware_errors_get_their_codes() {
        let deadline: BoxError = Box::new(DeadlineExceeded {
            timeout: Duration::from_millis(50),
        });
        assert_eq!(status_for(&deadline).code(), Code::DeadlineExceeded);

        let limited: BoxError = Box::new(RateLimited {
            scope: RateLimitScope::PerClient,
            retry_after: Duration::from_millis(1500),
        });
        let status = status_for(&limited);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "2");
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "1500"
        );

        let shed: BoxError = Box::new(Overloaded::new());
        assert_eq!(status_for(&shed).code(), Code::Unavailable);

        let slow: BoxError = Box::new(RequestBodyTimedOut {
            limit: Duration::from_secs(2),
        });
        let status = status_for(&slow);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status.message().contains("TASK_REQUEST_BODY_TIMEOUT"),
            "{}",
            status.message()
        );

        let busy: BoxError = Box::new(ConnectionBusy { limit: 64 });
        assert_eq!(status_for(&busy).code(), Code::ResourceExhausted);

        let anonymous: BoxError = Box::new(AuthError::NoCredentials);
        assert_eq!(status_for(&anonymous).code(), Code::Unauthenticated);
        let small: BoxError = Box::new(AuthError::Scope {
            method: "task.Task/CancelTask".into(),
            needed: "admin",
            caller: "gateway".into(),
            has: "write",
        });
        let status = status_for(&small);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("admin scope"),
            "{}",
            status.message()
        );

        let other: BoxError = "boom".into();
        assert_eq!(status_for(&other).code(), Code::Internal);
    }
}
