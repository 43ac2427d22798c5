//! A layer that answers every error of the layers below it with a gRPC status (through the
//! table in [`crate::error`]), so that clients always get a proper status, never a reset stream.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
};

use futures::FutureExt;
use futures::future::{Either, Map};
use tower::{Layer, Service};

use crate::error::{BoxError, status_for};

/// Wraps services in [`ErrorsAsStatus`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsAsStatusLayer;

impl<S> Layer<S> for ErrorsAsStatusLayer {
    type Service = ErrorsAsStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorsAsStatus {
            inner,
            not_ready: None,
        }
    }
}

/// Turns the inner service's errors into gRPC status responses.
#[derive(Debug)]
pub struct ErrorsAsStatus<S> {
    inner: S,
    /// An error from `poll_ready`, answered by the next `call`.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorsAsStatus<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

type Respond<B, E> = fn(Result<http::Response<B>, E>) -> Result<http::Response<B>, Infallible>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ErrorsAsStatus<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<http::Response<ResBody>, Infallible>>,
        Map<S::Future, Respond<ResBody, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(error) = self.not_ready.take() {
            return Either::Left(ready(Ok(status_for(&error).into_http())));
        }
        let respond: Respond<ResBody, S::Error> =
            |result| Ok(result.unwrap_or_else(|error| status_for(&error.into()).into_http()));
        Either::Right(self.inner.call(request).map(respond))
    }
}
