//! The trace each recent CreateTask of this instance started, so that the console can link a
//! task to its creation in Jaeger. Bounded: the newest [`CreationTraces::CAPACITY`] are kept,
//! the oldest forgotten (a task created elsewhere, or long ago, shows no link).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use crate::task::TaskId;

/// Task id → the W3C trace id (32 hex digits) of its creating request.
#[derive(Debug, Default)]
pub struct CreationTraces {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_task: HashMap<TaskId, [u8; 32]>,
    order: VecDeque<TaskId>,
}

impl CreationTraces {
    /// Tasks remembered at most (~100 bytes each).
    pub const CAPACITY: usize = 10_000;

    /// Remembers the trace in `fields` (a `traceparent` among them) for `task`.
    pub fn remember(&self, task: TaskId, fields: &[(String, String)]) {
        let Some(trace_id) = fields
            .iter()
            .find(|(field, _)| field == "traceparent")
            .and_then(|(_, value)| observability::propagation::trace_id(value.as_bytes()))
            .and_then(|id| <[u8; 32]>::try_from(id.as_bytes()).ok())
        else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.by_task.insert(task, trace_id).is_none() {
            inner.order.push_back(task);
        }
        while inner.order.len() > Self::CAPACITY {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_task.remove(&oldest);
            }
        }
    }

    /// The trace id of `task`'s creation, if this instance created it recently.
    pub fn get(&self, task: TaskId) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.by_task.get(&task)?;
        Some(String::from_utf8_lossy(id).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(traceparent: &str) -> Vec<(String, String)> {
        vec![("traceparent".to_owned(), traceparent.to_owned())]
    }

    #[test]
    fn a_valid_traceparent_is_remembered_and_others_are_not() {
        let traces = CreationTraces::default();
        let (a, b, c) = (TaskId::new_v4(), TaskId::new_v4(), TaskId::new_v4());
        traces.remember(
            a,
            &fields("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        traces.remember(
            b,
            &fields("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        traces.remember(c, &fields("00-<script>-x-01"));
        assert_eq!(
            traces.get(a).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(traces.get(b), None);
        assert_eq!(traces.get(c), None);
        assert_eq!(traces.get(TaskId::new_v4()), None);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let traces = CreationTraces::default();
        let trace = fields("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let first = TaskId::new_v4();
        traces.remember(first, &trace);
        let mut last = first;
        for _ in 0..CreationTraces::CAPACITY {
            last = TaskId::new_v4();
            traces.remember(last, &trace);
        }
        assert_eq!(traces.get(first), None, "the oldest was forgotten");
        assert!(traces.get(last).is_some());
        assert_eq!(
            traces.inner.lock().unwrap().by_task.len(),
            CreationTraces::CAPACITY
        );
    }
}
