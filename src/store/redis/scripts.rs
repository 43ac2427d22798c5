//! The Lua scripts that make the store's multi-step changes atomic (one file each, beside this).

use std::sync::LazyLock;

use bb8_redis::redis::Script;

/// Task hash + dispatch entry, atomically.
pub(super) static CREATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/create.lua")));
/// Fenced FAILED, with optional acknowledgement.
pub(super) static FAIL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/fail.lua")));
/// Acknowledgement after the Processor accepted, plus TTL or watch.
pub(super) static ACCEPTED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/accepted.lua")));
/// Lease renewal / release for entries still owned.
pub(super) static LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/lease.lua")));
/// Removal of consumers that are gone.
pub(super) static FORGET_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/forget_consumers.lua")));
/// One look at a watched task.
pub(super) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/settle.lua")));
/// Cancel of a task not yet accepted: FAILED, out of the queue, announced.
pub(super) static CANCEL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/cancel.lua")));
/// One page of ListTasks, trimming members whose task is gone.
pub(super) static LIST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/list.lua")));
/// A slice of the task index looked at for members whose task is gone.
pub(super) static TRIM_INDEX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/trim_index.lua")));
