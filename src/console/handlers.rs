//! The console's HTTP handlers: each finds who is asking, checks what it may do, calls the
//! API, and renders a page or a redirect. A failure is a page with the API's own message and
//! the HTTP status of its gRPC code.

use std::{sync::Arc, time::SystemTime};

use axum::{
    Form,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;
use tracing::Instrument;

use super::{
    Console,
    overview::Overview,
    pages::{self, FILTERS, Frame},
    session::{self, Viewer},
};
use crate::{
    auth::Scope,
    config::ConsoleMode,
    error::{Error, http_status},
    proto::task::{CancelTaskRequest, CreateTaskRequest, GetTaskStatusResponse, ListTasksRequest},
    task::{TaskId, TaskStatus},
};

/// Who asks, and the visitor id their forms are bound to.
struct Asker {
    viewer: Viewer,
    visitor: String,
    /// Set when the visitor had no cookie yet: sent back with the answer.
    new_visitor: bool,
}

impl Asker {
    fn of(console: &Console, headers: &HeaderMap) -> Self {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(crate::auth::bearer_token);
        let session = cookie(headers, session::SESSION_COOKIE);
        let viewer = Viewer::identify(
            console.authenticator.as_ref(),
            &console.keys,
            bearer,
            session,
            SystemTime::now(),
        );
        let (visitor, new_visitor) = match cookie(headers, session::VISITOR_COOKIE) {
            Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (v.to_owned(), false)
            }
            _ => (session::new_visitor(), true),
        };
        Self {
            viewer,
            visitor,
            new_visitor,
        }
    }

    /// Adds the visitor cookie to `response` if it is new.
    fn finish(&self, mut response: Response) -> Response {
        if self.new_visitor
            && let Ok(value) = HeaderValue::from_str(&format!(
                "{}={}; Path=/console; HttpOnly; SameSite=Strict",
                session::VISITOR_COOKIE,
                self.visitor
            ))
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn frame<'a>(console: &Console, asker: &'a Asker, csrf: &'a str) -> Frame<'a> {
    Frame {
        viewer: &asker.viewer,
        actions: console.config.mode == ConsoleMode::On,
        csrf,
        sign_in: console.authenticator.is_some(),
    }
}

impl Asker {
    /// The answer to a page request from nobody signed in (before any work is done for it).
    fn signed_out_page(&self) -> Option<Response> {
        (self.viewer == Viewer::Nobody)
            .then(|| self.finish(Redirect::to("/console/login").into_response()))
    }

    /// The answer to a part's refresh from nobody signed in (the script keeps what it shows).
    fn signed_out_part(&self) -> Option<Response> {
        (self.viewer == Viewer::Nobody)
            .then(|| (StatusCode::UNAUTHORIZED, "sign in again").into_response())
    }
}

/// A whole page for `asker`, with `status`.
fn render(
    console: &Console,
    asker: &Asker,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&Frame<'_>) -> Markup,
) -> Response {
    let csrf = console.keys.csrf_token(&asker.visitor);
    let frame = frame(console, asker, &csrf);
    let markup = pages::page(&frame, title, body(&frame));
    asker.finish((status, Html(markup.into_string())).into_response())
}

/// A refreshed part.
fn part(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// A refreshed part's failure: its status and message (the script keeps what it shows).
fn part_failed(error: Error) -> Response {
    let status = tonic::Status::from(error);
    (http_status(status.code()), status.message().to_owned()).into_response()
}

/// An error page.
fn failed(console: &Console, asker: &Asker, error: Error) -> Response {
    let status = tonic::Status::from(error);
    refused(
        console,
        asker,
        http_status(status.code()),
        &format!("{:?}", status.code()),
        status.message(),
    )
}

fn refused(
    console: &Console,
    asker: &Asker,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    render(console, asker, status, "Not done", |_| {
        pages::error(code, message)
    })
}

/// One task's live part: its fields and the actions it offers.
fn task_view(console: &Console, frame: &Frame<'_>, task: &GetTaskStatusResponse) -> Markup {
    let trace = TaskId::parse(&task.task_id)
        .ok()
        .and_then(|id| console.api.creation_trace(id));
    let jaeger = console.config.jaeger_url.as_deref();
    html! {
        (pages::task_fields(task, trace.as_deref(), jaeger, SystemTime::now()))
        (pages::task_actions(frame, task))
    }
}

/// `/`: the overview.
pub async fn home() -> Redirect {
    Redirect::to("/console")
}

pub async fn overview_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_page() {
        return answer;
    }
    let overview = Overview::gather(&console).await;
    render(&console, &asker, StatusCode::OK, "Overview", |_| {
        html! {
            h1 { "Overview" }
            div data-refresh="/console/part/overview" { (pages::overview(&overview)) }
        }
    })
}

pub async fn overview_part(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_part() {
        return answer;
    }
    part(pages::overview(&Overview::gather(&console).await))
}

/// The tasks page's query.
#[derive(Debug, Default, Deserialize)]
pub struct TasksQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

impl TasksQuery {
    /// The query string of this page, for its refresh (the status is one of the filters and the
    /// page token hex once the API took them: nothing to escape).
    fn query_string(&self) -> String {
        match (self.status.is_empty(), self.page.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!("?status={}", self.status),
            (true, false) => format!("?page={}", self.page),
            (false, false) => format!("?status={}&page={}", self.status, self.page),
        }
    }

    fn checked(&self) -> Result<(), Error> {
        if !FILTERS.iter().any(|(value, _)| *value == self.status) {
            return Err(Error::InvalidArgument(format!(
                "status {:?} is not one of PENDING, PROCESSING, COMPLETED, FAILED (or empty for all)",
                self.status
            )));
        }
        if !self.page.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(
                "page is not a page token this console gave: follow the Next page link".into(),
            ));
        }
        Ok(())
    }

    async fn list(
        &self,
        console: &Console,
    ) -> Result<crate::proto::task::ListTasksResponse, Error> {
        self.checked()?;
        console
            .api
            .list(&ListTasksRequest {
                status: self.status.clone(),
                page_size: 0,
                page_token: self.page.clone(),
            })
            .await
    }
}

pub async fn tasks_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<TasksQuery>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_page() {
        return answer;
    }
    let page = match query.list(&console).await {
        Ok(page) => page,
        Err(e) => return failed(&console, &asker, e),
    };
    let now = SystemTime::now();
    render(&console, &asker, StatusCode::OK, "Tasks", |_| {
        html! {
            h1 { "Tasks" }
            (pages::task_filters(&query.status))
            div data-refresh=(format!("/console/part/tasks{}", query.query_string())) {
                (pages::task_table(&page, &query.status, now))
            }
        }
    })
}

pub async fn tasks_part(
    State(console): State<Arc<Console>>,
    Query(query): Query<TasksQuery>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_part() {
        return answer;
    }
    match query.list(&console).await {
        Ok(page) => part(pages::task_table(&page, &query.status, SystemTime::now())),
        Err(e) => part_failed(e),
    }
}

pub async fn task_page(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_page() {
        return answer;
    }
    let task = match console.api.status(&id).await {
        Ok(task) => task,
        Err(e) => return failed(&console, &asker, e),
    };
    render(&console, &asker, StatusCode::OK, "Task", |frame| {
        html! {
            h1 { "Task" }
            div data-refresh=(format!("/console/part/task/{}", task.task_id)) {
                (task_view(&console, frame, &task))
            }
        }
    })
}

pub async fn task_part(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(answer) = asker.signed_out_part() {
        return answer;
    }
    match console.api.status(&id).await {
        Ok(task) => {
            let csrf = console.keys.csrf_token(&asker.visitor);
            part(task_view(&console, &frame(&console, &asker, &csrf), &task))
        }
        Err(e) => part_failed(e),
    }
}

/// The fields every form posts.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Checks a POST: actions on, from our own page (its form token, and no cross-site origin),
/// and a viewer allowed `scope`. `Some` is the refusal to answer.
fn refusal(
    console: &Console,
    asker: &Asker,
    headers: &HeaderMap,
    csrf: &str,
    scope: Option<Scope>,
) -> Option<Response> {
    if scope.is_some() && console.config.mode != ConsoleMode::On {
        return Some(refused(
            console,
            asker,
            StatusCode::FORBIDDEN,
            "PermissionDenied",
            "the console is read-only (TASK_DASHBOARD=readonly)",
        ));
    }
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site || asker.new_visitor || !console.keys.csrf_ok(&asker.visitor, csrf) {
        return Some(refused(
            console,
            asker,
            StatusCode::FORBIDDEN,
            "PermissionDenied",
            "this form did not come from this console's page (or the service restarted since it was shown): reload the page and try again",
        ));
    }
    let scope = scope?;
    match &asker.viewer {
        Viewer::Nobody => Some(refused(
            console,
            asker,
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "sign in first (with a token from TASK_AUTH_TOKENS_FILE)",
        )),
        Viewer::Caller(caller) if caller.scope < scope => Some(refused(
            console,
            asker,
            StatusCode::FORBIDDEN,
            "PermissionDenied",
            &format!(
                "{} has scope {}; this needs {}",
                caller.name,
                caller.scope.as_str(),
                scope.as_str()
            ),
        )),
        _ => None,
    }
}

/// Where an action came from, for the task's error message and the log.
fn from_whom(viewer: &Viewer) -> String {
    match viewer {
        Viewer::Caller(caller) => format!("from the console, by {}", caller.name),
        Viewer::Open | Viewer::Nobody => "from the console".to_owned(),
    }
}

pub async fn cancel(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(refusal) = refusal(&console, &asker, &headers, &form.csrf, Some(Scope::Admin)) {
        return refusal;
    }
    let origin = from_whom(&asker.viewer);
    let reason = match form.reason.trim() {
        "" => origin.clone(),
        reason => format!("{reason} ({origin})"),
    };
    let span = tracing::info_span!("console cancel", task.id = %id, by = %origin);
    let request = CancelTaskRequest {
        task_id: id.clone(),
        reason,
    };
    match console.api.cancel(&request).instrument(span).await {
        Ok(task) => Redirect::to(&format!("/console/tasks/{}", task.task_id)).into_response(),
        Err(e) => failed(&console, &asker, e),
    }
}

pub async fn again(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(refusal) = refusal(&console, &asker, &headers, &form.csrf, Some(Scope::Write)) {
        return refusal;
    }
    let task = match console.api.status(&id).await {
        Ok(task) => task,
        Err(e) => return failed(&console, &asker, e),
    };
    if TaskStatus::parse(&task.status) != Some(TaskStatus::Failed) {
        return failed(
            &console,
            &asker,
            Error::FailedPrecondition(format!(
                "only a FAILED task is created again; this one is {}",
                task.status
            )),
        );
    }
    // The same request id for every press on this task: a double click, or a retry after a
    // lost answer, gives the one new task (within TASK_IDEMPOTENCY_WINDOW).
    let request = CreateTaskRequest {
        original_file_key: task.original_file_key,
        request_id: format!("console-again-{}", task.task_id),
    };
    let span =
        tracing::info_span!("console create again", task.id = %id, by = %from_whom(&asker.viewer));
    match console
        .api
        .create(&request, &HeaderMap::new())
        .instrument(span)
        .await
    {
        Ok(new) => Redirect::to(&format!("/console/tasks/{new}")).into_response(),
        Err(e) => failed(&console, &asker, e),
    }
}

pub async fn login_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let asker = Asker::of(&console, &headers);
    if console.authenticator.is_none() {
        return asker.finish(Redirect::to("/console").into_response());
    }
    render(&console, &asker, StatusCode::OK, "Sign in", |frame| {
        pages::login(frame.csrf, false)
    })
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(refusal) = refusal(&console, &asker, &headers, &form.csrf, None) {
        return refusal;
    }
    let Some(authenticator) = &console.authenticator else {
        return Redirect::to("/console").into_response();
    };
    let Some(caller) = authenticator
        .callers()
        .identify(crate::auth::Credential::Token(&form.token))
    else {
        tracing::warn!("console sign-in with a token not in the tokens file");
        return render(
            &console,
            &asker,
            StatusCode::UNAUTHORIZED,
            "Sign in",
            |frame| pages::login(frame.csrf, true),
        );
    };
    tracing::info!(caller = %caller.name, "console sign-in");
    let cookie = format!(
        "{}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        session::SESSION_COOKIE,
        console.keys.session(&form.token, SystemTime::now()),
        session::SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let asker = Asker::of(&console, &headers);
    if let Some(refusal) = refusal(&console, &asker, &headers, &form.csrf, None) {
        return refusal;
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "task_console_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
}

/// The headers every console answer carries.
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
