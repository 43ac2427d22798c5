//! The store test suite: the same checks against the Redis store (in a real Redis container)
//! and the in-memory store of the dev mode, so that both keep the same semantics.

mod common;

use std::time::Duration;

use common::TestRedis;
use task_service::{
    config::{Config, RedisConfig},
    store::{AcceptOutcome, FailOutcome, FailRequest, MemoryStore, RedisStore, Store},
    task::{TaskId, TaskRecord},
};

const TTL: Duration = Duration::from_secs(7 * 86_400);
const NOW: &str = "2025-10-30T10:00:00Z";
const LATER: &str = "2025-10-30T10:05:00Z";

/// Every check, each on a store of its own (a fresh key prefix on Redis).
async fn suite(make: impl Fn() -> Store) {
    create_writes_the_contract_hash_and_one_entry(make()).await;
    reading_a_missing_task_finds_nothing(make()).await;
    fail_is_fenced(make()).await;
    fail_guarded_by_updated_at_skips_a_newer_write(make()).await;
    a_final_state_written_by_the_processor_gets_the_ttl_on_read(make()).await;
    entries_are_delivered_once_and_can_be_taken_over(make()).await;
    a_blocked_read_wakes_on_a_new_entry(make()).await;
    accepted_tasks_are_watched_until_final(make()).await;
    consumers_holding_nothing_are_forgotten(make()).await;
}

async fn create(store: &Store, trace: &[(String, String)]) -> TaskRecord {
    let record = TaskRecord::new_pending(TaskId::new_v4(), "abc/original.mp4", NOW);
    store.create(&record, trace).await.unwrap();
    record
}

fn fail_request<'a>(task_id: &'a str, message: &'a str) -> FailRequest<'a> {
    FailRequest {
        task_id,
        message,
        now: LATER,
        expect_updated_at: None,
        entry_id: None,
    }
}

async fn create_writes_the_contract_hash_and_one_entry(store: Store) {
    let trace = vec![(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )];
    let record = create(&store, &trace).await;
    let read = store.read(&record.task_id).await.unwrap().unwrap();
    assert_eq!(read, record);
    assert_eq!(read.status, "PENDING");
    assert_eq!(read.result_file_key, "");
    assert_eq!(read.error_message, "");
    assert_eq!(
        store.ttl(&record.task_id).await.unwrap(),
        None,
        "no TTL before the task is final"
    );

    let entries = store.read_new("a", 10, Duration::ZERO).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].task_id, record.task_id);
    assert_eq!(entries[0].original_file_key, record.original_file_key);
    assert_eq!(entries[0].trace, trace);
    assert_eq!(entries[0].deliveries, 1);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending), (1, 1));
    assert!(stats.oldest_ms.is_some());
}

async fn reading_a_missing_task_finds_nothing(store: Store) {
    assert_eq!(store.read(&TaskId::new_v4().to_text()).await.unwrap(), None);
}

async fn fail_is_fenced(store: Store) {
    let pending = create(&store, &[]).await;
    assert_eq!(
        store
            .fail(fail_request(&pending.task_id, "first"))
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    let failed = store.read(&pending.task_id).await.unwrap().unwrap();
    assert_eq!(
        (
            failed.status.as_str(),
            failed.error_message.as_str(),
            failed.updated_at.as_str()
        ),
        ("FAILED", "first", LATER)
    );
    assert_ttl_about(&store, &pending.task_id).await;
    assert_eq!(
        store
            .fail(fail_request(&pending.task_id, "second"))
            .await
            .unwrap(),
        FailOutcome::AlreadyFinal
    );
    assert_eq!(
        store
            .read(&pending.task_id)
            .await
            .unwrap()
            .unwrap()
            .error_message,
        "first"
    );

    let completed = create(&store, &[]).await;
    store
        .processor_write(
            &completed.task_id,
            &[("status", "COMPLETED"), ("result_file_key", "r.mp4")],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .fail(fail_request(&completed.task_id, "late"))
            .await
            .unwrap(),
        FailOutcome::AlreadyFinal
    );
    let kept = store.read(&completed.task_id).await.unwrap().unwrap();
    assert_eq!(
        (
            kept.status.as_str(),
            kept.result_file_key.as_str(),
            kept.error_message.as_str()
        ),
        ("COMPLETED", "r.mp4", "")
    );
    assert_ttl_about(&store, &completed.task_id).await;

    let missing = TaskId::new_v4().to_text();
    assert_eq!(
        store.fail(fail_request(&missing, "x")).await.unwrap(),
        FailOutcome::Missing
    );
    assert_eq!(
        store.read(&missing).await.unwrap(),
        None,
        "a missing task is never recreated"
    );
}

async fn fail_guarded_by_updated_at_skips_a_newer_write(store: Store) {
    let task = create(&store, &[]).await;
    store
        .processor_write(
            &task.task_id,
            &[("status", "PROCESSING"), ("updated_at", LATER)],
        )
        .await
        .unwrap();
    let stale = FailRequest {
        expect_updated_at: Some(NOW),
        ..fail_request(&task.task_id, "stalled")
    };
    assert_eq!(store.fail(stale).await.unwrap(), FailOutcome::Changed);
    assert_eq!(
        store.read(&task.task_id).await.unwrap().unwrap().status,
        "PROCESSING"
    );
    let current = FailRequest {
        expect_updated_at: Some(LATER),
        ..fail_request(&task.task_id, "stalled")
    };
    assert_eq!(store.fail(current).await.unwrap(), FailOutcome::Failed);
}

async fn a_final_state_written_by_the_processor_gets_the_ttl_on_read(store: Store) {
    let task = create(&store, &[]).await;
    store
        .processor_write(
            &task.task_id,
            &[("status", "FAILED"), ("error_message", "bad codec")],
        )
        .await
        .unwrap();
    assert_eq!(store.ttl(&task.task_id).await.unwrap(), None);
    let read = store.read(&task.task_id).await.unwrap().unwrap();
    assert_eq!(read.error_message, "bad codec");
    assert_ttl_about(&store, &task.task_id).await;
}

async fn entries_are_delivered_once_and_can_be_taken_over(store: Store) {
    let task = create(&store, &[]).await;
    let first = store.read_new("a", 10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .read_new("b", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "delivered once"
    );

    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        store
            .idle_entries(Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let idle = store
        .idle_entries(Duration::from_millis(20), 10)
        .await
        .unwrap();
    assert_eq!(idle.len(), 1);
    assert_eq!((idle[0].consumer.as_str(), idle[0].deliveries), ("a", 1));

    let taken = store
        .claim("b", Duration::from_millis(20), &[idle[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task_id, task.task_id);
    assert!(
        store
            .claim("c", Duration::from_millis(20), &[idle[0].id.clone()])
            .await
            .unwrap()
            .is_empty(),
        "a fresh claim is not idle"
    );
    assert_eq!(
        store
            .lease("a", Duration::ZERO, &[idle[0].id.clone()])
            .await
            .unwrap(),
        vec![idle[0].id.clone()]
    );
    assert!(
        store
            .lease("b", Duration::ZERO, &[idle[0].id.clone()])
            .await
            .unwrap()
            .is_empty()
    );

    // Giving an entry back makes it idle at once for everyone else.
    assert!(
        store
            .lease("b", Duration::from_secs(60), &[idle[0].id.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    let given_back = store
        .idle_entries(Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(
        (given_back[0].consumer.as_str(), given_back[0].deliveries),
        ("b", 2)
    );
}

async fn a_blocked_read_wakes_on_a_new_entry(store: Store) {
    let started = tokio::time::Instant::now();
    assert!(
        store
            .read_new("a", 1, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "a blocking read waits"
    );

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .read_new("a", 1, Duration::from_secs(10))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let task = create(&store, &[]).await;
    let woke = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woke[0].task_id, task.task_id);
}

async fn accepted_tasks_are_watched_until_final(store: Store) {
    let running = create(&store, &[]).await;
    let done = create(&store, &[]).await;
    let entries = store.read_new("a", 10, Duration::ZERO).await.unwrap();
    assert_eq!(entries.len(), 2);
    store
        .processor_write(&done.task_id, &[("status", "COMPLETED")])
        .await
        .unwrap();
    for entry in &entries {
        let expected = if entry.task_id == done.task_id {
            AcceptOutcome::Final("COMPLETED".into())
        } else {
            AcceptOutcome::Watching
        };
        assert_eq!(store.accepted(entry, 1_000).await.unwrap(), expected);
    }
    assert_ttl_about(&store, &done.task_id).await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.pending, stats.watched),
        (0, 0, 1),
        "entries acknowledged and deleted"
    );

    assert!(store.due_watched(999, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_watched(1_000, 10).await.unwrap(),
        vec![running.task_id.clone()]
    );
    let settled = store
        .settle(std::slice::from_ref(&running.task_id), 2_000)
        .await
        .unwrap();
    assert_eq!(settled[0].status.as_deref(), Some("PENDING"));
    assert_eq!(settled[0].updated_at, NOW);
    assert!(
        store.due_watched(1_999, 10).await.unwrap().is_empty(),
        "rescheduled"
    );

    store
        .processor_write(&running.task_id, &[("status", "COMPLETED")])
        .await
        .unwrap();
    let settled = store
        .settle(std::slice::from_ref(&running.task_id), 3_000)
        .await
        .unwrap();
    assert_eq!(settled[0].status.as_deref(), Some("COMPLETED"));
    assert_ttl_about(&store, &running.task_id).await;
    assert_eq!(
        store.queue_stats().await.unwrap().watched,
        0,
        "final tasks leave the watch list"
    );
}

async fn consumers_holding_nothing_are_forgotten(store: Store) {
    create(&store, &[]).await;
    create(&store, &[]).await;
    assert_eq!(
        store
            .read_new("holder", 1, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );
    let done = store.read_new("done", 1, Duration::ZERO).await.unwrap();
    let request = FailRequest {
        entry_id: Some(&done[0].id),
        ..fail_request(&done[0].task_id, "x")
    };
    store.fail(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        store
            .forget_consumers(Duration::from_millis(10))
            .await
            .unwrap(),
        1,
        "only the consumer holding nothing"
    );
    assert_eq!(
        store
            .forget_consumers(Duration::from_millis(10))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.queue_stats().await.unwrap().pending,
        1,
        "the holder keeps its entry"
    );
}

async fn assert_ttl_about(store: &Store, task_id: &str) {
    let ttl = store
        .ttl(task_id)
        .await
        .unwrap()
        .expect("a final task has a TTL");
    assert!(
        ttl <= TTL && ttl >= TTL - Duration::from_secs(60),
        "TTL {ttl:?}"
    );
}

#[tokio::test]
async fn memory_store_passes_the_suite() {
    suite(|| Store::Memory(MemoryStore::new(TTL))).await;
}

#[tokio::test]
async fn redis_store_passes_the_suite() {
    let redis = TestRedis::start().await;
    let base: Config = common::service::config(&redis.vars());
    suite(|| {
        let config = RedisConfig {
            key_prefix: format!("suite-{}", uuid::Uuid::new_v4()),
            ..base.redis.clone()
        };
        Store::Redis(RedisStore::connect(&config, TTL).unwrap())
    })
    .await;
}
