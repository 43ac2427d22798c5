//! The console's HTML, rendered on the server with maud: every value is escaped as it is
//! written (task fields are callers' input), and the pages hold no inline script or style, so
//! that the Content-Security-Policy can forbid both.

use std::time::{Duration, SystemTime};

use maud::{DOCTYPE, Markup, html};
use middleware::BreakerState;

use super::{activity::Totals, overview::Overview, session::Viewer};
use crate::{
    auth::Scope,
    proto::task::{GetTaskStatusResponse, ListTasksResponse},
    task::TaskStatus,
};

/// What every page's frame shows.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Who is looking.
    pub viewer: &'a Viewer,
    /// Whether actions are offered (TASK_DASHBOARD=on).
    pub actions: bool,
    /// The form token of this visitor.
    pub csrf: &'a str,
    /// Whether sign-in is needed (authentication is on).
    pub sign_in: bool,
}

impl Frame<'_> {
    /// Whether an action needing `scope` is offered.
    pub fn offers(&self, scope: Scope) -> bool {
        self.actions && self.viewer.may(scope)
    }
}

/// A whole page.
pub fn page(frame: &Frame<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Task service" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console" { "Task service" }
                    nav {
                        a href="/console" { "Overview" }
                        a href="/console/tasks" { "Tasks" }
                    }
                    span.who {
                        @if !frame.actions { span.badge.readonly { "read-only" } " " }
                        @match frame.viewer {
                            Viewer::Caller(caller) => {
                                (caller.name) " (" (caller.scope.as_str()) ") "
                                form.inline method="post" action="/console/logout" {
                                    input type="hidden" name="csrf" value=(frame.csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                            Viewer::Nobody if frame.sign_in => { a href="/console/login" { "Sign in" } }
                            _ => {}
                        }
                    }
                }
                main { (body) }
                footer { span #refreshed {} }
            }
        }
    }
}

/// The overview's live part.
pub fn overview(o: &Overview) -> Markup {
    let oldest = o.oldest_waiting();
    html! {
        section.cards {
            div.card {
                h2 { "Queue" }
                @match &o.queue {
                    Ok(q) => {
                        dl {
                            dt { "Waiting or in delivery" } dd #queue-depth { (q.depth) }
                            dt { "Delivered, unacknowledged" } dd #queue-pending { (q.pending) }
                            dt { "Oldest waiting" } dd #queue-oldest { @if let Some(age) = oldest { (ago(age)) } @else { "—" } }
                            dt { "Accepted, not final" } dd { (q.watched) }
                        }
                    }
                    Err(e) => { p.bad { "Cannot read the queue: " (e) } }
                }
            }
            div.card {
                h2 { "Processor" }
                dl {
                    dt { "Calls in flight" } dd #in-flight { (o.in_flight) " of " (o.concurrency) }
                    dt { "Circuit" } dd #circuit { span.(state_class(o.circuit.state)) { (o.circuit.state.as_str()) } }
                    @if let Some(opened) = o.circuit.opened_at {
                        dt { "Open since" } dd { (clock(opened)) " (" (ago(since(opened, o.now))) " ago)" }
                    }
                    dt { "Last error" }
                    dd #last-error {
                        @if let Some(failure) = &o.circuit.last_failure {
                            (failure.message) br; small { (clock(failure.at)) " (" (ago(since(failure.at, o.now))) " ago)" }
                        } @else { "none since start" }
                    }
                }
            }
            div.card {
                h2 { "Reachability" }
                dl {
                    dt { (o.store_kind) }
                    dd #redis {
                        @match &o.redis {
                            Ok(took) => { span.ok { "answers" } " (PING " (format!("{:.1}", took.as_secs_f64() * 1000.0)) " ms)" }
                            Err(e) => { span.bad { "unreachable" } br; small { (e) } }
                        }
                    }
                    dt { "Processor" }
                    dd #processor {
                        @match o.circuit.state {
                            BreakerState::Closed => { span.ok { "calls go through" } }
                            BreakerState::HalfOpen => { span.warn { "being probed" } }
                            BreakerState::Open => { span.bad { "unreachable: calls held back" } }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Last hour, per minute (this instance)" }
            (chart(&o.minutes))
            p.legend {
                span.created { "■ created" } " " span.completed { "■ completed" } " " span.failed { "■ failed" }
                " — since start: " (o.totals.created) " created, " (o.totals.completed) " completed, " (o.totals.failed) " failed"
            }
        }
        section.card #newest {
            h2 { "Newest tasks" }
            @match &o.newest {
                Ok(page) => { (task_table(page, "", o.now)) }
                Err(e) => { p.bad { "Cannot list tasks: " (e) } }
            }
            p { a href="/console/tasks" { "All tasks →" } }
        }
        section.card {
            h2 { "Failures by reason (this instance, since start)" }
            @if o.failures.is_empty() {
                p { "None." }
            } @else {
                table #failures {
                    thead { tr { th { "Reason" } th.num { "Tasks" } } }
                    tbody {
                        @for (reason, n) in &o.failures {
                            tr { td { (reason) } td.num { (n) } }
                        }
                    }
                }
            }
        }
    }
}

const CHART_W: f64 = 720.0;
const CHART_H: f64 = 160.0;
const CHART_LEFT: f64 = 48.0;
const CHART_BOTTOM: f64 = 20.0;

/// Three lines over the minutes, drawn as SVG.
pub fn chart(minutes: &[Totals]) -> Markup {
    let top = minutes
        .iter()
        .flat_map(|m| [m.created, m.completed, m.failed])
        .max()
        .unwrap_or(0)
        .max(1);
    let steps = minutes.len().saturating_sub(1).max(1) as f64;
    let points = |value: fn(&Totals) -> u64| {
        minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let x = CHART_LEFT + (CHART_W - CHART_LEFT) * i as f64 / steps;
                let y = (CHART_H - CHART_BOTTOM) * (1.0 - value(m) as f64 / top as f64);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let base = CHART_H - CHART_BOTTOM;
    html! {
        svg.chart #activity viewBox=(format!("0 0 {CHART_W} {CHART_H}")) role="img" aria-label="tasks per minute, last hour" {
            line.axis x1=(CHART_LEFT) y1=(base) x2=(CHART_W) y2=(base) {}
            line.axis x1=(CHART_LEFT) y1="0" x2=(CHART_LEFT) y2=(base) {}
            text.tick x="4" y="12" { (top) "/min" }
            text.tick x="4" y=(base) { "0" }
            text.tick x=(CHART_LEFT) y=(CHART_H - 4.0) { "60 min ago" }
            text.tick x=(CHART_W - 28.0) y=(CHART_H - 4.0) { "now" }
            polyline.created points=(points(|m| m.created)) {}
            polyline.completed points=(points(|m| m.completed)) {}
            polyline.failed points=(points(|m| m.failed)) {}
        }
    }
}

/// The status filter of the tasks page.
pub const FILTERS: [(&str, &str); 5] = [
    ("", "All"),
    ("PENDING", "Pending"),
    ("PROCESSING", "Processing"),
    ("COMPLETED", "Completed"),
    ("FAILED", "Failed"),
];

/// The tasks page's controls.
pub fn task_filters(status: &str) -> Markup {
    html! {
        nav.filters {
            @for (value, label) in FILTERS {
                @let href = if value.is_empty() { "/console/tasks".to_owned() } else { format!("/console/tasks?status={value}") };
                a.current[value == status] href=(href) { (label) }
            }
        }
    }
}

/// One page of tasks.
pub fn task_table(page: &ListTasksResponse, status: &str, now: SystemTime) -> Markup {
    html! {
        @if page.tasks.is_empty() {
            p #no-tasks { "No tasks" @if !status.is_empty() { " with status " (status) } " on this page." }
        } @else {
            table #tasks {
                thead { tr { th { "Created" } th { "Task" } th { "Status" } th { "File" } th { "Age" } th { "Result or error" } } }
                tbody {
                    @for task in &page.tasks {
                        tr data-task=(task.task_id) {
                            td.when { (task.created_at) }
                            td.mono { a href=(format!("/console/tasks/{}", task.task_id)) { (task.task_id) } }
                            td { (status_badge(&task.status)) }
                            td.file { (task.original_file_key) }
                            td { (age(&task.created_at, now)) }
                            td.file { (outcome(task)) }
                        }
                    }
                }
            }
        }
        @if !page.next_page_token.is_empty() {
            p.paging {
                a #next-page href=(next_href(status, &page.next_page_token)) { "Next page →" }
            }
        }
    }
}

fn next_href(status: &str, token: &str) -> String {
    // The token is hex (ours); the status one of FILTERS: nothing to escape in the URL.
    if status.is_empty() {
        format!("/console/tasks?page={token}")
    } else {
        format!("/console/tasks?status={status}&page={token}")
    }
}

fn outcome(task: &GetTaskStatusResponse) -> &str {
    if task.error_message.is_empty() {
        &task.result_file_key
    } else {
        &task.error_message
    }
}

/// One task's fields.
pub fn task_fields(
    task: &GetTaskStatusResponse,
    trace: Option<&str>,
    jaeger: Option<&str>,
    now: SystemTime,
) -> Markup {
    html! {
        dl.fields #task {
            dt { "Task id" } dd.mono #task-id { (task.task_id) }
            dt { "Status" } dd #task-status { (status_badge(&task.status)) }
            dt { "Original file" } dd.file #task-file { (task.original_file_key) }
            dt { "Result file" } dd.file #task-result { (task.result_file_key) }
            dt { "Error" } dd.file #task-error { (task.error_message) }
            dt { "Created" } dd { (task.created_at) }
            dt { "Updated" } dd { (task.updated_at) }
            dt { "Age" } dd { (age(&task.created_at, now)) }
            dt { "Trace of its creation" }
            dd.mono #task-trace {
                @match (trace, jaeger) {
                    (Some(trace), Some(jaeger)) => { a href=(format!("{jaeger}/trace/{trace}")) rel="noreferrer" { (trace) } }
                    (Some(trace), None) => { (trace) }
                    (None, _) => { "not known here (traces not recorded, or created by another instance or long ago)" }
                }
            }
        }
    }
}

/// The actions offered for a task.
pub fn task_actions(frame: &Frame<'_>, task: &GetTaskStatusResponse) -> Markup {
    let status = TaskStatus::parse(&task.status);
    let cancellable = matches!(status, Some(TaskStatus::Pending | TaskStatus::Processing));
    let again = status == Some(TaskStatus::Failed);
    html! {
        @if frame.offers(Scope::Admin) && cancellable {
            form.action #cancel-form method="post" action=(format!("/console/tasks/{}/cancel", task.task_id)) {
                input type="hidden" name="csrf" value=(frame.csrf);
                label { "Reason " input type="text" name="reason" maxlength="200" placeholder="cancelled from the console"; }
                button.danger #cancel type="submit" { "Cancel task" }
            }
        }
        @if frame.offers(Scope::Write) && again {
            form.action #again-form method="post" action=(format!("/console/tasks/{}/again", task.task_id)) {
                input type="hidden" name="csrf" value=(frame.csrf);
                button #again type="submit" { "Create again" }
                " a new task for the same file"
            }
        }
    }
}

/// The sign-in form.
pub fn login(csrf: &str, failed: bool) -> Markup {
    html! {
        h1 { "Sign in" }
        @if failed { p.bad #login-failed { "That token is not one of TASK_AUTH_TOKENS_FILE's." } }
        form.action method="post" action="/console/login" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Bearer token " input type="password" name="token" autocomplete="current-password" required; }
            button type="submit" { "Sign in" }
        }
        p { small { "The token of a caller in TASK_AUTH_TOKENS_FILE: read to look, write to create, admin to cancel." } }
    }
}

/// An error's page body.
pub fn error(code: &str, message: &str) -> Markup {
    html! {
        h1 { "Not done" }
        p.bad #error { (code) ": " (message) }
        p { a href="/console" { "Back to the overview" } }
    }
}

fn status_badge(status: &str) -> Markup {
    let class = match status {
        "PENDING" => "pending",
        "PROCESSING" => "processing",
        "COMPLETED" => "completed",
        "FAILED" => "failed",
        _ => "unknown",
    };
    html! { span.badge.(class) { (status) } }
}

fn state_class(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "ok",
        BreakerState::HalfOpen => "warn",
        BreakerState::Open => "bad",
    }
}

fn since(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

fn age(created_at: &str, now: SystemTime) -> String {
    match chrono::DateTime::parse_from_rfc3339(created_at) {
        Ok(created) => {
            let created = SystemTime::from(created);
            ago(since(created, now))
        }
        Err(_) => "—".to_owned(),
    }
}

/// A wall-clock time, UTC, to the second.
fn clock(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A duration as a person reads it: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_fields_are_text_not_markup() {
        let task = GetTaskStatusResponse {
            task_id: "t".into(),
            status: "FAILED".into(),
            original_file_key: "<script>alert(1)</script>.mp4".into(),
            error_message: "\"><img src=x onerror=alert(1)>".into(),
            ..Default::default()
        };
        let html = task_fields(&task, None, None, SystemTime::now()).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.mp4"));
        assert!(html.contains("&quot;&gt;&lt;img"));
    }

    #[test]
    fn the_chart_scales_to_its_highest_minute() {
        let mut minutes = vec![Totals::default(); 60];
        minutes[59].created = 30;
        let svg = chart(&minutes).into_string();
        assert!(svg.contains("30/min"));
        // The last created point is at the top, the first at the bottom line.
        assert!(svg.contains("720.0,0.0"), "{svg}");
        assert!(svg.contains("48.0,140.0"));
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(ago(Duration::from_secs(45)), "45s");
        assert_eq!(ago(Duration::from_secs(192)), "3m 12s");
        assert_eq!(ago(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(ago(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
