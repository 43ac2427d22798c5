//! The operator's console against a real service on real Redis with the tests' Processor: in a
//! real browser (headless chromium over WebDriver) for what a person sees — a task created over
//! gRPC, a Processor's write appearing without a reload, cancel and create again from the page,
//! a hostile file key shown as text, read-only mode — and over plain HTTP for what a browser
//! cannot be made to do: forged forms, missing tokens, scopes, the console switched off.
//! Screenshots are saved under `target/console-screenshots/`.

mod common;

use std::{net::SocketAddr, time::Duration};

use bb8_redis::redis::AsyncCommands;
use common::{
    FakeProcessor, Reply, TestRedis, TestService,
    browser::Browser,
    calls::{create, status, vars, wait_for_status},
    eventually,
};
use fantoccini::Locator;
use task_service::{
    auth::token_hash,
    proto::task::{CreateTaskRequest, GetTaskStatusRequest, task_client::TaskClient},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const LONG: Duration = Duration::from_secs(20);

fn console_url(service: &TestService, path: &str) -> String {
    format!("http://{}{path}", service.metrics_addr)
}

/// Redis, the tests' Processor (accepting every task, writing nothing) and the service.
struct Stack {
    redis: TestRedis,
    processor: FakeProcessor,
    service: TestService,
    client: TaskClient<Channel>,
}

impl Stack {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let redis = TestRedis::start().await;
        let processor = FakeProcessor::start(Reply::Accept, None).await;
        let service = TestService::start(&vars(&redis, &processor, extra)).await;
        let client = service.client().await;
        Self {
            redis,
            processor,
            service,
            client,
        }
    }

    /// A task for `key` that the Processor has accepted (PENDING, its entry gone).
    async fn accepted_task(&mut self, key: &str) -> String {
        let task = create(&mut self.client, key).await;
        self.redis.wait_accepted(&task).await;
        task
    }
}

#[tokio::test]
async fn the_console_shows_a_task_created_over_grpc_and_follows_the_processor_live() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_JAEGER_URL", "http://jaeger.example:16686")],
    ))
    .await;
    let mut client = service.client().await;
    // Created with the Gateway's trace context, which the service carries on.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(CreateTaskRequest {
        original_file_key: "uploads/cat.mp4".into(),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let task = client
        .create_task(request)
        .await
        .unwrap()
        .into_inner()
        .task_id;
    redis.wait_accepted(&task).await;

    let browser = Browser::start().await;
    browser
        .client
        .goto(&console_url(&service, "/console"))
        .await
        .unwrap();
    browser.wait_for_text("#newest", &task, LONG).await;
    assert!(browser.text("#newest").await.contains("uploads/cat.mp4"));
    assert!(browser.text(".legend").await.contains("1 created"));
    assert_eq!(browser.text("#circuit").await, "closed");
    assert!(browser.text("#redis").await.starts_with("answers"));
    browser.screenshot("overview").await;

    // The task's page; a marker in the page shows that nothing reloads it.
    browser
        .client
        .find(Locator::Css(&format!(
            "#newest a[href='/console/tasks/{task}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("#task-id", &task, LONG).await;
    assert_eq!(browser.text("#task-status").await, "PENDING");
    browser
        .client
        .execute("window.__notReloaded = true;", vec![])
        .await
        .unwrap();
    let link = browser
        .client
        .find(Locator::Css("#task-trace a"))
        .await
        .expect("a link to the creation's trace");
    assert_eq!(
        link.attr("href").await.unwrap().as_deref(),
        Some(format!("http://jaeger.example:16686/trace/{trace_id}").as_str())
    );

    // The Processor writes, as the contract's Processor does: plain HSETs.
    let mut conn = redis.connection().await;
    let key = format!("task:{task}");
    let _: () = conn.hset(&key, "status", "PROCESSING").await.unwrap();
    browser
        .wait_for_text("#task-status", "PROCESSING", LONG)
        .await;
    let _: () = conn
        .hset_multiple(
            &key,
            &[
                ("status", "COMPLETED"),
                ("result_file_key", "processed/cat.mp4"),
            ],
        )
        .await
        .unwrap();
    browser
        .wait_for_text("#task-status", "COMPLETED", LONG)
        .await;
    assert_eq!(browser.text("#task-result").await, "processed/cat.mp4");
    let same_page = browser
        .client
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same_page,
        serde_json::Value::Bool(true),
        "the page was reloaded"
    );
    assert!(
        !browser.has("#cancel").await,
        "a final task offers no cancel"
    );
    browser.screenshot("task").await;

    // The tasks page, filtered.
    browser
        .client
        .goto(&console_url(&service, "/console/tasks?status=COMPLETED"))
        .await
        .unwrap();
    browser.wait_for_text("#tasks", &task, LONG).await;
    browser
        .client
        .goto(&console_url(&service, "/console/tasks?status=PENDING"))
        .await
        .unwrap();
    assert!(browser.has("#no-tasks").await);
    browser
        .client
        .goto(&console_url(&service, "/console/tasks"))
        .await
        .unwrap();
    browser.wait_for_text("#tasks", &task, LONG).await;
    browser.screenshot("tasks").await;
    browser.close().await;
    service.stop().await;
}

#[tokio::test]
async fn cancel_from_the_page_is_seen_by_get_task_status_and_create_again_makes_a_new_task() {
    let mut stack = Stack::start(&[]).await;
    let task = stack.accepted_task("uploads/dog.mp4").await;
    let Stack {
        processor,
        service,
        mut client,
        ..
    } = stack;

    let browser = Browser::start().await;
    browser
        .client
        .goto(&console_url(&service, &format!("/console/tasks/{task}")))
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("#cancel-form input[name=reason]"))
        .await
        .unwrap()
        .send_keys("stuck since the upload")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("#task-status", "FAILED", LONG).await;
    let seen = status(&mut client, &task).await;
    assert_eq!(seen.status, "FAILED");
    assert_eq!(
        seen.error_message,
        "cancelled: stuck since the upload (from the console)"
    );
    assert_eq!(
        processor.cancels(),
        std::slice::from_ref(&task),
        "the Processor was asked"
    );

    // FAILED: it can be created again, as a new task for the same file.
    browser
        .client
        .find(Locator::Css("#again"))
        .await
        .expect("create again is offered for a FAILED task")
        .click()
        .await
        .unwrap();
    let new_task = eventually(LONG, "the new task's page", || async {
        // Until the new page is there, the old one (or none, while it loads) is.
        let shown = browser.text_now("#task-id").await?;
        (shown != task).then_some(shown)
    })
    .await;
    let again = status(&mut client, &new_task).await;
    assert_eq!(again.original_file_key, "uploads/dog.mp4");
    assert_ne!(new_task, task);
    browser.close().await;
    service.stop().await;
}

#[tokio::test]
async fn a_file_key_holding_markup_renders_as_text() {
    // Bound first: the fields not moved out (Redis, the Processor) live as long as `stack`.
    let stack = Stack::start(&[]).await;
    let Stack {
        service,
        mut client,
        ..
    } = stack;
    let key = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">.mp4"#;
    let task = create(&mut client, key).await;

    let browser = Browser::start().await;
    for path in [
        "/console",
        "/console/tasks",
        &format!("/console/tasks/{task}"),
    ] {
        browser
            .client
            .goto(&console_url(&service, path))
            .await
            .unwrap();
        let cell = if path.ends_with(&task) {
            "#task-file"
        } else {
            "#tasks td.file, #newest td.file"
        };
        browser.wait_for_text(cell, key, LONG).await;
        // Through a refresh too (the parts are replaced by script).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let clean = browser
            .client
            .execute(
                "return window.__xss === undefined \
                 && document.querySelectorAll('script').length === 1 \
                 && document.querySelectorAll('main img').length === 0;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(clean, serde_json::Value::Bool(true), "markup ran on {path}");
        assert!(browser.text(cell).await.contains(key));
    }
    browser.close().await;
    service.stop().await;
}

#[tokio::test]
async fn read_only_shows_no_actions_and_refuses_them() {
    let mut stack = Stack::start(&[("TASK_DASHBOARD", "readonly")]).await;
    let task = stack.accepted_task("uploads/ro.mp4").await;
    let Stack {
        service,
        mut client,
        ..
    } = stack;

    let browser = Browser::start().await;
    browser
        .client
        .goto(&console_url(&service, &format!("/console/tasks/{task}")))
        .await
        .unwrap();
    browser.wait_for_text("#task-status", "PENDING", LONG).await;
    assert!(browser.text("header").await.contains("read-only"));
    assert!(!browser.has("#cancel").await && !browser.has("form.action").await);
    browser.screenshot("task-readonly").await;
    browser.close().await;

    let answer = Http::new(service.metrics_addr)
        .post(&format!("/console/tasks/{task}/cancel"), "csrf=x")
        .await;
    assert_eq!(answer.status, 403);
    assert!(
        answer.body.contains("read-only (TASK_DASHBOARD=readonly)"),
        "{}",
        answer.body
    );
    assert_eq!(status(&mut client, &task).await.status, "PENDING");
    service.stop().await;
}

// --- over plain HTTP -----------------------------------------------------------------------------

/// An HTTP/1.1 answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The value of the first `Set-Cookie` for `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let value = line.strip_prefix("set-cookie: ")?;
            let pair = value.split(';').next()?;
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.to_owned())
        })
    }

    fn location(&self) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix("location: "))
    }

    /// The form token the page carries.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form") + 19;
        self.body[at..at + 64].to_owned()
    }
}

/// A client keeping a cookie jar of one visitor.
struct Http {
    addr: SocketAddr,
    cookies: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: Vec::new(),
            headers: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> Answer {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            head += &format!("Cookie: {}\r\n", jar.join("; "));
        }
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        if method == "POST" {
            head += &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head += "\r\n";
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let answer = Answer {
            status: head[9..12].parse().unwrap(),
            head: head.to_ascii_lowercase().replace("\r\n", "\n"),
            body: body.to_owned(),
        };
        for name in ["task_console_visitor", "task_console_session"] {
            if let Some(value) = answer.cookie(name) {
                self.cookies.retain(|(n, _)| n != name);
                self.cookies.push((name.to_owned(), value));
            }
        }
        answer
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, "").await
    }

    async fn post(&mut self, path: &str, body: &str) -> Answer {
        self.send("POST", path, body).await
    }
}

#[tokio::test]
async fn a_form_not_from_the_consoles_page_changes_nothing() {
    let mut stack = Stack::start(&[]).await;
    let task = stack.accepted_task("uploads/csrf.mp4").await;
    let Stack {
        service,
        mut client,
        ..
    } = stack;
    let cancel = format!("/console/tasks/{task}/cancel");

    // No cookie, no token: refused.
    let forged = Http::new(service.metrics_addr)
        .post(&cancel, "reason=x")
        .await;
    assert_eq!(forged.status, 403);
    assert!(
        forged.body.contains("did not come from this console"),
        "{}",
        forged.body
    );

    // A visitor's cookie with another visitor's token: refused.
    let mut victim = Http::new(service.metrics_addr);
    let page = victim.get(&format!("/console/tasks/{task}")).await;
    assert_eq!(page.status, 200);
    let token = page.csrf();
    let mut attacker = Http::new(service.metrics_addr);
    attacker.get("/console").await;
    assert_eq!(
        attacker
            .post(&cancel, &format!("csrf={token}"))
            .await
            .status,
        403
    );
    // The right token, from another site: refused.
    victim
        .headers
        .push(("Sec-Fetch-Site".into(), "cross-site".into()));
    assert_eq!(
        victim.post(&cancel, &format!("csrf={token}")).await.status,
        403
    );
    assert_eq!(status(&mut client, &task).await.status, "PENDING");

    // The page's own form: done, and GetTaskStatus sees it.
    victim.headers.clear();
    let done = victim
        .post(&cancel, &format!("csrf={token}&reason=by+hand"))
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location(),
        Some(format!("/console/tasks/{task}").as_str())
    );
    let seen = wait_for_status(&client, &task, "FAILED", LONG).await;
    assert_eq!(seen.error_message, "cancelled: by hand (from the console)");

    // Again on a final task: the API's refusal, as a page with its status.
    let again = victim.post(&cancel, &format!("csrf={token}")).await;
    assert_eq!(again.status, 409, "{}", again.body);
    // Bad input: the API's message.
    let bad = victim.get("/console/tasks/not-a-uuid").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("task_id"), "{}", bad.body);
    let missing = victim.get(&format!("/console/tasks/{}", uuid_v4())).await;
    assert_eq!(missing.status, 404);
    let filter = victim.get("/console/tasks?status=DONE").await;
    assert_eq!(filter.status, 400);
    // Security headers on every page.
    assert!(
        page.head
            .contains("content-security-policy: default-src 'none'; script-src 'self'")
    );
    assert!(page.head.contains("x-frame-options: deny"));
    service.stop().await;
}

fn uuid_v4() -> String {
    task_service::task::TaskId::new_v4().to_string()
}

#[tokio::test]
async fn with_tokens_the_console_needs_a_sign_in_and_each_action_its_scope() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let dir = common::tempdir::Dir::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "reader read {}\nops admin {}\n",
            token_hash("reader-token"),
            token_hash("ops-token")
        ),
    )
    .unwrap();
    let tokens_var = tokens.display().to_string();
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[("TASK_AUTH_TOKENS_FILE", &tokens_var)],
    ))
    .await;
    let mut client = service.client().await;
    let task = client
        .create_task(as_ops(CreateTaskRequest {
            original_file_key: "uploads/auth.mp4".into(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    redis.wait_accepted(&task).await;
    let task_page = format!("/console/tasks/{task}");
    let cancel = format!("/console/tasks/{task}/cancel");

    // Nobody signed in: the pages lead to the sign-in.
    let mut browser = Http::new(service.metrics_addr);
    let first = browser.get(&task_page).await;
    assert_eq!(
        (first.status, first.location()),
        (303, Some("/console/login"))
    );
    assert_eq!(browser.get("/console/part/overview").await.status, 401);
    let login = browser.get("/console/login").await;
    let token = login.csrf();
    let wrong = browser
        .post("/console/login", &format!("csrf={token}&token=guess"))
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not one of TASK_AUTH_TOKENS_FILE"));

    // A reader sees the task, is offered no action, and is refused one.
    let signed_in = browser
        .post(
            "/console/login",
            &format!("csrf={token}&token=reader-token"),
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let session = signed_in.cookie("task_console_session").expect("a session");
    assert!(
        !session.contains("reader-token"),
        "the cookie holds no token"
    );
    let page = browser.get(&task_page).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("reader (read)"));
    assert!(!page.body.contains("cancel-form"));
    let refused = browser.post(&cancel, &format!("csrf={token}")).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .body
            .contains("reader has scope read; this needs admin"),
        "{}",
        refused.body
    );

    // An admin, by bearer token as a script would: offered and allowed.
    let mut ops = Http::new(service.metrics_addr);
    ops.headers
        .push(("Authorization".into(), "Bearer ops-token".into()));
    let page = ops.get(&task_page).await;
    assert!(page.body.contains("cancel-form"));
    let done = ops.post(&cancel, &format!("csrf={}", page.csrf())).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let seen = client
        .get_task_status(as_ops(GetTaskStatusRequest {
            task_id: task.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (seen.status.as_str(), seen.error_message.as_str()),
        ("FAILED", "cancelled: from the console, by ops")
    );

    // Signing out ends the session.
    let out = browser
        .post("/console/logout", &format!("csrf={token}"))
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.get(&task_page).await.status, 303);
    service.stop().await;
}

/// `message` with the admin's token.
fn as_ops<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", "Bearer ops-token".parse().unwrap());
    request
}

#[tokio::test]
async fn switched_off_the_listener_serves_metrics_alone() {
    let stack = Stack::start(&[("TASK_DASHBOARD", "off")]).await;
    let mut http = Http::new(stack.service.metrics_addr);
    assert_eq!(http.get("/console").await.status, 404);
    assert_eq!(http.get("/").await.status, 404);
    assert_eq!(http.get("/metrics").await.status, 200);
    stack.service.stop().await;
}
