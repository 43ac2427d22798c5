//! The layer that wraps services in [`Deadline`].

use std::time::Duration;

use tower_layer::Layer;

use super::Deadline;

/// Applies a gRPC-aware server deadline to every request; see [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
    max: Duration,
    margin: Duration,
    exempt: &'static [&'static str],
}

impl DeadlineLayer {
    /// Uses `default` when the client sent no usable `grpc-timeout`, and never allows
    /// more than `max`, whatever the client asked for.
    ///
    /// If `default` exceeds `max`, `max` wins for requests without a header too.
    pub fn new(default: Duration, max: Duration) -> Self {
        Self {
            default,
            max,
            margin: Duration::ZERO,
            exempt: &[],
        }
    }

    /// Leaves alone requests whose path starts with one of `prefixes` (streaming methods,
    /// bounded their own way): no deadline, and their `grpc-timeout` as the client sent it.
    pub fn exempt(mut self, prefixes: &'static [&'static str]) -> Self {
        self.exempt = prefixes;
        self
    }

    /// Ends requests `margin` before the deadline the client sent, so that the answer still
    /// reaches it in time and this layer's `DeadlineExceeded` comes before any other timer
    /// set to the client's own value (tonic's, which says `CANCELLED`). The default and the
    /// cap are not shortened.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.default, self.max)
            .with_margin(self.margin)
            .with_exempt(self.exempt)
    }
}
