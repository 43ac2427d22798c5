//! The Processor client as a tower stack, outermost first:
//! retry → circuit breaker → bounded concurrency → per-attempt deadline → the generated client.

use std::{sync::Arc, time::Duration};

use middleware::{
    circuit_breaker::{BreakerHandle, CircuitBreakerConfig, CircuitBreakerLayer},
    retry::{self, RetryConfig},
};
use tokio::sync::Semaphore;
use tower::{
    ServiceBuilder, limit::GlobalConcurrencyLimitLayer, retry::budget::TpsBudget,
    util::BoxCloneSyncService,
};

use super::ProcessVideoCall;
use crate::{config::ProcessorConfig, dispatch::outcome};

/// The stack, boxed, and a handle on its circuit breaker (for the dispatcher, health and metrics).
pub fn build(
    config: &ProcessorConfig,
    addr: &str,
) -> Result<(crate::dispatch::Caller, BreakerHandle), tonic::transport::Error> {
    let call = ProcessVideoCall::new(addr, config.connect_timeout, config.timeout)?;
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
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(
            Semaphore::new(config.concurrency),
        )))
        // Innermost: one attempt with its own deadline, sent as grpc-timeout.
        .service(call);
    Ok((BoxCloneSyncService::new(stack), handle))
}
