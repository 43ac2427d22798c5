//! Change notifications on Redis: Redis's keyspace notifications for the task hashes (the
//! Processor's plain HSETs included; the service turns them on with `CONFIG SET` where that is
//! allowed) and the service's own cancellations channel, on one pub/sub connection that is
//! re-made when it fails — each failure a [`Change::Missed`], so that listeners look again.

use std::time::Duration;

use bb8_redis::redis::{self, Msg};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RedisStore;
use crate::{
    store::{Change, StoreError},
    task::TaskId,
};

/// The notification classes the service needs: keyspace events (`K`) for hash commands (`h`),
/// generic ones like DEL and EXPIRE (`g`) and expiry (`x`).
const NEEDED: [char; 4] = ['K', 'h', 'g', 'x'];

/// How often the pub/sub connection is checked (a dead one is re-made).
const PING_EVERY: Duration = Duration::from_secs(10);

impl RedisStore {
    /// See [`crate::store::Store::enable_notifications`].
    pub async fn enable_notifications(&self) -> bool {
        if self.inner.nodes.current().is_none() {
            // Under Sentinel, before the primary was first found.
            let _ = self.inner.nodes.look(self.inner.timeout).await;
        }
        let flags = match self.notification_flags().await {
            Ok(flags) => flags,
            Err(e) => {
                tracing::info!(error = %e, "cannot read Redis's keyspace notification setting; watches fall back to polling");
                return false;
            }
        };
        if has_needed(&flags) {
            return true;
        }
        let mut wanted = flags.clone();
        wanted.extend(NEEDED.iter().filter(|c| !flags.contains(**c)));
        let Ok(mut conn) = self.connection() else {
            return false;
        };
        let set = self
            .run(
                ("CONFIG SET", "notify-keyspace-events"),
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(&wanted)
                    .query_async::<()>(&mut conn),
            )
            .await;
        match set {
            Ok(()) => {
                tracing::info!(flags = %wanted, "turned Redis's keyspace notifications on for watches");
                true
            }
            Err(e) => {
                tracing::info!(error = %e, "keyspace notifications are off and cannot be turned on (set notify-keyspace-events to Khgx); watches fall back to polling");
                false
            }
        }
    }

    /// See [`crate::store::Store::listen`].
    pub async fn listen(&self, sink: mpsc::Sender<Change>, tasks: bool, stop: CancellationToken) {
        let pattern = tasks.then(|| format!("__keyspace@{}__:task:*", self.inner.db));
        let mut retry = Duration::from_millis(100);
        while !stop.is_cancelled() {
            match self.listen_once(pattern.as_deref(), &sink, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the notification connection to Redis; listening again");
                    if sink.send(Change::Missed).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = stop.cancelled() => return,
            }
            retry = (retry * 2).min(Duration::from_secs(5));
        }
    }

    /// One pub/sub connection, until it fails (`Err`) or `stop` (`Ok`). With a keyspace
    /// `pattern`, the notification setting is also checked every [`PING_EVERY`]: someone may
    /// turn it off (or a failover land on a Redis where it is off).
    async fn listen_once(
        &self,
        pattern: Option<&str>,
        sink: &mpsc::Sender<Change>,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let client = self.node_client().map_err(|e| e.to_string())?;
        let mut moves = self.inner.nodes.moves();
        moves.mark_unchanged();
        if pattern.is_some() {
            // A node met for the first time (after a failover, say) may have them off.
            self.notifications_still_on().await;
        }
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            if let Some(pattern) = pattern {
                pubsub.psubscribe(pattern).await?;
            }
            pubsub.subscribe(&self.inner.keys.cancellations).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(self.inner.timeout, connect)
            .await
            .map_err(|_| "no answer within TASK_REDIS_TIMEOUT".to_owned())?
            .map_err(|e| e.to_string())?;
        // Listening again: whatever happened meanwhile was missed.
        sink.send(Change::Missed)
            .await
            .map_err(|_| "stopped".to_owned())?;
        let (mut commands, mut messages) = pubsub.split();
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err("the connection closed".into());
                    };
                    if let Some(change) = self.change_of(&message)
                        && sink.send(change).await.is_err()
                    {
                        return Ok(());
                    }
                }
                _ = pings.tick() => {
                    // Subscribed, Redis answers PING with an array (RESP2): any answer will do.
                    match tokio::time::timeout(self.inner.timeout, commands.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(format!("PING failed: {e}")),
                        Err(_) => return Err("no answer to PING within TASK_REDIS_TIMEOUT".into()),
                    }
                    if pattern.is_some() && !self.notifications_still_on().await {
                        sink.send(Change::Missed).await.map_err(|_| "stopped".to_owned())?;
                    }
                }
                _ = moves.changed() => return Err("Redis failed over to another primary".into()),
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Whether keyspace notifications are still on; if they were turned off, turns them on
    /// again (changes meanwhile were missed: the caller says so). An unreadable setting counts
    /// as on: the connection's own failures are caught elsewhere.
    async fn notifications_still_on(&self) -> bool {
        match self.notification_flags().await {
            Ok(flags) if !has_needed(&flags) => {
                tracing::warn!(flags = %flags, "Redis's keyspace notifications were turned off; turning them on again");
                self.enable_notifications().await;
                false
            }
            _ => true,
        }
    }

    async fn notification_flags(&self) -> Result<String, StoreError> {
        let mut conn = self.connection()?;
        let reply: Vec<String> = self
            .run(
                ("CONFIG GET", "notify-keyspace-events"),
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("notify-keyspace-events")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(reply.get(1).cloned().unwrap_or_default())
    }

    /// The change a message tells of, if any.
    fn change_of(&self, message: &Msg) -> Option<Change> {
        let channel = message.get_channel_name();
        if channel == self.inner.keys.cancellations {
            let id: String = message.get_payload().ok()?;
            return TaskId::parse(&id).ok().map(Change::Cancelled);
        }
        let id = channel.rsplit_once(":task:")?.1;
        TaskId::parse(id).ok().map(Change::Task)
    }
}

/// Whether `flags` (Redis's `notify-keyspace-events`) include what watches need.
fn has_needed(flags: &str) -> bool {
    let all = flags.contains('A');
    flags.contains('K') && (all || ['h', 'g', 'x'].iter().all(|c| flags.contains(*c)))
}

#[cfg(test)]
mod tests {
    use super::has_needed;

    #[test]
    fn the_needed_notification_classes_are_recognised() {
        assert!(has_needed("KA"));
        assert!(has_needed("Khgx"));
        assert!(has_needed("xhgKE"));
        assert!(!has_needed(""));
        assert!(!has_needed("EA"), "keyevent only");
        assert!(!has_needed("Kh"), "no expiry events");
    }
}
