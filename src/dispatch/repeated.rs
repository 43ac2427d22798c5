//! A failure that repeats on every retry (Redis gone for a while, a failover under way) is
//! logged when it starts, then at most every [`REPEAT_EVERY`] with how often it happened, and
//! once when it ends — not once per retry.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Least time between two log lines of one failure that goes on.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// One kind of failure of one loop.
#[derive(Debug)]
pub(super) struct Repeated {
    what: &'static str,
    streak: Mutex<Option<Streak>>,
}

#[derive(Debug)]
struct Streak {
    since: Instant,
    failures: u64,
    logged: Instant,
}

impl Repeated {
    /// Failures described as `what` ("cannot read the dispatch queue").
    pub(super) const fn new(what: &'static str) -> Self {
        Self {
            what,
            streak: Mutex::new(None),
        }
    }

    /// It failed again; returns whether this one was logged.
    pub(super) fn failed(&self, error: &dyn std::fmt::Display) -> bool {
        let mut streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *streak {
            None => {
                tracing::warn!(error = %error, "{}; retrying", self.what);
                *streak = Some(Streak {
                    since: now,
                    failures: 1,
                    logged: now,
                });
                true
            }
            Some(going_on) => {
                going_on.failures += 1;
                if now - going_on.logged < REPEAT_EVERY {
                    return false;
                }
                going_on.logged = now;
                tracing::warn!(
                    error = %error,
                    failures = going_on.failures,
                    seconds = (now - going_on.since).as_secs(),
                    "{}; still retrying",
                    self.what
                );
                true
            }
        }
    }

    /// It worked: a failure that was going on is over (logged once, with its count).
    pub(super) fn succeeded(&self) {
        let ended = self.streak.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(streak) = ended {
            tracing::info!(
                failures = streak.failures,
                seconds = streak.since.elapsed().as_secs(),
                "{}: works again",
                self.what
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_goes_on_is_logged_once_every_ten_seconds() {
        let reads = Repeated::new("cannot read");
        assert!(reads.failed(&"down"), "the first one");
        for _ in 0..50 {
            tokio::time::advance(Duration::from_millis(100)).await;
            assert!(!reads.failed(&"down"), "within 10 s of the last line");
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(reads.failed(&"down"), "10 s on");
        reads.succeeded();
        assert!(reads.failed(&"down"), "a new failure after it worked");
    }
}
