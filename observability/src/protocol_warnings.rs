//! The HTTP/2 library's warnings, counted instead of logged: h2 writes one WARN line per
//! connection it closes for misbehaving (too many resets, say), which a hostile client can turn
//! into an unbounded log. The count is a metric; the default log filter leaves the lines out
//! (`RUST_LOG` can ask for them).

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::{Layer, filter::Targets, layer::Context};

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Warnings the HTTP/2 library has written since the process started.
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// The layer that counts them (it sees h2's warnings whatever the log filter says).
pub(crate) fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    Counter.with_filter(Targets::new().with_target("h2", tracing::Level::WARN))
}

struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}
