//! Configuration of the rate limiter: quotas, client identity, and the tracking bound.

use governor::Quota;

/// What identifies "a client" for the per-client limit.
///
/// When the key cannot be determined for a request (no connect info, header absent,
/// empty or unparseable), the request is counted under one shared "unknown" client, so
/// all such requests together get one client's quota. That is deliberately strict:
/// a request that hides its identity must not escape the per-client limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// The peer's IP address (port ignored), from tonic's `TcpConnectInfo` in the request
    /// extensions. Behind a proxy every request has the proxy's address; use
    /// [`ClientKey::ForwardedFor`] there. (A server that accepts connections itself, under TLS
    /// say, puts a `TcpConnectInfo` in the extensions for this.)
    ///
    /// For both IP keys, IPv4-mapped IPv6 addresses count as their IPv4 address, and
    /// other IPv6 addresses are keyed by their /64 prefix, since one host usually holds
    /// a whole /64 and could otherwise rotate through fresh buckets at will.
    PeerIp,
    /// The value of a request header (gRPC metadata), e.g. a client id header.
    /// Only meaningful if the value is authenticated or at least not worth forging.
    /// Values are kept as a keyed 64-bit hash, so long values cost no extra memory.
    Metadata(http::HeaderName),
    /// The address a trusted proxy wrote into `x-forwarded-for` (a port, if present, is
    /// ignored): proxies append the address they received the request from, so the entry
    /// `trusted_hops` from the right was written by the outermost trusted proxy. Entries
    /// further left were written by the client and are never used (they would let a client
    /// pick a fresh bucket for every request). A header with fewer entries than
    /// `trusted_hops` did not pass the proxies: its requests count as unknown.
    ForwardedFor {
        /// Trusted proxies in front of the service (at least 1).
        trusted_hops: usize,
    },
    /// The caller an authentication layer in front of the limiter established: the
    /// [`ClientIdentity`] in the request extensions.
    Identity,
}

/// Who a request comes from, as established by an authentication layer in front of the rate
/// limiter (which inserts it into the request extensions); read by [`ClientKey::Identity`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity(pub std::sync::Arc<str>);

/// How requests are limited; see [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Server-wide quota across all clients; `None` disables the global limit.
    pub global: Option<Quota>,
    /// Quota for each client; `None` disables the per-client limit (and `key` is unused).
    pub per_client: Option<Quota>,
    /// What identifies a client.
    pub key: ClientKey,
    /// Upper bound on the number of clients with their own state. Beyond it new clients
    /// share one overflow bucket; see [`RateLimitLayer`](super::RateLimitLayer).
    pub max_tracked_clients: usize,
}

impl Default for RateLimitConfig {
    /// No limits, keyed by peer IP, tracking up to 10 000 clients.
    fn default() -> Self {
        Self {
            global: None,
            per_client: None,
            key: ClientKey::PeerIp,
            max_tracked_clients: 10_000,
        }
    }
}
