//! The GetTaskStatus read cache (`TASK_READ_CACHE_ENTRIES`) against a real Redis: answers kept
//! by Redis's invalidations, the service's own writes read back at once, no status seen to go
//! backwards by racing readers, and nothing answered from memory once Redis stops proving that
//! invalidations arrive (paused, emptied, its connection killed).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bb8_redis::redis;
use common::{TestRedis, eventually};
use task_service::{
    store::{CancelAs, CancelOutcome, NewTask, ProcessorReport, RedisStore, Store},
    task::{TaskId, TaskRecord, TaskStatus},
};
use tokio::time::Instant;

const NOW: &str = "2025-10-30T10:00:00Z";
const LEASE: Duration = Duration::from_millis(100);

/// The service's store with the cache on (`entries` tasks), and a Processor's store without.
fn stores(redis: &TestRedis, entries: usize) -> (Store, RedisStore, Store) {
    let mut vars = redis.vars();
    vars.push(("TASK_READ_CACHE_ENTRIES".into(), entries.to_string()));
    vars.push((
        "TASK_READ_CACHE_LEASE".into(),
        format!("{}ms", LEASE.as_millis()),
    ));
    let config = common::service::config(&vars);
    let redis_store = RedisStore::connect(&config.redis, config.task_ttl).unwrap();
    let processor = common::service::redis_store(&common::service::config(&redis.vars()));
    (Store::Redis(redis_store.clone()), redis_store, processor)
}

async fn create(store: &Store) -> TaskId {
    let id = TaskId::new_v4();
    let record = TaskRecord::new_pending(id, "abc/original.mp4", NOW);
    store.create(NewTask::now(&record, &[])).await.unwrap();
    id
}

async fn status(store: &Store, id: TaskId) -> TaskStatus {
    let record = store.read_status(id).await.unwrap().expect("the task");
    record.status.known().expect("a contract status")
}

/// Reads `id` until memory answers it (the cache connects in the background).
async fn cache_it(store: &Store, cache: &RedisStore, id: TaskId) {
    eventually(
        Duration::from_secs(5),
        "a read answered from memory",
        || async {
            let hits = cache.read_cache_stats().unwrap().hits;
            // The first read on a connection Redis dropped fails; the next one reconnects.
            let read = store.read_status(id).await;
            (read.is_ok() && cache.read_cache_stats().unwrap().hits > hits).then_some(())
        },
    )
    .await;
}

/// Waits until Redis's invalidations for at least `more` keys arrived since `before`.
async fn invalidated(cache: &RedisStore, before: u64, more: u64) {
    eventually(Duration::from_secs(2), "Redis's invalidation", || async {
        (cache.read_cache_stats().unwrap().invalidations >= before + more).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_processors_write_reaches_the_next_read() {
    let redis = TestRedis::start().await;
    let (store, cache, processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    assert_eq!(status(&store, id).await, TaskStatus::Pending);

    let before = cache.read_cache_stats().unwrap().invalidations;
    processor
        .processor_report(id, ProcessorReport::Processing, "2025-10-30T10:00:01Z")
        .await
        .unwrap();
    invalidated(&cache, before, 1).await;
    assert_eq!(status(&store, id).await, TaskStatus::Processing);
    // What memory answers now is what Redis holds, field by field.
    cache_it(&store, &cache, id).await;
    assert_eq!(
        store.read_status(id).await.unwrap(),
        processor.read(id).await.unwrap()
    );
}

#[tokio::test]
async fn the_services_own_write_is_read_back_at_once() {
    let redis = TestRedis::start().await;
    let (store, cache, _processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    let outcome = store
        .cancel(id, "cancelled by the test", NOW, CancelAs::Unaccepted)
        .await
        .unwrap();
    assert_eq!(outcome, CancelOutcome::Cancelled);
    // No wait for the invalidation: this instance forgot the task when it wrote it.
    assert_eq!(status(&store, id).await, TaskStatus::Failed);
}

/// Readers poll a few tasks as fast as they can while a Processor moves each through many
/// PROCESSING updates to COMPLETED: no reader ever sees a task's (status, updated_at) go back.
#[tokio::test]
async fn racing_readers_never_see_a_task_go_backwards() {
    let redis = TestRedis::start().await;
    let (store, cache, processor) = stores(&redis, 1000);
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(create(&store).await);
    }
    cache_it(&store, &cache, ids[0]).await;
    let done = Arc::new(AtomicBool::new(false));
    let rank = |record: &TaskRecord| {
        let status = match record.status.known() {
            Some(TaskStatus::Pending) => 0,
            Some(TaskStatus::Processing) => 1,
            _ => 2,
        };
        (status, record.updated_at.clone())
    };
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (store, ids, done) = (store.clone(), ids.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = vec![(0, String::new()); ids.len()];
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for (i, id) in ids.iter().enumerate() {
                        let record = store.read_status(*id).await.unwrap().unwrap();
                        let now = rank(&record);
                        assert!(
                            now >= seen[i],
                            "task {id} went from {:?} to {now:?}",
                            seen[i]
                        );
                        seen[i] = now;
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    for step in 1..=30 {
        for id in &ids {
            let at = format!("2025-10-30T10:00:{step:02}Z");
            let report = if step == 30 {
                ProcessorReport::Completed {
                    result_file_key: "abc/result.mp4",
                }
            } else {
                ProcessorReport::Processing
            };
            processor.processor_report(*id, report, &at).await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    // Every task is COMPLETED in Redis: the readers must see it within the invalidations' way.
    for id in &ids {
        eventually(Duration::from_secs(2), "COMPLETED read back", || async {
            (status(&store, *id).await == TaskStatus::Completed).then_some(())
        })
        .await;
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    let stats = cache.read_cache_stats().unwrap();
    println!("{reads} reads: {stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert!(stats.invalidations >= 8, "{stats:?}");
}

/// With Redis frozen, memory answers no longer than the lease after the last proof, and then
/// reads fail as they would without the cache.
#[tokio::test]
async fn a_paused_redis_is_not_answered_from_memory() {
    let redis = TestRedis::start().await;
    let (store, cache, _processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    redis.pause().await;
    let paused = Instant::now();
    let mut last_answer = None;
    let failed_at = loop {
        let started = Instant::now();
        match store.read_status(id).await {
            Ok(_) => last_answer = Some(started),
            Err(e) => {
                println!("after {:?}: {e}", paused.elapsed());
                break started;
            }
        }
        assert!(paused.elapsed() < Duration::from_secs(5), "still answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    redis.unpause().await;
    // Margin: the time the pause itself took to act, and scheduling.
    let bound = LEASE + Duration::from_millis(100);
    if let Some(last) = last_answer {
        assert!(
            last.saturating_duration_since(paused) <= bound,
            "memory answered {:?} into the pause",
            last - paused
        );
    }
    assert!(failed_at.saturating_duration_since(paused) <= bound);
    eventually(Duration::from_secs(5), "reads answered again", || async {
        store.read_status(id).await.ok().flatten().map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn an_emptied_redis_leaves_nothing_in_memory() {
    let redis = TestRedis::start().await;
    let (store, cache, _processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    let resets = cache.read_cache_stats().unwrap().resets;
    redis.flush_all().await;
    eventually(Duration::from_secs(2), "the cache emptied", || async {
        (cache.read_cache_stats().unwrap().resets > resets).then_some(())
    })
    .await;
    assert_eq!(store.read_status(id).await.unwrap(), None);
}

/// Redis drops the tracked connection: the cache empties, connects again, and the new connection
/// is tracked (a write reaches the next read through it).
#[tokio::test]
async fn a_killed_tracked_connection_is_made_again() {
    let redis = TestRedis::start().await;
    let (store, cache, processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    let resets = cache.read_cache_stats().unwrap().resets;
    let mut admin = redis.connection().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed > 0);
    eventually(Duration::from_secs(2), "the cache emptied", || async {
        (cache.read_cache_stats().unwrap().resets > resets).then_some(())
    })
    .await;
    cache_it(&store, &cache, id).await;
    let before = cache.read_cache_stats().unwrap().invalidations;
    processor
        .processor_report(
            id,
            ProcessorReport::Completed {
                result_file_key: "abc/result.mp4",
            },
            "2025-10-30T10:00:02Z",
        )
        .await
        .unwrap();
    invalidated(&cache, before, 1).await;
    assert_eq!(status(&store, id).await, TaskStatus::Completed);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_entries() {
    let redis = TestRedis::start().await;
    let (store, cache, _processor) = stores(&redis, 64);
    let first = create(&store).await;
    cache_it(&store, &cache, first).await;
    for _ in 0..300 {
        let id = create(&store).await;
        for _ in 0..3 {
            store.read_status(id).await.unwrap();
        }
    }
    let stats = cache.read_cache_stats().unwrap();
    assert!(stats.entries <= 64, "{stats:?}");
    assert!(stats.hits > 100, "{stats:?}");
}

/// Redis's `INFO stats` figure `name`.
async fn redis_stat(redis: &TestRedis, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Ids no task has cost Redis nothing: only tasks seen to exist are read through the tracked
/// connection, so a client asking for random ids cannot grow Redis's tracking table.
#[tokio::test]
async fn asking_for_missing_tasks_registers_nothing_with_redis() {
    let redis = TestRedis::start().await;
    let (store, cache, _processor) = stores(&redis, 1000);
    let id = create(&store).await;
    cache_it(&store, &cache, id).await;
    let tracked = redis_stat(&redis, "tracking_total_keys").await;
    assert!(tracked >= 1, "the task's key is tracked");
    for _ in 0..500 {
        let missing = TaskId::new_v4();
        for _ in 0..3 {
            assert_eq!(store.read_status(missing).await.unwrap(), None);
        }
    }
    assert_eq!(redis_stat(&redis, "tracking_total_keys").await, tracked);
    assert!(cache.read_cache_stats().unwrap().entries <= 1);
}
