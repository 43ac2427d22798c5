//! One accepted connection as the HTTP/2 server sees it: plain TCP or TLS, with the bytes of
//! its preface (read and checked before it was handed over) replayed first, a slot under the
//! connection cap held until it closes, and two clocks that close it — when it has had no
//! request for the idle timeout, and at its hard age limit.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// What the server knows of the peer at the other end; every request of the connection
/// carries it in its extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Our address.
    pub local_addr: SocketAddr,
    /// The common name of the client certificate it presented (mTLS), if any.
    pub certificate_name: Option<Arc<str>>,
    /// Requests in flight on this connection right now (streams included).
    pub active: Arc<AtomicUsize>,
    /// Those of them the per-connection cap counts (not the long streams).
    pub capped: Arc<AtomicUsize>,
}

/// The connection's byte stream.
#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// When a connection closes by itself.
#[derive(Clone, Copy, Debug)]
pub struct Lifetime {
    /// Closed after this long with no request in flight.
    pub idle_timeout: Duration,
    /// Closed, whatever is in flight, this long after it was opened (the graceful close, with
    /// GOAWAY, comes earlier from the HTTP/2 server's maximum connection age).
    pub hard_age_limit: Duration,
}

/// An accepted connection (see the module).
#[derive(Debug)]
pub struct Conn {
    io: Io,
    replay: Bytes,
    info: PeerInfo,
    lifetime: Lifetime,
    idle_check: Pin<Box<Sleep>>,
    end_of_life: Pin<Box<Sleep>>,
    _slot: super::listener::Slot,
}

impl Conn {
    /// Wraps a plain TCP connection whose first bytes were `replay`.
    pub(super) fn plain(
        stream: TcpStream,
        replay: Bytes,
        info: PeerInfo,
        lifetime: Lifetime,
        slot: super::listener::Slot,
    ) -> Self {
        Self::new(Io::Plain(stream), replay, info, lifetime, slot)
    }

    /// Wraps a TLS connection whose first decrypted bytes were `replay`.
    pub(super) fn tls(
        stream: TlsStream<TcpStream>,
        replay: Bytes,
        info: PeerInfo,
        lifetime: Lifetime,
        slot: super::listener::Slot,
    ) -> Self {
        Self::new(Io::Tls(Box::new(stream)), replay, info, lifetime, slot)
    }

    fn new(
        io: Io,
        replay: Bytes,
        info: PeerInfo,
        lifetime: Lifetime,
        slot: super::listener::Slot,
    ) -> Self {
        Self {
            io,
            replay,
            info,
            lifetime,
            idle_check: Box::pin(tokio::time::sleep_until(after(lifetime.idle_timeout))),
            end_of_life: Box::pin(tokio::time::sleep_until(after(lifetime.hard_age_limit))),
            _slot: slot,
        }
    }

    /// Whether one of the clocks says the connection must close now. Polled on every read, so
    /// that the clocks wake the connection's task when they run out.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.end_of_life.as_mut().poll(cx).is_ready() {
            return true;
        }
        while self.idle_check.as_mut().poll(cx).is_ready() {
            if self.info.active.load(Ordering::Relaxed) == 0 {
                return true;
            }
            // Busy: look again a whole idle timeout later (a request's end restarts nothing
            // here, so an idle connection closes between one and two timeouts after its last).
            let next = after(self.lifetime.idle_timeout);
            self.idle_check.as_mut().reset(next);
        }
        false
    }
}

/// `delay` from now; a delay too long to add is a year (it will not come in practice).
fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired(cx) {
            // As if the peer had closed: the server drops the connection.
            return Poll::Ready(Ok(()));
        }
        if this.replay.has_remaining() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, data),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}
