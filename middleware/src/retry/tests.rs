//! Tests for the retry policy, driven through tower's `Retry` on paused time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::TpsBudget;
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::*;
use crate::{CallOutcome, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen};

type Handle = mock::Handle<&'static str, &'static str>;

#[derive(Debug, thiserror::Error)]
#[error("unavailable")]
struct Unavailable;

#[derive(Debug, thiserror::Error)]
#[error("invalid argument")]
struct InvalidArgument;

/// The classifier callers should write: transient errors only, never `CircuitOpen`.
fn transient(error: &BoxError) -> bool {
    error.is::<Unavailable>()
}

fn config(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(300),
    }
}

/// A budget that never runs out within a test.
fn ample_budget() -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 1_000, 0.2))
}

/// The delay is exactly its ceiling, so timings are exact.
fn no_jitter(ceiling: Duration) -> Duration {
    ceiling
}

/// Starts `req` through a retry layer over a mock; returns the call and the mock handle.
fn start(
    policy: RetryPolicy<fn(&BoxError) -> bool>,
) -> (
    tokio::task::JoinHandle<Result<&'static str, BoxError>>,
    Handle,
) {
    let (mock, handle) = mock::pair::<&'static str, &'static str>();
    let svc = tower::retry::RetryLayer::new(policy).layer(mock);
    (tokio::spawn(svc.oneshot("req")), handle)
}

/// Answers the first `failures` attempts with `error()` and the next with "ok" (if
/// `then_ok`); returns when each attempt arrived, relative to `start`.
async fn answer(
    handle: &mut Handle,
    failures: usize,
    then_ok: bool,
    error: fn() -> BoxError,
) -> Vec<Duration> {
    let start = Instant::now();
    let mut arrivals = Vec::new();
    for _ in 0..failures {
        let (req, responder) = handle.next_request().await.expect("an attempt");
        assert_eq!(req, "req", "each attempt gets a clone of the request");
        arrivals.push(start.elapsed());
        responder.send_error(error());
    }
    if then_ok {
        let (_, responder) = handle.next_request().await.expect("a final attempt");
        arrivals.push(start.elapsed());
        responder.send_response("ok");
    }
    arrivals
}

fn unavailable() -> BoxError {
    Box::new(Unavailable)
}

#[tokio::test(start_paused = true)]
async fn transient_errors_then_success() {
    let policy = RetryPolicy::new(
        config(5),
        ample_budget(),
        transient as fn(&BoxError) -> bool,
    )
    .with_jitter(no_jitter);
    let (call, mut handle) = start(policy);
    let arrivals = answer(&mut handle, 3, true, unavailable).await;
    assert_eq!(call.await.unwrap().unwrap(), "ok");
    // Exactly N + 1 attempts, after delays of 100, 200 and 300 (capped) ms.
    let ms: Vec<_> = arrivals.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [0, 100, 300, 600]);
    assert!(
        handle.next_request().await.is_none(),
        "no attempt after the success"
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts() {
    let policy = RetryPolicy::new(
        config(3),
        ample_budget(),
        transient as fn(&BoxError) -> bool,
    );
    let (call, mut handle) = start(policy);
    let arrivals = answer(&mut handle, 3, false, unavailable).await;
    assert_eq!(arrivals.len(), 3);
    let err = call.await.unwrap().unwrap_err();
    let exhausted = err
        .downcast_ref::<RetriesExhausted>()
        .expect("RetriesExhausted");
    assert_eq!(exhausted.attempts, 3);
    assert!(exhausted.source.is::<Unavailable>());
    assert!(std::error::Error::source(exhausted).is_some());
    assert!(handle.next_request().await.is_none(), "no fourth attempt");
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_pass_through_after_one_attempt() {
    let policy = RetryPolicy::new(
        config(5),
        ample_budget(),
        transient as fn(&BoxError) -> bool,
    );
    let (call, mut handle) = start(policy);
    let arrivals = answer(&mut handle, 1, false, || Box::new(InvalidArgument)).await;
    assert_eq!(arrivals.len(), 1);
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is::<InvalidArgument>(), "error was rewritten: {err}");
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retries_early() {
    // No deposits count (0%), and a reserve of exactly one retry per second.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(1), 1, 0.0));
    let policy = RetryPolicy::new(
        config(5),
        budget.clone(),
        transient as fn(&BoxError) -> bool,
    );

    let (call, mut handle) = start(policy.clone());
    let arrivals = answer(&mut handle, 2, false, unavailable).await;
    assert_eq!(arrivals.len(), 2, "one retry, then the budget refused");
    let err = call.await.unwrap().unwrap_err();
    let refused = err
        .downcast_ref::<RetryBudgetExhausted>()
        .expect("RetryBudgetExhausted");
    assert_eq!(refused.attempts, 2);
    assert!(refused.source.is::<Unavailable>());

    // The budget is shared: the next request gets no retry at all.
    let (call, mut handle) = start(policy);
    answer(&mut handle, 1, false, unavailable).await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<RetryBudgetExhausted>().unwrap().attempts,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn successes_refill_the_budget() {
    // No reserve; every success allows one retry.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 1.0));
    let policy = RetryPolicy::new(config(3), budget, transient as fn(&BoxError) -> bool);

    let (call, mut handle) = start(policy.clone());
    answer(&mut handle, 1, false, unavailable).await;
    assert!(
        call.await
            .unwrap()
            .unwrap_err()
            .is::<RetryBudgetExhausted>()
    );

    let (call, mut handle) = start(policy.clone());
    answer(&mut handle, 0, true, unavailable).await;
    assert_eq!(call.await.unwrap().unwrap(), "ok");

    let (call, mut handle) = start(policy);
    let arrivals = answer(&mut handle, 1, true, unavailable).await;
    assert_eq!(arrivals.len(), 2, "the deposit paid for one retry");
    assert_eq!(call.await.unwrap().unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn retry_waits_out_the_backoff() {
    let policy = RetryPolicy::new(
        config(3),
        ample_budget(),
        transient as fn(&BoxError) -> bool,
    )
    .with_jitter(no_jitter);
    let (call, mut handle) = start(policy);
    let (_, responder) = handle.next_request().await.unwrap();
    responder.send_error(Unavailable);
    // Nothing before the 100 ms delay has passed...
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(futures::FutureExt::now_or_never(handle.next_request()).is_none());
    // ...and the retry right at it.
    tokio::time::advance(Duration::from_millis(1)).await;
    let (_, responder) = handle.next_request().await.unwrap();
    responder.send_response("ok");
    assert_eq!(call.await.unwrap().unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_their_ceilings() {
    let ceilings = [100u128, 200, 300, 300, 300];
    for _ in 0..20 {
        let policy = RetryPolicy::new(
            config(6),
            ample_budget(),
            transient as fn(&BoxError) -> bool,
        );
        let (call, mut handle) = start(policy);
        let arrivals = answer(&mut handle, 6, false, unavailable).await;
        for (i, pair) in arrivals.windows(2).enumerate() {
            let gap = (pair[1] - pair[0]).as_millis();
            assert!(gap <= ceilings[i], "retry {} waited {gap} ms", i + 1);
        }
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.downcast_ref::<RetriesExhausted>().unwrap().attempts, 6);
    }
}

#[tokio::test(start_paused = true)]
async fn circuit_open_is_not_retried() {
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig {
            consecutive_failures: 1,
            ..CircuitBreakerConfig::default()
        },
        |r: Result<&&'static str, &BoxError>| {
            if r.is_ok() {
                CallOutcome::Success
            } else {
                CallOutcome::Failure
            }
        },
    );
    let retry = layer(config(5), ample_budget(), |e: &BoxError| {
        !e.is::<CircuitOpen>() && e.is::<Unavailable>()
    });
    let (mock, mut handle) = mock::pair::<&'static str, &'static str>();
    let svc = retry.layer(breaker.layer(mock));
    let call = tokio::spawn(svc.oneshot("req"));

    answer(&mut handle, 1, false, unavailable).await;
    let err = call.await.unwrap().unwrap_err();
    // One real attempt opened the circuit; the retry met CircuitOpen and stopped there.
    assert!(err.is::<CircuitOpen>(), "unexpected error: {err}");
    assert_eq!(breaker.handle().rejected_total(), 1);
    assert!(handle.next_request().await.is_none());
}
