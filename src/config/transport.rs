//! The connections of the gRPC server and of the metrics endpoint: how many, how long each may
//! take to start, stay idle and live, what HTTP/2 advertises, and TLS.

use std::time::Duration;

use super::{ConfigError, reader::Vars, vars};
use crate::transport::TlsFiles;

/// The servers' connections.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Connections the gRPC server keeps open at once, at most.
    pub max_connections: usize,
    /// Connections one peer address may keep open at once.
    pub max_connections_per_peer: usize,
    /// Time for a new connection's TLS handshake and HTTP/2 preface.
    pub preface_timeout: Duration,
    /// Time a connection stays open with no request in flight.
    pub idle_timeout: Duration,
    /// Age at which a connection is asked to close (GOAWAY; requests in flight finish).
    pub max_connection_age: Duration,
    /// Time after that age before it is closed whatever is in flight.
    pub max_connection_age_grace: Duration,
    /// Streams a connection may have open at once, advertised in the HTTP/2 settings.
    pub max_concurrent_streams: u32,
    /// How often a connection is pinged.
    pub keepalive_interval: Duration,
    /// Time a ping's answer may take.
    pub keepalive_timeout: Duration,
    /// TLS for the gRPC server; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are looked at for changes.
    pub tls_reload_interval: Duration,
    /// Connections the metrics endpoint keeps open at once, at most.
    pub metrics_max_connections: usize,
    /// Time a metrics client has to send its request's headers.
    pub metrics_header_timeout: Duration,
}

impl TransportConfig {
    pub(super) fn parse(v: Vars<'_>) -> Result<Self, ConfigError> {
        let cert = v.file(vars::TLS_CERT_FILE)?;
        let key = v.file(vars::TLS_KEY_FILE)?;
        let client_ca = v.file(vars::TLS_CLIENT_CA_FILE)?;
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None) if client_ca.is_none() => None,
            (None, None) => {
                return Err(v.error(
                    vars::TLS_CLIENT_CA_FILE,
                    "set only with TASK_TLS_CERT_FILE and TASK_TLS_KEY_FILE (client certificates need TLS)",
                ));
            }
            (Some(_), None) => {
                return Err(v.error(vars::TLS_KEY_FILE, "the private key of TASK_TLS_CERT_FILE"));
            }
            (None, Some(_)) => {
                return Err(v.error(vars::TLS_CERT_FILE, "the certificate of TASK_TLS_KEY_FILE"));
            }
        };
        Ok(Self {
            max_connections: v.positive(vars::MAX_CONNECTIONS, 4096)?,
            max_connections_per_peer: v.positive(vars::MAX_CONNECTIONS_PER_PEER, 256)?,
            preface_timeout: v
                .duration(vars::CONNECTION_PREFACE_TIMEOUT, Duration::from_secs(10))?,
            idle_timeout: v.duration(vars::CONNECTION_IDLE_TIMEOUT, Duration::from_secs(300))?,
            max_connection_age: v.duration(vars::MAX_CONNECTION_AGE, Duration::from_secs(1800))?,
            max_connection_age_grace: v
                .duration(vars::MAX_CONNECTION_AGE_GRACE, Duration::from_secs(300))?,
            max_concurrent_streams: v.positive(vars::MAX_CONCURRENT_STREAMS, 128)?,
            keepalive_interval: v
                .duration(vars::HTTP2_KEEPALIVE_INTERVAL, Duration::from_secs(30))?,
            keepalive_timeout: v
                .duration(vars::HTTP2_KEEPALIVE_TIMEOUT, Duration::from_secs(10))?,
            tls,
            tls_reload_interval: v.duration(vars::TLS_RELOAD_INTERVAL, Duration::from_secs(10))?,
            metrics_max_connections: v.positive(vars::METRICS_MAX_CONNECTIONS, 64)?,
            metrics_header_timeout: v
                .duration(vars::METRICS_HEADER_TIMEOUT, Duration::from_secs(5))?,
        })
    }
}
