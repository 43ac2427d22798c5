//! Per-connection accounting: each request counts as in flight on its connection until its
//! response body ends (the connection's idle clock reads this count), one connection may have at
//! most `TASK_MAX_IN_FLIGHT_PER_CONNECTION` (so that one peer cannot take every server-wide
//! slot), and the peer's address goes into the request as tonic's `TcpConnectInfo`, which the
//! rate limiter keys on.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

use crate::{
    error::{BoxError, ConnectionBusy},
    transport::PeerInfo,
};

/// Wraps services in [`Connection`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLayer {
    limit: Option<usize>,
    uncapped: &'static [&'static str],
}

impl ConnectionLayer {
    /// At most `limit` requests in flight per connection (`None`: no limit); the paths under
    /// `uncapped` (long streams, bounded their own way) count, for the idle clock, but are not
    /// refused.
    pub fn new(limit: Option<usize>, uncapped: &'static [&'static str]) -> Self {
        Self { limit, uncapped }
    }
}

impl<S> Layer<S> for ConnectionLayer {
    type Service = Connection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Connection {
            inner,
            limit: self.limit,
            uncapped: self.uncapped,
        }
    }
}

/// See the module.
#[derive(Clone, Debug)]
pub struct Connection<S> {
    inner: S,
    limit: Option<usize>,
    uncapped: &'static [&'static str],
}

/// One request counted on its connection until dropped (in the cap's count too, unless it is
/// a long stream).
#[derive(Debug)]
pub struct Active {
    all: Arc<AtomicUsize>,
    capped: Option<Arc<AtomicUsize>>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.all.fetch_sub(1, Ordering::Relaxed);
        if let Some(capped) = &self.capped {
            capped.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Connection<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(peer) = request.extensions().get::<PeerInfo>().cloned() else {
            return ResponseFuture::Counted {
                inner: self.inner.call(request),
                active: None,
            };
        };
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: Some(peer.local_addr),
            remote_addr: Some(peer.remote_addr),
        });
        let path = request.uri().path();
        let capped = !self.uncapped.iter().any(|prefix| path.starts_with(prefix));
        peer.active.fetch_add(1, Ordering::Relaxed);
        let in_flight = if capped {
            peer.capped.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        let active = Active {
            all: peer.active,
            capped: capped.then_some(peer.capped),
        };
        if let Some(limit) = self.limit.filter(|limit| in_flight > *limit) {
            drop(active);
            return ResponseFuture::Busy { limit };
        }
        ResponseFuture::Counted {
            inner: self.inner.call(request),
            active: Some(active),
        }
    }
}

pin_project! {
    /// The inner answer (`inner`), its body counted; or the refusal of a busy connection.
    #[project = Projected]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        /// Passed on.
        Counted {
            #[pin]
            inner: F,
            active: Option<Active>,
        },
        /// Refused.
        Busy { limit: usize },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<CountedBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Busy { limit } => {
                Poll::Ready(Err(Box::new(ConnectionBusy { limit: *limit })))
            }
            Projected::Counted { inner, active } => {
                let response = ready!(inner.poll(cx)).map_err(Into::into)?;
                let active = active.take();
                Poll::Ready(Ok(response.map(|body| CountedBody {
                    inner: body,
                    _active: active,
                })))
            }
        }
    }
}

pin_project! {
    /// A response body that keeps its request counted until it ends or is dropped.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        _active: Option<Active>,
    }
}

impl<B: Default> Default for CountedBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            _active: None,
        }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
