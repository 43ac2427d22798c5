//! A fuzzer over the gRPC surface: raw HTTP/2 requests (hyper's client, no gRPC library in the
//! way) to `/task.Task/CreateTask` and `/task.Task/GetTaskStatus` of the real server over a real
//! Redis, with malformed framing, malformed protobuf, oversized and adversarial messages.
//!
//! Every answer must be a proper gRPC status (HTTP 200 with `grpc-status` in the headers or the
//! trailers, never a reset stream or a connection error), and the service's rule holds:
//! bad input → INVALID_ARGUMENT or RESOURCE_EXHAUSTED (never INTERNAL, never UNKNOWN); a
//! well-formed message gets exactly the answer the API's own checks give it (OK, INVALID_ARGUMENT,
//! NOT_FOUND). It prints a table of the codes by input kind.
//!
//! `TASK_FUZZ_ITERATIONS` (default 2000) and `TASK_FUZZ_SEED` (default fixed, printed) steer it;
//! run with `-- --nocapture` to see the table when it passes. The server is the real binary in its
//! own process, with a 4 KiB message limit; it must stay up, and its memory must not grow.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis,
    raw_grpc::{connect, exchange, frame, well_framed},
};
use prost::{Message, encoding::encode_varint};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use task_service::{
    proto::task::{CreateTaskRequest, CreateTaskResponse, GetTaskStatusRequest},
    task::TaskId,
    validate::StorageRoot,
};
use tonic::Code;

const DEFAULT_ITERATIONS: usize = 2000;
const DEFAULT_SEED: u64 = 0x0f0f_2025_7a5c_f022;
/// Bound on one exchange, headers to trailers.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

const CREATE: &str = "/task.Task/CreateTask";
const GET: &str = "/task.Task/GetTaskStatus";

/// What kind of input an iteration sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A well-formed request with an ordinary valid argument.
    Valid,
    /// A well-formed request whose string is adversarial (traversal, control characters,
    /// lengths around the limits, near-UUIDs, odd Unicode).
    Adversarial,
    /// A well-framed message of random bytes (raw, or a soup of random protobuf fields).
    RandomProto,
    /// The length prefix says less than the body holds.
    LengthShort,
    /// The length prefix says more than the body holds.
    LengthLong,
    /// The compressed flag set, without `grpc-encoding`.
    CompressedNoEncoding,
    /// A flag byte other than 0 and 1.
    InvalidFlag,
    /// `grpc-encoding: gzip` (not enabled on the server) with a compressed frame.
    UnsupportedEncoding,
    /// Fewer than the 5 bytes of a frame header.
    TruncatedHeader,
    /// No body at all, or an empty DATA frame.
    Empty,
    /// Two to four messages in one unary call.
    SeveralMessages,
    /// A length prefix far above the limit (up to 4 GiB) on a small body.
    HugeDeclared,
    /// A real message above the limit (a 1 MiB string, or just over the limit).
    HugeMessage,
    /// Field 1 (wire type 2) holding bytes that are not UTF-8.
    InvalidUtf8,
}

impl Kind {
    /// Weights of the kinds.
    const ALL: [(Kind, u32); 14] = [
        (Kind::Valid, 8),
        (Kind::Adversarial, 16),
        (Kind::RandomProto, 14),
        (Kind::LengthShort, 7),
        (Kind::LengthLong, 7),
        (Kind::CompressedNoEncoding, 5),
        (Kind::InvalidFlag, 4),
        (Kind::UnsupportedEncoding, 3),
        (Kind::TruncatedHeader, 5),
        (Kind::Empty, 5),
        (Kind::SeveralMessages, 6),
        (Kind::HugeDeclared, 5),
        (Kind::HugeMessage, 3),
        (Kind::InvalidUtf8, 8),
    ];

    fn pick(rng: &mut StdRng) -> Kind {
        let total: u32 = Self::ALL.iter().map(|(_, w)| w).sum();
        let mut n = rng.random_range(0..total);
        for (kind, weight) in Self::ALL {
            if n < weight {
                return kind;
            }
            n -= weight;
        }
        unreachable!()
    }
}

/// One request as sent.
#[derive(Clone, Debug)]
struct Input {
    kind: Kind,
    path: &'static str,
    /// The body, split into the DATA frames it is sent in.
    chunks: Vec<Vec<u8>>,
    /// Extra headers (`grpc-encoding`).
    headers: Vec<(&'static str, &'static str)>,
    /// For a single well-framed message: the codes the API's own checks give it.
    oracle: Option<Code>,
}

impl Input {
    /// The start of the body in hex, for reports.
    fn preview(&self) -> String {
        let body: Vec<u8> = self.chunks.concat();
        let shown: String = body.iter().take(40).map(|b| format!("{b:02x}")).collect();
        format!(
            "{} bytes in {} frame(s): {shown}{}",
            body.len(),
            self.chunks.len(),
            if body.len() > 40 { "…" } else { "" }
        )
    }
}

/// Field 1, wire type 2, with these raw bytes.
fn string_field(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// The fuzzer's state: the RNG, the ids of tasks it created, the server's limits.
struct Fuzz {
    rng: StdRng,
    known_ids: Vec<String>,
    storage: StorageRoot,
    max_message: usize,
}

impl Fuzz {
    fn message(&self, path: &str, text: &str) -> Vec<u8> {
        if path == CREATE {
            CreateTaskRequest {
                original_file_key: text.to_owned(),
                request_id: String::new(),
            }
            .encode_to_vec()
        } else {
            GetTaskStatusRequest {
                task_id: text.to_owned(),
            }
            .encode_to_vec()
        }
    }

    /// What the API answers a well-formed message with this string.
    fn oracle(&self, path: &str, text: &str, framed_len: usize) -> Code {
        if framed_len > self.max_message {
            return Code::ResourceExhausted;
        }
        if path == CREATE {
            match self.storage.check_key(text) {
                Ok(()) => Code::Ok,
                Err(_) => Code::InvalidArgument,
            }
        } else {
            match TaskId::parse(text) {
                Err(_) => Code::InvalidArgument,
                Ok(id) if self.known_ids.contains(&id.to_text()) => Code::Ok,
                Ok(_) => Code::NotFound,
            }
        }
    }

    /// The oracle of a message given as bytes, if it decodes as the method's request.
    fn oracle_of_bytes(&self, path: &str, message: &[u8]) -> Option<Code> {
        let text = if path == CREATE {
            CreateTaskRequest::decode(message).ok()?.original_file_key
        } else {
            GetTaskStatusRequest::decode(message).ok()?.task_id
        };
        Some(self.oracle(path, &text, message.len()))
    }

    fn valid_text(&mut self, path: &str) -> String {
        if path == CREATE {
            let n = self.rng.random_range(0..1000);
            match self.rng.random_range(0..3) {
                0 => format!("fuzz/{n}/original.mp4"),
                1 => format!("./data/videos/fuzz/{n}.mp4"),
                _ => format!("video-{n}.mp4"),
            }
        } else if !self.known_ids.is_empty() && self.rng.random_bool(0.7) {
            let i = self.rng.random_range(0..self.known_ids.len());
            self.known_ids[i].clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        }
    }

    fn random_unicode(&mut self, max_chars: usize) -> String {
        let n = self.rng.random_range(0..=max_chars);
        (0..n)
            .map(|_| {
                loop {
                    let c = match self.rng.random_range(0..4) {
                        0 => self.rng.random_range(0x20u32..0x7f),
                        1 => self.rng.random_range(0u32..0x100),
                        2 => self.rng.random_range(0u32..0x3000),
                        _ => self.rng.random_range(0u32..0x11_0000),
                    };
                    if let Some(c) = char::from_u32(c) {
                        break c;
                    }
                }
            })
            .collect()
    }

    fn adversarial_text(&mut self, path: &str) -> String {
        let abs_root = std::path::absolute("./data/videos").unwrap();
        let abs_root = abs_root.display();
        let some_id = self.valid_text(GET);
        let fixed: Vec<String> = if path == CREATE {
            vec![
                String::new(),
                ".".into(),
                "./".into(),
                "..".into(),
                "../secret.mp4".into(),
                "a/../../b.mp4".into(),
                "./data/videos/../../etc/passwd".into(),
                "/etc/passwd".into(),
                "/".into(),
                "//".into(),
                "abc\0.mp4".into(),
                "a\nb.mp4".into(),
                "a\rb".into(),
                "tab\there".into(),
                "del\u{7f}".into(),
                "nel\u{85}".into(),
                "dir/".into(),
                "./data/videos".into(),
                "data/videos".into(),
                "./data/videos/".into(),
                format!("{abs_root}/fuzz/x.mp4"),
                abs_root.to_string(),
                format!("{abs_root}/../x.mp4"),
                format!("{abs_root}x/y.mp4"),
                "a".repeat(1024),
                "a".repeat(1025),
                "é".repeat(512),
                "é".repeat(513),
                format!("{}/x", "d/".repeat(700)),
                "%2e%2e/%2e%2e/etc/passwd".into(),
                "..\\..\\windows\\system32".into(),
                "\u{202e}4pm.exe".into(),
                "\u{feff}bom.mp4".into(),
                "a b/ünïcödé.mp4".into(),
                "🎬/🎞️.mp4".into(),
                "~/x.mp4".into(),
                "$(reboot).mp4".into(),
                "'; DROP TABLE tasks; --".into(),
                "{{7*7}}".into(),
                "task:00000000-0000-0000-0000-000000000000".into(),
                "\u{2028}line".into(),
                "\u{0}".into(),
                "a/./b.mp4".into(),
                "./././x.mp4".into(),
            ]
        } else {
            vec![
                String::new(),
                "x".into(),
                some_id.to_uppercase(),
                format!("{{{some_id}}}"),
                format!("urn:uuid:{some_id}"),
                some_id.replace('-', ""),
                format!("{some_id}\0"),
                format!(" {some_id}"),
                some_id[..35].to_owned(),
                format!("{}é", &some_id[..35]),
                format!("{}\u{1}", &some_id[..35]),
                "../../../../../../../../etc/passwd00".into(),
                "00000000-0000-0000-0000-000000000000".into(),
                "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
                "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF".into(),
                "123e4567-e89b-42d3-a456-42661417400g".into(),
                "123e4567-e89b-42d3-a456_426614174000".into(),
                "123e4567e-89b-42d3-a456-426614174000".into(),
                "task:*".into(),
                "*".into(),
                "\u{202e}".repeat(12),
                "-".repeat(36),
                "a".repeat(5000),
            ]
        };
        match self.rng.random_range(0..5) {
            0 | 1 => fixed[self.rng.random_range(0..fixed.len())].clone(),
            2 => self.random_unicode(48),
            3 => {
                // A near-UUID: one character replaced.
                let mut chars: Vec<char> = some_id.chars().collect();
                let i = self.rng.random_range(0..chars.len());
                chars[i] = self.random_unicode(1).chars().next().unwrap_or('\0');
                chars.into_iter().collect()
            }
            _ => {
                let mut bytes = vec![0u8; self.rng.random_range(0..64)];
                self.rng.fill_bytes(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// Random protobuf-looking bytes: random fields with random tags and wire types, some
    /// with lengths that lie.
    fn field_soup(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.rng.random_range(0..6) {
            let field: u64 = if self.rng.random_bool(0.5) {
                1
            } else {
                self.rng.random_range(0..40)
            };
            let wire: u64 = self.rng.random_range(0..8);
            encode_varint((field << 3) | wire, &mut out);
            match wire {
                0 => encode_varint(self.rng.random(), &mut out),
                1 => out.extend_from_slice(&self.rng.random::<u64>().to_le_bytes()),
                2 => {
                    let len = self.rng.random_range(0..24);
                    let declared = if self.rng.random_bool(0.8) {
                        len as u64
                    } else {
                        self.rng.random_range(0..1 << 20)
                    };
                    encode_varint(declared, &mut out);
                    if self.rng.random_bool(0.6) {
                        out.extend(self.random_unicode(len).bytes().take(len));
                    } else {
                        let mut bytes = vec![0u8; len];
                        self.rng.fill_bytes(&mut bytes);
                        out.extend(bytes);
                    }
                }
                5 => out.extend_from_slice(&self.rng.random::<u32>().to_le_bytes()),
                _ => {}
            }
        }
        out
    }

    fn random_bytes(&mut self, max: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; self.rng.random_range(0..=max)];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// Splits a body into 1..=4 DATA frames at random points.
    fn chunk(&mut self, body: Vec<u8>) -> Vec<Vec<u8>> {
        if body.len() < 2 || self.rng.random_bool(0.5) {
            return vec![body];
        }
        let mut cuts: Vec<usize> = (0..self.rng.random_range(1..=3))
            .map(|_| self.rng.random_range(1..body.len()))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(body[start..cut].to_vec());
            start = cut;
        }
        chunks.push(body[start..].to_vec());
        chunks
    }

    fn input(&mut self) -> Input {
        let kind = Kind::pick(&mut self.rng);
        let path = if self.rng.random_bool(0.5) {
            CREATE
        } else {
            GET
        };
        let mut headers = Vec::new();
        let mut oracle = None;
        let body = match kind {
            Kind::Valid | Kind::Adversarial => {
                let text = if kind == Kind::Valid {
                    self.valid_text(path)
                } else {
                    self.adversarial_text(path)
                };
                let message = self.message(path, &text);
                oracle = Some(self.oracle(path, &text, message.len()));
                well_framed(&message)
            }
            Kind::RandomProto => {
                let message = if self.rng.random_bool(0.5) {
                    self.random_bytes(64)
                } else {
                    self.field_soup()
                };
                oracle = self.oracle_of_bytes(path, &message);
                well_framed(&message)
            }
            Kind::LengthShort => {
                let text = self.valid_text(path);
                let message = self.message(path, &text);
                let short = self.rng.random_range(1..=message.len()) as u32;
                frame(0, message.len() as u32 - short, &message)
            }
            Kind::LengthLong => {
                let text = self.adversarial_text(path);
                let message = self.message(path, &text);
                let extra = self.rng.random_range(1..=64);
                frame(0, message.len() as u32 + extra, &message)
            }
            Kind::CompressedNoEncoding => {
                let text = self.valid_text(path);
                well_framed(&self.message(path, &text))
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 0 { 1 } else { b })
                    .collect()
            }
            Kind::InvalidFlag => {
                let text = self.valid_text(path);
                let message = self.message(path, &text);
                frame(
                    self.rng.random_range(2..=255),
                    message.len() as u32,
                    &message,
                )
            }
            Kind::UnsupportedEncoding => {
                headers.push(("grpc-encoding", "gzip"));
                let message = self.random_bytes(32);
                frame(1, message.len() as u32, &message)
            }
            Kind::TruncatedHeader => {
                let text = self.valid_text(path);
                let full = well_framed(&self.message(path, &text));
                full[..self.rng.random_range(1..5)].to_vec()
            }
            Kind::Empty => Vec::new(),
            Kind::SeveralMessages => {
                let mut body = Vec::new();
                for _ in 0..self.rng.random_range(2..=4) {
                    let text = if self.rng.random_bool(0.6) {
                        self.valid_text(path)
                    } else {
                        self.adversarial_text(path)
                    };
                    body.extend(well_framed(&self.message(path, &text)));
                }
                body
            }
            Kind::HugeDeclared => {
                let declared = match self.rng.random_range(0..3) {
                    0 => u32::MAX,
                    1 => 1 << 31,
                    _ => self
                        .rng
                        .random_range(self.max_message as u32 + 1..=u32::MAX),
                };
                let message = self.random_bytes(32);
                frame(0, declared, &message)
            }
            Kind::HugeMessage => {
                let len = if self.rng.random_bool(0.5) {
                    1 << 20
                } else {
                    self.max_message + self.rng.random_range(1..64)
                };
                let text = "a".repeat(len);
                well_framed(&self.message(path, &text))
            }
            Kind::InvalidUtf8 => {
                let mut bytes = self.random_unicode(12).into_bytes();
                let bad: &[&[u8]] = &[
                    b"\xff",
                    b"\xc0\xaf",
                    b"\xed\xa0\x80",
                    b"\xe2\x82",
                    b"\x80",
                    b"\xf8\x88\x80\x80\x80",
                    b"\xf4\x90\x80\x80",
                ];
                let at = self.rng.random_range(0..=bytes.len());
                let at = (0..=at)
                    .rev()
                    .find(|i| std::str::from_utf8(&bytes[..*i]).is_ok())
                    .unwrap_or(0);
                let insert = bad[self.rng.random_range(0..bad.len())];
                bytes.splice(at..at, insert.iter().copied());
                well_framed(&string_field(&bytes))
            }
        };
        let chunks = if kind == Kind::Empty {
            if self.rng.random_bool(0.5) {
                Vec::new()
            } else {
                vec![Vec::new()]
            }
        } else {
            self.chunk(body)
        };
        Input {
            kind,
            path,
            chunks,
            headers,
            oracle,
        }
    }
}

/// Which codes each input may get.
fn allowed(input: &Input) -> Vec<Code> {
    match (input.kind, input.oracle) {
        // A single well-formed message: exactly what the API's checks say.
        (_, Some(code)) => vec![code],
        // The gRPC spec's answer to a compression the server does not support.
        (Kind::UnsupportedEncoding, None) => {
            vec![
                Code::Unimplemented,
                Code::InvalidArgument,
                Code::ResourceExhausted,
            ]
        }
        // Anything malformed.
        _ => vec![Code::InvalidArgument, Code::ResourceExhausted],
    }
}

/// UUIDs and numbers replaced, so that messages differing only in them group together.
fn shape(message: &str) -> String {
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if uuid::Uuid::try_parse(token).is_ok() {
            out.push_str("<uuid>");
        } else if !token.is_empty() && token.chars().all(|c| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn method_name(path: &str) -> &'static str {
    if path == CREATE {
        "CreateTask"
    } else {
        "GetTaskStatus"
    }
}

/// Answers outside the rule of one (kind, method, outcome shape).
struct Violation {
    count: usize,
    first_iteration: usize,
    /// The first one's exact outcome.
    exact: String,
    /// The first one's input.
    input: String,
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    observability::process::resident_bytes(pid).expect("the server's VmRSS") / 1024
}

/// Iterations between two samples of the server's memory.
const RSS_EVERY: usize = 250;
/// How much the server's memory may grow between the first sample and the last.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_surface_answers_every_input_with_a_proper_status() {
    let iterations: usize = std::env::var("TASK_FUZZ_ITERATIONS")
        .ok()
        .map(|v| v.parse().expect("TASK_FUZZ_ITERATIONS is a number"))
        .unwrap_or(DEFAULT_ITERATIONS);
    let seed: u64 = std::env::var("TASK_FUZZ_SEED")
        .ok()
        .map(|v| v.parse().expect("TASK_FUZZ_SEED is a u64"))
        .unwrap_or(DEFAULT_SEED);
    println!("fuzz_grpc: {iterations} iterations, seed {seed} (TASK_FUZZ_SEED)");

    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let mut vars = redis.vars();
    vars.push(processor.addr_var());
    // A small message limit, as production should set; the server is a real process, so that
    // a crash and its memory are its own.
    vars.push(("TASK_MAX_MESSAGE_BYTES".into(), "4096".into()));
    let config = common::service::config(&vars);
    let mut service = ServiceProcess::start(&vars).await;
    let addr = service.addr;
    let pid = service.pid();
    let mut rss_samples = Vec::new();

    let mut fuzz = Fuzz {
        rng: StdRng::seed_from_u64(seed),
        known_ids: Vec::new(),
        storage: StorageRoot::new(config.storage_root.clone()),
        max_message: config.server.max_message_bytes,
    };
    let connection_errors = Arc::new(Mutex::new(Vec::new()));
    let mut sender = connect(addr, connection_errors.clone()).await;

    // (kind, method) → code → count
    let mut table: BTreeMap<(Kind, &'static str), BTreeMap<String, usize>> = BTreeMap::new();
    let mut violations: BTreeMap<(Kind, &'static str, String), Violation> = BTreeMap::new();
    let mut reconnects = 0;
    let mut places: BTreeMap<&'static str, usize> = BTreeMap::new();
    let started = std::time::Instant::now();

    for iteration in 0..iterations {
        if iteration % RSS_EVERY == 0 {
            rss_samples.push(rss_kib(pid));
        }
        let input = fuzz.input();
        let method = method_name(input.path);
        let result = match tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            exchange(&mut sender, addr, input.path, &input.headers, &input.chunks),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {EXCHANGE_TIMEOUT:?}")),
        };
        let (label, problem) = match &result {
            Ok(answer) => {
                *places.entry(answer.place).or_default() += 1;
                let allowed = allowed(&input);
                let label = format!("{:?}", answer.code);
                if answer.code == Code::Ok && input.path == CREATE {
                    match CreateTaskResponse::decode(answer.data.get(5..).unwrap_or_default()) {
                        Ok(r) if TaskId::parse(&r.task_id).is_ok() => {
                            fuzz.known_ids.push(r.task_id)
                        }
                        other => panic!("iteration {iteration}: OK without a task id: {other:?}"),
                    }
                }
                let problem = (!allowed.contains(&answer.code)).then(|| {
                    (
                        format!("{:?} {:?}", answer.code, shape(&answer.message)),
                        format!(
                            "grpc-status {} ({:?}) in {}, grpc-message {:?}; allowed {allowed:?}",
                            answer.code as i32, answer.code, answer.place, answer.message
                        ),
                    )
                });
                (label, problem)
            }
            Err(failure) => (
                "PROTOCOL FAILURE".to_owned(),
                Some((shape(failure), failure.clone())),
            ),
        };
        *table
            .entry((input.kind, method))
            .or_default()
            .entry(label)
            .or_default() += 1;
        if let Some((shape, exact)) = problem {
            let entry = violations
                .entry((input.kind, method, shape))
                .or_insert(Violation {
                    count: 0,
                    first_iteration: iteration,
                    exact,
                    input: format!("{} headers {:?}", input.preview(), input.headers),
                });
            entry.count += 1;
        }
        if result.is_err() || sender.is_closed() {
            reconnects += 1;
            sender = connect(addr, connection_errors.clone()).await;
        }
    }

    // The table.
    let codes: BTreeSet<String> = table.values().flat_map(|m| m.keys().cloned()).collect();
    let mut report = format!(
        "\nfuzz_grpc: {iterations} requests in {:.1?}, seed {seed}; grpc-status found in {places:?}; {reconnects} reconnect(s)\n",
        started.elapsed()
    );
    report.push_str(&format!("{:<34}", "input kind / method"));
    for code in &codes {
        report.push_str(&format!("{code:>18}"));
    }
    report.push('\n');
    for ((kind, method), counts) in &table {
        report.push_str(&format!("{:<34}", format!("{kind:?} / {method}")));
        for code in &codes {
            match counts.get(code) {
                Some(n) => report.push_str(&format!("{n:>18}")),
                None => report.push_str(&format!("{:>18}", "·")),
            }
        }
        report.push('\n');
    }
    rss_samples.push(rss_kib(pid));
    report.push_str(&format!(
        "server RSS every {RSS_EVERY} requests (MiB): {}\n",
        rss_samples
            .iter()
            .map(|kib| format!("{:.1}", *kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    println!("{report}");

    // The server still runs and serves a normal request.
    assert!(
        service.exited().is_none(),
        "the server exited while fuzzing: {:?}",
        service.exited()
    );
    let mut client = common::service::client(addr).await;
    let created = client
        .create_task(CreateTaskRequest {
            original_file_key: "fuzz/after/original.mp4".into(),
            request_id: String::new(),
        })
        .await
        .expect("a normal CreateTask after the fuzzing")
        .into_inner();
    let status = client
        .get_task_status(GetTaskStatusRequest {
            task_id: created.task_id.clone(),
        })
        .await
        .expect("a normal GetTaskStatus after the fuzzing")
        .into_inner();
    assert_eq!(status.task_id, created.task_id);
    let driver_errors = connection_errors.lock().unwrap().clone();
    let status = service.terminate().await;
    drop(processor);
    drop(redis);
    assert!(
        status.success(),
        "the server's exit after SIGTERM: {status}"
    );
    let growth = rss_samples.last().unwrap() - rss_samples[0].min(*rss_samples.last().unwrap());
    assert!(
        growth <= RSS_GROWTH_LIMIT_KIB,
        "the server's memory grew by {growth} KiB while fuzzing (limit {RSS_GROWTH_LIMIT_KIB}):\n{report}"
    );

    let mut problems = String::new();
    for ((kind, method, _), v) in &violations {
        problems.push_str(&format!(
            "\n- {kind:?} / {method}: {}× {}\n    first at iteration {}: {}",
            v.count, v.exact, v.first_iteration, v.input
        ));
    }
    for error in &driver_errors {
        problems.push_str(&format!("\n- {error}"));
    }
    assert!(
        problems.is_empty(),
        "answers outside the rule (bad input → INVALID_ARGUMENT or RESOURCE_EXHAUSTED; a well-formed \
         message gets what the API's checks say; always a proper gRPC status), seed {seed}:{problems}\n{report}"
    );
}
