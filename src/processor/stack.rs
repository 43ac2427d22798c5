//! The Processor client as a tower stack, outermost first:
//! retry → circuit breaker → per-attempt deadline → the generated client.
//!
//! Calls in flight are bounded by the dispatcher, which holds at most
//! `TASK_PROCESSOR_CONCURRENCY` entries at once and makes one call per entry at a time.

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use middleware::{
    circuit_breaker::{BreakerHandle, CircuitBreakerLayer},
    retry,
};
use tower::{Service, ServiceBuilder, retry::budget::TpsBudget, util::BoxCloneSyncService};

use super::{
    Canceller, ProcessCall, ProcessVideoCall,
    client::{self, BoxError},
    outcome,
};
use crate::config::ProcessorConfig;

/// The Processor client stack as the dispatcher calls it.
pub type Caller = BoxCloneSyncService<ProcessCall, (), BoxError>;

/// Window over which the retry budget counts calls and retries.
const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// The client stack and handles on its parts, for the dispatcher and the metrics.
#[derive(Clone, Debug)]
pub struct ProcessorStack {
    /// The stack, boxed.
    pub caller: Caller,
    /// Its circuit breaker.
    pub breaker: BreakerHandle,
    /// ProcessVideo calls in flight right now.
    pub in_flight: Arc<AtomicUsize>,
    /// CancelVideo, on the same connection.
    pub canceller: Canceller,
}

/// The stack around the Processor at `config.addr`.
pub fn build(config: &ProcessorConfig) -> Result<ProcessorStack, BoxError> {
    let channel = client::channel(config)?;
    let call = ProcessVideoCall::new(config, channel.clone());
    let in_flight = call.in_flight();
    let (caller, breaker) = around(config, |breaker| call.with_breaker(breaker));
    Ok(ProcessorStack {
        caller,
        breaker,
        in_flight,
        canceller: Canceller::new(channel, config.timeout),
    })
}

/// The stack's layers around an innermost call service (the generated client in production),
/// made by `make_call` with a handle on the stack's breaker.
fn around<S>(
    config: &ProcessorConfig,
    make_call: impl FnOnce(BreakerHandle) -> S,
) -> (Caller, BreakerHandle)
where
    S: Service<ProcessCall, Response = (), Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let breaker = CircuitBreakerLayer::new(config.breaker.clone(), outcome::breaker_outcome);
    let handle = breaker.handle();
    let budget = Arc::new(TpsBudget::new(
        RETRY_BUDGET_WINDOW,
        config.retry_budget.min_per_sec,
        config.retry_budget.ratio,
    ));
    let stack = ServiceBuilder::new()
        // Outermost, so that every retry goes through the breaker: once the circuit opens, the
        // next attempt fails fast and is not retried (the classifier refuses CircuitOpen).
        .layer(retry::layer(config.retry, budget, outcome::is_transient))
        // Sees each attempt's result; a call it refuses never reaches the Processor.
        .layer(breaker)
        // Innermost: one attempt with its own deadline, sent as grpc-timeout.
        .service(make_call(handle.clone()));
    (BoxCloneSyncService::new(stack), handle)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic::Status;
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::{config::Config, task::TaskId};

    fn config(pairs: &[(&str, &str)]) -> ProcessorConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&map).unwrap().processor
    }

    fn call() -> ProcessCall {
        let id = TaskId::parse("123e4567-e89b-42d3-a456-426614174000").unwrap();
        ProcessCall::new(id, "a.mp4", &[])
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_spends_no_retries() {
        let (mock, mut handle) = mock::pair::<ProcessCall, ()>();
        let (caller, breaker) = around(
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
        assert_eq!(outcome::classify(Err(error)), outcome::Answer::CircuitOpen);
        assert_eq!(breaker.state(), middleware::BreakerState::Open);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .is_err(),
            "the open circuit let a retry through"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_within_the_round() {
        let (mock, mut handle) = mock::pair::<ProcessCall, ()>();
        let (caller, _) = around(&config(&[("TASK_PROCESSOR_RETRY_ATTEMPTS", "3")]), |_| {
            mock.map_err(BoxError::from)
        });
        let pending = tokio::spawn(caller.clone().oneshot(call()));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_error(Status::unavailable("busy"));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_response(());
        pending.await.unwrap().expect("the retry succeeded");
    }
}
