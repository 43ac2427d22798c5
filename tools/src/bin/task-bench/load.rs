//! The load generator: N concurrent clients over M HTTP/2 connections, closed-loop (as fast as
//! answers come) or paced at a rate (a request that falls behind its schedule is timed from when
//! it was due, so a slow server cannot hide its queueing).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use task_service::{
    proto::task::{
        CreateTaskRequest, GetTaskStatusRequest, ListTasksRequest, task_client::TaskClient,
    },
    server::rpc_metrics::code_name,
};
use tokio::time::Instant;
use tonic::{Code, transport::Channel};

use crate::{
    BoxError,
    report::{EndToEnd, Latency, Report},
    seeded_id,
};

/// What to run.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The Task service.
    #[arg(long, default_value = "http://127.0.0.1:50050")]
    addr: String,
    /// What the clients do.
    #[arg(long, value_enum, default_value = "get")]
    scenario: Scenario,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// HTTP/2 connections they share.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// How long to measure.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many requests instead.
    #[arg(long)]
    requests: Option<u64>,
    /// Unmeasured load first.
    #[arg(long, value_parser = crate::duration, default_value = "2s")]
    warmup: Duration,
    /// Pace the whole load at this many requests per second (latency from scheduled times).
    #[arg(long)]
    rate: Option<f64>,
    /// The server's process id, to report its peak resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// The file key CreateTask sends.
    #[arg(long, default_value = "bench/original.mp4")]
    file_key: String,
    /// For get and mixed: tasks to create first through the API.
    #[arg(long, default_value_t = 1000)]
    seed_tasks: usize,
    /// For get and mixed: read ids 0..N of the deterministic space (`task-bench seed`) instead.
    #[arg(long)]
    seeded: Option<u64>,
    /// With --seeded: a Processor's progress writes meanwhile (HSET status PROCESSING and
    /// updated_at, straight to Redis), this many per second over the seeded tasks at random —
    /// the polling mix: clients read live tasks that keep changing.
    #[arg(long)]
    churn: Option<f64>,
    #[command(flatten)]
    redis: crate::RedisAddr,
    /// For list: tasks per page.
    #[arg(long, default_value_t = 50)]
    page_size: i32,
    /// For mixed: the share of CreateTask.
    #[arg(long, default_value_t = 0.1)]
    create_ratio: f64,
    /// For e2e: how long to wait for the created tasks to finish.
    #[arg(long, value_parser = crate::duration, default_value = "60s")]
    e2e_timeout: Duration,
    /// A name for this run in the report.
    #[arg(long, default_value = "")]
    label: String,
}

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// GetTaskStatus of existing tasks.
    Get,
    /// CreateTask.
    Create,
    /// CreateTask, each call with a request_id of its own (the idempotency record's cost).
    CreateIdempotent,
    /// ListTasks, each client walking the pages on from where it was (back to the first at
    /// the end).
    List,
    /// CreateTask and GetTaskStatus mixed.
    Mixed,
    /// CreateTask, then wait until every task is COMPLETED.
    E2e,
}

/// Which ids `get` reads.
#[derive(Debug)]
enum Ids {
    Listed(Vec<String>),
    Seeded(u64),
}

impl Ids {
    fn pick(&self, rng: &mut SmallRng) -> String {
        match self {
            Self::Listed(ids) => ids[rng.random_range(0..ids.len())].clone(),
            Self::Seeded(n) => seeded_id(rng.random_range(0..*n)),
        }
    }
}

/// What every client does, shared.
#[derive(Debug)]
struct Plan {
    scenario: Scenario,
    ids: Ids,
    file_key: String,
    create_ratio: f64,
    page_size: i32,
    interval: Option<Duration>,
}

/// When a load stops: at a deadline, or when a request budget is spent.
#[derive(Debug)]
struct Stop {
    deadline: Instant,
    budget: Option<AtomicU64>,
}

impl Stop {
    /// Whether the client may send one more request.
    fn another(&self) -> bool {
        match &self.budget {
            Some(budget) => budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok(),
            None => Instant::now() < self.deadline,
        }
    }
}

/// One client's figures.
#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    codes: BTreeMap<&'static str, u64>,
    created: Vec<String>,
}

pub(crate) async fn run(args: Args) -> Result<(), BoxError> {
    let channels = connect(&args.addr, args.connections).await?;
    let clients: Vec<_> = (0..args.clients)
        .map(|i| TaskClient::new(channels[i % channels.len()].clone()))
        .collect();
    let ids = match (args.scenario, args.seeded) {
        (_, Some(n)) => Ids::Seeded(n),
        (Scenario::Get | Scenario::Mixed, None) => {
            Ids::Listed(seed_through_api(&clients, &args).await?)
        }
        _ => Ids::Listed(Vec::new()),
    };
    let plan = Arc::new(Plan {
        scenario: args.scenario,
        ids,
        file_key: args.file_key.clone(),
        create_ratio: args.create_ratio,
        page_size: args.page_size,
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.clients as f64 / r)),
    });
    let churn = match (args.churn, args.seeded) {
        (Some(rate), Some(tasks)) => Some(tokio::spawn(churn(args.redis.client()?, rate, tasks))),
        (Some(_), None) => return Err("--churn writes to the --seeded tasks: give both".into()),
        _ => None,
    };
    if !args.warmup.is_zero() && args.scenario != Scenario::E2e {
        load(&clients, plan.clone(), args.warmup, None).await;
    }
    let sampler = args.pid.map(RssSampler::start);
    let started = Instant::now();
    let tallies = load(&clients, plan, args.duration, args.requests).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(churn) = churn {
        churn.abort();
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut codes = BTreeMap::new();
    let mut created = Vec::new();
    for tally in tallies {
        latency.add(&tally.latency)?;
        for (code, n) in tally.codes {
            *codes.entry(code.to_owned()).or_default() += n;
        }
        created.extend(tally.created);
    }
    let requests = latency.len();
    let e2e = match args.scenario {
        Scenario::E2e => {
            Some(wait_for_completion(&clients, created, started, args.e2e_timeout).await)
        }
        _ => None,
    };
    let server_rss_peak_bytes = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    Report {
        label: args.label,
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        clients: args.clients,
        connections: args.connections,
        target_rate: args.rate,
        seconds,
        requests,
        requests_per_sec: requests as f64 / seconds,
        latency: Latency::of(&latency),
        codes,
        server_rss_peak_bytes,
        e2e,
    }
    .print(args.json);
    Ok(())
}

/// Writes `rate` progress updates per second to random tasks of ids 0..`tasks`, in a pipeline
/// every 10 ms, until aborted.
async fn churn(client: bb8_redis::redis::Client, rate: f64, tasks: u64) -> Result<(), BoxError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut owed, mut state) = (0.0, 0x2545_F491_4F6C_DD1D_u64);
    loop {
        tick.tick().await;
        owed += rate / 100.0;
        let now = task_service::task::now_timestamp();
        let mut pipe = bb8_redis::redis::pipe();
        if owed < 1.0 {
            continue;
        }
        while owed >= 1.0 {
            owed -= 1.0;
            // xorshift: a cheap spread over the tasks.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = crate::seeded_id(state % tasks.max(1));
            pipe.cmd("HSET")
                .arg(format!("task:{id}"))
                .arg("status")
                .arg("PROCESSING")
                .arg("updated_at")
                .arg(&now)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
}

/// `count` HTTP/2 connections.
async fn connect(addr: &str, count: usize) -> Result<Vec<Channel>, BoxError> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let channel = Channel::from_shared(addr.to_owned())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Creates `seed_tasks` tasks through the API, for `get` to read.
async fn seed_through_api(
    clients: &[TaskClient<Channel>],
    args: &Args,
) -> Result<Vec<String>, BoxError> {
    let per_client = args.seed_tasks.div_ceil(clients.len().max(1));
    let mut creators = Vec::new();
    for client in clients.iter().cloned() {
        let key = args.file_key.clone();
        creators.push(tokio::spawn(async move {
            let mut client = client;
            let mut ids = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let request = CreateTaskRequest {
                    original_file_key: key.clone(),
                    request_id: String::new(),
                };
                ids.push(client.create_task(request).await?.into_inner().task_id);
            }
            Ok::<_, tonic::Status>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(args.seed_tasks);
    for creator in creators {
        ids.extend(creator.await??);
    }
    ids.truncate(args.seed_tasks.max(1));
    if ids.is_empty() {
        return Err("no task could be created to read".into());
    }
    Ok(ids)
}

/// Runs every client until the stop, and collects their tallies.
async fn load(
    clients: &[TaskClient<Channel>],
    plan: Arc<Plan>,
    duration: Duration,
    requests: Option<u64>,
) -> Vec<Tally> {
    let stop = Arc::new(Stop {
        deadline: Instant::now() + duration,
        budget: requests.map(AtomicU64::new),
    });
    let offsets = plan.interval.map(|i| i / clients.len().max(1) as u32);
    let running: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, client)| {
            let start = Instant::now() + offsets.map_or(Duration::ZERO, |o| o * n as u32);
            tokio::spawn(client_loop(client, plan.clone(), stop.clone(), start))
        })
        .collect();
    let mut tallies = Vec::with_capacity(running.len());
    for client in running {
        tallies.push(client.await.expect("a client does not panic"));
    }
    tallies
}

/// One client: requests one after another (or on its schedule) until the stop.
async fn client_loop(
    mut client: TaskClient<Channel>,
    plan: Arc<Plan>,
    stop: Arc<Stop>,
    start: Instant,
) -> Tally {
    let mut tally = Tally {
        latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
        codes: BTreeMap::new(),
        created: Vec::new(),
    };
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut next = start;
    let mut page_token = String::new();
    while stop.another() {
        let scheduled = match plan.interval {
            // On schedule: wait, and time from the actual send (the timer's own lateness is not
            // the server's). Behind schedule: time from when the request was due, so that a
            // slow server cannot hide its queueing (coordinated omission).
            Some(interval) => {
                let due = next;
                next += interval;
                if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    Instant::now()
                } else {
                    due
                }
            }
            None => Instant::now(),
        };
        let code = match plan.scenario {
            Scenario::Create | Scenario::E2e | Scenario::CreateIdempotent => {
                create(&mut client, &plan, &mut rng, &mut tally).await
            }
            Scenario::Mixed if rng.random_bool(plan.create_ratio.clamp(0.0, 1.0)) => {
                create(&mut client, &plan, &mut rng, &mut tally).await
            }
            Scenario::Get | Scenario::Mixed => {
                let request = GetTaskStatusRequest {
                    task_id: plan.ids.pick(&mut rng),
                };
                match client.get_task_status(request).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            }
            Scenario::List => {
                let request = ListTasksRequest {
                    status: String::new(),
                    page_size: plan.page_size,
                    page_token: std::mem::take(&mut page_token),
                };
                match client.list_tasks(request).await {
                    Ok(page) => {
                        page_token = page.into_inner().next_page_token;
                        Code::Ok
                    }
                    Err(status) => status.code(),
                }
            }
        };
        let micros = scheduled.elapsed().as_micros().max(1) as u64;
        tally.latency.saturating_record(micros);
        *tally.codes.entry(code_name(code)).or_default() += 1;
    }
    tally
}

/// One CreateTask; with a request id of its own for [`Scenario::CreateIdempotent`].
async fn create(
    client: &mut TaskClient<Channel>,
    plan: &Plan,
    rng: &mut SmallRng,
    tally: &mut Tally,
) -> Code {
    let request_id = match plan.scenario {
        Scenario::CreateIdempotent => format!("bench-{:032x}", rng.random::<u128>()),
        _ => String::new(),
    };
    let request = CreateTaskRequest {
        original_file_key: plan.file_key.clone(),
        request_id,
    };
    match client.create_task(request).await {
        Ok(response) => {
            if plan.scenario == Scenario::E2e {
                tally.created.push(response.into_inner().task_id);
            }
            Code::Ok
        }
        Err(status) => status.code(),
    }
}

/// Polls every created task until it is final or the timeout passes.
async fn wait_for_completion(
    clients: &[TaskClient<Channel>],
    created: Vec<String>,
    started: Instant,
    timeout: Duration,
) -> EndToEnd {
    let total = created.len() as u64;
    let deadline = Instant::now() + timeout;
    let shares: Vec<Vec<String>> = {
        let count = clients.len().max(1);
        let mut shares = vec![Vec::new(); count];
        for (i, id) in created.into_iter().enumerate() {
            shares[i % count].push(id);
        }
        shares
    };
    let pollers: Vec<_> = shares
        .into_iter()
        .zip(clients.iter().cloned())
        .map(|(mut pending, mut client)| {
            tokio::spawn(async move {
                let (mut completed, mut failed, mut last) = (0u64, 0u64, None);
                while !pending.is_empty() && Instant::now() < deadline {
                    let mut still = Vec::with_capacity(pending.len());
                    for id in pending {
                        let request = GetTaskStatusRequest {
                            task_id: id.clone(),
                        };
                        match client
                            .get_task_status(request)
                            .await
                            .map(|r| r.into_inner().status)
                        {
                            Ok(status) if status == "COMPLETED" => {
                                completed += 1;
                                last = Some(Instant::now());
                            }
                            Ok(status) if status == "FAILED" => {
                                failed += 1;
                                last = Some(Instant::now());
                            }
                            _ => still.push(id),
                        }
                    }
                    pending = still;
                    if !pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                (completed, failed, last)
            })
        })
        .collect();
    let (mut completed, mut failed, mut last) = (0, 0, started);
    for poller in pollers {
        let (c, f, l) = poller.await.expect("a poller does not panic");
        completed += c;
        failed += f;
        last = last.max(l.unwrap_or(started));
    }
    let seconds = (last - started).as_secs_f64().max(1e-6);
    EndToEnd {
        created: total,
        completed,
        failed,
        lost: total - completed - failed,
        tasks_per_sec: (completed + failed) as f64 / seconds,
    }
}

/// Samples a process's resident memory every 50 ms, keeping the peak.
struct RssSampler {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(observability::process::resident_bytes(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        Self { done, task }
    }

    async fn finish(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}
