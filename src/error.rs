//! The one table that turns every failure into a `tonic::Status` with a message a person can act on.

use tonic::{Code, Status};

use crate::store::StoreError;

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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Store(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
