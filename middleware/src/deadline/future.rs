//! The response future of [`Deadline`](super::Deadline).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::DeadlineExceeded;
use crate::BoxError;

pin_project! {
    /// Resolves to the inner response, or to [`DeadlineExceeded`] once the deadline passes.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        // `None` once the deadline fired: the inner future is dropped right away so the
        // handler's work stops, not when the caller gets around to dropping us.
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, sleep: Sleep, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            sleep,
            timeout,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("deadline ResponseFuture polled after completion");
        // Inner first: a response that is ready exactly at the deadline still wins.
        if let Poll::Ready(result) = inner.poll(cx) {
            this.inner.set(None);
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                this.inner.set(None);
                Poll::Ready(Err(DeadlineExceeded {
                    timeout: *this.timeout,
                }
                .into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
