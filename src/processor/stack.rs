//! The Processor client as a tower stack, outermost first:
//! retry → circuit breaker → bounded concurrency → per-attempt deadline → the generated client.

use std::{sync::Arc, time::Duration};

use middleware::{
    circuit_breaker::{BreakerHandle, CircuitBreakerConfig, CircuitBreakerLayer},
    retry::{self, RetryConfig},
};
use tokio::sync::Semaphore;
use tower::{
    Service, ServiceBuilder, limit::GlobalConcurrencyLimitLayer, retry::budget::TpsBudget,
    util::BoxCloneSyncService,
};

use super::{ProcessCall, ProcessVideoCall, client::BoxError};
use crate::{
    config::ProcessorConfig,
    dispatch::{Caller, outcome},
};

/// The client stack and handles on its parts, for the dispatcher and the metrics.
#[derive(Clone, Debug)]
pub struct ProcessorStack {
    /// The stack, boxed.
    pub caller: Caller,
    /// Its circuit breaker.
    pub breaker: BreakerHandle,
    /// Its concurrency semaphore (calls in flight = size − available permits).
    pub slots: Arc<Semaphore>,
}

/// The stack around the Processor at `addr`.
pub fn build(
    config: &ProcessorConfig,
    addr: &str,
) -> Result<ProcessorStack, tonic::transport::Error> {
    let call = ProcessVideoCall::new(addr, config.connect_timeout, config.timeout)?;
    Ok(around(config, |breaker| call.with_breaker(breaker)))
}

/// The stack's layers around an innermost call service (the generated client in production),
/// made by `make_call` with a handle on the stack's breaker.
pub fn around<S>(
    config: &ProcessorConfig,
    make_call: impl FnOnce(BreakerHandle) -> S,
) -> ProcessorStack
where
    S: Service<ProcessCall, Response = (), Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig {
            consecutive_failures: config.breaker_consecutive_failures,
            failure_rate: config.breaker_failure_rate,
            window: config.breaker_window,
            minimum_calls: config.breaker_min_calls,
            open_for: config.breaker_open_for,
            half_open_probes: config.breaker_half_open_probes,
        },
        outcome::breaker_outcome,
    );
    let handle = breaker.handle();
    let budget = Arc::new(TpsBudget::new(
        Duration::from_secs(10),
        config.retry_budget_min_per_sec,
        config.retry_budget_ratio,
    ));
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let stack = ServiceBuilder::new()
        // Outermost, so that every retry goes through the breaker: once the circuit opens, the
        // next attempt fails fast and is not retried (the classifier refuses CircuitOpen).
        .layer(retry::layer(
            RetryConfig {
                max_attempts: config.retry_attempts,
                base_delay: config.retry_base_delay,
                max_delay: config.retry_max_delay,
            },
            budget,
            outcome::is_transient,
        ))
        // Above the concurrency limit: a call the breaker refuses never waits for a slot, and
        // the breaker sees each attempt's result.
        .layer(breaker)
        // Caps ProcessVideo calls in flight at the Processor (TASK_PROCESSOR_CONCURRENCY); the
        // dispatcher holds no more entries than this, so the cap never queues.
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(slots.clone()))
        // Innermost: one attempt with its own deadline, sent as grpc-timeout.
        .service(make_call(handle.clone()));
    ProcessorStack {
        caller: BoxCloneSyncService::new(stack),
        breaker: handle,
        slots,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use std::time::Duration;

    use tonic::Status;
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::config::Config;

    fn config(pairs: &[(&str, &str)]) -> ProcessorConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&map).unwrap().processor
    }

    fn call() -> ProcessCall {
        ProcessCall::new("123e4567-e89b-42d3-a456-426614174000", "a.mp4", &[])
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_never_exceed_the_concurrency_cap() {
        let (mock, mut handle) = mock::pair::<ProcessCall, ()>();
        let caller = around(&config(&[("TASK_PROCESSOR_CONCURRENCY", "2")]), |_| {
            mock.map_err(BoxError::from)
        })
        .caller;
        let mut calls: Vec<_> = (0..3)
            .map(|_| tokio::spawn(caller.clone().oneshot(call())))
            .collect();
        let first = handle.next_request().await.unwrap();
        let _second = handle.next_request().await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .is_err(),
            "a third call reached the Processor while two were in flight"
        );
        first.1.send_response(());
        let (_third, respond) = handle.next_request().await.unwrap();
        respond.send_response(());
        calls.remove(0).await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_spends_no_retries() {
        let (mock, mut handle) = mock::pair::<ProcessCall, ()>();
        let ProcessorStack {
            caller, breaker, ..
        } = around(
            &config(&[
                ("TASK_BREAKER_CONSECUTIVE_FAILURES", "1"),
                ("TASK_PROCESSOR_RETRY_ATTEMPTS", "4"),
            ]),
            |_| mock.map_err(BoxError::from),
        );
        let pending = tokio::spawn(caller.clone().oneshot(call()));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_error(Status::unavailable("down"));
        let error = pending.await.unwrap().unwrap_err();
        assert_eq!(outcome::classify(Err(error)), outcome::Outcome::CircuitOpen);
        assert_eq!(breaker.state(), middleware::BreakerState::Open);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .is_err(),
            "the open circuit let a retry through"
        );
    }
}
