//! A server-wide concurrency limit that sheds excess requests at once with [`Overloaded`].
//!
//! A queue in front of a saturated server only adds latency: requests wait, time out at
//! the client, and the work done for them is wasted. This layer instead refuses a request
//! immediately when `max_in_flight` requests are already being served, so the client can
//! back off or go elsewhere while the server keeps its latency for the requests it has.
//!
//! It is tower's [`LoadShed`](tower::load_shed::LoadShed) over tower's
//! [`ConcurrencyLimit`] with one semaphore shared by every clone, so the limit is global
//! to the server rather than per connection. A shed clone stays queued on the semaphore
//! until it is polled again or dropped; tonic uses a fresh clone per request, which it
//! drops after the call, so nothing lingers there.

mod layer;
#[cfg(test)]
mod tests;

use tower::limit::ConcurrencyLimit;

pub use self::layer::LoadShedLayer;
/// The error leaf of a shed request (tower's own type, so `tower::load_shed` users match it too).
pub use tower::load_shed::error::Overloaded;

/// The service produced by [`LoadShedLayer`]: sheds instead of waiting for a slot.
///
/// Its error type is [`BoxError`](crate::BoxError); a shed request fails with [`Overloaded`].
pub type LoadShed<S> = tower::load_shed::LoadShed<ConcurrencyLimit<S>>;
