//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::breaker::Permit;
use super::{CallOutcome, CircuitOpen};
use crate::BoxError;

pin_project! {
    /// Either the inner call (whose outcome is classified and recorded when it
    /// completes), or a fail-fast refusal that resolves at once.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            // Dropping the future drops the permit, which frees a probe slot.
            permit: Option<Permit>,
            classify: C,
        },
        Rejected { error: Option<CircuitOpen> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn called(future: F, permit: Permit, classify: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                classify,
            },
        }
    }

    pub(super) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Fn(Result<&T, &BoxError>) -> CallOutcome,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classify,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                let outcome = classify(result.as_ref());
                if let Some(permit) = permit.take() {
                    match (outcome, &result) {
                        (CallOutcome::Failure, Err(error)) => {
                            permit.record_failure(error.to_string())
                        }
                        (CallOutcome::Failure, Ok(_)) => permit
                            .record_failure("a response the classifier counts as a failure".into()),
                        _ => permit.record(outcome),
                    }
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
