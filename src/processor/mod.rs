//! The Processor side: the client stack the dispatcher calls it with, and the reference Processor.

pub mod client;
pub mod reference;
pub mod stack;

pub use client::{ProcessCall, ProcessVideoCall};
