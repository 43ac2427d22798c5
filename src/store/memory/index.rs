//! The in-memory task index (ListTasks) and cancellation, with the Redis store's semantics: a
//! bounded look at index members per page, members of gone tasks removed as they are met.

use super::{MemoryStore, State};
use crate::{
    store::{CancelAs, CancelOutcome, Change, ListPage, ListQuery, StoreError, layout::index_task},
    task::{RawStatus, TaskId, TaskRecord, TaskStatus, fields},
};

impl MemoryStore {
    /// See [`crate::store::Store::list`].
    pub async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        let mut state = self.lock();
        let candidates = state.members_after(query.after, query.budget);
        let mut tasks = Vec::new();
        let mut last = None;
        for member in candidates {
            last = Some(member.clone());
            let record = index_task(&member).and_then(|id| state.record(id));
            match record {
                None => {
                    state.index.remove(&member);
                }
                Some(record) => {
                    if query
                        .status
                        .is_none_or(|s| record.status.known() == Some(s))
                    {
                        tasks.push(record);
                        if tasks.len() == query.page_size {
                            break;
                        }
                    }
                }
            }
        }
        let more = last
            .as_deref()
            .is_some_and(|last| !state.members_after(Some(last), 1).is_empty());
        Ok(ListPage {
            tasks,
            next: last.filter(|_| more),
        })
    }

    /// See [`crate::store::Store::trim_index`].
    pub async fn trim_index(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        let mut state = self.lock();
        let batch = state.members_after(after, count);
        let mut removed = 0;
        for member in &batch {
            if index_task(member).and_then(|id| state.task(id)).is_none() {
                state.index.remove(member);
                removed += 1;
            }
        }
        let next = (batch.len() == count)
            .then(|| batch.last().cloned())
            .flatten();
        Ok((removed, next))
    }

    /// See [`crate::store::Store::cancel`].
    pub async fn cancel(
        &self,
        task_id: TaskId,
        message: &str,
        now: &str,
        how: CancelAs,
    ) -> Result<CancelOutcome, StoreError> {
        let mut state = self.lock();
        let ttl = self.ttl;
        let Some(task) = state.task(task_id) else {
            return Ok(CancelOutcome::Missing);
        };
        if let Some(status) = task.final_status() {
            return Ok(CancelOutcome::Final(status));
        }
        let status = RawStatus::parse(task.field(fields::STATUS));
        let entry = state.entry_of.get(&task_id).copied();
        let unaccepted = entry.is_some() && status == RawStatus::Known(TaskStatus::Pending);
        if how == CancelAs::Unaccepted && !unaccepted {
            return Ok(CancelOutcome::Accepted(status));
        }
        let task = state.task(task_id).expect("looked up above");
        for (field, value) in [
            (fields::STATUS, TaskStatus::Failed.as_str()),
            (fields::ERROR_MESSAGE, message),
            (fields::RESULT_FILE_KEY, ""),
            (fields::UPDATED_AT, now),
        ] {
            task.fields.insert(field.to_owned(), value.to_owned());
        }
        task.expires_at = Some(tokio::time::Instant::now() + ttl);
        if let Some(entry) = entry {
            state.pending.remove(&entry);
            state.entries.remove(&entry);
            state.entry_of.remove(&task_id);
        }
        state.unwatch(task_id);
        drop(state);
        self.changed(Change::Cancelled(task_id));
        self.changed(Change::Task(task_id));
        Ok(CancelOutcome::Cancelled)
    }
}

impl State {
    /// Up to `count` index members after `after` (all, from the start, without it).
    fn members_after(&self, after: Option<&str>, count: usize) -> Vec<String> {
        use std::ops::Bound::{Excluded, Unbounded};
        let range = match after {
            Some(after) => self.index.range::<str, _>((Excluded(after), Unbounded)),
            None => self.index.range::<str, _>((Unbounded, Unbounded)),
        };
        range.take(count).cloned().collect()
    }

    /// A live task as a record.
    fn record(&mut self, task_id: TaskId) -> Option<TaskRecord> {
        let task = self.task(task_id)?;
        TaskRecord::from_pairs(task.fields.iter().map(|(k, v)| (k.as_str(), v.clone())))
    }
}
