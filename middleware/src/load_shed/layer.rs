//! The layer that composes tower's `LoadShed` over a shared `GlobalConcurrencyLimit`.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_layer::Layer;

use super::LoadShed;

/// Limits requests in flight server-wide and sheds the excess at once; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    semaphore: Arc<Semaphore>,
    max_in_flight: usize,
}

impl LoadShedLayer {
    /// Allows at most `max_in_flight` requests inside the wrapped services at once,
    /// counted across every service this layer (or any clone of it) produces.
    ///
    /// # Panics
    ///
    /// If `max_in_flight` exceeds `tokio::sync::Semaphore::MAX_PERMITS`.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }

    /// Requests currently holding a slot.
    ///
    /// A slot is taken when the service reports ready and released when the response
    /// future completes or is dropped, so a ready-but-not-yet-called service counts too.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight
            .saturating_sub(self.semaphore.available_permits())
    }

    /// The configured limit.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let limited =
            GlobalConcurrencyLimitLayer::with_semaphore(self.semaphore.clone()).layer(inner);
        tower::load_shed::LoadShed::new(limited)
    }
}
