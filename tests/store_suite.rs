//! The store test suite: the same checks against the Redis store (in a real Redis container)
//! and the in-memory store of the dev mode, so that both keep the same semantics.

mod common;

use std::time::Duration;

use bb8_redis::redis;
use common::{TestRedis, eventually};
use task_service::{
    config::{Config, RedisConfig},
    store::{
        AcceptOutcome, CancelAs, CancelOutcome, Change, Created, FailOutcome, FailRequest,
        ListQuery, MemoryStore, NewTask, QueueEntry, RedisStore, Settled, Store, Taken,
    },
    task::{RawStatus, TaskId, TaskRecord, TaskStatus},
};

const TTL: Duration = Duration::from_secs(7 * 86_400);
const NOW: &str = "2025-10-30T10:00:00Z";
const LATER: &str = "2025-10-30T10:05:00Z";

/// Every check, each on a store of its own (a fresh key prefix on Redis). `blocked` counts the
/// queue reads waiting in the store right now.
async fn suite(make: impl Fn() -> Store, blocked: impl AsyncFn(&Store) -> usize) {
    create_writes_the_contract_hash_and_one_entry(make()).await;
    reading_a_missing_task_finds_nothing(make()).await;
    fail_is_fenced(make()).await;
    fail_guarded_by_updated_at_skips_a_newer_write(make()).await;
    a_final_state_written_by_the_processor_gets_the_ttl_on_read(make()).await;
    entries_are_delivered_once_and_can_be_taken_over(make()).await;
    a_blocked_read_wakes_on_a_new_entry(make(), blocked).await;
    accepted_tasks_are_watched_until_final(make()).await;
    consumers_holding_nothing_are_forgotten(make()).await;
    a_request_id_answers_its_first_task(make()).await;
    creates_arriving_together_are_each_decided_in_order(make()).await;
    cancel_fails_what_the_processor_has_not_accepted(make()).await;
    listing_pages_newest_first_each_task_once(make()).await;
    listeners_hear_of_writes_and_cancellations(make()).await;
}

async fn create(store: &Store, trace: &[(String, String)]) -> TaskRecord {
    let record = TaskRecord::new_pending(TaskId::new_v4(), "abc/original.mp4", NOW);
    store.create(NewTask::now(&record, trace)).await.unwrap();
    record
}

/// The record's task id.
fn id(record: &TaskRecord) -> TaskId {
    TaskId::parse(&record.task_id).unwrap()
}

/// Entries read from the queue, every one well formed.
fn entries(taken: Vec<Taken>) -> Vec<QueueEntry> {
    taken
        .into_iter()
        .map(|t| t.expect("a well-formed entry"))
        .collect()
}

fn fail_request(task_id: TaskId, message: &str) -> FailRequest<'_> {
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
    let read = store.read(id(&record)).await.unwrap().unwrap();
    assert_eq!(read, record);
    assert_eq!(read.status, RawStatus::Known(TaskStatus::Pending));
    assert_eq!(read.result_file_key, "");
    assert_eq!(read.error_message, "");
    assert_eq!(
        store.ttl(id(&record)).await.unwrap(),
        None,
        "no TTL before the task is final"
    );

    let entries = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].task_id, id(&record));
    assert_eq!(entries[0].original_file_key, record.original_file_key);
    assert_eq!(entries[0].trace, trace);
    assert_eq!(entries[0].deliveries, 1);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending), (1, 1));
    assert!(stats.oldest_ms.is_some());
}

async fn reading_a_missing_task_finds_nothing(store: Store) {
    assert_eq!(store.read(TaskId::new_v4()).await.unwrap(), None);
}

async fn fail_is_fenced(store: Store) {
    let pending = create(&store, &[]).await;
    assert_eq!(
        store
            .fail(fail_request(id(&pending), "first"))
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    let failed = store.read(id(&pending)).await.unwrap().unwrap();
    assert_eq!(
        (
            failed.status.as_str(),
            failed.error_message.as_str(),
            failed.updated_at.as_str()
        ),
        ("FAILED", "first", LATER)
    );
    assert_ttl_about(&store, id(&pending)).await;
    assert_eq!(
        store
            .fail(fail_request(id(&pending), "second"))
            .await
            .unwrap(),
        FailOutcome::AlreadyFinal
    );
    assert_eq!(
        store
            .read(id(&pending))
            .await
            .unwrap()
            .unwrap()
            .error_message,
        "first"
    );

    let completed = create(&store, &[]).await;
    store
        .processor_write(
            id(&completed),
            &[("status", "COMPLETED"), ("result_file_key", "r.mp4")],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .fail(fail_request(id(&completed), "late"))
            .await
            .unwrap(),
        FailOutcome::AlreadyFinal
    );
    let kept = store.read(id(&completed)).await.unwrap().unwrap();
    assert_eq!(
        (
            kept.status.as_str(),
            kept.result_file_key.as_str(),
            kept.error_message.as_str()
        ),
        ("COMPLETED", "r.mp4", "")
    );
    assert_ttl_about(&store, id(&completed)).await;

    let missing = TaskId::new_v4();
    assert_eq!(
        store.fail(fail_request(missing, "x")).await.unwrap(),
        FailOutcome::Missing
    );
    assert_eq!(
        store.read(missing).await.unwrap(),
        None,
        "a missing task is never recreated"
    );
}

async fn fail_guarded_by_updated_at_skips_a_newer_write(store: Store) {
    let task = create(&store, &[]).await;
    store
        .processor_write(
            id(&task),
            &[("status", "PROCESSING"), ("updated_at", LATER)],
        )
        .await
        .unwrap();
    let stale = FailRequest {
        expect_updated_at: Some(NOW),
        ..fail_request(id(&task), "stalled")
    };
    assert_eq!(store.fail(stale).await.unwrap(), FailOutcome::Changed);
    assert_eq!(
        store
            .read(id(&task))
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "PROCESSING"
    );
    let current = FailRequest {
        expect_updated_at: Some(LATER),
        ..fail_request(id(&task), "stalled")
    };
    assert_eq!(store.fail(current).await.unwrap(), FailOutcome::Failed);
}

async fn a_final_state_written_by_the_processor_gets_the_ttl_on_read(store: Store) {
    let task = create(&store, &[]).await;
    store
        .processor_write(
            id(&task),
            &[("status", "FAILED"), ("error_message", "bad codec")],
        )
        .await
        .unwrap();
    assert_eq!(store.ttl(id(&task)).await.unwrap(), None);
    let read = store.read(id(&task)).await.unwrap().unwrap();
    assert_eq!(read.error_message, "bad codec");
    assert_ttl_about(&store, id(&task)).await;
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

    // Idle for a second, so that the claims below can tell a fresh claim (idle for less than
    // half of that) from the entry left alone, whatever the machine's pauses between two calls.
    let idle = eventually(
        Duration::from_secs(10),
        "the entry to be idle for 1 s",
        || async {
            Some(
                store
                    .idle_entries(Duration::from_secs(1), 10)
                    .await
                    .unwrap(),
            )
            .filter(|idle| !idle.is_empty())
        },
    )
    .await;
    assert!(
        store
            .idle_entries(Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(idle.len(), 1);
    assert_eq!((idle[0].consumer.as_str(), idle[0].deliveries), ("a", 1));

    let taken = entries(
        store
            .claim("b", Duration::from_secs(1), &[idle[0].id.clone()])
            .await
            .unwrap(),
    );
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task_id, id(&task));
    assert!(
        store
            .claim("c", Duration::from_millis(500), &[idle[0].id.clone()])
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

async fn a_blocked_read_wakes_on_a_new_entry(store: Store, blocked: impl AsyncFn(&Store) -> usize) {
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
    eventually(Duration::from_secs(5), "the read to be waiting", || async {
        (blocked(&store).await >= 1).then_some(())
    })
    .await;
    let task = create(&store, &[]).await;
    let woke = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries(woke)[0].task_id, id(&task));
}

async fn accepted_tasks_are_watched_until_final(store: Store) {
    let running = create(&store, &[]).await;
    let done = create(&store, &[]).await;
    let entries = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(entries.len(), 2);
    store
        .processor_write(id(&done), &[("status", "COMPLETED")])
        .await
        .unwrap();
    for entry in &entries {
        let expected = if entry.task_id == id(&done) {
            AcceptOutcome::Final(TaskStatus::Completed)
        } else {
            AcceptOutcome::Watching
        };
        assert_eq!(store.accepted(entry, 1_000).await.unwrap(), expected);
    }
    assert_ttl_about(&store, id(&done)).await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.pending, stats.watched),
        (0, 0, 1),
        "entries acknowledged and deleted"
    );

    assert!(store.due_watched(999, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_watched(1_000, 10).await.unwrap(),
        vec![id(&running)]
    );
    let settled = store.settle(&[id(&running)], 2_000).await.unwrap();
    assert_eq!(
        settled,
        vec![Settled::Unfinished {
            status: RawStatus::Known(TaskStatus::Pending),
            updated_at: NOW.into(),
            created_at: NOW.into(),
        }]
    );
    assert!(
        store.due_watched(1_999, 10).await.unwrap().is_empty(),
        "rescheduled"
    );

    store
        .processor_write(id(&running), &[("status", "COMPLETED")])
        .await
        .unwrap();
    let settled = store.settle(&[id(&running)], 3_000).await.unwrap();
    assert_eq!(settled, vec![Settled::Final(TaskStatus::Completed)]);
    assert_ttl_about(&store, id(&running)).await;
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
    let done = entries(store.read_new("done", 1, Duration::ZERO).await.unwrap());
    let request = FailRequest {
        entry_id: Some(&done[0].id),
        ..fail_request(done[0].task_id, "x")
    };
    store.fail(request).await.unwrap();
    // Only the consumer holding nothing, once it has been idle for 10 ms.
    eventually(
        Duration::from_secs(5),
        "an idle consumer to be forgotten",
        || async {
            let forgotten = store
                .forget_consumers(Duration::from_millis(10))
                .await
                .unwrap();
            assert!(forgotten <= 1, "forgot {forgotten} consumers");
            (forgotten == 1).then_some(())
        },
    )
    .await;
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

async fn a_request_id_answers_its_first_task(store: Store) {
    let window = Duration::from_secs(60);
    let first = TaskRecord::new_pending(TaskId::new_v4(), "a.mp4", NOW);
    let with_request = |record| NewTask {
        request: Some(("req-1", window)),
        ..NewTask::now(record, &[])
    };
    assert!(matches!(
        store.create(with_request(&first)).await.unwrap(),
        Created::New { .. }
    ));
    let retry = TaskRecord::new_pending(TaskId::new_v4(), "a.mp4", NOW);
    assert_eq!(
        store.create(with_request(&retry)).await.unwrap(),
        Created::Existing(id(&first))
    );
    let other_file = TaskRecord::new_pending(TaskId::new_v4(), "b.mp4", NOW);
    assert_eq!(
        store.create(with_request(&other_file)).await.unwrap(),
        Created::Conflict(id(&first))
    );
    for unwritten in [&retry, &other_file] {
        assert_eq!(store.read(id(unwritten)).await.unwrap(), None);
    }
    let queued = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(queued.len(), 1, "one entry, for the first call's task");
    let listed = store
        .list(ListQuery {
            after: None,
            status: None,
            page_size: 10,
            budget: 100,
        })
        .await
        .unwrap();
    assert_eq!(listed.tasks, vec![first]);
}

/// Many creates at once: each is decided on its own, in the order they arrived — a request id
/// given several times answers its first create's task.
async fn creates_arriving_together_are_each_decided_in_order(store: Store) {
    let window = Duration::from_secs(60);
    // Per create: its task id, its file and its request id, if any. Request ids "same-N" come
    // three times for one file; "other-N" twice, the second time for another file.
    let mut wanted = Vec::new();
    let mut add = |file: String, request_id: Option<String>| {
        wanted.push((TaskId::new_v4(), file, request_id));
    };
    for n in 0..40 {
        add("plain.mp4".to_owned(), None);
        for _ in 0..3 {
            add(format!("same-{n}.mp4"), Some(format!("same-{n}")));
        }
        add(format!("first-{n}.mp4"), Some(format!("other-{n}")));
        add(format!("second-{n}.mp4"), Some(format!("other-{n}")));
    }
    let records: Vec<TaskRecord> = wanted
        .iter()
        .map(|(id, file, _)| TaskRecord::new_pending(*id, file, NOW))
        .collect();
    let answers = futures::future::join_all(records.iter().zip(&wanted).map(
        |(record, (_, _, request_id))| {
            store.create(NewTask {
                request: request_id.as_deref().map(|r| (r, window)),
                ..NewTask::now(record, &[])
            })
        },
    ))
    .await;
    let mut first_of = std::collections::HashMap::new();
    let mut made = 0;
    for ((task_id, _, request_id), answer) in wanted.iter().zip(answers) {
        let answer = answer.unwrap();
        let first = request_id
            .as_ref()
            .map(|r| *first_of.entry(r.clone()).or_insert(*task_id));
        match first {
            Some(first) if first != *task_id => {
                let expected = if request_id.as_deref().unwrap().starts_with("same") {
                    Created::Existing(first)
                } else {
                    Created::Conflict(first)
                };
                assert_eq!(answer, expected, "{request_id:?}");
                assert_eq!(store.read(*task_id).await.unwrap(), None);
            }
            _ => {
                assert!(matches!(answer, Created::New { .. }), "{answer:?}");
                let read = store.read(*task_id).await.unwrap().expect("a created task");
                assert_eq!(read.task_id, task_id.to_text());
                made += 1;
            }
        }
    }
    assert_eq!(made, 40 * 3);
    let queued = entries(store.read_new("a", 1000, Duration::ZERO).await.unwrap());
    assert_eq!(queued.len(), made, "one entry per task made");
    let mut queued_ids: Vec<TaskId> = queued.iter().map(|e| e.task_id).collect();
    queued_ids.sort();
    queued_ids.dedup();
    assert_eq!(queued_ids.len(), made);
}

async fn cancel_fails_what_the_processor_has_not_accepted(store: Store) {
    let queued = create(&store, &[]).await;
    assert_eq!(
        store
            .cancel(
                id(&queued),
                "cancelled: wrong file",
                LATER,
                CancelAs::Unaccepted
            )
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    let cancelled = store.read(id(&queued)).await.unwrap().unwrap();
    assert_eq!(
        (
            cancelled.status.as_str(),
            cancelled.error_message.as_str(),
            cancelled.updated_at.as_str()
        ),
        ("FAILED", "cancelled: wrong file", LATER)
    );
    assert_ttl_about(&store, id(&queued)).await;
    assert!(
        entries(store.read_new("a", 10, Duration::ZERO).await.unwrap()).is_empty(),
        "its entry left the queue"
    );
    assert_eq!(
        store
            .cancel(id(&queued), "cancelled", LATER, CancelAs::Unaccepted)
            .await
            .unwrap(),
        CancelOutcome::Final(TaskStatus::Failed)
    );
    assert_eq!(
        store
            .cancel(TaskId::new_v4(), "cancelled", LATER, CancelAs::Unaccepted)
            .await
            .unwrap(),
        CancelOutcome::Missing
    );

    // Delivered and accepted: the Processor has it, and must be asked first.
    let accepted = create(&store, &[]).await;
    let delivered = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(
        store.accepted(&delivered[0], 1_000).await.unwrap(),
        AcceptOutcome::Watching
    );
    assert_eq!(
        store
            .cancel(id(&accepted), "cancelled", LATER, CancelAs::Unaccepted)
            .await
            .unwrap(),
        CancelOutcome::Accepted(RawStatus::Known(TaskStatus::Pending))
    );
    assert_eq!(
        store.read(id(&accepted)).await.unwrap().unwrap().status,
        RawStatus::Known(TaskStatus::Pending),
        "nothing written"
    );
    // Once the Processor agreed to stop it: cancelled.
    assert_eq!(
        store
            .cancel(id(&accepted), "cancelled", LATER, CancelAs::ProcessorAgreed)
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(store.queue_stats().await.unwrap().watched, 0);

    // PROCESSING, its call still in flight: the Processor has it; once it agrees, the entry
    // leaves the queue too.
    let processing = create(&store, &[]).await;
    let delivered = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(delivered[0].task_id, id(&processing));
    store
        .processor_write(id(&processing), &[("status", "PROCESSING")])
        .await
        .unwrap();
    assert_eq!(
        store
            .cancel(id(&processing), "cancelled", LATER, CancelAs::Unaccepted)
            .await
            .unwrap(),
        CancelOutcome::Accepted(RawStatus::Known(TaskStatus::Processing))
    );
    assert_eq!(
        store
            .cancel(
                id(&processing),
                "cancelled",
                LATER,
                CancelAs::ProcessorAgreed
            )
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);

    // Delivered, its call in flight (not yet accepted): cancelled, entry and all.
    let in_flight = create(&store, &[]).await;
    let delivered = entries(store.read_new("a", 10, Duration::ZERO).await.unwrap());
    assert_eq!(delivered[0].task_id, id(&in_flight));
    assert_eq!(
        store
            .cancel(id(&in_flight), "cancelled", LATER, CancelAs::Unaccepted)
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);
}

async fn listing_pages_newest_first_each_task_once(store: Store) {
    let mut made = Vec::new();
    for ms in 1..=7u64 {
        let record = TaskRecord::new_pending(TaskId::new_v4(), "a.mp4", NOW);
        let task = NewTask {
            created_ms: 1_700_000_000_000 + ms * 1_000,
            ..NewTask::now(&record, &[])
        };
        store.create(task).await.unwrap();
        made.push(record);
    }
    store
        .processor_write(id(&made[2]), &[("status", "COMPLETED")])
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(ListQuery {
                after: after.as_deref(),
                status: None,
                page_size: 3,
                budget: 60,
            })
            .await
            .unwrap();
        assert!(page.tasks.len() <= 3);
        seen.extend(page.tasks.into_iter().map(|t| t.task_id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let newest_first: Vec<String> = made.iter().rev().map(|t| t.task_id.clone()).collect();
    assert_eq!(seen, newest_first);
    let completed = store
        .list(ListQuery {
            after: None,
            status: Some(TaskStatus::Completed),
            page_size: 10,
            budget: 100,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = completed.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, [made[2].task_id.as_str()]);
    // A budget smaller than what must be looked at: a short page, and a way to go on.
    let short = store
        .list(ListQuery {
            after: None,
            status: Some(TaskStatus::Completed),
            page_size: 10,
            budget: 2,
        })
        .await
        .unwrap();
    assert!(short.tasks.is_empty());
    assert!(short.next.is_some(), "more to look at");
}

async fn listeners_hear_of_writes_and_cancellations(store: Store) {
    assert!(store.enable_notifications().await);
    let (sink, mut changes) = tokio::sync::mpsc::channel(64);
    let stop = tokio_util::sync::CancellationToken::new();
    let listening = tokio::spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.listen(sink, true, stop).await }
    });
    let mut next_for = async |wanted: &dyn Fn(&Change) -> bool| {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let change = changes.recv().await.expect("listening");
                if wanted(&change) {
                    return change;
                }
            }
        })
        .await
        .expect("a change within 5 s")
    };
    next_for(&|c| *c == Change::Missed).await;
    let record = create(&store, &[]).await;
    let task = id(&record);
    next_for(&|c| *c == Change::Task(task)).await;
    store
        .processor_write(task, &[("status", "PROCESSING")])
        .await
        .unwrap();
    next_for(&|c| *c == Change::Task(task)).await;
    // (PROCESSING: only once the Processor agreed.)
    store
        .cancel(task, "cancelled", LATER, CancelAs::ProcessorAgreed)
        .await
        .unwrap();
    next_for(&|c| *c == Change::Cancelled(task)).await;
    stop.cancel();
    listening.await.unwrap();
}

async fn assert_ttl_about(store: &Store, task_id: TaskId) {
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
    suite(
        || Store::Memory(MemoryStore::new(TTL)),
        async |store: &Store| match store {
            Store::Memory(memory) => memory.waiting_readers(),
            Store::Redis(_) => unreachable!(),
        },
    )
    .await;
}

#[tokio::test]
async fn redis_store_passes_the_suite() {
    let redis = TestRedis::start().await;
    let base: Config = common::service::config(&redis.vars());
    let make = || {
        let config = RedisConfig {
            key_prefix: format!("suite-{}", uuid::Uuid::new_v4()),
            ..base.redis.clone()
        };
        Store::Redis(RedisStore::connect(&config, TTL).unwrap())
    };
    let conn = redis.connection().await;
    // Redis counts the clients waiting in a blocking command.
    let blocked = async |_: &Store| {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    suite(make, blocked).await;
}
