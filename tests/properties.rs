//! Property tests (proptest). Every property runs under one fixed seed, printed, that
//! `TASK_PROP_SEED` overrides; `PROPTEST_CASES` overrides the case counts (the Redis property's:
//! `TASK_PROP_REDIS_CASES`). No regression files are written: a failure prints its shrunk input.
//!
//! (a) The checks of what callers send: `StorageRoot::check_key` rejects what the contract lists
//!     and accepts every safe key, never panics, and every accepted key resolves under the root;
//!     `TaskId::parse` never panics and accepts exactly the hyphenated UUIDs.
//! (b) The fencing of the service's state changes: random interleavings of a well-behaved
//!     Processor's plain writes and the service's fenced operations never move a task backwards
//!     through a service write, on the in-memory store and on a real Redis.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use bb8_redis::redis;
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config as RunnerConfig, RngSeed, TestCaseError, TestError, TestRunner},
};
use task_service::{
    config::RedisConfig,
    store::{
        AcceptOutcome, FailOutcome, FailRequest, MemoryStore, NewTask, QueueEntry, RedisStore,
        Settled, Store,
    },
    task::{TaskId, TaskRecord, fields, timestamp},
    validate::{DECEPTIVE_CHARACTERS, MAX_FILE_KEY_BYTES, StorageRoot},
};

/// The seed every property runs under unless `TASK_PROP_SEED` names another.
const DEFAULT_SEED: u64 = 0x7a5c_0de5_eed5_2025;

fn seed() -> u64 {
    std::env::var("TASK_PROP_SEED")
        .ok()
        .map(|raw| {
            raw.parse()
                .unwrap_or_else(|_| panic!("TASK_PROP_SEED={raw:?} is not a u64"))
        })
        .unwrap_or(DEFAULT_SEED)
}

fn cases(default: u32, var: &str) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(default)
}

/// Runs one property with a fixed seed (printed) and no failure files; a failure panics with the
/// minimal input proptest shrank it to.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let seed = seed();
    println!("property {name}: {cases} cases, seed {seed} (TASK_PROP_SEED)");
    let config = RunnerConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..RunnerConfig::default()
    };
    match TestRunner::new(config).run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => panic!(
            "property {name} failed (seed {seed}): {reason}\nminimal failing input: {minimal:#?}"
        ),
        Err(TestError::Abort(reason)) => panic!("property {name} aborted (seed {seed}): {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// (a) original_file_key and task_id
// ---------------------------------------------------------------------------------------------

const ROOT: &str = "./data/videos";
const ROOT_PARTS: [&str; 2] = ["data", "videos"];

fn root() -> StorageRoot {
    StorageRoot::new(ROOT)
}

/// The root as `check_key` sees absolute keys: the working directory joined with it.
fn absolute_root() -> PathBuf {
    std::path::absolute(ROOT)
        .unwrap()
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

fn normal_parts(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// A printable, non-control character other than '/', from ASCII or anywhere in Unicode (but
/// the bidirectional and zero-width ones, which keys may not hold).
fn safe_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => (0x20u8..0x7f).prop_map(char::from),
        1 => any::<char>(),
    ]
    .prop_filter("printable, no '/', not deceptive", |c| {
        !c.is_control() && *c != '/' && !DECEPTIVE_CHARACTERS.contains(c)
    })
}

fn control_char() -> impl Strategy<Value = char> {
    prop_oneof![
        (0x00u32..=0x1f).prop_map(|c| char::from_u32(c).unwrap()),
        (0x7fu32..=0x9f).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

/// A safe path segment: non-empty, no '/', no control character, not "." or "..". The root's own
/// names and dotted names come up often, to reach the prefix logic.
fn safe_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(safe_char(), 1..12).prop_map(String::from_iter),
        1 => prop::sample::select(vec![
            "data", "videos", "...", ".x", "x.", ".hidden", " ", "~", "-", "\\", "a..b", "..a",
            "original.mp4", "ünïcödé", "日本語", "🎬",
        ])
        .prop_map(str::to_owned),
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn safe_segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(safe_segment(), 1..8)
}

#[derive(Clone, Debug)]
enum BadKey {
    DotDot(String),
    /// A control, bidirectional or zero-width character somewhere.
    Control(String),
    TooLong(String),
    Empty,
    AbsoluteOutside(String),
}

impl BadKey {
    fn key(&self) -> &str {
        match self {
            Self::DotDot(k) | Self::Control(k) | Self::TooLong(k) | Self::AbsoluteOutside(k) => k,
            Self::Empty => "",
        }
    }
}

fn bad_key() -> impl Strategy<Value = BadKey> {
    let prefixes = prop::sample::select(vec![
        String::new(),
        "./".to_owned(),
        "./data/videos/".to_owned(),
        "data/videos/".to_owned(),
        format!("{}/", absolute_root().display()),
    ]);
    let dotdot = (
        prefixes.clone(),
        prop::collection::vec(safe_segment(), 0..6),
        any::<prop::sample::Index>(),
        prop::sample::select(vec!["..", "..", "./..", "../.."]),
        any::<bool>(),
    )
        .prop_map(|(prefix, mut segments, at, dots, trailing_slash)| {
            let at = at.index(segments.len() + 1);
            segments.insert(at, dots.to_owned());
            let mut key = format!("{prefix}{}", segments.join("/"));
            if trailing_slash {
                key.push('/');
            }
            BadKey::DotDot(key)
        });
    let control = (
        prefixes.clone(),
        safe_segments(),
        any::<prop::sample::Index>(),
        prop_oneof![
            control_char(),
            prop::sample::select(DECEPTIVE_CHARACTERS.to_vec()),
        ],
    )
        .prop_map(|(prefix, segments, at, c)| {
            let key = format!("{prefix}{}", segments.join("/"));
            let boundaries: Vec<usize> = key
                .char_indices()
                .map(|(i, _)| i)
                .chain([key.len()])
                .collect();
            let at = boundaries[at.index(boundaries.len())];
            let mut key = key;
            key.insert(at, c);
            BadKey::Control(key)
        });
    let too_long = (
        safe_segments(),
        MAX_FILE_KEY_BYTES + 1..MAX_FILE_KEY_BYTES * 3,
    )
        .prop_map(|(segments, min_len)| {
            let mut key = segments.join("/");
            while key.len() < min_len {
                key.push('/');
                key.push_str(&segments.join("/"));
            }
            BadKey::TooLong(key)
        });
    let outside_prefixes = prop::sample::select(vec![
        "/".to_owned(),
        "/etc/".to_owned(),
        "/data/videos/".to_owned(),
        "//".to_owned(),
        format!("{}/", absolute_root().parent().unwrap().display()),
        format!("{}x/", absolute_root().display()),
    ]);
    let absolute = (outside_prefixes, safe_segments())
        .prop_map(|(prefix, segments)| format!("{prefix}{}", segments.join("/")))
        .prop_filter("outside the root", |key| {
            !Path::new(key).starts_with(absolute_root())
        })
        .prop_map(BadKey::AbsoluteOutside);
    prop_oneof![
        3 => dotdot,
        3 => control,
        2 => too_long,
        1 => Just(BadKey::Empty),
        3 => absolute,
    ]
}

/// Any text: arbitrary Unicode, or pieces that reach every branch of the checks.
fn arbitrary_key() -> impl Strategy<Value = String> {
    let abs = absolute_root().display().to_string();
    let piece = prop_oneof![
        prop::sample::select(vec![
            "/", "..", ".", "./", "data", "videos", "\0", "\n", "\u{7f}", "\u{85}", "é", "\\",
            "//", "~", "a.mp4", "\u{202e}", "\u{2028}", "\u{feff}",
        ])
        .prop_map(str::to_owned),
        Just(abs),
        any::<char>().prop_map(String::from),
        "[a-z]{1,6}",
    ];
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
        prop::collection::vec(piece, 0..24).prop_map(|p| p.concat()),
        any::<String>(),
        (1000usize..1100, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n / c.len_utf8())),
    ]
}

/// Property (4): an accepted key resolves under the root — no `..`, the root's components
/// first, and at least one more (a file under the root, not the root itself).
fn assert_resolves_under_root(key: &str) -> Result<(), TestCaseError> {
    let resolved = root().resolve(key);
    prop_assert!(
        !resolved
            .components()
            .any(|c| matches!(c, Component::ParentDir)),
        "accepted key {key:?} resolves to {resolved:?}, which has a '..' component"
    );
    if resolved.is_absolute() {
        let abs = absolute_root();
        prop_assert!(
            resolved.starts_with(&abs) && resolved.components().count() > abs.components().count(),
            "accepted key {key:?} resolves to {resolved:?}, outside the root {abs:?}"
        );
    } else {
        let parts = normal_parts(&resolved);
        prop_assert!(
            parts.len() > ROOT_PARTS.len() && parts[..ROOT_PARTS.len()] == ROOT_PARTS,
            "accepted key {key:?} resolves to {resolved:?}, whose components {parts:?} do not start with the root's {ROOT_PARTS:?}"
        );
        prop_assert!(
            !resolved
                .components()
                .any(|c| matches!(c, Component::RootDir | Component::Prefix(_))),
            "accepted key {key:?} resolves to {resolved:?}"
        );
    }
    Ok(())
}

#[test]
fn keys_the_contract_forbids_are_rejected() {
    check(
        "keys the contract forbids are rejected",
        cases(1024, "PROPTEST_CASES"),
        bad_key(),
        |bad| {
            let result = root().check_key(bad.key());
            prop_assert!(result.is_err(), "{bad:?} was accepted");
            let message = result.unwrap_err();
            prop_assert!(
                message.contains("original_file_key"),
                "{bad:?}: the message does not name the field: {message}"
            );
            Ok(())
        },
    );
}

#[test]
fn safe_keys_are_accepted_bare_and_under_the_root() {
    let abs = absolute_root();
    check(
        "safe keys are accepted bare and under the root",
        cases(1024, "PROPTEST_CASES"),
        safe_segments(),
        |segments| {
            let bare = segments.join("/");
            // "data/videos" alone names the root itself, not a file under it: rejected on purpose.
            let names_the_root = normal_parts(Path::new(&bare)) == ROOT_PARTS;
            if bare.len() <= MAX_FILE_KEY_BYTES && !names_the_root {
                prop_assert_eq!(root().check_key(&bare), Ok(()), "bare key {:?}", bare);
                assert_resolves_under_root(&bare)?;
            }
            let prefixed = format!("{ROOT}/{bare}");
            if prefixed.len() <= MAX_FILE_KEY_BYTES {
                prop_assert_eq!(root().check_key(&prefixed), Ok(()), "key {:?}", prefixed);
                assert_resolves_under_root(&prefixed)?;
                // Both spellings name the same file (a bare key that itself starts with the root's
                // names is taken as already prefixed, so it is left out here).
                let bare_parts = normal_parts(Path::new(&bare));
                let bare_is_prefixed = bare_parts.len() >= ROOT_PARTS.len()
                    && bare_parts[..ROOT_PARTS.len()] == ROOT_PARTS;
                if !bare_is_prefixed && bare.len() <= MAX_FILE_KEY_BYTES {
                    prop_assert_eq!(
                        normal_parts(&root().resolve(&bare)),
                        normal_parts(&root().resolve(&prefixed)),
                        "{:?} and {:?} name different files",
                        bare,
                        prefixed
                    );
                }
            }
            let absolute = format!("{}/{bare}", abs.display());
            if absolute.len() <= MAX_FILE_KEY_BYTES {
                prop_assert_eq!(root().check_key(&absolute), Ok(()), "key {:?}", absolute);
                assert_resolves_under_root(&absolute)?;
            }
            Ok(())
        },
    );
}

#[test]
fn check_key_never_panics_and_accepted_keys_stay_under_the_root() {
    check(
        "check_key never panics; accepted keys resolve under the root",
        cases(4096, "PROPTEST_CASES"),
        arbitrary_key(),
        |key| {
            if root().check_key(&key).is_ok() {
                prop_assert!(!key.is_empty() && key.len() <= MAX_FILE_KEY_BYTES);
                prop_assert!(!key.chars().any(char::is_control), "{key:?}");
                assert_resolves_under_root(&key)?;
            }
            Ok(())
        },
    );
}

/// Strings near the UUID form: a hyphenated UUID mutated a little, in any case.
fn near_uuid() -> impl Strategy<Value = String> {
    #[derive(Clone, Debug)]
    enum Mutation {
        None,
        Upper,
        Replace(prop::sample::Index, char),
        Remove(prop::sample::Index),
        Insert(prop::sample::Index, char),
        Braces,
        Urn,
        Simple,
    }
    let mutation = prop_oneof![
        2 => Just(Mutation::None),
        2 => Just(Mutation::Upper),
        3 => (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        3 => (any::<prop::sample::Index>(), prop::sample::select(vec!['-', 'a', 'G', '0', 'é', ' ', '\0']))
            .prop_map(|(i, c)| Mutation::Replace(i, c)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        1 => Just(Mutation::Braces),
        1 => Just(Mutation::Urn),
        1 => Just(Mutation::Simple),
    ];
    (any::<u128>(), prop::collection::vec(mutation, 0..3)).prop_map(|(bits, mutations)| {
        let mut chars: Vec<char> = uuid::Uuid::from_u128(bits)
            .hyphenated()
            .to_string()
            .chars()
            .collect();
        for m in mutations {
            match m {
                Mutation::None => {}
                Mutation::Upper => chars.iter_mut().for_each(|c| *c = c.to_ascii_uppercase()),
                Mutation::Replace(i, c) if !chars.is_empty() => {
                    let at = i.index(chars.len());
                    chars[at] = c;
                }
                Mutation::Remove(i) if !chars.is_empty() => {
                    chars.remove(i.index(chars.len()));
                }
                Mutation::Insert(i, c) => {
                    let at = i.index(chars.len() + 1);
                    chars.insert(at, c);
                }
                Mutation::Braces => {
                    chars.insert(0, '{');
                    chars.push('}');
                }
                Mutation::Urn => chars = "urn:uuid:".chars().chain(chars.drain(..)).collect(),
                Mutation::Simple => chars.retain(|c| *c != '-'),
                _ => {}
            }
        }
        String::from_iter(chars)
    })
}

#[test]
fn task_id_parse_accepts_exactly_hyphenated_uuids() {
    let input = prop_oneof![
        3 => near_uuid(),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
        1 => "[0-9a-fA-F-]{30,40}",
    ];
    check(
        "TaskId::parse accepts exactly the hyphenated UUIDs",
        cases(4096, "PROPTEST_CASES"),
        input,
        |raw| {
            let expected = uuid::Uuid::try_parse(&raw).is_ok() && raw.len() == 36;
            match TaskId::parse(&raw) {
                Ok(id) => {
                    prop_assert!(expected, "{raw:?} was accepted");
                    prop_assert_eq!(id.to_text(), raw.to_ascii_lowercase());
                }
                Err(message) => {
                    prop_assert!(!expected, "{raw:?} was rejected: {message}");
                    prop_assert!(message.contains("task_id"), "{raw:?}: {message}");
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// (b) fencing of the service's state changes
// ---------------------------------------------------------------------------------------------

/// TTL of final tasks in both stores.
const TTL: Duration = Duration::from_secs(60);
/// The service's consumer name in the queue.
const CONSUMER: &str = "properties";
/// An `updated_at` older than anything the case writes.
const ANCIENT: &str = "2001-01-01T00:00:00Z";

/// A well-behaved Processor's forward write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Processing,
    Completed,
    Failed,
}

/// The `expect_updated_at` of a service `fail`.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// None: an unconditional fail (the dispatcher's).
    Unguarded,
    /// The value just read (the stall check's, when nobody wrote since).
    Current,
    /// An older value (the stall check's, when the Processor wrote since it read).
    Stale,
}

/// One operation. `task` picks one of the case's tasks, or (one time in eight) a task that was
/// never created.
#[derive(Clone, Debug)]
enum Op {
    /// The Processor writes a step with a plain HSET (only on a task it was handed, and only
    /// forward from what it wrote itself).
    Processor { task: usize, step: Step },
    /// The service fails the task, fenced; with its dispatch entry if it holds one.
    Fail {
        task: usize,
        expect: Expect,
        with_entry: bool,
    },
    /// The dispatcher takes new entries from the queue.
    Take,
    /// The Processor accepted the task: acknowledge its entry, watch it.
    Accepted { task: usize },
    /// The reaper looks at the task.
    Settle { task: usize },
    /// GetTaskStatus.
    Read { task: usize },
    /// A create with the id of an existing task (must be refused, changing nothing).
    Recreate { task: usize },
    /// Time passes: every task with a TTL expires (Redis: deleted, as its expiry would).
    Vanish,
}

impl Op {
    fn is_service(&self) -> bool {
        !matches!(self, Op::Processor { .. } | Op::Vanish)
    }
}

fn op() -> impl Strategy<Value = Op> {
    let task = 0usize..8;
    let step = prop_oneof![
        2 => Just(Step::Processing),
        1 => Just(Step::Completed),
        1 => Just(Step::Failed),
    ];
    let expect = prop_oneof![
        Just(Expect::Unguarded),
        Just(Expect::Current),
        Just(Expect::Stale),
    ];
    prop_oneof![
        5 => (task.clone(), step).prop_map(|(task, step)| Op::Processor { task, step }),
        4 => (task.clone(), expect, any::<bool>())
            .prop_map(|(task, expect, with_entry)| Op::Fail { task, expect, with_entry }),
        2 => Just(Op::Take),
        3 => task.clone().prop_map(|task| Op::Accepted { task }),
        2 => task.clone().prop_map(|task| Op::Settle { task }),
        1 => task.clone().prop_map(|task| Op::Read { task }),
        1 => task.clone().prop_map(|task| Op::Recreate { task }),
        1 => Just(Op::Vanish),
    ]
}

/// How many tasks are created (1..=3), and the operations.
fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1usize..=3, prop::collection::vec(op(), 1..48))
}

enum Backend {
    /// Time is tokio's paused clock: `Vanish` advances it past the TTL.
    Memory,
    /// `Vanish` deletes the keys.
    Redis(redis::aio::MultiplexedConnection),
}

/// What the case knows besides the store.
struct Case {
    store: Store,
    backend: Backend,
    /// Task ids; the last one is never created.
    ids: Vec<TaskId>,
    /// Entries taken from the queue, by task index.
    entries: BTreeMap<usize, QueueEntry>,
    /// Entries acknowledged (by `accepted` or `fail` with the entry).
    acked: BTreeSet<String>,
    /// Entries created and not acknowledged.
    queued: usize,
    /// What the Processor wrote last, by task index.
    processor: BTreeMap<usize, Step>,
    /// Every `updated_at` each task has had, to make stale guards.
    history: BTreeMap<usize, Vec<String>>,
    clock: u32,
    log: Vec<String>,
    /// What the case reached (outcomes, situations), to show the property is not vacuous.
    seen: Vec<String>,
}

type Snapshot = Vec<Option<TaskRecord>>;

fn tick(clock: &mut u32) -> String {
    *clock += 1;
    let base = chrono::DateTime::parse_from_rfc3339("2025-10-30T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    timestamp(base + chrono::Duration::seconds(i64::from(*clock)))
}

fn with_fields(before: &Option<TaskRecord>, pairs: &[(&str, &str)]) -> Option<TaskRecord> {
    let mut map: BTreeMap<String, String> = before
        .iter()
        .flat_map(|r| r.to_pairs())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (k, v) in pairs {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    TaskRecord::from_pairs(map)
}

fn fail(reason: String) -> TestCaseError {
    TestCaseError::fail(reason)
}

impl Case {
    async fn start(store: Store, backend: Backend, tasks: usize) -> Self {
        store.ensure_queue().await.unwrap();
        let ids: Vec<TaskId> = (0..=tasks).map(|_| TaskId::new_v4()).collect();
        let mut case = Self {
            store,
            backend,
            ids,
            entries: BTreeMap::new(),
            acked: BTreeSet::new(),
            queued: 0,
            processor: BTreeMap::new(),
            history: BTreeMap::new(),
            clock: 0,
            log: Vec::new(),
            seen: Vec::new(),
        };
        let created_at = tick(&mut case.clock);
        for (i, id) in case.ids[..tasks].iter().enumerate() {
            let record = TaskRecord::new_pending(*id, &format!("prop/{i}.mp4"), &created_at);
            case.store.create(NewTask::now(&record, &[])).await.unwrap();
            case.queued += 1;
            case.history.insert(i, vec![created_at.clone()]);
        }
        case
    }

    /// The task an operation's index names: one in eight names the never-created task.
    fn index(&self, task: usize) -> usize {
        let created = self.ids.len() - 1;
        if task >= 7 { created } else { task % created }
    }

    async fn snapshot(&self) -> Snapshot {
        let mut all = Vec::with_capacity(self.ids.len());
        for id in &self.ids {
            all.push(self.store.read(*id).await.unwrap());
        }
        all
    }

    /// Runs one operation (a no-op where the model says it cannot happen) and checks the store
    /// against the model; returns the tasks as read after it.
    async fn apply(&mut self, op: &Op, before: &Snapshot) -> Result<Snapshot, TestCaseError> {
        let mut expected = before.clone();
        match *op {
            Op::Processor { task, step } => {
                let i = self.index(task);
                let handed = self.entries.contains_key(&i);
                let forward = match self.processor.get(&i) {
                    None => true,
                    Some(Step::Processing) => step != Step::Processing,
                    Some(_) => false,
                };
                if handed && forward {
                    let now = tick(&mut self.clock);
                    let result = format!("./data/videos/{}/result.mp4", self.ids[i]);
                    let mut pairs = vec![("updated_at", now.as_str())];
                    match step {
                        Step::Processing => pairs.push(("status", "PROCESSING")),
                        Step::Completed => {
                            pairs.push(("status", "COMPLETED"));
                            pairs.push(("result_file_key", result.as_str()));
                        }
                        Step::Failed => {
                            pairs.push(("status", "FAILED"));
                            pairs.push(("error_message", "processor: the codec gave up"));
                        }
                    }
                    self.seen.push(match &before[i] {
                        None => "processor wrote on a missing task".to_owned(),
                        Some(r) if r.status.is_final() => {
                            format!("processor wrote {step:?} over a final task")
                        }
                        Some(_) => format!("processor wrote {step:?}"),
                    });
                    self.store
                        .processor_write(self.ids[i], &pairs)
                        .await
                        .unwrap();
                    self.processor.insert(i, step);
                    self.history.entry(i).or_default().push(now.clone());
                    expected[i] = with_fields(&before[i], &pairs);
                    self.log
                        .push(format!("processor wrote {step:?} on task {i}"));
                }
            }
            Op::Fail {
                task,
                expect,
                with_entry,
            } => {
                let i = self.index(task);
                let now = tick(&mut self.clock);
                let current = before[i]
                    .as_ref()
                    .map(|r| r.updated_at.clone())
                    .unwrap_or_default();
                let stale = self
                    .history
                    .get(&i)
                    .and_then(|h| h.iter().find(|t| **t != current).cloned())
                    .unwrap_or_else(|| ANCIENT.to_owned());
                let expect_updated_at = match expect {
                    Expect::Unguarded => None,
                    Expect::Current => Some(current.clone()),
                    Expect::Stale => Some(stale),
                };
                let entry_id = self
                    .entries
                    .get(&i)
                    .filter(|e| with_entry && !self.acked.contains(&e.id))
                    .map(|e| e.id.clone());
                let message = format!("stalled: no update (op {})", self.clock);
                let outcome = self
                    .store
                    .fail(FailRequest {
                        task_id: self.ids[i],
                        message: &message,
                        now: &now,
                        expect_updated_at: expect_updated_at.as_deref(),
                        entry_id: entry_id.as_deref(),
                    })
                    .await
                    .unwrap();
                if let Some(id) = entry_id {
                    self.acked.insert(id);
                    self.queued -= 1;
                }
                let want = match &before[i] {
                    None => FailOutcome::Missing,
                    Some(r) if r.status.is_final() => FailOutcome::AlreadyFinal,
                    Some(r)
                        if expect_updated_at
                            .as_deref()
                            .is_some_and(|e| e != r.updated_at) =>
                    {
                        FailOutcome::Changed
                    }
                    Some(_) => {
                        expected[i] = with_fields(
                            &before[i],
                            &[
                                (fields::STATUS, "FAILED"),
                                (fields::ERROR_MESSAGE, message.as_str()),
                                (fields::RESULT_FILE_KEY, ""),
                                (fields::UPDATED_AT, now.as_str()),
                            ],
                        );
                        self.history.entry(i).or_default().push(now.clone());
                        FailOutcome::Failed
                    }
                };
                self.seen.push(format!("fail → {outcome:?}"));
                self.seen.push(format!("fail {expect:?} → {outcome:?}"));
                self.log.push(format!(
                    "service fail on task {i} (expect {expect:?} = {expect_updated_at:?}): {outcome:?}"
                ));
                if outcome != want {
                    return Err(fail(format!(
                        "fail on task {i} with expect_updated_at {expect_updated_at:?} answered {outcome:?}, expected {want:?}; the task was {:?}",
                        before[i]
                    )));
                }
            }
            Op::Take => {
                let taken = self
                    .store
                    .read_new(CONSUMER, 16, Duration::ZERO)
                    .await
                    .unwrap();
                for entry in taken {
                    let entry =
                        entry.map_err(|e| fail(format!("took a malformed entry: {e:?}")))?;
                    let i = self
                        .ids
                        .iter()
                        .position(|id| *id == entry.task_id)
                        .ok_or_else(|| {
                            fail(format!("took an entry of an unknown task: {entry:?}"))
                        })?;
                    self.log
                        .push(format!("took entry {} of task {i}", entry.id));
                    self.entries.insert(i, entry);
                }
            }
            Op::Accepted { task } => {
                let i = self.index(task);
                if let Some(entry) = self.entries.get(&i).cloned() {
                    let outcome = self.store.accepted(&entry, 1).await.unwrap();
                    if self.acked.insert(entry.id.clone()) {
                        self.queued -= 1;
                    }
                    let want = match &before[i] {
                        None => AcceptOutcome::Missing,
                        Some(r) => match r.status.final_status() {
                            Some(status) => AcceptOutcome::Final(status),
                            None => AcceptOutcome::Watching,
                        },
                    };
                    self.seen.push(match outcome {
                        AcceptOutcome::Watching => "accepted → Watching".to_owned(),
                        AcceptOutcome::Final(_) => "accepted → Final".to_owned(),
                        AcceptOutcome::Missing => "accepted → Missing".to_owned(),
                    });
                    self.log.push(format!("accepted task {i}: {outcome:?}"));
                    if outcome != want {
                        return Err(fail(format!(
                            "accepted on task {i} answered {outcome:?}, expected {want:?}; the task was {:?}",
                            before[i]
                        )));
                    }
                }
            }
            Op::Settle { task } => {
                let i = self.index(task);
                let settled = self.store.settle(&[self.ids[i]], 1).await.unwrap();
                self.log.push(format!("settled task {i}: {settled:?}"));
                self.seen.push(format!(
                    "settle → {}",
                    if before[i].is_some() {
                        "found"
                    } else {
                        "missing"
                    }
                ));
                let [found] = settled.as_slice() else {
                    return Err(fail(format!("settle of one task answered {settled:?}")));
                };
                let want = match &before[i] {
                    None => Settled::Missing,
                    Some(r) => match r.status.final_status() {
                        Some(status) => Settled::Final(status),
                        None => Settled::Unfinished {
                            status: r.status.clone(),
                            updated_at: r.updated_at.clone(),
                            created_at: r.created_at.clone(),
                        },
                    },
                };
                prop_assert_eq!(found, &want, "settle of task {}", i);
            }
            Op::Read { task } => {
                let i = self.index(task);
                let read = self.store.read(self.ids[i]).await.unwrap();
                prop_assert_eq!(&read, &before[i], "a read of task {} changed it", i);
            }
            Op::Recreate { task } => {
                let i = self.index(task);
                if before[i].is_some() {
                    let record = TaskRecord::new_pending(
                        self.ids[i],
                        "prop/again.mp4",
                        &tick(&mut self.clock),
                    );
                    let result = self.store.create(NewTask::now(&record, &[])).await;
                    self.log.push(format!("create again task {i}: {result:?}"));
                    self.seen
                        .push("create of an existing id refused".to_owned());
                    prop_assert!(
                        result.is_err(),
                        "a create with the id of existing task {} succeeded: {:?}",
                        i,
                        result
                    );
                }
            }
            Op::Vanish => {
                let mut expiring = Vec::new();
                for (i, id) in self.ids.iter().enumerate() {
                    if self.store.ttl(*id).await.unwrap().is_some() {
                        expiring.push(i);
                        expected[i] = None;
                    }
                }
                match &mut self.backend {
                    Backend::Memory => tokio::time::advance(TTL + Duration::from_secs(1)).await,
                    Backend::Redis(conn) => {
                        for &i in &expiring {
                            redis::cmd("DEL")
                                .arg(format!("task:{}", self.ids[i]))
                                .query_async::<()>(conn)
                                .await
                                .unwrap();
                        }
                    }
                }
                self.log.push(format!("tasks {expiring:?} expired"));
                if !expiring.is_empty() {
                    self.seen.push("final tasks expired".to_owned());
                }
            }
        }
        let after = self.snapshot().await;
        if op.is_service() {
            self.check_service_write(op, before, &after)?;
        }
        for (i, (got, want)) in after.iter().zip(&expected).enumerate() {
            if got != want {
                return Err(fail(format!(
                    "after {op:?}, task {i} is {got:#?}\nexpected {want:#?}\n(before: {:#?})",
                    before[i]
                )));
            }
        }
        // Every final task has its TTL (reads give it one when the Processor wrote it).
        for (i, record) in after.iter().enumerate() {
            if let Some(r) = record
                && r.status.is_final()
            {
                let ttl = self.store.ttl(self.ids[i]).await.unwrap();
                prop_assert!(ttl.is_some(), "final task {} has no TTL: {:?}", i, r);
            }
        }
        let depth = self.store.queue_stats().await.unwrap().depth;
        prop_assert_eq!(
            depth,
            self.queued as u64,
            "queue depth after {:?} (entries created minus acknowledged)",
            op
        );
        Ok(after)
    }

    /// The invariants of the brief, stated on their own so a failure names the one broken.
    fn check_service_write(
        &self,
        op: &Op,
        before: &Snapshot,
        after: &Snapshot,
    ) -> Result<(), TestCaseError> {
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            match (b, a) {
                (None, Some(a)) => {
                    return Err(fail(format!("{op:?} recreated missing task {i} as {a:?}")));
                }
                (Some(b), a) if b.status.is_final() => {
                    let same = a.as_ref().is_some_and(|a| {
                        a.status == b.status
                            && a.error_message == b.error_message
                            && a.result_file_key == b.result_file_key
                            && a.updated_at == b.updated_at
                    });
                    if !same {
                        return Err(fail(format!(
                            "{op:?} changed final task {i}: {b:?} became {a:?}"
                        )));
                    }
                }
                (Some(b), Some(a)) if a.status != b.status && a.status.as_str() != "FAILED" => {
                    return Err(fail(format!(
                        "{op:?} wrote status {} on task {i} (was {})",
                        a.status, b.status
                    )));
                }
                (Some(b), Some(a)) if a != b => {
                    if let Op::Fail {
                        expect: Expect::Stale,
                        ..
                    } = op
                    {
                        return Err(fail(format!(
                            "a fail with a stale expect_updated_at wrote task {i}: {b:?} became {a:?}"
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

type Coverage = Mutex<BTreeMap<String, usize>>;

async fn run_case(
    store: Store,
    backend: Backend,
    tasks: usize,
    ops: &[Op],
    coverage: &Coverage,
) -> Result<(), TestCaseError> {
    let mut case = Case::start(store, backend, tasks).await;
    let mut before = case.snapshot().await;
    for (n, op) in ops.iter().enumerate() {
        before = case.apply(op, &before).await.map_err(|e| {
            fail(format!(
                "operation {n} ({op:?}) broke the model: {e}\nwhat happened, in order:\n  {}",
                case.log.join("\n  ")
            ))
        })?;
    }
    let mut coverage = coverage.lock().unwrap();
    for label in case.seen {
        *coverage.entry(label).or_default() += 1;
    }
    Ok(())
}

/// Prints what the property reached and fails if it missed a situation that matters: a
/// property that never saw a stale guard or a final task proves nothing about them.
fn assert_covered(name: &str, coverage: &Coverage) {
    let coverage = coverage.lock().unwrap();
    println!("property {name} reached:");
    for (label, count) in coverage.iter() {
        println!("  {count:>6}  {label}");
    }
    let missed: Vec<&str> = [
        "fail Unguarded → Failed",
        "fail Current → Failed",
        "fail Stale → Changed",
        "fail → AlreadyFinal",
        "fail → Missing",
        "accepted → Watching",
        "accepted → Final",
        "accepted → Missing",
        "processor wrote Processing over a final task",
        "final tasks expired",
        "create of an existing id refused",
        "settle → found",
    ]
    .into_iter()
    .filter(|label| !coverage.contains_key(*label))
    .collect();
    assert!(
        missed.is_empty(),
        "property {name} never reached {missed:?}: raise its cases or change the seed"
    );
}

#[test]
fn service_writes_never_move_a_task_backwards_in_memory() {
    let coverage = Coverage::default();
    check(
        "fencing on the in-memory store",
        cases(256, "PROPTEST_CASES"),
        scenario(),
        |(tasks, ops)| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(run_case(
                Store::Memory(MemoryStore::new(TTL)),
                Backend::Memory,
                tasks,
                &ops,
                &coverage,
            ))
        },
    );
    assert_covered("fencing on the in-memory store", &coverage);
}

#[test]
fn service_writes_never_move_a_task_backwards_in_redis() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = rt.block_on(common::TestRedis::start());
    let base = common::service::config(&redis.vars());
    let conn = rt.block_on(redis.connection());
    let coverage = Coverage::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(
            "fencing on Redis",
            cases(32, "TASK_PROP_REDIS_CASES"),
            scenario(),
            |(tasks, ops)| {
                // A fresh prefix per case: its own queue and watch list (task ids are fresh too).
                let config = RedisConfig {
                    key_prefix: format!("prop-{}", uuid::Uuid::new_v4()),
                    ..base.redis.clone()
                };
                rt.block_on(async {
                    let store = Store::Redis(RedisStore::connect(&config, TTL).unwrap());
                    run_case(store, Backend::Redis(conn.clone()), tasks, &ops, &coverage).await
                })
            },
        );
    }));
    rt.block_on(async move { drop(redis) });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert_covered("fencing on Redis", &coverage);
}

/// The model's own sanity: a generated scenario is replayable value by value (proptest's
/// shrinking relies on it).
#[test]
fn scenarios_are_deterministic_under_the_seed() {
    let make = || {
        let config = RunnerConfig {
            rng_seed: RngSeed::Fixed(seed()),
            ..RunnerConfig::default()
        };
        let mut runner = TestRunner::new(config);
        format!("{:?}", scenario().new_tree(&mut runner).unwrap().current())
    };
    assert_eq!(make(), make());
}
