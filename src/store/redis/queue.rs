//! The dispatch queue (a stream read through the consumer group [`GROUP`]) and the watch list (a
//! sorted set), on Redis. A consumer group that Redis lost is recreated in one place,
//! [`RedisStore::in_group`].

use std::{future::Future, time::Duration};

use bb8_redis::redis::{
    self, FromRedisValue, RedisResult, Value,
    streams::{
        StreamClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
    },
};

use super::{RedisStore, final_or_raw, is_no_script, pooled_error, scripts};
use crate::{
    store::{
        GROUP, PendingEntry, QueueEntry, QueueStats, Settled, StoreError, Taken, entry_ms,
        layout::task_key,
    },
    task::TaskId,
};

impl RedisStore {
    /// Runs a queue operation; if Redis lost the consumer group (a restart without persistence,
    /// FLUSHALL), recreates it and runs the operation once more, so that a read made right after
    /// skips no entry queued since.
    async fn in_group<T, F, Fut>(
        &self,
        limit: Duration,
        what: (&'static str, &str),
        op: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match self.call(limit, what, op()).await {
            Err(failure) if failure.is_missing_group() => {
                tracing::warn!(stream = %self.inner.keys.stream, "the dispatch queue's consumer group is missing; recreating it");
                self.ensure_queue().await?;
                self.call(limit, what, op())
                    .await
                    .map_err(|e| self.error(e))
            }
            other => other.map_err(|e| self.error(e)),
        }
    }

    /// See [`crate::store::Store::ensure_queue`].
    pub async fn ensure_queue(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(&self.inner.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self
            .call(
                self.inner.timeout,
                ("XGROUP CREATE", &self.inner.keys.stream),
                create.query_async::<()>(&mut conn),
            )
            .await
        {
            Err(failure) if failure.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(|e| self.error(e)),
        }
    }

    /// See [`crate::store::Store::read_new`].
    pub async fn read_new(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Taken>, StoreError> {
        let limit = block + self.inner.timeout;
        let pool = self.pool()?;
        let read = || async {
            let mut conn = pool.get().await.map_err(pooled_error)?;
            conn.set_response_timeout(limit);
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count);
            if !block.is_zero() {
                // BLOCK 0 would wait forever; no BLOCK at all returns at once.
                read.arg("BLOCK").arg(block.as_millis() as u64);
            }
            read.arg("STREAMS")
                .arg(&self.inner.keys.stream)
                .arg(">")
                .query_async::<Option<StreamReadReply>>(&mut *conn)
                .await
        };
        let reply = self
            .in_group(limit, ("XREADGROUP", &self.inner.keys.stream), read)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|id| stream_entry(id, 1))
            .collect())
    }

    /// See [`crate::store::Store::idle_entries`].
    pub async fn idle_entries(
        &self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let connection = self.connection()?;
        let pending = || {
            let mut conn = connection.clone();
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&self.inner.keys.stream)
                .arg(GROUP)
                .arg("IDLE")
                .arg(min_idle.as_millis() as u64)
                .arg("-")
                .arg("+")
                .arg(count);
            async move { cmd.query_async::<StreamPendingCountReply>(&mut conn).await }
        };
        let reply = self
            .in_group(
                self.inner.timeout,
                ("XPENDING", &self.inner.keys.stream),
                pending,
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| PendingEntry {
                id: p.id,
                consumer: p.consumer,
                deliveries: p.times_delivered as u32,
            })
            .collect())
    }

    /// See [`crate::store::Store::claim`].
    pub async fn claim(
        &self,
        consumer: &str,
        min_idle: Duration,
        ids: &[String],
    ) -> Result<Vec<Taken>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let connection = self.connection()?;
        let claim = || {
            let mut conn = connection.clone();
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&self.inner.keys.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(ids);
            async move { cmd.query_async::<StreamClaimReply>(&mut conn).await }
        };
        let reply = self
            .in_group(
                self.inner.timeout,
                ("XCLAIM", &self.inner.keys.stream),
                claim,
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|id| stream_entry(id, 0))
            .collect())
    }

    /// See [`crate::store::Store::lease`].
    pub async fn lease(
        &self,
        consumer: &str,
        idle: Duration,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let connection = self.connection()?;
        let lease = || {
            let mut invocation = scripts::LEASE.prepare_invoke();
            invocation
                .key(&self.inner.keys.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(ids);
            let mut conn = connection.clone();
            async move { invocation.invoke_async(&mut conn).await }
        };
        self.in_group(
            self.inner.timeout,
            ("EVALSHA lease", &self.inner.keys.stream),
            lease,
        )
        .await
    }

    /// See [`crate::store::Store::forget_consumers`].
    pub async fn forget_consumers(&self, idle: Duration) -> Result<u64, StoreError> {
        let connection = self.connection()?;
        let forget = || {
            let mut invocation = scripts::FORGET_CONSUMERS.prepare_invoke();
            invocation
                .key(&self.inner.keys.stream)
                .arg(GROUP)
                .arg(idle.as_millis() as u64);
            let mut conn = connection.clone();
            async move { invocation.invoke_async(&mut conn).await }
        };
        self.in_group(
            self.inner.timeout,
            ("EVALSHA forget_consumers", &self.inner.keys.stream),
            forget,
        )
        .await
    }

    /// See [`crate::store::Store::discard`].
    pub async fn discard(&self, entry_id: &str) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        self.run(
            ("XACK XDEL", &self.inner.keys.stream),
            redis::pipe()
                .cmd("XACK")
                .arg(&self.inner.keys.stream)
                .arg(GROUP)
                .arg(entry_id)
                .ignore()
                .cmd("XDEL")
                .arg(&self.inner.keys.stream)
                .arg(entry_id)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// See [`crate::store::Store::due_watched`]. A member of the watch list that is no task id
    /// (only someone else could have written it) is removed.
    pub async fn due_watched(&self, now_ms: u64, count: usize) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.connection()?;
        let members: Vec<String> = self
            .run(
                ("ZRANGE BYSCORE", &self.inner.keys.watch),
                redis::cmd("ZRANGE")
                    .arg(&self.inner.keys.watch)
                    .arg("-inf")
                    .arg(now_ms)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(count)
                    .query_async(&mut conn),
            )
            .await?;
        let mut due = Vec::with_capacity(members.len());
        for member in members {
            match TaskId::parse(&member) {
                Ok(id) => due.push(id),
                Err(_) => {
                    tracing::warn!(watch_list = %self.inner.keys.watch, %member, "removing a watch-list member that is no task id");
                    self.run(
                        ("ZREM", &self.inner.keys.watch),
                        redis::cmd("ZREM")
                            .arg(&self.inner.keys.watch)
                            .arg(&member)
                            .query_async::<i64>(&mut conn),
                    )
                    .await?;
                }
            }
        }
        Ok(due)
    }

    /// See [`crate::store::Store::settle`]: one pipeline of script calls for the whole batch.
    pub async fn settle(
        &self,
        task_ids: &[TaskId],
        next_check_ms: u64,
    ) -> Result<Vec<Settled>, StoreError> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in task_ids {
            pipe.cmd("EVALSHA")
                .arg(scripts::SETTLE.get_hash())
                .arg(2)
                .arg(task_key(*id))
                .arg(&self.inner.keys.watch)
                .arg(id.to_string())
                .arg(self.inner.ttl_secs)
                .arg(next_check_ms);
        }
        let what = ("EVALSHA settle", self.inner.keys.watch.as_str());
        let mut conn = self.connection()?;
        let replies: Vec<(String, String, String)> = match self
            .call(self.inner.timeout, what, pipe.query_async(&mut conn))
            .await
        {
            // After a Redis restart its script cache is empty: load the script and run again.
            Err(failure) if is_no_script(&failure) => {
                self.run(
                    ("SCRIPT LOAD settle", &self.inner.keys.watch),
                    scripts::SETTLE.prepare_invoke().load_async(&mut conn),
                )
                .await?;
                self.run(what, pipe.query_async(&mut conn)).await?
            }
            other => other.map_err(|e| self.error(e))?,
        };
        Ok(replies
            .into_iter()
            .map(|(status, updated_at, created_at)| match status.as_str() {
                "missing" => Settled::Missing,
                _ => match final_or_raw(&status) {
                    Ok(status) => Settled::Final(status),
                    Err(status) => Settled::Unfinished {
                        status,
                        updated_at,
                        created_at,
                    },
                },
            })
            .collect())
    }

    /// See [`crate::store::Store::queue_stats`].
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let mut conn = self.connection()?;
        let (depth, oldest, watched, pending): (u64, StreamRangeReply, u64, Value) = self
            .run(
                ("queue stats", &self.inner.keys.stream),
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&self.inner.keys.stream)
                    .cmd("XRANGE")
                    .arg(&self.inner.keys.stream)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .cmd("ZCARD")
                    .arg(&self.inner.keys.watch)
                    .cmd("XPENDING")
                    .arg(&self.inner.keys.stream)
                    .arg(GROUP)
                    .ignore_errors()
                    .query_async(&mut conn),
            )
            .await?;
        // XPENDING's summary starts with the count; with no group (Redis lost it) it is an
        // error, which counts as none pending.
        let pending = match pending {
            Value::Array(items) => items
                .first()
                .and_then(|v| i64::from_redis_value_ref(v).ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok(QueueStats {
            depth,
            pending: pending.max(0) as u64,
            oldest_ms: oldest.ids.first().map(|id| entry_ms(&id.id)),
            watched,
        })
    }
}

/// A stream entry as a [`Taken`]; values that are not text are skipped.
fn stream_entry(id: StreamId, deliveries: u32) -> Taken {
    let fields = id
        .map
        .into_iter()
        .filter_map(|(field, value)| Some((field, String::from_redis_value(value).ok()?)));
    QueueEntry::from_fields(id.id, fields, deliveries)
}
