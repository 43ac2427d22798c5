//! Security on real sockets and real Redis: TLS and its rotation, mTLS, scoped tokens (and a
//! client certificate standing for a caller), the caller as the rate-limit key, the Processor
//! called over mTLS, Redis through the documented least-privilege ACL user over TLS, and no
//! secret in anything the service prints or answers.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use bb8_redis::redis;
use common::{
    FakeProcessor, Reply, ServiceProcess, TestRedis, TestService,
    calls::{create_request, vars},
    eventually,
    redis::RedisOptions,
    service::CapturedChild,
    tempdir,
    tls::{Pair, Pki},
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use task_service::{
    auth::token_hash,
    proto::task::{GetTaskStatusRequest, task_client::TaskClient},
};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A client over TLS trusting `ca`, presenting `identity` if given.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<&Pair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some(pair) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pair.cert).unwrap(),
            std::fs::read(&pair.key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// The certificate the server presents to a new handshake.
async fn presented_certificate(addr: std::net::SocketAddr, ca: &Path) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn file_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn tls_vars(server: &Pair, client_ca: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("TASK_TLS_CERT_FILE", server.cert.display().to_string()),
        ("TASK_TLS_KEY_FILE", server.key.display().to_string()),
        ("TASK_TLS_RELOAD_INTERVAL", "100ms".to_owned()),
    ];
    if let Some(ca) = client_ca {
        v.push(("TASK_TLS_CLIENT_CA_FILE", ca.display().to_string()));
    }
    v
}

fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn tls_only_and_certificates_rotate_without_dropping_connections() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let pki = Pki::new("rotation");
    let server = pki.server("server");
    let extra = tls_vars(&server, None);
    let service = TestService::start(&vars(&redis, &processor, &borrowed(&extra))).await;

    let plain = Endpoint::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    let plain_works = match plain {
        Ok(channel) => TaskClient::new(channel)
            .create_task(create_request("a.mp4"))
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_works, "plaintext is refused when TLS is on");

    let mut before = TaskClient::new(tls_channel(service.addr, &pki.ca_file, None).await.unwrap());
    let task = before
        .create_task(create_request("a.mp4"))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    assert_eq!(
        presented_certificate(service.addr, &pki.ca_file).await,
        file_der(&server.cert)
    );

    let rotated = pki.server("server");
    let new_cert = file_der(&rotated.cert);
    eventually(Duration::from_secs(10), "the new certificate", || async {
        (presented_certificate(service.addr, &pki.ca_file).await == new_cert).then_some(())
    })
    .await;
    // The connection opened before the rotation still serves.
    before
        .get_task_status(GetTaskStatusRequest { task_id: task })
        .await
        .expect("a connection from before the rotation keeps working");
    service.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let pki = Pki::new("mtls");
    let other = Pki::new("other");
    let server = pki.server("server");
    let extra = tls_vars(&server, Some(&pki.ca_file));
    let service = TestService::start(&vars(&redis, &processor, &borrowed(&extra))).await;

    let call = |identity: Option<Pair>| {
        let ca = pki.ca_file.clone();
        let addr = service.addr;
        async move {
            let channel = tls_channel(addr, &ca, identity.as_ref()).await.ok()?;
            TaskClient::new(channel)
                .create_task(create_request("a.mp4"))
                .await
                .ok()
        }
    };
    assert!(call(None).await.is_none(), "no client certificate");
    assert!(
        call(Some(other.client("stranger", "stranger")))
            .await
            .is_none(),
        "a client certificate from another CA"
    );
    assert!(
        call(Some(pki.client("gateway", "gateway"))).await.is_some(),
        "a client certificate from the CA"
    );
    service.stop().await;
}

#[tokio::test]
async fn tokens_grant_their_scopes_follow_the_file_and_key_the_rate_limit() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let dir = tempdir::Dir::new();
    let tokens = dir.path().join("tokens");
    let write_tokens = |extra: &str| {
        std::fs::write(
            &tokens,
            format!(
                "# callers\nreader read {}\nwriter write {}\n{extra}",
                token_hash("reader-token"),
                token_hash("writer-token")
            ),
        )
        .unwrap();
    };
    write_tokens("");
    let tokens_var = tokens.display().to_string();
    let service = TestService::start(&vars(
        &redis,
        &processor,
        &[
            ("TASK_AUTH_TOKENS_FILE", &tokens_var),
            ("TASK_TLS_RELOAD_INTERVAL", "100ms"),
            ("TASK_RATE_LIMIT_PER_CLIENT", "5"),
            ("TASK_RATE_LIMIT_PER_CLIENT_BURST", "5"),
        ],
    ))
    .await;
    let mut client = service.client().await;

    let no_token = client
        .create_task(create_request("a.mp4"))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    assert!(
        no_token.message().contains("authorization"),
        "{}",
        no_token.message()
    );
    let unknown = client
        .create_task(with_token(create_request("a.mp4").into_inner(), "guess"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let denied = client
        .create_task(with_token(
            create_request("a.mp4").into_inner(),
            "reader-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("write scope") && denied.message().contains("reader"),
        "{}",
        denied.message()
    );
    let task = client
        .create_task(with_token(
            create_request("a.mp4").into_inner(),
            "writer-token",
        ))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    client
        .get_task_status(with_token(
            GetTaskStatusRequest { task_id: task },
            "reader-token",
        ))
        .await
        .expect("read scope reads");

    // Health stays open for probes.
    HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", service.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .check(HealthCheckRequest {
        service: String::new(),
    })
    .await
    .expect("health needs no token");

    // The caller is the rate-limit key: the writer spends its burst, the reader (same address)
    // keeps its own.
    let mut limited = 0;
    for _ in 0..10 {
        if let Err(status) = client
            .create_task(with_token(
                create_request("a.mp4").into_inner(),
                "writer-token",
            ))
            .await
        {
            assert_eq!(status.code(), Code::ResourceExhausted);
            limited += 1;
        }
    }
    assert!(limited >= 4, "the writer was limited {limited} times");
    client
        .get_task_status(with_token(
            GetTaskStatusRequest {
                task_id: task_service::task::TaskId::new_v4().to_text(),
            },
            "reader-token",
        ))
        .await
        .map(drop)
        .or_else(|s| {
            if s.code() == Code::NotFound {
                Ok(())
            } else {
                Err(s)
            }
        })
        .expect("another caller from the same address is not limited");

    // A caller added to the file is known shortly after, without a restart; a broken file keeps
    // the callers in force.
    write_tokens(&format!("ops admin {}\n", token_hash("ops-token")));
    eventually(Duration::from_secs(10), "the new caller", || {
        let mut client = client.clone();
        async move {
            client
                .create_task(with_token(
                    create_request("a.mp4").into_inner(),
                    "ops-token",
                ))
                .await
                .ok()
        }
    })
    .await;
    std::fs::write(&tokens, "this line is not a caller\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .get_task_status(with_token(
            GetTaskStatusRequest {
                task_id: task_service::task::TaskId::new_v4().to_text(),
            },
            "reader-token",
        ))
        .await
        .map(drop)
        .or_else(|s| {
            if s.code() == Code::NotFound {
                Ok(())
            } else {
                Err(s)
            }
        })
        .expect("a file that does not parse keeps the previous callers");
    service.stop().await;
}

#[tokio::test]
async fn a_client_certificate_can_stand_for_a_caller() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let pki = Pki::new("callers");
    let server = pki.server("server");
    let dir = tempdir::Dir::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "oncall admin cert:oncall.ops\n").unwrap();
    let mut extra = tls_vars(&server, Some(&pki.ca_file));
    extra.push(("TASK_AUTH_TOKENS_FILE", tokens.display().to_string()));
    let service = TestService::start(&vars(&redis, &processor, &borrowed(&extra))).await;

    let oncall = pki.client("oncall", "oncall.ops");
    let mut client = TaskClient::new(
        tls_channel(service.addr, &pki.ca_file, Some(&oncall))
            .await
            .unwrap(),
    );
    client
        .create_task(create_request("a.mp4"))
        .await
        .expect("the listed certificate is a caller");
    let stranger = pki.client("stranger", "stranger.ops");
    let mut client = TaskClient::new(
        tls_channel(service.addr, &pki.ca_file, Some(&stranger))
            .await
            .unwrap(),
    );
    let status = client
        .create_task(create_request("a.mp4"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("stranger.ops"),
        "{}",
        status.message()
    );
    service.stop().await;
}

#[tokio::test]
async fn the_processor_is_called_over_mtls() {
    let redis = TestRedis::start().await;
    let pki = Pki::new("processor");
    let processor_cert = pki.server("processor");
    let service_cert = pki.client("service", "task-service");
    let storage = tempdir::Dir::new();
    std::fs::write(storage.path().join("movie.mp4"), b"frames").unwrap();
    let storage_path = storage.text();

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dev-processor"));
    command
        .env_clear()
        .envs(redis.vars())
        .env("LOCAL_STORAGE_PATH", &storage_path)
        .env("DEV_PROCESSOR_LISTEN", "127.0.0.1:0")
        .env("DEV_PROCESSOR_TLS_CERT_FILE", &processor_cert.cert)
        .env("DEV_PROCESSOR_TLS_KEY_FILE", &processor_cert.key)
        .env("DEV_PROCESSOR_TLS_CLIENT_CA_FILE", &pki.ca_file);
    let dev_processor =
        CapturedChild::spawn(command, &["dev-processor (reference Processor) listening"]).await;
    let processor_addr = dev_processor.announced["dev-processor (reference Processor) listening"];

    let mut service_vars = redis.vars();
    for (k, v) in [
        ("PROCESSOR_GRPC_ADDR", processor_addr.to_string()),
        ("PROCESSOR_TLS_CA_FILE", pki.ca_file.display().to_string()),
        (
            "PROCESSOR_TLS_CERT_FILE",
            service_cert.cert.display().to_string(),
        ),
        (
            "PROCESSOR_TLS_KEY_FILE",
            service_cert.key.display().to_string(),
        ),
        ("PROCESSOR_TLS_SERVER_NAME", "localhost".to_owned()),
        ("LOCAL_STORAGE_PATH", storage_path.clone()),
    ] {
        service_vars.push((k.to_owned(), v));
    }
    let service = TestService::start(&service_vars).await;
    let mut client = service.client().await;
    let task = common::calls::create(&mut client, "movie.mp4").await;
    let done = common::calls::final_status(&client, &task, Duration::from_secs(20)).await;
    assert_eq!(done.status, "COMPLETED", "{}", done.error_message);
    assert!(storage.path().join(&task).join("result.mp4").exists());
    service.stop().await;
    assert!(dev_processor.terminate().await.success());
}

/// A Redis that speaks TLS (and plaintext, for the test's own look) with the documented ACL user.
async fn redis_with_acl_and_tls(pki: &Pki, password: &str) -> TestRedis {
    let server = pki.server("redis");
    let acl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/redis-acl.conf"))
        .unwrap()
        .replace(">CHANGE-ME", &format!(">{password}"));
    let rule = acl.trim().strip_prefix("user ").expect("one `user` line");
    let mut args: Vec<String> = vec!["--user".into()];
    args.extend(rule.split_whitespace().map(str::to_owned));
    args.extend(
        [
            "--tls-cert-file",
            "/tls/redis.pem",
            "--tls-key-file",
            "/tls/redis-key.pem",
            "--tls-ca-cert-file",
            "/tls/ca.pem",
            "--tls-auth-clients",
            "optional",
            // The documented user may not CONFIG SET: the operator turns notifications on.
            "--notify-keyspace-events",
            "Khgx",
        ]
        .map(str::to_owned),
    );
    TestRedis::start_with(RedisOptions {
        args,
        files: vec![
            (
                "/tls/redis.pem".into(),
                std::fs::read(&server.cert).unwrap(),
            ),
            (
                "/tls/redis-key.pem".into(),
                std::fs::read(&server.key).unwrap(),
            ),
            ("/tls/ca.pem".into(), std::fs::read(&pki.ca_file).unwrap()),
        ],
        tls: true,
    })
    .await
}

fn acl_tls_vars(redis: &TestRedis, pki: &Pki, password: &str) -> Vec<(String, String)> {
    [
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", redis.tls_port.unwrap().to_string()),
        ("REDIS_TLS", "on".to_owned()),
        ("REDIS_TLS_CA_FILE", pki.ca_file.display().to_string()),
        ("REDIS_USERNAME", "task-service".to_owned()),
        ("REDIS_PASSWORD", password.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test]
async fn redis_through_the_documented_acl_user_over_tls() {
    let pki = Pki::new("redis");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let redis = redis_with_acl_and_tls(&pki, &password).await;
    // The fake Processor writes as the default user, on the plaintext port.
    let processor_store = common::service::redis_store(&common::service::config(&redis.vars()));
    let processor = FakeProcessor::start(Reply::Complete, Some(processor_store)).await;
    let mut service_vars = acl_tls_vars(&redis, &pki, &password);
    service_vars.push(processor.addr_var());
    // The read cache too: its RESP3 HELLO and CLIENT TRACKING, through the user.
    service_vars.push(("TASK_READ_CACHE_ENTRIES".into(), "1000".into()));
    let service = ServiceProcess::start(&service_vars).await;
    let mut client = common::service::client(service.addr).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        tasks.push(common::calls::create(&mut client, "a.mp4").await);
    }
    for task in &tasks {
        let done = common::calls::final_status(&client, task, Duration::from_secs(20)).await;
        assert_eq!(done.status, "COMPLETED", "{}", done.error_message);
    }
    eventually(
        Duration::from_secs(10),
        "a read answered from memory",
        || {
            let mut client = client.clone();
            let (task, metrics) = (tasks[0].clone(), service.metrics_addr);
            async move {
                common::calls::status(&mut client, &task).await;
                let hits = common::metrics::scrape(metrics)
                    .await
                    .get("task_read_cache_reads_total{result=\"hit\"}")
                    .copied()
                    .unwrap_or(0.0);
                (hits > 0.0).then_some(())
            }
        },
    )
    .await;
    // A watch (its keyspace subscription, the cancellations channel) and a list, through the user.
    processor.set_default(Reply::Accept);
    let watched = common::calls::create(&mut client, "a.mp4").await;
    let mut processor_conn = redis.connection().await;
    let follow = tokio::spawn({
        let client = client.clone();
        let watched = watched.clone();
        async move { common::calls::watch(&client, &watched, Duration::from_secs(20)).await }
    });
    eventually(
        Duration::from_secs(10),
        "the Processor to be called",
        || {
            let called = processor.calls_for(&watched) > 0;
            async move { called.then_some(()) }
        },
    )
    .await;
    for status in ["PROCESSING", "COMPLETED"] {
        let _: () = redis::AsyncCommands::hset(
            &mut processor_conn,
            format!("task:{watched}"),
            "status",
            status,
        )
        .await
        .unwrap();
    }
    let seen = follow.await.unwrap();
    assert!(seen.end.is_ok(), "{:?}", seen.end);
    assert_eq!(seen.statuses().last(), Some(&"COMPLETED"));
    let listed = client
        .list_tasks(task_service::proto::task::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks.len(), 6);
    // Let the reaper run its every command a few times.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut conn = redis.connection().await;
    let denied: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(denied.is_empty(), "the ACL refused commands: {denied:?}");
    assert!(service.terminate().await.success());
}

#[tokio::test]
async fn no_secret_appears_in_what_the_service_prints_or_answers() {
    let pki = Pki::new("secrets");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let redis = redis_with_acl_and_tls(&pki, &password).await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let dir = tempdir::Dir::new();
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, format!("{wrong}\n")).unwrap();
    let mut service_vars: Vec<(String, String)> = acl_tls_vars(&redis, &pki, "unused")
        .into_iter()
        .filter(|(k, _)| k != "REDIS_PASSWORD")
        .collect();
    service_vars.push((
        "REDIS_PASSWORD_FILE".into(),
        password_file.display().to_string(),
    ));
    service_vars.push(processor.addr_var());
    service_vars.push(("RUST_LOG".into(), "debug".into()));
    let service = ServiceProcess::start(&service_vars).await;
    let mut client = common::service::client(service.addr).await;
    let refused = client
        .create_task(create_request("a.mp4"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal);
    assert!(!refused.message().contains(&wrong), "{}", refused.message());
    // Let it log its failed reads and health checks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = service.lines();
    assert!(
        lines.len() > 3,
        "the service logged its failures: {lines:?}"
    );
    assert!(service.terminate().await.success());
    for line in &lines {
        assert!(
            !line.contains(&wrong) && !line.contains(&password),
            "a secret in: {line}"
        );
    }
}
