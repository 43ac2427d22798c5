//! Tests for the load-shedding concurrency limit.

use std::task::{Context, Poll};

use futures::FutureExt;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::*;
use crate::BoxError;

type Mock = mock::Mock<&'static str, &'static str>;

fn poll_ready(svc: &mut LoadShed<Mock>) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    // LoadShed always reports ready; the verdict comes from `call`.
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

fn is_overloaded(result: Option<Result<&'static str, BoxError>>) -> bool {
    matches!(result, Some(Err(e)) if e.is::<Overloaded>())
}

/// tonic drives a fresh clone of the service per request (`oneshot`); so do these tests.
#[tokio::test]
async fn sheds_beyond_the_limit_and_admits_again_after_a_completion() {
    let layer = LoadShedLayer::new(2);
    let (mock, mut handle) = mock::pair();
    let svc = layer.layer(mock);

    let first = tokio::spawn(svc.clone().oneshot("one"));
    let second = tokio::spawn(svc.clone().oneshot("two"));
    let (req1, resp1) = handle.next_request().await.unwrap();
    let (req2, resp2) = handle.next_request().await.unwrap();
    let mut seen = [req1, req2];
    seen.sort_unstable();
    assert_eq!(seen, ["one", "two"]);
    assert_eq!(layer.in_flight(), 2);

    // Both slots are held by requests pending in the mock: the third is shed at once.
    let third = svc.clone().oneshot("three").now_or_never();
    assert!(is_overloaded(third), "third request was not shed");
    assert!(
        handle.next_request().now_or_never().is_none(),
        "shed request reached inner"
    );
    assert_eq!(layer.in_flight(), 2);

    // Completing one frees its slot for a new request.
    resp1.send_response("ok");
    assert_eq!(first.await.unwrap().unwrap(), "ok");
    assert_eq!(layer.in_flight(), 1);

    let fourth = tokio::spawn(svc.clone().oneshot("four"));
    let (req4, resp4) = handle.next_request().await.unwrap();
    assert_eq!(req4, "four");
    resp4.send_response("ok");
    assert_eq!(fourth.await.unwrap().unwrap(), "ok");

    resp2.send_response("ok");
    assert_eq!(second.await.unwrap().unwrap(), "ok");
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn clones_of_the_layer_share_one_limit() {
    let layer = LoadShedLayer::new(1);
    let (mock, mut handle) = mock::pair();
    let a = layer.layer(mock.clone());
    let b = layer.clone().layer(mock);

    let held = tokio::spawn(a.oneshot("a"));
    let _pending = handle.next_request().await.unwrap();
    assert!(is_overloaded(b.clone().oneshot("b").now_or_never()));
    assert_eq!(layer.max_in_flight(), 1);

    // Cancelling the in-flight request releases its slot, even without a response.
    held.abort();
    let _ = held.await;
    assert_eq!(layer.in_flight(), 0);
    let admitted = tokio::spawn(b.oneshot("b again"));
    let (req, resp) = handle.next_request().await.unwrap();
    assert_eq!(req, "b again");
    resp.send_response("ok");
    assert_eq!(admitted.await.unwrap().unwrap(), "ok");
}

/// A single long-lived service (e.g. on the client side) that is shed keeps its place in
/// the queue, so the next freed slot goes to it and its next call is admitted.
#[tokio::test]
async fn a_reused_service_gets_the_next_free_slot() {
    let layer = LoadShedLayer::new(1);
    let (mock, mut handle) = mock::pair();
    let mut svc = layer.layer(mock);

    poll_ready(&mut svc);
    let first = svc.call("one");
    let (_, resp1) = handle.next_request().await.unwrap();

    poll_ready(&mut svc);
    assert!(is_overloaded(svc.call("two").now_or_never()));

    resp1.send_response("ok");
    assert_eq!(first.await.unwrap(), "ok");
    poll_ready(&mut svc);
    let third = svc.call("three");
    let (req3, resp3) = handle.next_request().await.unwrap();
    assert_eq!(req3, "three");
    resp3.send_response("ok");
    assert_eq!(third.await.unwrap(), "ok");
    assert_eq!(layer.in_flight(), 0);
}
