//! A Processor the test controls: it answers from a script, counts calls, measures how many are
//! in flight at once, records the metadata it received, and can complete tasks in Redis the way
//! the contract's Processor does.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use task_service::{
    proto::processor::{
        CancelVideoRequest, CancelVideoResponse, ProcessVideoRequest, ProcessVideoResponse,
        processor_server,
    },
    store::{ProcessorReport, Store},
    task::{TaskId, now_timestamp},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

/// One answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// OK at once, nothing written (an asynchronous Processor that accepted).
    Accept,
    /// Writes PROCESSING then COMPLETED (plain HSETs), then OK.
    Complete,
    /// Like a well-behaved Processor, idempotent by task_id: a task already final is left
    /// alone; otherwise PROCESSING then COMPLETED, then OK.
    Idempotent,
    /// Answers this status.
    Fail(Code, &'static str),
    /// Waits, then answers the inner reply.
    After(Duration, Box<Reply>),
}

#[derive(Debug)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    store: Option<Store>,
    calls: AtomicUsize,
    fail_every: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    received: Mutex<Vec<Received>>,
    /// ProcessVideo calls the client cancelled before an answer, by task.
    abandoned: Mutex<Vec<String>>,
    /// CancelVideo calls, by task.
    cancels: Mutex<Vec<String>>,
    /// How CancelVideo answers (`None`: OK).
    cancel_reply: Mutex<Option<(Code, &'static str)>>,
}

/// What one call carried.
#[derive(Clone, Debug)]
pub struct Received {
    /// The task.
    pub task_id: String,
    /// Its file.
    pub original_file_key: String,
    /// The `traceparent` metadata, if any.
    pub traceparent: Option<String>,
    /// The `grpc-timeout` metadata, if any.
    pub grpc_timeout: Option<String>,
}

/// A running fake Processor on 127.0.0.1:0.
pub struct FakeProcessor {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl FakeProcessor {
    /// Starts one that answers `default` unless scripted otherwise; with a store it can
    /// complete tasks.
    pub async fn start(default: Reply, store: Option<Store>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, default, store).await
    }

    /// Starts one on a given listener (to come back on the same address).
    pub async fn serve(listener: TcpListener, default: Reply, store: Option<Store>) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::default(),
            default: Mutex::new(default),
            store,
            calls: AtomicUsize::new(0),
            fail_every: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            received: Mutex::default(),
            abandoned: Mutex::default(),
            cancels: Mutex::default(),
            cancel_reply: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let service = processor_server::ProcessorServer::new(Handler(state.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        Self { addr, state, stop }
    }

    /// `PROCESSOR_GRPC_ADDR` for it.
    pub fn addr_var(&self) -> (String, String) {
        ("PROCESSOR_GRPC_ADDR".into(), self.addr.to_string())
    }

    /// Queues answers for the next calls, before the default applies again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Changes the default answer.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// From now on every `n`th call answers UNAVAILABLE (0: none).
    pub fn fail_every(&self, n: usize) {
        self.state.fail_every.store(n, Ordering::SeqCst);
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// What every call carried.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// ProcessVideo calls whose caller cancelled them before they were answered, by task.
    pub fn abandoned(&self) -> Vec<String> {
        self.state.abandoned.lock().unwrap().clone()
    }

    /// CancelVideo calls received, by task.
    pub fn cancels(&self) -> Vec<String> {
        self.state.cancels.lock().unwrap().clone()
    }

    /// CancelVideo answers this status from now on (`None`: OK).
    pub fn set_cancel_reply(&self, reply: Option<(Code, &'static str)>) {
        *self.state.cancel_reply.lock().unwrap() = reply;
    }

    /// Calls received for one task.
    pub fn calls_for(&self, task_id: &str) -> usize {
        self.received()
            .iter()
            .filter(|r| r.task_id == task_id)
            .count()
    }

    /// Stops serving (the address then refuses connections).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FakeProcessor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug)]
struct Handler(Arc<State>);

/// Records a call its caller cancelled: dropped before it answered.
struct Unanswered<'a> {
    state: &'a State,
    task_id: String,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.state
                .abandoned
                .lock()
                .unwrap()
                .push(std::mem::take(&mut self.task_id));
        }
    }
}

/// Decrements the in-flight count however a call ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl processor_server::Processor for Handler {
    async fn process_video(
        &self,
        request: Request<ProcessVideoRequest>,
    ) -> Result<Response<ProcessVideoResponse>, Status> {
        let state = &self.0;
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&state.in_flight);
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let call = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let metadata = |key: &str| {
            request
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let received = Received {
            task_id: request.get_ref().task_id.clone(),
            original_file_key: request.get_ref().original_file_key.clone(),
            traceparent: metadata("traceparent"),
            grpc_timeout: metadata("grpc-timeout"),
        };
        state.received.lock().unwrap().push(received.clone());
        let every = state.fail_every.load(Ordering::SeqCst);
        if every > 0 && call.is_multiple_of(every) {
            return Err(Status::unavailable(
                "failing one call in every few, on purpose",
            ));
        }
        let reply = state
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| state.default.lock().unwrap().clone());
        let mut unanswered = Unanswered {
            state,
            task_id: received.task_id.clone(),
            answered: false,
        };
        let answer = answer(state, &received.task_id, reply).await;
        unanswered.answered = true;
        answer
    }

    async fn cancel_video(
        &self,
        request: Request<CancelVideoRequest>,
    ) -> Result<Response<CancelVideoResponse>, Status> {
        self.0
            .cancels
            .lock()
            .unwrap()
            .push(request.get_ref().task_id.clone());
        match *self.0.cancel_reply.lock().unwrap() {
            Some((code, message)) => Err(Status::new(code, message)),
            None => Ok(Response::new(CancelVideoResponse {})),
        }
    }
}

fn task_id(text: &str) -> Result<TaskId, Status> {
    TaskId::parse(text).map_err(Status::invalid_argument)
}

async fn answer(
    state: &State,
    task_id_text: &str,
    mut reply: Reply,
) -> Result<Response<ProcessVideoResponse>, Status> {
    loop {
        match reply {
            Reply::After(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            Reply::Accept => return Ok(Response::new(ProcessVideoResponse {})),
            Reply::Fail(code, message) => return Err(Status::new(code, message)),
            Reply::Idempotent => {
                let store = state
                    .store
                    .as_ref()
                    .expect("Reply::Idempotent needs a store");
                let status = store
                    .processor_status(task_id(task_id_text)?)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                if status.is_some_and(|status| status.is_final()) {
                    return Ok(Response::new(ProcessVideoResponse {}));
                }
                reply = Reply::Complete;
            }
            Reply::Complete => {
                let store = state.store.clone().expect("Reply::Complete needs a store");
                let id = task_id(task_id_text)?;
                // Like a Processor that keeps its result: the writes go on when the caller gives
                // up on the call (its deadline), and each is tried again for a while (Redis
                // restarting, a failover), not given up at once.
                let written = tokio::spawn(async move {
                    let now = now_timestamp();
                    let result = format!("./data/videos/{id}/result.mp4");
                    for report in [
                        ProcessorReport::Processing,
                        ProcessorReport::Completed {
                            result_file_key: &result,
                        },
                    ] {
                        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
                        loop {
                            match store.processor_report(id, report, &now).await {
                                Ok(()) => break,
                                Err(_) if tokio::time::Instant::now() < give_up => {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                    }
                    Ok(())
                });
                written
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(Status::internal)?;
                return Ok(Response::new(ProcessVideoResponse {}));
            }
        }
    }
}
