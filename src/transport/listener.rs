//! The accept loop: takes connections while fewer than the cap are open (beyond it, a new
//! connection is closed at once), backs off when accepting fails for lack of file descriptors or
//! memory (10 ms doubling to 1 s) instead of spinning, and gives each connection its TLS
//! handshake and, for HTTP/2, its 24-byte preface within the preface timeout — in a task of its
//! own, so that a slow peer holds up nobody else. What passes is handed on as a [`Conn`].

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, atomic::AtomicUsize},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    ConnectionStats, Throttle,
    conn::{Conn, Lifetime, PeerInfo},
    tls::common_name,
};

/// What every HTTP/2 connection starts with (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepted connections waiting for the server to take them.
const HANDOFF_QUEUE: usize = 64;

/// How a listener treats its connections.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// Connections open at once from one peer address, at most.
    pub max_connections_per_peer: usize,
    /// Time for the TLS handshake and the HTTP/2 preface.
    pub preface_timeout: Duration,
    /// When an open connection closes by itself.
    pub lifetime: Lifetime,
    /// Whether connections must start with the HTTP/2 preface (the gRPC listener), or may
    /// speak HTTP/1.1 (the metrics endpoint).
    pub http2_only: bool,
}

/// The connections accepted on `listener`: the stream a server serves. Accepting stops, and the
/// listener closes, when the server drops the stream (it stops accepting at shutdown by itself,
/// after it has seen its shutdown signal).
pub fn accept(
    listener: TcpListener,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    stats: Arc<ConnectionStats>,
) -> ReceiverStream<io::Result<Conn>> {
    let (handoff, accepted) = mpsc::channel(HANDOFF_QUEUE);
    stats.set_limit(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    stats.track(&slots);
    tokio::spawn(accept_loop(listener, limits, tls, stats, slots, handoff));
    ReceiverStream::new(accepted)
}

async fn accept_loop(
    listener: TcpListener,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    stats: Arc<ConnectionStats>,
    slots: Arc<Semaphore>,
    handoff: mpsc::Sender<io::Result<Conn>>,
) {
    let local = listener.local_addr().ok();
    let mut backoff = Backoff::default();
    let mut at_cap = Throttle::per_minute();
    let mut peer_at_cap = Throttle::per_minute();
    let peers = Peers::new(limits.max_connections_per_peer);
    let mut failing = Throttle::per_minute();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = handoff.closed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                backoff = Backoff::default();
                accepted
            }
            Err(e) => {
                stats.accept_errors.inc();
                if runs_out_of_resources(&e) {
                    if let Some(suppressed) = failing.allow() {
                        tracing::error!(error = %e, addr = ?local, suppressed, "cannot accept connections (out of file descriptors or memory); backing off");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next()) => {}
                        () = handoff.closed() => return,
                    }
                }
                continue;
            }
        };
        let Some(peer_slot) = peers.take(remote.ip()) else {
            stats.refused.inc();
            if let Some(suppressed) = peer_at_cap.allow() {
                tracing::warn!(addr = ?local, peer = %remote.ip(), limit = limits.max_connections_per_peer, suppressed, "a peer reached its connection cap: closing its new connections (TASK_MAX_CONNECTIONS_PER_PEER)");
            }
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused.inc();
            if let Some(suppressed) = at_cap.allow() {
                tracing::warn!(addr = ?local, limit = limits.max_connections, suppressed, "connection cap reached: closing new connections (TASK_MAX_CONNECTIONS)");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handshake = handshake(
            stream,
            remote,
            Slot {
                _server: slot,
                _peer: peer_slot,
            },
            limits.clone(),
            tls.clone(),
            stats.clone(),
        );
        let handoff = handoff.clone();
        tokio::spawn(async move {
            if let Some(conn) = handshake.await {
                let _ = handoff.send(Ok(conn)).await;
            }
        });
    }
}

/// TLS, then the preface, within the preface timeout; `None` drops the connection.
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    stats: Arc<ConnectionStats>,
) -> Option<Conn> {
    let local = stream.local_addr().ok()?;
    let opened = async {
        match tls {
            None => {
                let mut stream = stream;
                let replay = read_preface(&mut stream, limits.http2_only).await?;
                Ok((None, replay, Err(stream)))
            }
            Some(acceptor) => {
                let mut tls = acceptor.accept(stream).await.inspect_err(|_| {
                    stats.tls_failures.inc();
                })?;
                let name = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(common_name)
                    .map(Arc::<str>::from);
                let replay = read_preface(&mut tls, limits.http2_only).await?;
                Ok::<_, io::Error>((name, replay, Ok(tls)))
            }
        }
    };
    let (certificate_name, replay, io) =
        match tokio::time::timeout(limits.preface_timeout, opened).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(_)) => {
                stats.bad_prefaces.inc();
                return None;
            }
            Err(_) => {
                stats.preface_timeouts.inc();
                return None;
            }
        };
    let info = PeerInfo {
        remote_addr: remote,
        local_addr: local,
        certificate_name,
        active: Arc::new(AtomicUsize::new(0)),
        capped: Arc::new(AtomicUsize::new(0)),
    };
    Some(match io {
        Err(plain) => Conn::plain(plain, replay, info, limits.lifetime, slot),
        Ok(tls) => Conn::tls(tls, replay, info, limits.lifetime, slot),
    })
}

/// Reads and checks the HTTP/2 preface (it is replayed to the server). An HTTP/1.1 listener
/// reads nothing here: hyper's header-read timeout bounds a silent peer there.
async fn read_preface(io: &mut (impl AsyncRead + Unpin), http2_only: bool) -> io::Result<Bytes> {
    if !http2_only {
        return Ok(Bytes::new());
    }
    let mut seen = [0u8; HTTP2_PREFACE.len()];
    io.read_exact(&mut seen).await?;
    if &seen != HTTP2_PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 preface",
        ));
    }
    Ok(Bytes::copy_from_slice(&seen))
}

/// Errors that mean "no resources to accept now": waiting helps, retrying at once spins.
fn runs_out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|code| {
        let errno = Errno::from_raw_os_error(code);
        errno == Errno::MFILE
            || errno == Errno::NFILE
            || errno == Errno::NOBUFS
            || errno == Errno::NOMEM
    })
}

/// A connection's places under the server-wide cap and under its peer's.
#[derive(Debug)]
pub struct Slot {
    _server: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// Connections open per peer address.
#[derive(Clone, Debug)]
struct Peers {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Peers {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for one more connection from `ip`, if it has one left.
    fn take(&self, ip: IpAddr) -> Option<PeerSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

/// One connection counted for its peer until dropped.
#[derive(Debug)]
struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Doubling waits from 10 ms to 1 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(10))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10_ms_to_1_s() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[test]
    fn running_out_of_descriptors_backs_off_and_other_errors_do_not() {
        for code in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOMEM,
        ] {
            assert!(runs_out_of_resources(&io::Error::from_raw_os_error(
                code.raw_os_error()
            )));
        }
        let aborted = io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert!(!runs_out_of_resources(&aborted));
    }

    #[test]
    fn a_peer_gets_its_share_and_gets_it_back() {
        let peers = Peers::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let first = peers.take(ip).unwrap();
        let _second = peers.take(ip).unwrap();
        assert!(peers.take(ip).is_none(), "the third connection of one peer");
        assert!(peers.take(other).is_some(), "another peer is not affected");
        drop(first);
        let again = peers.take(ip);
        assert!(again.is_some(), "a closed connection gives its place back");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(
            peers.take(mapped).is_none(),
            "IPv4-mapped addresses count as the IPv4 peer"
        );
    }
}
