//! The Processor side: the client stack the dispatcher calls it with ([`stack`], [`client`]),
//! what its answers mean ([`outcome`]), CancelVideo ([`cancel`]), and the reference Processor
//! ([`reference`]).

pub mod cancel;
pub mod client;
pub mod outcome;
pub mod reference;
pub mod stack;

pub use cancel::Canceller;
pub use client::{ProcessCall, ProcessVideoCall};
pub use outcome::Answer;
pub use stack::{Caller, ProcessorStack};
