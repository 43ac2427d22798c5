//! Reading a service's Prometheus endpoint, and waiting for a figure there.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The endpoint's answer, status line and headers included.
pub async fn exposition(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// Every sample of the endpoint, keyed by name and labels as exposed.
pub async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    exposition(addr)
        .await
        .lines()
        .filter(|l| l.starts_with("task_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Waits until the sample `key` of the endpoint at `addr` satisfies `reached`.
pub async fn wait_for_metric(
    addr: SocketAddr,
    key: &str,
    limit: Duration,
    reached: impl Fn(f64) -> bool,
) {
    super::eventually(limit, &format!("{key} on the metrics endpoint"), || async {
        scrape(addr)
            .await
            .get(key)
            .copied()
            .filter(|value| reached(*value))
            .map(drop)
    })
    .await;
}
