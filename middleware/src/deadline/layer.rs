//! The layer that wraps services in [`Deadline`].

use std::time::Duration;

use tower_layer::Layer;

use super::Deadline;

/// Applies a gRPC-aware server deadline to every request; see [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
    max: Duration,
}

impl DeadlineLayer {
    /// Uses `default` when the client sent no usable `grpc-timeout`, and never allows
    /// more than `max`, whatever the client asked for.
    ///
    /// If `default` exceeds `max`, `max` wins for requests without a header too.
    pub fn new(default: Duration, max: Duration) -> Self {
        Self { default, max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.default, self.max)
    }
}
