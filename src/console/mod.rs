//! The operator's console: HTML pages served by every instance on the metrics listener — an
//! overview of the queue, the Processor and the last hour, the tasks (ListTasks with its
//! filter and paging), one task with its trace — and the actions cancel and create again,
//! carried out through the same API the gRPC clients call (the README's "Dashboard").
//!
//! [`session`] decides who is looking and checks every form's token; [`overview`] gathers the
//! figures; [`pages`] renders; [`activity`] keeps the last hour.

mod activity;
mod handlers;
mod overview;
mod pages;
mod session;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use tokio_util::sync::CancellationToken;

pub use overview::ProcessorView;

use crate::{
    api::TaskApi,
    auth::Authenticator,
    config::{ConsoleConfig, ConsoleMode},
    metrics::Metrics,
    store::Store,
};

/// How often the activity ring is sampled besides each render (several times a minute, so
/// that every minute has its sample).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Largest form accepted (a token, a reason).
const MAX_FORM_BYTES: usize = 8 * 1024;

/// What the console needs.
#[derive(Debug)]
pub struct ConsoleParts {
    /// The API it acts through.
    pub api: TaskApi,
    /// The store (queue figures, PING).
    pub store: Store,
    /// This instance's counters.
    pub metrics: Metrics,
    /// The Processor client's breaker and calls.
    pub processor: ProcessorView,
    /// Its settings.
    pub config: ConsoleConfig,
    /// The callers, when authentication is on.
    pub authenticator: Option<Authenticator>,
}

/// The console's state, shared by its handlers.
#[derive(Debug)]
pub struct Console {
    api: TaskApi,
    store: Store,
    metrics: Metrics,
    processor: ProcessorView,
    config: ConsoleConfig,
    authenticator: Option<Authenticator>,
    keys: session::Keys,
    activity: activity::Activity,
}

impl Console {
    /// The console over `parts`, or `None` when TASK_DASHBOARD=off.
    pub fn new(parts: ConsoleParts) -> Option<Arc<Self>> {
        if parts.config.mode == ConsoleMode::Off {
            return None;
        }
        Some(Arc::new(Self {
            api: parts.api,
            store: parts.store,
            metrics: parts.metrics,
            processor: parts.processor,
            config: parts.config,
            authenticator: parts.authenticator,
            keys: session::Keys::random(),
            activity: activity::Activity::default(),
        }))
    }

    /// Its routes, under `/console` (and `/`, which leads there).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(handlers::home))
            .route("/console", get(handlers::overview_page))
            .route("/console/part/overview", get(handlers::overview_part))
            .route("/console/tasks", get(handlers::tasks_page))
            .route("/console/part/tasks", get(handlers::tasks_part))
            .route("/console/tasks/{id}", get(handlers::task_page))
            .route("/console/part/task/{id}", get(handlers::task_part))
            .route("/console/tasks/{id}/cancel", post(handlers::cancel))
            .route("/console/tasks/{id}/again", post(handlers::again))
            .route(
                "/console/login",
                get(handlers::login_page).post(handlers::login),
            )
            .route("/console/logout", post(handlers::logout))
            .route("/console/static/console.js", get(handlers::script))
            .route("/console/static/console.css", get(handlers::stylesheet))
            // Forms are a token and a reason: anything bigger is refused before it is read.
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            // Every answer forbids framing, inline script and sniffing, and is never cached
            // (pages show live state and carry form tokens).
            .layer(axum::middleware::map_response(handlers::secure_headers))
            .with_state(self.clone())
    }

    /// Samples the counters for the activity chart until `shutdown`.
    pub async fn sample_activity(self: Arc<Self>, shutdown: CancellationToken) {
        // What the counters held before this minute (nothing, at start): the first minute's
        // increase is measured from it.
        let now = std::time::SystemTime::now();
        self.activity.record(
            overview::minute_of(now).saturating_sub(1),
            overview::totals(&self.metrics),
        );
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            overview::sample(&self.activity, &self.metrics, std::time::SystemTime::now());
        }
    }
}
