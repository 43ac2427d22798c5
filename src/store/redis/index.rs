//! The task index on Redis (ListTasks): a page is one script call that looks at a bounded
//! number of index members, and members whose task is gone are removed as they are met — by
//! listings and by the reaper's walk over the whole index.

use bb8_redis::redis::Value;

use super::{RedisStore, scripts};
use crate::{
    store::{ListPage, ListQuery, StoreError},
    task::TaskRecord,
};

impl RedisStore {
    /// See [`crate::store::Store::list`].
    pub async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        let start = query
            .after
            .map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut invocation = scripts::LIST.prepare_invoke();
        invocation
            .key(&self.inner.keys.index)
            .arg(start)
            .arg(query.page_size)
            .arg(query.budget)
            .arg(query.status.map_or("", |s| s.as_str()));
        let mut conn = self.connection()?;
        let (found, last, more): (Vec<Vec<String>>, String, String) = self
            .run(
                ("EVALSHA list", &self.inner.keys.index),
                invocation.invoke_async(&mut conn),
            )
            .await?;
        let tasks = found
            .into_iter()
            .filter_map(|flat| {
                let mut items = flat.into_iter();
                TaskRecord::from_pairs(std::iter::from_fn(|| Some((items.next()?, items.next()?))))
            })
            .collect();
        Ok(ListPage {
            tasks,
            next: (more == "more").then_some(last),
        })
    }

    /// See [`crate::store::Store::trim_index`].
    pub async fn trim_index(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<(u64, Option<String>), StoreError> {
        let start = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut invocation = scripts::TRIM_INDEX.prepare_invoke();
        invocation.key(&self.inner.keys.index).arg(start).arg(count);
        let mut conn = self.connection()?;
        let (removed, last): (u64, Value) = self
            .run(
                ("EVALSHA trim_index", &self.inner.keys.index),
                invocation.invoke_async(&mut conn),
            )
            .await?;
        let last = match last {
            Value::BulkString(bytes) if !bytes.is_empty() => {
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        };
        Ok((removed, last))
    }
}
