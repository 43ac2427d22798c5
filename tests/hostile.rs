//! A hostile client against the real binary, one test per row of the attack table in the
//! README's Security section: slow bodies, a stream flood that never reads, idle connections by
//! the thousand, connections up to the fd limit, rapid reset, oversized and non-ASCII request
//! ids, malformed trace context, forged x-forwarded-for, symlinks out of the storage root, and
//! slow metrics clients. In each, a normal client (from another loopback address) keeps being
//! answered — its median latency within 100 ms — and the service's memory stays under
//! [`RSS_BOUND_MIB`]. The tests run one at a time: each takes the machine.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bb8_redis::redis;
use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis,
    calls::{create, vars},
    metrics::scrape,
    raw_grpc, raw_h2, tempdir,
};
use observability::process::resident_bytes;
use prost::Message;
use task_service::proto::{
    processor::{ProcessVideoRequest, processor_client::ProcessorClient},
    task::{CreateTaskRequest, GetTaskStatusRequest, task_client::TaskClient},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex as AsyncMutex,
    time::Instant,
};
use tonic::{Code, transport::Channel};

/// The service's resident memory never exceeds this during any attack.
const RSS_BOUND_MIB: u64 = 200;

/// One attack at a time.
static SERIAL: AsyncMutex<()> = AsyncMutex::const_new(());

/// The service under attack, with a normal client of its own.
struct Target {
    _redis: TestRedis,
    _processor: FakeProcessor,
    service: ServiceProcess,
    normal: TaskClient<Channel>,
    task: String,
    peak_rss: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
}

impl Target {
    async fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_adjusted(extra, |_| {}).await
    }

    async fn start_adjusted(
        extra: &[(&str, &str)],
        adjust: impl FnOnce(&mut tokio::process::Command),
    ) -> Self {
        let redis = TestRedis::start().await;
        let processor = FakeProcessor::start(Reply::Accept, None).await;
        let service = ServiceProcess::start_with(&vars(&redis, &processor, extra), 0, adjust).await;
        let normal = client_from(service.addr, "127.0.0.2").await;
        let task = create(&mut normal.clone(), "a.mp4").await;
        let peak_rss = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let pid = service.pid();
        let (peak, on) = (peak_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                if let Some(rss) = resident_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self {
            _redis: redis,
            _processor: processor,
            service,
            normal,
            task,
            peak_rss,
            sampling,
        }
    }

    /// The normal client's calls meanwhile: all answered, the median within 100 ms.
    async fn probe(&self, what: &str) {
        // The normal client's connection may have sat idle past TASK_CONNECTION_IDLE_TIMEOUT
        // while the hostile ones were opened: the server closes it, and a call that races the
        // close fails on the client's side ("connection closed"). That one call is made again
        // (on a new connection); the measured calls below are not.
        let request = || GetTaskStatusRequest {
            task_id: self.task.clone(),
        };
        if let Err(status) = self.normal.clone().get_task_status(request()).await {
            let raced_the_close = status.code() == tonic::Code::Cancelled
                && format!("{status:?}").contains("connection closed");
            assert!(
                raced_the_close,
                "{what}: the normal client was refused: {status:?}"
            );
            self.normal
                .clone()
                .get_task_status(request())
                .await
                .unwrap_or_else(|s| panic!("{what}: the normal client was refused: {s:?}"));
        }
        let mut latencies = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            self.normal
                .clone()
                .get_task_status(GetTaskStatusRequest {
                    task_id: self.task.clone(),
                })
                .await
                .unwrap_or_else(|s| panic!("{what}: the normal client was refused: {s:?}"));
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        println!(
            "hostile {what}: normal client median {:.1} ms, max {:.1} ms",
            median.as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3
        );
        assert!(
            median <= Duration::from_millis(100),
            "{what}: median {median:?} for the normal client"
        );
    }

    /// Stops sampling; checks the memory bound and that the service still runs.
    fn finish(mut self, what: &str) -> ServiceProcess {
        self.sampling.store(false, Ordering::Relaxed);
        let peak = self.peak_rss.load(Ordering::Relaxed) / (1024 * 1024);
        println!("hostile {what}: service RSS peak {peak} MiB (bound {RSS_BOUND_MIB} MiB)");
        assert!(peak <= RSS_BOUND_MIB, "{what}: RSS peak {peak} MiB");
        assert!(self.service.exited().is_none(), "{what}: the service died");
        self.service
    }
}

/// A client whose connections come from `local` (a loopback address of its own).
async fn client_from(addr: SocketAddr, local: &str) -> TaskClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(local.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap();
    TaskClient::new(channel)
}

/// A framed GetTaskStatus message.
fn get_message(task: &str) -> Vec<u8> {
    raw_grpc::well_framed(
        &GetTaskStatusRequest {
            task_id: task.to_owned(),
        }
        .encode_to_vec(),
    )
}

/// Reads and drops whatever the server sends, until it closes.
fn drain(mut read: tokio::net::tcp::OwnedReadHalf) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
}

/// Whether the server closed `stream` within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn metric(samples: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn slow_bodies_hold_no_in_flight_slot() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[]).await;
    let addr = target.service.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    // 1,100 streams, each sending a 16 KiB message one byte a second.
    for connection in 0..10u32 {
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
            drain(read);
            let streams: Vec<u32> = (0..110).map(|i| 2 * i + 1).collect();
            let mut out = raw_h2::preface(65_535);
            for &stream in &streams {
                raw_h2::headers(&mut out, stream, "/task.Task/CreateTask", false);
                raw_h2::data(&mut out, stream, &raw_grpc::frame(0, 16_000, &[]), false);
            }
            if write.write_all(&out).await.is_err() {
                return;
            }
            let _ = connection;
            while !stop.load(Ordering::Relaxed) {
                let mut out = Vec::new();
                for &stream in &streams {
                    raw_h2::data(&mut out, stream, b"x", false);
                }
                if write.write_all(&out).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut most_in_flight = 0.0f64;
    for _ in 0..3 {
        target.probe("1,100 slow bodies").await;
        let samples = scrape(target.service.metrics_addr).await;
        most_in_flight = most_in_flight.max(metric(&samples, "task_requests_in_flight"));
    }
    stop.store(true, Ordering::Relaxed);
    println!("hostile slow bodies: most requests in flight seen {most_in_flight}");
    assert!(
        most_in_flight < 10.0,
        "slow bodies took {most_in_flight} in-flight slots"
    );
    for attacker in attackers {
        attacker.abort();
    }
    target.finish("slow bodies");
}

#[tokio::test]
async fn a_stream_flood_that_never_reads_costs_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[]).await;
    let task = target.task.clone();
    let addr = target.service.addr;
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    // One connection: a zero window (no response data can come back), streams opened without
    // regard for the server's limit, nothing ever read.
    let flood = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&raw_h2::preface(0)).await.unwrap();
        let message = get_message(&task);
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut next = 1u32;
        while Instant::now() < deadline && next < 2_000_000 {
            let mut out = Vec::with_capacity(1000 * 160);
            for _ in 0..1000 {
                raw_h2::headers(&mut out, next, "/task.Task/GetTaskStatus", false);
                raw_h2::data(&mut out, next, &message, true);
                next += 2;
            }
            match tokio::time::timeout_at(deadline, stream.write_all(&out)).await {
                Ok(Ok(())) => {
                    counted.fetch_add(1000, Ordering::Relaxed);
                }
                _ => break,
            }
        }
        stream
    });
    target.probe("stream flood").await;
    let _stream = flood.await.unwrap();
    println!(
        "hostile stream flood: {} streams written before the server stopped reading",
        sent.load(Ordering::Relaxed)
    );
    target.probe("stream flood, after").await;
    target.finish("stream flood");
}

#[tokio::test]
async fn idle_connections_are_capped_and_closed() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[
        ("TASK_CONNECTION_PREFACE_TIMEOUT", "2s"),
        ("TASK_CONNECTION_IDLE_TIMEOUT", "3s"),
        ("TASK_MAX_CONNECTIONS", "4096"),
        ("TASK_MAX_CONNECTIONS_PER_PEER", "10000"),
    ])
    .await;
    let addr = target.service.addr;
    raise_fd_limit();
    let mut idle = Vec::new();
    for i in 0..10_000 {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        if i % 2 == 0 {
            // The preface and SETTINGS, then nothing.
            let _ = stream.write_all(&raw_h2::preface(65_535)).await;
        }
        idle.push(stream);
    }
    let samples = scrape(target.service.metrics_addr).await;
    let open = metric(&samples, "task_connections_open");
    println!(
        "hostile idle connections: {} opened, {open} open at the server, {} refused at the cap",
        idle.len(),
        metric(&samples, "task_connections_refused_total")
    );
    assert!(open <= 4096.0, "{open} connections open past the cap");
    target.probe("10,000 idle connections").await;
    let mut closed = 0;
    let results = futures::future::join_all(
        idle.iter_mut()
            .map(|stream| closed_within(stream, Duration::from_secs(15))),
    )
    .await;
    for was_closed in results {
        closed += usize::from(was_closed);
    }
    println!(
        "hostile idle connections: {closed} of {} closed by the server",
        idle.len()
    );
    assert_eq!(closed, idle.len(), "every idle connection is closed");
    target.finish("idle connections");
}

#[tokio::test]
async fn connections_up_to_the_fd_limit_neither_spin_nor_starve_others() {
    let _serial = SERIAL.lock().await;
    let target = Target::start_adjusted(&[("TASK_CONNECTION_PREFACE_TIMEOUT", "2s")], |command| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = rustix::process::Rlimit {
                    current: Some(1024),
                    maximum: Some(1024),
                };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                    .map_err(std::io::Error::from)
            });
        }
    })
    .await;
    let pid = target.service.pid();
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let addr = target.service.addr;
    let mut flood = Vec::new();
    for _ in 0..3000 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            flood.push(stream);
        }
    }
    target.probe("connections up to the fd limit").await;
    let busy = (cpu_ticks(pid) - cpu_before) as f64 / 100.0;
    let wall = started.elapsed().as_secs_f64();
    let samples = scrape(target.service.metrics_addr).await;
    println!(
        "hostile fd limit: {} connections tried, {} open at the server (cap {}), {} refused; service CPU {busy:.2} s in {wall:.2} s",
        flood.len(),
        metric(&samples, "task_connections_open"),
        metric(&samples, "task_connections_limit"),
        metric(&samples, "task_connections_refused_total")
    );
    assert!(
        metric(&samples, "task_connections_limit") <= 1024.0 - 256.0,
        "the cap is kept under the fd limit"
    );
    assert!(
        busy < wall * 0.8,
        "the service spun: {busy:.2} s of CPU in {wall:.2} s"
    );
    let service = target.finish("fd limit");
    let lines = service.lines();
    let cap_lines = lines
        .iter()
        .filter(|l| l.contains("connection cap"))
        .count();
    assert!(
        cap_lines <= 2,
        "{cap_lines} lines about the cap: throttled to one a minute"
    );
    assert!(
        lines.iter().any(|l| l.contains("file-descriptor limit")),
        "the lowered cap is said at start"
    );
}

/// Lets this process open as many files as its hard limit allows (10,000 client sockets).
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("the soft fd limit can be raised to the hard one");
}

/// The CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn rapid_reset_is_counted_not_logged() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[]).await;
    let addr = target.service.addr;
    let mut waves = Vec::new();
    for wave in 0..10 {
        waves.push(tokio::spawn(async move {
            for _ in 0..30 {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    continue;
                };
                let mut out = raw_h2::preface(65_535);
                for i in 0..200u32 {
                    let id = 2 * i + 1;
                    raw_h2::headers(&mut out, id, "/task.Task/GetTaskStatus", false);
                    raw_h2::reset(&mut out, id);
                }
                let _ = stream.write_all(&out).await;
                let _ = closed_within(&mut stream, Duration::from_secs(3)).await;
            }
            wave
        }));
    }
    target.probe("rapid reset").await;
    for wave in waves {
        wave.await.unwrap();
    }
    let samples = scrape(target.service.metrics_addr).await;
    let counted = metric(&samples, "task_http2_protocol_errors_total");
    println!("hostile rapid reset: {counted} connections closed by HTTP/2 for misbehaving");
    assert!(counted >= 1.0, "the resets were counted");
    let service = target.finish("rapid reset");
    let logged = service
        .lines()
        .iter()
        .filter(|l| l.contains("reset"))
        .count();
    assert!(logged <= 2, "{logged} log lines about resets");
}

#[tokio::test]
async fn bad_request_ids_are_replaced_not_echoed() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[]).await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut sender = raw_grpc::connect(target.service.addr, errors).await;
    let message = get_message(&target.task);
    for bad in [vec![b'a'; 15_000], vec![0xE9, 0xFF], b"has space".to_vec()] {
        let answer = raw_grpc::exchange(
            &mut sender,
            target.service.addr,
            "/task.Task/GetTaskStatus",
            &[("x-request-id", bad.as_slice())],
            std::slice::from_ref(&message),
        )
        .await
        .unwrap();
        assert_eq!(answer.code, Code::Ok);
        let id = answer.headers["x-request-id"].as_bytes();
        assert_ne!(id, bad.as_slice(), "echoed back");
        assert_eq!(
            id.len(),
            36,
            "a fresh UUID: {:?}",
            String::from_utf8_lossy(id)
        );
    }
    target.finish("request ids");
}

#[tokio::test]
async fn trace_context_is_checked_before_it_is_stored_or_forwarded() {
    let _serial = SERIAL.lock().await;
    let redis = TestRedis::start().await;
    // A Processor that takes its time, so that the queue entries can be looked at.
    let processor = FakeProcessor::start(
        Reply::After(Duration::from_secs(30), Box::new(Reply::Accept)),
        None,
    )
    .await;
    let service = ServiceProcess::start(&vars(&redis, &processor, &[])).await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut sender = raw_grpc::connect(service.addr, errors).await;
    let create = raw_grpc::well_framed(
        &CreateTaskRequest {
            original_file_key: "a.mp4".into(),
            request_id: String::new(),
        }
        .encode_to_vec(),
    );
    let big_state: String = (0..1450)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(big_state.len() > 13_500, "{}", big_state.len());
    let valid_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for parent in ["00-zzzz-not-a-traceparent", valid_parent] {
        let answer = raw_grpc::exchange(
            &mut sender,
            service.addr,
            "/task.Task/CreateTask",
            &[("traceparent", parent), ("tracestate", big_state.as_str())],
            std::slice::from_ref(&create),
        )
        .await
        .unwrap();
        assert_eq!(answer.code, Code::Ok, "{}", answer.message);
    }
    let mut conn = redis.connection().await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("task-service:dispatch")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    let fields = |i: usize| -> std::collections::HashMap<String, String> {
        entries[i].1.iter().cloned().collect()
    };
    let malformed = fields(0);
    assert!(!malformed.contains_key("traceparent") && !malformed.contains_key("tracestate"));
    let valid = fields(1);
    assert_eq!(valid["traceparent"], valid_parent);
    assert!(
        valid["tracestate"].len() <= 512,
        "{}",
        valid["tracestate"].len()
    );
    eventually_received(&processor, 2).await;
    for call in processor.received() {
        assert!(
            call.traceparent
                .as_deref()
                .is_none_or(|p| p == valid_parent)
        );
    }
    assert!(service.terminate().await.success());
}

async fn eventually_received(processor: &FakeProcessor, calls: usize) {
    common::eventually(Duration::from_secs(10), "the Processor's calls", || async {
        (processor.calls() >= calls).then_some(())
    })
    .await;
}

#[tokio::test]
async fn forged_forwarded_for_entries_do_not_escape_the_rate_limit() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[
        ("TASK_RATE_LIMIT_KEY", "x-forwarded-for"),
        ("TASK_RATE_LIMIT_PER_CLIENT", "5"),
        ("TASK_RATE_LIMIT_PER_CLIENT_BURST", "5"),
    ])
    .await;
    let mut client = common::service::client(target.service.addr).await;
    let mut refused = 0;
    for i in 0..20 {
        let mut request = tonic::Request::new(CreateTaskRequest {
            original_file_key: "a.mp4".into(),
            request_id: String::new(),
        });
        // The client writes a fresh leftmost entry each time; the proxy appended its peer.
        request.metadata_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{i}, 10.1.2.3").parse().unwrap(),
        );
        if let Err(status) = client.create_task(request).await {
            assert_eq!(status.code(), Code::ResourceExhausted);
            refused += 1;
        }
    }
    assert!(refused >= 14, "only {refused} of 20 refused");
    target.finish("forwarded-for");
}

#[tokio::test]
async fn keys_through_symlinks_out_of_the_root_are_refused_by_service_and_processor() {
    let _serial = SERIAL.lock().await;
    let outside = tempdir::Dir::new();
    std::fs::write(outside.path().join("shadow"), b"root:secret").unwrap();
    let root = tempdir::Dir::new();
    std::fs::write(root.path().join("movie.mp4"), b"frames").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
    std::os::unix::fs::symlink("/etc", root.path().join("etc")).unwrap();
    let root_var = root.text();
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = ServiceProcess::start(&vars(
        &redis,
        &processor,
        &[("LOCAL_STORAGE_PATH", &root_var)],
    ))
    .await;
    let mut client = common::service::client(service.addr).await;
    for key in ["evil/shadow", "etc/passwd", "evil/not-there.mp4"] {
        let status = client
            .create_task(CreateTaskRequest {
                original_file_key: key.into(),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{key}");
        assert!(
            status.message().contains("symbolic link"),
            "{}",
            status.message()
        );
    }
    let task = create(&mut client, "movie.mp4").await;

    // The reference Processor, called directly, applies the same checks.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dev-processor"));
    command
        .env_clear()
        .envs(redis.vars())
        .env("LOCAL_STORAGE_PATH", &root_var)
        .env("DEV_PROCESSOR_LISTEN", "127.0.0.1:0");
    let dev = common::service::CapturedChild::spawn(
        command,
        &["dev-processor (reference Processor) listening"],
    )
    .await;
    let addr = dev.announced["dev-processor (reference Processor) listening"];
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut direct = ProcessorClient::new(channel);
    for key in ["../../../../etc/shadow", "evil/shadow", "etc/passwd"] {
        let status = direct
            .process_video(ProcessVideoRequest {
                task_id: task.clone(),
                original_file_key: key.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{key}: {status:?}");
    }
    assert!(
        !root.path().join(&task).exists(),
        "nothing was written for a refused key"
    );
    assert!(dev.terminate().await.success());
    assert!(service.terminate().await.success());
}

#[tokio::test]
async fn dev_processor_listens_on_loopback_unless_told_otherwise() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dev-processor"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[default: 127.0.0.1:50051]"), "{help}");
}

#[tokio::test]
async fn slow_metrics_clients_are_capped_and_cut_off() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(&[("TASK_METRICS_HEADER_TIMEOUT", "1s")]).await;
    let metrics = target.service.metrics_addr;
    assert!(
        metrics.ip().is_loopback(),
        "the metrics endpoint binds loopback by default"
    );
    let mut slow = Vec::new();
    for _ in 0..2000 {
        if let Ok(mut stream) = TcpStream::connect(metrics).await {
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await;
            slow.push(stream);
        }
    }
    let results = futures::future::join_all(
        slow.iter_mut()
            .map(|stream| closed_within(stream, Duration::from_secs(10))),
    )
    .await;
    let closed = results.iter().filter(|c| **c).count();
    println!(
        "hostile metrics: {closed} of {} slow connections closed",
        slow.len()
    );
    assert_eq!(
        closed,
        slow.len(),
        "every slow metrics connection is closed"
    );
    let samples = scrape(metrics).await;
    assert!(
        samples.contains_key("task_connections_open"),
        "a normal scrape works after"
    );
    target.probe("slow metrics clients").await;
    target.finish("metrics");
}
