//! Works out which client a request belongs to, per the configured [`ClientKey`].

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderValue;
use tonic::transport::server::TcpConnectInfo;

use super::{ClientIdentity, ClientKey};

/// The identity a per-client bucket is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClientId {
    /// An IPv4 address, or the /64 prefix of an IPv6 address.
    Ip(IpAddr),
    /// A keyed hash of the configured metadata header's value.
    ///
    /// Hashed, not stored, so a tracked client costs the same few bytes whatever the
    /// length of its header (values can be kilobytes, times `max_tracked_clients`). The
    /// hash key is random per process, so collisions cannot be aimed at another client,
    /// and by chance they are negligible at any realistic table size.
    Header(u64),
}

/// Applies a [`ClientKey`] to requests.
#[derive(Debug)]
pub(crate) struct Identify {
    key: ClientKey,
    hasher: RandomState,
}

impl Identify {
    pub(crate) fn new(key: ClientKey) -> Self {
        Self {
            key,
            hasher: RandomState::new(),
        }
    }

    /// The client of `req`, or `None` when it cannot be determined.
    pub(crate) fn client_of<B>(&self, req: &http::Request<B>) -> Option<ClientId> {
        match &self.key {
            ClientKey::PeerIp => req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
                .map(|addr| ClientId::Ip(normalize(addr.ip()))),
            ClientKey::Metadata(name) => req
                .headers()
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| ClientId::Header(self.hasher.hash_one(v.as_bytes()))),
            ClientKey::ForwardedFor { trusted_hops } => req
                .headers()
                .get("x-forwarded-for")
                .and_then(|value| forwarded_by_proxy(value, *trusted_hops))
                .map(|ip| ClientId::Ip(normalize(ip))),
            ClientKey::Identity => req
                .extensions()
                .get::<ClientIdentity>()
                .map(|who| ClientId::Header(self.hasher.hash_one(who.0.as_bytes()))),
        }
    }
}

/// The address `trusted_hops` entries from the right of an `x-forwarded-for` value (the one
/// the outermost trusted proxy wrote), with or without port.
fn forwarded_by_proxy(value: &HeaderValue, trusted_hops: usize) -> Option<IpAddr> {
    let entry = value
        .to_str()
        .ok()?
        .rsplit(',')
        .nth(trusted_hops.checked_sub(1)?)?
        .trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

/// Maps addresses that belong to one client onto one key.
///
/// IPv4-mapped IPv6 addresses (from dual-stack sockets) become plain IPv4. Other IPv6
/// addresses are cut to their /64 prefix: a single host is usually given a whole /64,
/// and keying on the full address would let it mint unlimited fresh buckets.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with(f: impl FnOnce(&mut http::Request<()>)) -> http::Request<()> {
        let mut req = http::Request::new(());
        f(&mut req);
        req
    }

    fn connect_info(addr: &str) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr.parse().unwrap()),
        }
    }

    fn ip(s: &str) -> Option<ClientId> {
        Some(ClientId::Ip(s.parse().unwrap()))
    }

    #[test]
    fn peer_ip_ignores_port_and_canonicalizes() {
        let key = Identify::new(ClientKey::PeerIp);
        let a = req_with(|r| {
            r.extensions_mut().insert(connect_info("10.0.0.1:5000"));
        });
        let b = req_with(|r| {
            r.extensions_mut()
                .insert(connect_info("[::ffff:10.0.0.1]:6000"));
        });
        assert_eq!(key.client_of(&a), ip("10.0.0.1"));
        assert_eq!(key.client_of(&b), ip("10.0.0.1"));
    }

    #[test]
    fn peer_ipv6_is_keyed_by_its_64_prefix() {
        let key = Identify::new(ClientKey::PeerIp);
        let a = req_with(|r| {
            r.extensions_mut()
                .insert(connect_info("[2001:db8:1:2::1]:1"));
        });
        let b = req_with(|r| {
            r.extensions_mut()
                .insert(connect_info("[2001:db8:1:2:ffff::9]:1"));
        });
        assert_eq!(key.client_of(&a), ip("2001:db8:1:2::"));
        assert_eq!(key.client_of(&a), key.client_of(&b));
    }

    #[test]
    fn peer_ip_without_connect_info_is_unknown() {
        let key = Identify::new(ClientKey::PeerIp);
        assert_eq!(key.client_of(&http::Request::new(())), None);
    }

    #[test]
    fn metadata_uses_the_header_value() {
        let key = Identify::new(ClientKey::Metadata(http::HeaderName::from_static(
            "x-client-id",
        )));
        let with = |value: &'static str| {
            req_with(|r| {
                r.headers_mut()
                    .insert("x-client-id", HeaderValue::from_static(value));
            })
        };
        let alpha = key.client_of(&with("alpha"));
        assert!(matches!(alpha, Some(ClientId::Header(_))));
        assert_eq!(alpha, key.client_of(&with("alpha")));
        assert_ne!(alpha, key.client_of(&with("beta")));
        assert_eq!(key.client_of(&with("")), None);
        assert_eq!(key.client_of(&http::Request::new(())), None);
    }

    #[test]
    fn forwarded_for_takes_what_the_trusted_proxy_wrote() {
        let one = Identify::new(ClientKey::ForwardedFor { trusted_hops: 1 });
        let two = Identify::new(ClientKey::ForwardedFor { trusted_hops: 2 });
        let cases = [
            // A client-written first entry is never used.
            (
                "198.51.100.99, 203.0.113.7",
                ip("203.0.113.7"),
                ip("198.51.100.99"),
            ),
            (
                "forged, 203.0.113.7:443 ,10.0.0.1",
                ip("10.0.0.1"),
                ip("203.0.113.7"),
            ),
            ("[2001:db8::1]:443", ip("2001:db8::"), None),
            ("2001:db8::1", ip("2001:db8::"), None),
            ("10.0.0.1, unknown", None, ip("10.0.0.1")),
            ("", None, None),
        ];
        for (value, by_one, by_two) in cases {
            let req = req_with(|r| {
                r.headers_mut()
                    .insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            });
            assert_eq!(one.client_of(&req), by_one, "{value:?}, one hop");
            assert_eq!(two.client_of(&req), by_two, "{value:?}, two hops");
        }
        assert_eq!(one.client_of(&http::Request::new(())), None);
    }

    #[test]
    fn identity_uses_the_authenticated_caller() {
        let key = Identify::new(ClientKey::Identity);
        let as_caller = |name: &str| {
            req_with(|r| {
                r.extensions_mut().insert(ClientIdentity(name.into()));
            })
        };
        assert_eq!(
            key.client_of(&as_caller("gateway")),
            key.client_of(&as_caller("gateway"))
        );
        assert_ne!(
            key.client_of(&as_caller("gateway")),
            key.client_of(&as_caller("ops"))
        );
        assert_eq!(key.client_of(&http::Request::new(())), None);
    }
}
