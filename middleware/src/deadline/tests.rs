//! Tests for the deadline layer, run on paused time.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::*;

type Mock = mock::Mock<Request<()>, Response<&'static str>>;
type Handle = mock::Handle<Request<()>, Response<&'static str>>;

const DEFAULT: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(30);

fn service() -> (Deadline<Mock>, Handle) {
    let (mock, handle) = mock::pair();
    (DeadlineLayer::new(DEFAULT, MAX).layer(mock), handle)
}

fn request(timeout: Option<&'static str>) -> Request<()> {
    let mut req = Request::new(());
    if let Some(t) = timeout {
        req.headers_mut()
            .insert(grpc_timeout::GRPC_TIMEOUT, HeaderValue::from_static(t));
    }
    req
}

/// Sends `timeout` through the layer with an inner service that never answers, and
/// returns what the inner service saw and when the deadline error arrived.
async fn run_to_deadline(timeout: Option<&'static str>) -> (String, Duration, Duration) {
    let (svc, mut handle) = service();
    let start = Instant::now();
    let fut = svc.oneshot(request(timeout));
    let mut fut = pin!(fut);
    // Let the request reach the mock, then keep its responder alive (never answered).
    let (seen, _responder) = tokio::select! {
        biased;
        _ = &mut fut => panic!("finished before the request was seen"),
        r = handle.next_request() => r.unwrap(),
    };
    let header = seen.headers()[grpc_timeout::GRPC_TIMEOUT]
        .to_str()
        .unwrap()
        .to_owned();
    let err = fut.await.unwrap_err();
    let exceeded = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("DeadlineExceeded");
    (header, exceeded.timeout, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn shorter_client_timeout_wins() {
    let (header, timeout, elapsed) = run_to_deadline(Some("2S")).await;
    assert_eq!(header, "2S");
    assert_eq!(timeout, Duration::from_secs(2));
    assert_eq!(elapsed, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn longer_client_timeout_is_capped() {
    let (header, timeout, elapsed) = run_to_deadline(Some("5M")).await;
    assert_eq!(header, "30S");
    assert_eq!(timeout, MAX);
    assert_eq!(elapsed, MAX);
}

#[tokio::test(start_paused = true)]
async fn missing_header_uses_default() {
    let (header, timeout, elapsed) = run_to_deadline(None).await;
    assert_eq!(header, "10S");
    assert_eq!(timeout, DEFAULT);
    assert_eq!(elapsed, DEFAULT);
}

#[tokio::test(start_paused = true)]
async fn garbage_header_uses_default() {
    let (header, timeout, elapsed) = run_to_deadline(Some("soon")).await;
    assert_eq!(header, "10S");
    assert_eq!((timeout, elapsed), (DEFAULT, DEFAULT));
}

#[tokio::test(start_paused = true)]
async fn default_above_max_is_capped() {
    let (mock, _handle) = mock::pair::<Request<()>, Response<&'static str>>();
    let svc = DeadlineLayer::new(Duration::from_secs(60), Duration::from_secs(5)).layer(mock);
    assert_eq!(svc.effective_timeout(None), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn response_in_time_passes_through() {
    let (svc, mut handle) = service();
    let start = Instant::now();
    let responder = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_999)).await;
        send.send_response(Response::new("done"));
    });
    let response = svc.oneshot(request(Some("2S"))).await.unwrap();
    assert_eq!(*response.body(), "done");
    assert_eq!(start.elapsed(), Duration::from_millis(1_999));
    responder.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn inner_error_passes_through_boxed() {
    let (svc, mut handle) = service();
    tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(std::io::Error::other("backend broke"));
    });
    let err = svc.oneshot(request(None)).await.unwrap_err();
    assert!(err.downcast_ref::<DeadlineExceeded>().is_none());
    assert_eq!(err.to_string(), "backend broke");
}

/// A future that never finishes and records when it is dropped.
struct Hang(Arc<AtomicBool>);

impl Future for Hang {
    type Output = Result<Response<&'static str>, BoxError>;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Poll::Pending
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn inner_future_is_dropped_when_the_deadline_fires() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let inner = tower::service_fn(move |_: Request<()>| Hang(flag.clone()));
    let svc = DeadlineLayer::new(DEFAULT, MAX).layer(inner);
    let mut fut = pin!(svc.oneshot(request(Some("100m"))));
    assert!(futures::poll!(&mut fut).is_pending());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(futures::poll!(&mut fut).is_pending());
    assert!(!dropped.load(Ordering::SeqCst));
    tokio::time::advance(Duration::from_millis(1)).await;
    let Poll::Ready(Err(err)) = futures::poll!(&mut fut) else {
        panic!("deadline did not fire at 100 ms");
    };
    assert_eq!(
        err.downcast_ref::<DeadlineExceeded>(),
        Some(&DeadlineExceeded {
            timeout: Duration::from_millis(100)
        })
    );
    // Dropped when the error was produced, while `fut` itself is still alive.
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn the_margin_ends_a_client_deadline_early_but_not_the_default() {
    let (mock, mut handle) = mock::pair::<Request<()>, Response<&'static str>>();
    let svc = DeadlineLayer::new(DEFAULT, MAX)
        .with_margin(Duration::from_millis(5))
        .layer(mock);
    let start = Instant::now();
    let fut = tokio::spawn(svc.clone().oneshot(request(Some("50m"))));
    let (_, _responder) = handle.next_request().await.unwrap();
    let err = fut.await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<DeadlineExceeded>().unwrap().timeout,
        Duration::from_millis(45)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(45));

    let fut = tokio::spawn(svc.oneshot(request(None)));
    let (_, _responder) = handle.next_request().await.unwrap();
    let err = fut.await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<DeadlineExceeded>().unwrap().timeout,
        DEFAULT
    );
}

#[tokio::test(start_paused = true)]
async fn exempt_paths_keep_their_timeout_header_and_get_no_deadline() {
    let (mock, mut handle) = mock::pair::<Request<()>, Response<&'static str>>();
    let svc = DeadlineLayer::new(DEFAULT, MAX)
        .exempt(&["/streams/"])
        .layer(mock);
    let mut req = Request::new(());
    *req.uri_mut() = "/streams/Watch".parse().unwrap();
    let fut = tokio::spawn(svc.oneshot(req));
    let (seen, responder) = handle.next_request().await.unwrap();
    assert!(
        seen.headers().get(grpc_timeout::GRPC_TIMEOUT).is_none(),
        "no header written"
    );
    tokio::time::sleep(MAX * 2).await;
    responder.send_response(Response::new("late but fine"));
    assert_eq!(*fut.await.unwrap().unwrap().body(), "late but fine");
}
