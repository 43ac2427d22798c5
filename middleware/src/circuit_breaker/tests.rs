//! Tests for the circuit breaker, on paused tokio time.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::*;

type Mock = mock::Mock<&'static str, &'static str>;
type Handle = mock::Handle<&'static str, &'static str>;
type Responder = mock::SendResponse<&'static str>;
type Classifier = fn(Result<&&'static str, &BoxError>) -> CallOutcome;
type Svc = CircuitBreaker<Mock, Classifier>;

const OPEN_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("unavailable")]
struct Unavailable;

#[derive(Debug, thiserror::Error)]
#[error("bad request")]
struct BadRequest;

fn classify(result: Result<&&'static str, &BoxError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Success,
        Err(e) if e.is::<BadRequest>() => CallOutcome::Ignore,
        Err(_) => CallOutcome::Failure,
    }
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    Fail,
    Bad,
}

impl Reply {
    fn send(self, responder: Responder) {
        match self {
            Reply::Ok => responder.send_response("ok"),
            Reply::Fail => responder.send_error(Unavailable),
            Reply::Bad => responder.send_error(BadRequest),
        }
    }
}

/// Only the consecutive-failures trigger, at `n`.
fn consecutive(n: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        consecutive_failures: n,
        minimum_calls: u32::MAX,
        open_for: OPEN_FOR,
        ..CircuitBreakerConfig::default()
    }
}

struct Harness {
    svc: Svc,
    handle: Handle,
    breaker: BreakerHandle,
}

impl Harness {
    fn new(config: CircuitBreakerConfig) -> Self {
        let layer = CircuitBreakerLayer::new(config, classify as Classifier);
        let (mock, handle) = mock::pair();
        Self {
            svc: layer.layer(mock),
            handle,
            breaker: layer.handle(),
        }
    }

    fn poll_ready(&mut self) -> Poll<Result<(), BoxError>> {
        let waker = futures::task::noop_waker();
        self.svc.poll_ready(&mut Context::from_waker(&waker))
    }

    /// Starts a call; returns its future and, if it reached the inner service, the
    /// responder for it.
    fn start(
        &mut self,
    ) -> (
        ResponseFuture<mock::future::ResponseFuture<&'static str>, Classifier>,
        Option<Responder>,
    ) {
        assert!(matches!(self.poll_ready(), Poll::Ready(Ok(()))));
        let fut = self.svc.call("req");
        let responder = self
            .handle
            .next_request()
            .now_or_never()
            .flatten()
            .map(|(_, r)| r);
        (fut, responder)
    }

    /// One complete call: returns whether it reached the inner service, and its result.
    async fn call(&mut self, reply: Reply) -> (bool, Result<&'static str, BoxError>) {
        let (fut, responder) = self.start();
        let reached = responder.is_some();
        if let Some(responder) = responder {
            reply.send(responder);
        }
        (reached, fut.await)
    }

    async fn calls(&mut self, replies: &[Reply]) {
        for &reply in replies {
            let (reached, _) = self.call(reply).await;
            assert!(reached, "a call was refused while replaying {replies:?}");
        }
    }

    async fn trip(&mut self, n: u32) {
        for _ in 0..n {
            let (reached, _) = self.call(Reply::Fail).await;
            assert!(reached);
        }
        assert_eq!(self.breaker.state(), BreakerState::Open);
    }
}

fn circuit_open(result: &Result<&'static str, BoxError>) -> CircuitOpen {
    *result
        .as_ref()
        .unwrap_err()
        .downcast_ref::<CircuitOpen>()
        .expect("a CircuitOpen error")
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures() {
    let mut h = Harness::new(consecutive(3));
    use Reply::*;
    h.calls(&[Fail, Fail, Ok, Fail, Fail]).await;
    assert_eq!(
        h.breaker.state(),
        BreakerState::Closed,
        "a success resets the streak"
    );
    assert_eq!(h.breaker.opened_total(), 0);

    let (reached, result) = h.call(Fail).await;
    assert!(reached);
    assert!(
        result.unwrap_err().is::<Unavailable>(),
        "the tripping error passes through"
    );
    assert_eq!(h.breaker.state(), BreakerState::Open);
    assert_eq!(h.breaker.opened_total(), 1);

    let (reached, result) = h.call(Ok).await;
    assert!(!reached);
    assert_eq!(circuit_open(&result).retry_in, OPEN_FOR);
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_once_minimum_calls_are_seen() {
    let mut h = Harness::new(CircuitBreakerConfig {
        consecutive_failures: 0,
        failure_rate: 0.5,
        window: Duration::from_secs(10),
        minimum_calls: 10,
        open_for: OPEN_FOR,
        half_open_probes: 1,
    });
    use Reply::*;
    // 3 of 10 failed: 30%.
    h.calls(&[Ok, Fail, Ok, Ok, Fail, Ok, Ok, Fail, Ok, Ok])
        .await;
    // 4/11, 5/12, 6/13 stay below half...
    h.calls(&[Fail, Fail, Fail]).await;
    assert_eq!(h.breaker.state(), BreakerState::Closed);
    // ...7/14 reaches it.
    h.calls(&[Fail]).await;
    assert_eq!(h.breaker.state(), BreakerState::Open);
    assert_eq!(h.breaker.opened_total(), 1);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_needs_minimum_calls_within_the_window() {
    let mut h = Harness::new(CircuitBreakerConfig {
        consecutive_failures: 0,
        failure_rate: 0.5,
        window: Duration::from_secs(10),
        minimum_calls: 4,
        open_for: OPEN_FOR,
        half_open_probes: 1,
    });
    use Reply::*;
    h.calls(&[Fail, Fail, Fail]).await;
    assert_eq!(
        h.breaker.state(),
        BreakerState::Closed,
        "100% of 3 calls is below the minimum"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    h.calls(&[Fail, Fail, Fail]).await;
    assert_eq!(
        h.breaker.state(),
        BreakerState::Closed,
        "the first three slid out"
    );
    h.calls(&[Fail]).await;
    assert_eq!(h.breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_neither_count_nor_reset() {
    let mut h = Harness::new(consecutive(2));
    use Reply::*;
    h.calls(&[Fail, Bad, Bad, Bad]).await;
    assert_eq!(h.breaker.state(), BreakerState::Closed);
    h.calls(&[Fail]).await;
    assert_eq!(h.breaker.state(), BreakerState::Open);

    let mut rate = Harness::new(CircuitBreakerConfig {
        consecutive_failures: 0,
        failure_rate: 0.5,
        minimum_calls: 2,
        ..consecutive(0)
    });
    rate.calls(&[Bad; 20]).await;
    assert_eq!(rate.breaker.state(), BreakerState::Closed);
    // Ignored calls are not in the window: one failure of one call is below the minimum.
    rate.calls(&[Fail]).await;
    assert_eq!(rate.breaker.state(), BreakerState::Closed);
    rate.calls(&[Fail]).await;
    assert_eq!(rate.breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_touching_the_inner_service() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    // The inner service is not even ready; an open breaker must not wait for it.
    h.handle.allow(0);
    for i in 0..5 {
        tokio::time::advance(Duration::from_millis(500)).await;
        let (reached, result) = h.call(Reply::Ok).await;
        assert!(!reached);
        let expected = OPEN_FOR - Duration::from_millis(500) * (i + 1);
        assert_eq!(circuit_open(&result).retry_in, expected);
    }
    assert_eq!(h.breaker.rejected_total(), 5);
    assert_eq!(h.breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn closed_and_half_open_readiness_follows_the_inner_service() {
    let mut h = Harness::new(consecutive(1));
    h.handle.allow(0);
    assert!(
        h.poll_ready().is_pending(),
        "closed: waits for the inner service"
    );
    h.handle.allow(1);
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR).await;
    assert_eq!(h.breaker.state(), BreakerState::HalfOpen);
    h.handle.allow(0);
    assert!(
        h.poll_ready().is_pending(),
        "half-open: waits for the inner service"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_configured_probes() {
    let mut h = Harness::new(CircuitBreakerConfig {
        half_open_probes: 2,
        ..consecutive(1)
    });
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR - Duration::from_millis(1)).await;
    assert_eq!(h.breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(h.breaker.state(), BreakerState::HalfOpen);

    let (probe1, responder1) = h.start();
    let (probe2, responder2) = h.start();
    let (third, responder3) = h.start();
    assert!(responder1.is_some() && responder2.is_some());
    assert!(
        responder3.is_none(),
        "a third concurrent probe reached the inner service"
    );
    assert_eq!(circuit_open(&third.await).retry_in, OPEN_FOR);

    // One probe success closes the circuit and resets the counters...
    responder1.unwrap().send_response("ok");
    assert_eq!(probe1.await.unwrap(), "ok");
    assert_eq!(h.breaker.state(), BreakerState::Closed);
    // ...and the other probe's late failure belongs to the finished half-open period.
    Reply::Fail.send(responder2.unwrap());
    assert!(probe2.await.is_err());
    assert_eq!(h.breaker.state(), BreakerState::Closed);
    assert_eq!(h.breaker.opened_total(), 1);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_for_another_period() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR).await;
    let (reached, _) = h.call(Reply::Fail).await;
    assert!(reached);
    assert_eq!(h.breaker.state(), BreakerState::Open);
    assert_eq!(h.breaker.opened_total(), 2);
    let (reached, result) = h.call(Reply::Ok).await;
    assert!(!reached);
    assert_eq!(circuit_open(&result).retry_in, OPEN_FOR);
}

#[tokio::test(start_paused = true)]
async fn ignored_probe_frees_its_slot_and_keeps_half_open() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR).await;
    let (reached, _) = h.call(Reply::Bad).await;
    assert!(reached);
    assert_eq!(h.breaker.state(), BreakerState::HalfOpen);
    let (reached, _) = h.call(Reply::Ok).await;
    assert!(reached, "the slot was freed");
    assert_eq!(h.breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_releases_its_slot() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR).await;

    let (probe, responder) = h.start();
    assert!(responder.is_some());
    let (_, blocked) = h.start();
    assert!(blocked.is_none(), "the only slot is taken");
    drop(probe);

    let (reached, result) = h.call(Reply::Ok).await;
    assert!(reached, "dropping the probe freed its slot");
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(h.breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn calls_from_before_the_opening_do_not_count_after_it() {
    let mut h = Harness::new(consecutive(2));
    let (slow, slow_responder) = h.start();
    h.trip(2).await;
    // The slow call succeeds while open: it must not close the circuit.
    slow_responder.unwrap().send_response("late");
    assert_eq!(slow.await.unwrap(), "late");
    assert_eq!(h.breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_every_transition() {
    let mut h = Harness::new(consecutive(1));
    let mut rx = h.breaker.subscribe();
    assert_eq!(*rx.borrow_and_update(), BreakerState::Closed);

    h.trip(1).await;
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), BreakerState::Open);

    // Nothing calls or reads the breaker: the timer task alone announces half-open,
    // exactly when the open period ends (paused time jumps straight to it).
    let opened_at = Instant::now();
    let state = *rx.wait_for(|s| s.allows_calls()).await.unwrap();
    assert_eq!(state, BreakerState::HalfOpen);
    assert_eq!(opened_at.elapsed(), OPEN_FOR);

    h.calls(&[Reply::Ok]).await;
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn state_is_half_open_as_soon_as_due() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    tokio::time::advance(OPEN_FOR - Duration::from_nanos(1)).await;
    assert_eq!(h.breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(h.breaker.state(), BreakerState::HalfOpen);
}

/// Without a runtime no timer task can run, yet `state()` still reports half-open once
/// due, and announces it to subscribers.
#[test]
fn state_is_computed_lazily_without_a_runtime() {
    let breaker = Arc::new(Breaker::new(CircuitBreakerConfig {
        open_for: Duration::from_millis(1),
        ..consecutive(1)
    }));
    breaker.admit().unwrap().record(CallOutcome::Failure);
    let rx = breaker.subscribe();
    assert_eq!(*rx.borrow(), BreakerState::Open);
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(
        *rx.borrow(),
        BreakerState::Open,
        "no timer pushed the change"
    );
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(*rx.borrow(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_call_readied_while_open_is_refused_even_if_the_circuit_recovered() {
    let mut h = Harness::new(consecutive(1));
    h.trip(1).await;
    // Ready without polling the inner service (it is open)...
    assert!(matches!(h.poll_ready(), Poll::Ready(Ok(()))));
    tokio::time::advance(OPEN_FOR).await;
    // ...so the call may not reach it even though the circuit is now half-open. (The mock
    // would panic if called without a successful poll_ready.)
    let fut = h.svc.call("req");
    assert!(h.handle.next_request().now_or_never().is_none());
    assert_eq!(circuit_open(&fut.await).retry_in, Duration::ZERO);
    // The half-open slot was not consumed.
    let (reached, _) = h.call(Reply::Ok).await;
    assert!(reached);
    assert_eq!(h.breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let layer =
        CircuitBreakerLayer::new(consecutive(1), classify_errors_as_failures::<&'static str>);
    let (mock, mut handle) = mock::pair::<&'static str, &'static str>();
    let a = layer.layer(mock.clone());
    let mut b = layer.clone().layer(mock).clone();

    let call = tokio::spawn(a.oneshot("a"));
    let (_, responder) = handle.next_request().await.unwrap();
    responder.send_error(Unavailable);
    assert!(call.await.unwrap().is_err());

    assert_eq!(b.handle().state(), BreakerState::Open);
    let err = b.ready().await.unwrap().call("b").await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(layer.handle().rejected_total(), 1);
}

#[test]
#[should_panic(expected = "half_open_probes")]
fn zero_probes_is_rejected() {
    let config = CircuitBreakerConfig {
        half_open_probes: 0,
        ..CircuitBreakerConfig::default()
    };
    let _ = CircuitBreakerLayer::new(config, classify_errors_as_failures::<()>);
}

#[test]
fn state_names() {
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    assert_eq!(BreakerState::Closed.as_str(), "closed");
    assert!(!BreakerState::Open.allows_calls());
}

#[tokio::test(start_paused = true)]
async fn the_handle_tells_when_the_outage_began_and_the_last_error() {
    let mut h = Harness::new(consecutive(2));
    assert_eq!(h.breaker.opened_at(), None);
    assert_eq!(h.breaker.last_failure(), None);
    h.calls(&[Reply::Bad, Reply::Ok]).await;
    assert_eq!(
        h.breaker.last_failure(),
        None,
        "ignored errors are not failures"
    );

    let before = std::time::SystemTime::now();
    h.trip(2).await;
    let opened = h.breaker.opened_at().expect("open");
    assert!(opened >= before);
    let failure = h.breaker.last_failure().expect("a failure");
    assert_eq!(failure.message, "unavailable");

    // A failed probe re-opens the circuit: the outage is still the one that began before.
    tokio::time::advance(OPEN_FOR).await;
    assert_eq!(h.breaker.state(), BreakerState::HalfOpen);
    let (reached, _) = h.call(Reply::Fail).await;
    assert!(reached);
    assert_eq!(h.breaker.state(), BreakerState::Open);
    assert_eq!(h.breaker.opened_at(), Some(opened));

    tokio::time::advance(OPEN_FOR).await;
    h.calls(&[Reply::Ok]).await;
    assert_eq!(h.breaker.state(), BreakerState::Closed);
    assert_eq!(h.breaker.opened_at(), None, "closed: no outage");
    assert_eq!(
        h.breaker.last_failure().map(|f| f.message),
        Some("unavailable".to_owned()),
        "the last error stays for whoever looks later"
    );
}

#[test]
fn a_long_error_is_kept_cut_at_a_character_boundary() {
    let breaker = Arc::new(Breaker::new(consecutive(5)));
    breaker
        .admit()
        .unwrap()
        .record_failure("é".repeat(Failure::MAX_MESSAGE));
    let message = breaker.last_failure().unwrap().message;
    assert!(message.len() <= Failure::MAX_MESSAGE && message.chars().all(|c| c == 'é'));
}
