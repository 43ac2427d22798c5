//! The chaos harness: a steady stream of CreateTask against service processes, an observer that
//! records every status each task showed (straight from Redis), and the invariants checked once
//! the faults are over: none lost, none stuck, none moved backwards, every FAILED with a reason.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bb8_redis::redis;
use task_service::{
    proto::task::{CreateTaskRequest, task_client::TaskClient},
    task::RawStatus,
};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::{FakeProcessor, Reply, ServiceProcess, TestRedis, eventually};

/// How much longer and busier the full variant is (`TASK_CHAOS=full`).
pub fn scale() -> u32 {
    if std::env::var("TASK_CHAOS").as_deref() == Ok("full") {
        4
    } else {
        1
    }
}

/// Seconds, scaled.
pub fn secs(short: u64) -> Duration {
    Duration::from_secs(short * u64::from(scale()))
}

/// A test's cast: Redis, a Processor, service processes on fixed ports.
pub struct Cast {
    /// The scenario's name, for the report.
    pub name: &'static str,
    /// Redis, in a container.
    pub redis: TestRedis,
    /// The Processor (idempotent, completes tasks at once unless told otherwise).
    pub processor: FakeProcessor,
    /// The service instances (None once killed for good).
    pub services: Vec<Option<ServiceProcess>>,
    /// Their ports (each instance comes back on its own).
    pub ports: Vec<u16>,
    /// The variables every instance gets.
    pub vars: Vec<(String, String)>,
    /// What every task showed.
    pub observer: Observer,
    baseline_memory: u64,
}

impl Cast {
    /// Starts Redis, the Processor and `replicas` service processes with `extra` variables.
    pub async fn start(name: &'static str, replicas: usize, extra: &[(&str, &str)]) -> Self {
        let redis = TestRedis::start().await;
        let store = super::service::redis_store(&super::service::config(&redis.vars()));
        let processor = FakeProcessor::start(Reply::Idempotent, Some(store)).await;
        let mut vars = redis.vars();
        vars.push(processor.addr_var());
        // Short enough to see the memory come back, long enough for the observer to see every final state.
        vars.push(("TASK_TTL".into(), "15s".into()));
        vars.push(("TASK_DISPATCH_MAX_ATTEMPTS".into(), "1000".into()));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut services = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..replicas {
            let service = ServiceProcess::start(&vars).await;
            ports.push(service.addr.port());
            services.push(Some(service));
        }
        let baseline_memory = redis.used_memory().await;
        let observer = Observer::start(&redis).await;
        Self {
            name,
            redis,
            processor,
            services,
            ports,
            vars,
            observer,
            baseline_memory,
        }
    }

    /// Tasks to follow: push the id of every task whose CreateTask answered OK.
    pub fn tracker(&self) -> Arc<Mutex<Vec<String>>> {
        self.observer.ids.clone()
    }

    /// A steady stream of CreateTask, spread over every instance's port.
    pub fn load(&self, per_second: u32) -> Workload {
        let addrs = self
            .ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        Workload::start(addrs, per_second, self.observer.ids.clone())
    }

    /// SIGKILLs instance `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(service) = self.services[i].take() {
            service.kill().await;
        }
    }

    /// Starts instance `i` again, on its port.
    pub async fn restart(&mut self, i: usize) {
        self.services[i] = Some(ServiceProcess::start_on(&self.vars, self.ports[i]).await);
    }

    /// Waits for every accepted task to be final, checks the invariants, prints and returns the
    /// figures; then checks that Redis gives its memory back once the tasks' TTLs pass.
    pub async fn verify(mut self, created: Created, bound: Duration) -> Verdict {
        let ids = created.accepted.clone();
        let deadline = Instant::now() + bound;
        while self.observer.final_count(&ids) < ids.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let verdict = self.observer.verdict(&ids, &self.processor);
        println!(
            "chaos {}: {} accepted, {} COMPLETED, {} FAILED, {} lost, {} stuck, {} seen moving backwards, \
             {} duplicate ProcessVideo deliveries; {} CreateTask refused during faults {:?}; FAILED reasons {:?}",
            self.name,
            ids.len(),
            verdict.completed,
            verdict.failed,
            verdict.lost,
            verdict.stuck,
            verdict.backwards.len(),
            verdict.duplicates,
            created.refused.values().sum::<u64>(),
            created.refused,
            verdict.failed_reasons,
        );
        if verdict.stuck > 0 {
            self.explain_stuck(&ids).await;
        }
        assert!(!ids.is_empty(), "the load created tasks");
        assert_eq!(verdict.lost, 0, "tasks lost");
        assert_eq!(verdict.stuck, 0, "tasks stuck");
        assert!(
            verdict.backwards.is_empty(),
            "tasks moved backwards: {:?}",
            verdict.backwards
        );
        assert!(
            verdict.failed_without_reason == 0,
            "FAILED tasks without an error_message"
        );

        // With a short TTL, every task key expires and Redis returns to its baseline.
        self.observer.stop();
        let redis = &self.redis;
        let ttl = super::service::config(&self.vars).task_ttl;
        eventually(
            ttl + Duration::from_secs(45),
            "the tasks' TTLs to pass",
            || async {
                let mut conn = redis.connection().await;
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("task:*")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                keys.is_empty().then_some(())
            },
        )
        .await;
        let memory = redis.used_memory().await;
        println!(
            "chaos {}: Redis used_memory {} bytes before the load, {} after the TTLs passed",
            self.name, self.baseline_memory, memory
        );
        assert!(
            memory < self.baseline_memory + 1024 * 1024,
            "Redis memory did not come back: {} -> {memory}",
            self.baseline_memory
        );
        for i in 0..self.services.len() {
            if let Some(service) = self.services[i].take() {
                assert!(service.terminate().await.success(), "instance {i} exits 0");
            }
        }
        verdict
    }
}

impl Cast {
    /// Prints what a stuck task showed, its hash now, and the state of the dispatch queue.
    async fn explain_stuck(&self, ids: &[String]) {
        let mut conn = self.redis.connection().await;
        let seen = self.observer.seen.lock().unwrap().clone();
        for id in ids {
            let history = seen.get(id).cloned().unwrap_or_default();
            if history.last().is_some_and(|(s, _)| is_final(s)) {
                continue;
            }
            let hash: Vec<String> = redis::cmd("HGETALL")
                .arg(format!("task:{id}"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            println!(
                "chaos {}: stuck task {id}: showed {history:?}; hash now {hash:?}; processor calls {}",
                self.name,
                self.processor.calls_for(id)
            );
        }
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg("task-service:dispatch")
            .arg("dispatchers")
            .arg("-")
            .arg("+")
            .arg(100)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let entries: redis::Value = redis::cmd("XRANGE")
            .arg("task-service:dispatch")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(20)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let consumers: redis::Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("task-service:dispatch")
            .arg("dispatchers")
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        println!(
            "chaos {}: queue entries {entries:?}\n pending {pending:?}\n consumers {consumers:?}",
            self.name
        );
    }
}

/// What the load got back.
#[derive(Debug, Default)]
pub struct Created {
    /// Tasks whose CreateTask answered OK.
    pub accepted: Vec<String>,
    /// CreateTask refusals by code.
    pub refused: BTreeMap<String, u64>,
}

/// A steady stream of CreateTask.
pub struct Workload {
    stop: CancellationToken,
    task: JoinHandle<Created>,
}

impl Workload {
    fn start(addrs: Vec<SocketAddr>, per_second: u32, ids: Arc<Mutex<Vec<String>>>) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let clients: Vec<TaskClient<Channel>> = addrs
                .iter()
                .map(|addr| {
                    let channel = Endpoint::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect_timeout(Duration::from_millis(500))
                        .timeout(Duration::from_secs(5))
                        .connect_lazy();
                    TaskClient::new(channel)
                })
                .collect();
            let results = Arc::new(Mutex::new(Created::default()));
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
            let mut requests = Vec::new();
            let mut n = 0;
            while !token.is_cancelled() {
                ticks.tick().await;
                let mut client = clients[n % clients.len()].clone();
                n += 1;
                let results = results.clone();
                let ids = ids.clone();
                requests.push(tokio::spawn(async move {
                    let request = CreateTaskRequest {
                        original_file_key: "chaos.mp4".into(),
                        request_id: String::new(),
                    };
                    match client.create_task(request).await {
                        Ok(response) => {
                            let id = response.into_inner().task_id;
                            ids.lock().unwrap().push(id.clone());
                            results.lock().unwrap().accepted.push(id);
                        }
                        Err(status) => {
                            let code = format!("{:?}", status.code());
                            *results.lock().unwrap().refused.entry(code).or_default() += 1;
                        }
                    }
                }));
            }
            for request in requests {
                let _ = request.await;
            }
            std::mem::take(&mut *results.lock().unwrap())
        });
        Self { stop, task }
    }

    /// Stops the stream and returns what it got.
    pub async fn stop(self) -> Created {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

/// Per task, every (status, error_message) it showed, in order.
type Histories = Arc<Mutex<HashMap<String, Vec<(String, String)>>>>;

/// Every status each task showed, read from Redis every 50 ms.
pub struct Observer {
    ids: Arc<Mutex<Vec<String>>>,
    seen: Histories,
    vanished: Arc<Mutex<Vec<String>>>,
    first_seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: CancellationToken,
}

/// The figures of a run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Tasks COMPLETED.
    pub completed: usize,
    /// Tasks FAILED.
    pub failed: usize,
    /// Accepted tasks that never showed up or vanished before their TTL.
    pub lost: usize,
    /// Tasks not final within the bound.
    pub stuck: usize,
    /// Tasks seen moving backwards, with what they showed.
    pub backwards: Vec<(String, Vec<String>)>,
    /// ProcessVideo deliveries beyond the first.
    pub duplicates: usize,
    /// FAILED tasks with an empty error_message.
    pub failed_without_reason: usize,
    /// FAILED tasks by the start of their reason.
    pub failed_reasons: BTreeMap<String, usize>,
}

impl Observer {
    async fn start(redis: &TestRedis) -> Self {
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen: Histories = Arc::default();
        let vanished: Arc<Mutex<Vec<String>>> = Arc::default();
        let first_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let stop = CancellationToken::new();
        // A connection that reconnects by itself: the observer must outlive Redis's outages.
        let client = redis::Client::open(("127.0.0.1", redis.port)).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let (ids2, seen2, stop2, vanished2, first2) = (
            ids.clone(),
            seen.clone(),
            stop.clone(),
            vanished.clone(),
            first_seen.clone(),
        );
        tokio::spawn(async move {
            let mut conn = conn;
            // Only unfinished tasks are polled: a final task can no longer change (checked
            // separately by nothing else writing it), so the cost follows the work in flight.
            let mut active: Vec<String> = Vec::new();
            let mut taken = 0;
            while !stop2.is_cancelled() {
                {
                    let ids = ids2.lock().unwrap();
                    let mut first = first2.lock().unwrap();
                    for id in &ids[taken..] {
                        first.insert(id.clone(), Instant::now());
                        active.push(id.clone());
                    }
                    taken = ids.len();
                }
                let mut still_active = Vec::with_capacity(active.len());
                for chunk in active.chunks(500) {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.cmd("HMGET")
                            .arg(format!("task:{id}"))
                            .arg("status")
                            .arg("error_message");
                    }
                    let Ok(Ok(rows)) = tokio::time::timeout(
                        Duration::from_millis(500),
                        pipe.query_async::<Vec<(Option<String>, Option<String>)>>(&mut conn),
                    )
                    .await
                    else {
                        still_active.extend(chunk.iter().cloned());
                        continue;
                    };
                    let mut seen = seen2.lock().unwrap();
                    for (id, (status, error)) in chunk.iter().zip(rows) {
                        let Some(status) = status else {
                            // Gone before it was seen final: lost (unless never seen at all yet,
                            // which a fresh task can be for a moment).
                            if seen.contains_key(id) {
                                vanished2.lock().unwrap().push(id.clone());
                            } else {
                                still_active.push(id.clone());
                            }
                            continue;
                        };
                        let history = seen.entry(id.clone()).or_default();
                        let now = (status, error.unwrap_or_default());
                        if history.last() != Some(&now) {
                            history.push(now.clone());
                        }
                        if !is_final(&now.0) {
                            still_active.push(id.clone());
                        }
                    }
                }
                active = still_active;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self {
            ids,
            seen,
            vanished,
            first_seen,
            stop,
        }
    }

    /// Tasks that vanished from Redis before they were final.
    pub fn lost_now(&self) -> usize {
        self.vanished.lock().unwrap().len()
    }

    /// Tasks not final `bound` after they were first seen.
    pub fn stuck_now(&self, bound: Duration) -> usize {
        let seen = self.seen.lock().unwrap();
        let first = self.first_seen.lock().unwrap();
        first
            .iter()
            .filter(|(id, at)| {
                at.elapsed() > bound
                    && !seen
                        .get(*id)
                        .and_then(|h| h.last())
                        .is_some_and(|(s, _)| is_final(s))
            })
            .count()
    }

    fn stop(&self) {
        self.stop.cancel();
    }

    fn final_count(&self, ids: &[String]) -> usize {
        let seen = self.seen.lock().unwrap();
        ids.iter()
            .filter(|id| {
                seen.get(*id)
                    .and_then(|h| h.last())
                    .is_some_and(|(s, _)| is_final(s))
            })
            .count()
    }

    fn verdict(&self, ids: &[String], processor: &FakeProcessor) -> Verdict {
        let seen = self.seen.lock().unwrap();
        let mut verdict = Verdict::default();
        let received = processor.received();
        let mut deliveries: HashMap<&str, usize> = HashMap::new();
        for r in &received {
            *deliveries.entry(r.task_id.as_str()).or_default() += 1;
        }
        verdict.duplicates = deliveries.values().map(|n| n.saturating_sub(1)).sum();
        let vanished = self.vanished.lock().unwrap().clone();
        for id in ids {
            let Some(history) = seen.get(id).filter(|_| !vanished.contains(id)) else {
                verdict.lost += 1;
                continue;
            };
            let ranks: Vec<u8> = history.iter().map(|(s, _)| rank(s)).collect();
            let final_changed = history
                .iter()
                .filter(|(s, _)| is_final(s))
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] != w[1]);
            if ranks.windows(2).any(|w| w[1] < w[0]) || final_changed {
                verdict
                    .backwards
                    .push((id.clone(), history.iter().map(|(s, _)| s.clone()).collect()));
            }
            match history.last() {
                Some((status, _)) if status == "COMPLETED" => verdict.completed += 1,
                Some((status, reason)) if status == "FAILED" => {
                    verdict.failed += 1;
                    if reason.is_empty() {
                        verdict.failed_without_reason += 1;
                    }
                    let head: String = reason
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(60)
                        .collect();
                    *verdict.failed_reasons.entry(head).or_default() += 1;
                }
                _ => verdict.stuck += 1,
            }
        }
        verdict
    }
}

fn rank(status: &str) -> u8 {
    match status {
        "PENDING" => 0,
        "PROCESSING" => 1,
        _ => 2,
    }
}

/// Whether a status text read from Redis is final.
fn is_final(status: &str) -> bool {
    RawStatus::parse(status).is_final()
}
