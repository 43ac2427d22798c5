//! Tests for the rate limiter, on paused tokio time.

use std::num::NonZeroU32;
use std::time::Duration;

use futures::FutureExt;
use governor::Quota;
use http::{HeaderValue, Request};
use tonic::transport::server::TcpConnectInfo;
use tower::Layer;
use tower_test::mock;

use super::*;

type Mock = mock::Mock<Request<()>, ()>;
type Handle = mock::Handle<Request<()>, ()>;

fn quota_per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap())
}

fn from_ip(ip: &str) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(format!("{ip}:40000").parse().unwrap()),
    });
    req
}

fn service(layer: &RateLimitLayer) -> (RateLimit<Mock>, Handle) {
    let (mock, handle) = mock::pair();
    (layer.layer(mock), handle)
}

/// Sends one request; `Ok` if it reached the inner service, the refusal otherwise.
fn send(svc: &mut RateLimit<Mock>, req: Request<()>) -> Result<(), RateLimited> {
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(svc.poll_ready(&mut cx).is_ready());
    match svc.call(req).now_or_never() {
        None => Ok(()), // waiting on the mock: admitted
        Some(Ok(())) => unreachable!("the mock never answers"),
        Some(Err(err)) => Err(*err.downcast::<RateLimited>().expect("a RateLimited leaf")),
    }
}

/// Requests that reached the inner service so far.
fn reached(handle: &mut Handle) -> usize {
    let mut n = 0;
    while let Some(Some(_)) = handle.next_request().now_or_never() {
        n += 1;
    }
    n
}

#[tokio::test(start_paused = true)]
async fn burst_beyond_one_clients_quota_is_refused_per_client_only() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        per_client: Some(quota_per_second(3)),
        ..RateLimitConfig::default()
    });
    let (mut svc, mut handle) = service(&layer);

    for _ in 0..3 {
        assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    }
    let refused = send(&mut svc, from_ip("10.0.0.1")).unwrap_err();
    assert_eq!(refused.scope, RateLimitScope::PerClient);
    // One cell comes back every 1/3 s.
    assert_eq!(refused.retry_after, Duration::from_nanos(333_333_333));

    // Another client still has its whole burst.
    for _ in 0..3 {
        assert_eq!(send(&mut svc, from_ip("10.0.0.2")), Ok(()));
    }
    assert_eq!(reached(&mut handle), 6);

    // Just before the hinted time: still refused; at it: admitted again.
    tokio::time::advance(refused.retry_after - Duration::from_millis(1)).await;
    assert!(send(&mut svc, from_ip("10.0.0.1")).is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    assert_eq!(reached(&mut handle), 1);

    assert_eq!(layer.rejected(RateLimitScope::PerClient), 2);
    assert_eq!(layer.rejected(RateLimitScope::Global), 0);
    assert_eq!(layer.rejected_total(), 2);
    assert_eq!(layer.tracked_clients(), 2);
}

#[tokio::test(start_paused = true)]
async fn global_limit_refuses_across_clients() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        global: Some(quota_per_second(2)),
        ..RateLimitConfig::default()
    });
    let (mut svc, mut handle) = service(&layer);

    assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    assert_eq!(send(&mut svc, from_ip("10.0.0.2")), Ok(()));
    let refused = send(&mut svc, from_ip("10.0.0.3")).unwrap_err();
    assert_eq!(refused.scope, RateLimitScope::Global);
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    assert_eq!(reached(&mut handle), 2);

    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(send(&mut svc, from_ip("10.0.0.3")), Ok(()));
    assert_eq!(layer.rejected(RateLimitScope::Global), 1);
    // Without a per-client quota nothing is tracked per client.
    assert_eq!(layer.tracked_clients(), 0);
}

#[tokio::test(start_paused = true)]
async fn per_client_refusals_do_not_consume_global_capacity() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        global: Some(quota_per_second(2)),
        per_client: Some(quota_per_second(1)),
        ..RateLimitConfig::default()
    });
    let (mut svc, _handle) = service(&layer);

    assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    for _ in 0..5 {
        let refused = send(&mut svc, from_ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.scope, RateLimitScope::PerClient);
    }
    // The noisy client's refused requests left the second global cell for someone else.
    assert_eq!(send(&mut svc, from_ip("10.0.0.2")), Ok(()));
    let refused = send(&mut svc, from_ip("10.0.0.3")).unwrap_err();
    assert_eq!(refused.scope, RateLimitScope::Global);
    assert_eq!(layer.rejected(RateLimitScope::PerClient), 5);
    assert_eq!(layer.rejected(RateLimitScope::Global), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_never_zero() {
    // A quota that replenishes faster than the 1 ms floor.
    let quota = Quota::with_period(Duration::from_micros(10)).unwrap();
    let layer = RateLimitLayer::new(RateLimitConfig {
        global: Some(quota),
        ..RateLimitConfig::default()
    });
    let (mut svc, _handle) = service(&layer);
    assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    let refused = send(&mut svc, from_ip("10.0.0.1")).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn unidentified_requests_share_one_bucket() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        per_client: Some(quota_per_second(2)),
        ..RateLimitConfig::default()
    });
    let (mut svc, _handle) = service(&layer);
    // No TcpConnectInfo at all: the "unknown" client.
    assert_eq!(send(&mut svc, Request::new(())), Ok(()));
    assert_eq!(send(&mut svc, Request::new(())), Ok(()));
    let refused = send(&mut svc, Request::new(())).unwrap_err();
    assert_eq!(refused.scope, RateLimitScope::PerClient);
    // Identified clients are unaffected, and the unknown bucket is not in the table.
    assert_eq!(send(&mut svc, from_ip("10.0.0.1")), Ok(()));
    assert_eq!(layer.tracked_clients(), 1);
}

#[tokio::test(start_paused = true)]
async fn metadata_key_separates_clients_by_header() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        per_client: Some(quota_per_second(1)),
        key: ClientKey::Metadata(http::HeaderName::from_static("x-client-id")),
        ..RateLimitConfig::default()
    });
    let (mut svc, _handle) = service(&layer);
    let with_id = |id: &'static str| {
        let mut req = Request::new(());
        req.headers_mut()
            .insert("x-client-id", HeaderValue::from_static(id));
        req
    };
    assert_eq!(send(&mut svc, with_id("alpha")), Ok(()));
    assert!(send(&mut svc, with_id("alpha")).is_err());
    assert_eq!(send(&mut svc, with_id("beta")), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_limit() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        global: Some(quota_per_second(1)),
        ..RateLimitConfig::default()
    });
    let (mut a, _ha) = service(&layer);
    let (mut b, _hb) = service(&layer.clone());
    let mut c = a.clone();
    assert_eq!(send(&mut a, from_ip("10.0.0.1")), Ok(()));
    assert!(send(&mut b, from_ip("10.0.0.2")).is_err());
    assert!(send(&mut c, from_ip("10.0.0.3")).is_err());
    assert_eq!(layer.rejected_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn per_client_table_stays_bounded() {
    const MAX: usize = 10;
    let layer = RateLimitLayer::new(RateLimitConfig {
        per_client: Some(quota_per_second(1)),
        max_tracked_clients: MAX,
        ..RateLimitConfig::default()
    });
    let (mut svc, mut handle) = service(&layer);

    let mut admitted = 0;
    for i in 0..100u32 {
        let ip = format!("10.1.{}.{}", i / 256, i % 256);
        if send(&mut svc, from_ip(&ip)).is_ok() {
            admitted += 1;
        }
        assert!(layer.tracked_clients() <= MAX);
    }
    // Ten tracked clients, then everyone else shares the overflow bucket (burst 1).
    assert_eq!(layer.tracked_clients(), MAX);
    assert_eq!(layer.overflowed_total(), 90);
    assert_eq!(admitted, MAX + 1);
    assert_eq!(reached(&mut handle), MAX + 1);

    // A tracked client keeps its own bucket while the table is full.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send(&mut svc, from_ip("10.1.0.0")), Ok(()));

    // Once the old entries are stale, a newcomer triggers a sweep and gets its own bucket.
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(send(&mut svc, from_ip("192.0.2.1")), Ok(()));
    assert_eq!(layer.overflowed_total(), 90);
    assert_eq!(layer.tracked_clients(), 1);
}

#[tokio::test(start_paused = true)]
async fn periodic_sweep_drops_stale_clients() {
    let layer = RateLimitLayer::new(RateLimitConfig {
        per_client: Some(quota_per_second(1000)),
        ..RateLimitConfig::default()
    });
    let (mut svc, _handle) = service(&layer);
    for i in 0..1_023u32 {
        let ip = format!("10.2.{}.{}", i / 256, i % 256);
        assert_eq!(send(&mut svc, from_ip(&ip)), Ok(()));
    }
    assert_eq!(layer.tracked_clients(), 1_023);
    tokio::time::advance(Duration::from_secs(1)).await;
    // The 1 024th check sweeps before taking its own cell.
    assert_eq!(send(&mut svc, from_ip("192.0.2.1")), Ok(()));
    assert_eq!(layer.tracked_clients(), 1);
}
