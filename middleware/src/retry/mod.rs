//! A `tower::retry::Policy` with exponential backoff, full jitter and a shared budget.
//!
//! Retrying helps with transient failures and hurts with everything else: a request
//! that failed because the downstream is overloaded, retried by every caller at once,
//! multiplies the overload. So this policy retries only what the classifier calls
//! transient, waits a randomised, exponentially growing delay between attempts, stops
//! after `max_attempts`, and draws every retry from a [`TpsBudget`] shared by all
//! requests, which caps retries to a fraction of recent successful traffic.
//!
//! When it gives up on a retryable error it says why, by replacing the error with
//! [`RetriesExhausted`] or [`RetryBudgetExhausted`] (the last error is their `source`).
//! A non-retryable error is returned unchanged.
//!
//! # Classifying
//!
//! The classifier gets the error as [`BoxError`] and returns whether it is transient.
//! It must return `false` for errors that mean "do not call now", above all the circuit
//! breaker's [`CircuitOpen`](crate::CircuitOpen) (retrying it only spins until the
//! attempts run out) and the server-side refusals ([`Overloaded`](crate::Overloaded),
//! [`RateLimited`](crate::RateLimited)) of a downstream that asked us to back off.
//!
//! The policy works for any `Clone` request type. Its wrapped service must have
//! `Error = BoxError` (put it outside layers that box their errors, as all in this
//! crate do).

mod backoff;
mod config;
mod error;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, RetryLayer};

pub use self::backoff::{Jitter, full_jitter};
pub use self::config::RetryConfig;
pub use self::error::{RetriesExhausted, RetryBudgetExhausted};
use crate::BoxError;

/// Builds tower's `RetryLayer` with a [`RetryPolicy`]; see the [module docs](self).
pub fn layer<C>(
    config: RetryConfig,
    budget: Arc<TpsBudget>,
    classify: C,
) -> RetryLayer<RetryPolicy<C>> {
    RetryLayer::new(RetryPolicy::new(config, budget, classify))
}

/// Decides whether and when to retry; `C: Fn(&BoxError) -> bool` says which errors are
/// transient.
///
/// tower clones the policy for every request, so the attempt count is per request while
/// the budget (behind its `Arc`) is shared.
#[derive(Clone)]
pub struct RetryPolicy<C> {
    config: RetryConfig,
    budget: Arc<TpsBudget>,
    classify: C,
    jitter: Jitter,
    /// Attempts made so far for the request this clone of the policy follows.
    attempts: u32,
}

impl<C> RetryPolicy<C> {
    /// A policy with [`full_jitter`].
    pub fn new(config: RetryConfig, budget: Arc<TpsBudget>, classify: C) -> Self {
        Self {
            config,
            budget,
            classify,
            jitter: full_jitter,
            attempts: 1,
        }
    }

    /// Replaces how the delay is drawn from its ceiling (e.g. a deterministic function
    /// in tests).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Turns the error in `result` into `wrap(attempts, error)`.
    fn give_up<Res>(
        &self,
        result: &mut Result<Res, BoxError>,
        wrap: fn(u32, BoxError) -> BoxError,
    ) {
        if let Err(error) = result {
            let source = std::mem::replace(error, Box::from(""));
            *error = wrap(self.attempts, source);
        }
    }
}

impl<C, Req, Res> Policy<Req, Res, BoxError> for RetryPolicy<C>
where
    C: Fn(&BoxError) -> bool,
    Req: Clone,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        let error = match result {
            Ok(_) => {
                self.budget.deposit();
                return None;
            }
            Err(error) => error,
        };
        if !(self.classify)(error) {
            return None;
        }
        if self.attempts >= self.config.max_attempts {
            self.give_up(result, |attempts, source| {
                RetriesExhausted { attempts, source }.into()
            });
            return None;
        }
        if !self.budget.withdraw() {
            self.give_up(result, |attempts, source| {
                RetryBudgetExhausted { attempts, source }.into()
            });
            return None;
        }
        let ceiling =
            backoff::ceiling(self.config.base_delay, self.config.max_delay, self.attempts);
        let delay: Duration = (self.jitter)(ceiling);
        self.attempts += 1;
        tracing::debug!(attempt = self.attempts, ?delay, %error, "retrying after transient error");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<C> fmt::Debug for RetryPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.config)
            .field("budget", &self.budget)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
