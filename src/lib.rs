//! The Task service: the task-management centre of the video-processing system.
//!
//! A Gateway creates a task for an uploaded video ([`api`]); the task is kept in Redis
//! ([`store`]) in the contract's `task:{task_id}` hash; a durable queue carries it to the
//! Processor without making the Gateway wait ([`dispatch`]); status queries read it back.
//!
//! # Layout
//! - [`config`]: typed settings from the environment and `.env`, checked at start.
//! - [`task`], [`validate`]: the task model, and the checks of what callers send.
//! - [`store`]: the Redis store and the in-memory store of the dev mode (same semantics).
//! - [`api`]: the `task.Task` gRPC API; [`error`]: failures to gRPC statuses, in one table;
//!   [`auth`]: the callers and their scopes.
//! - [`processor`]: the Processor client stack and the reference Processor.
//! - [`dispatch`]: the dispatcher, its leases and the reaper.
//! - [`metrics`]: the Prometheus figures and their endpoint; [`events`]: changes to tasks, told
//!   to watches and deliveries; [`console`]: the operator's web pages beside `/metrics`.
//! - [`server`]: the gRPC server; [`transport`]: its connections (cap, deadlines, TLS);
//!   [`app`]: the wiring; [`supervisor`]: the background tasks' supervision; [`reload`]:
//!   following files that change while the service runs.
//! - [`proto`]: the generated code; [`codec`]: the served API's protobuf codec.
//!
//! `docs/architecture.md` draws the modules' import graph and follows one task through them.

#![warn(missing_docs, missing_debug_implementations)]

pub mod api;
pub mod app;
pub mod auth;
pub mod codec;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod metrics;
pub mod processor;
pub mod proto;
pub mod reload;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod task;
pub mod transport;
pub mod validate;
