//! The files shipped for Prometheus and Grafana are checked, not just shipped: promtool accepts
//! the configuration and the alert rules and passes the rules' unit tests, and every metric the
//! Grafana dashboard and the alerts query is one the service really exports (read from a
//! running service's `/metrics`).

mod common;

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use common::{
    FakeProcessor, Reply, TestRedis, TestService,
    calls::{create, vars, wait_for_status},
};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repo("observability/prometheus"))
        .output()
        .expect("promtool runs (Debian's prometheus package ships it: apt-get install prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_configuration_and_rules_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "config", "prometheus.yml"]);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    promtool(&["check", "rules", "alerts.yml"]);
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every alert in alerts.yml has unit tests that see it fire, and at least one case where it
/// stays silent.
#[test]
fn every_alert_is_tested_firing_and_silent() {
    let rules = std::fs::read_to_string(repo("observability/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(repo("observability/prometheus/alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for alert in alerts {
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_labels")),
            "no test sees {alert} fire"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "no test sees {alert} stay silent"
        );
    }
}

/// The `task_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("task_") {
        let start = at + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        at = end.max(start + 1);
    }
    names
}

/// The sample names a `/metrics` text can hold: each family's, with its type's suffixes.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let Some((family, kind)) = rest.split_once(' ') else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{family}{suffix}"));
        }
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_query_only_metrics_the_service_exports() {
    let redis = TestRedis::start().await;
    let processor = FakeProcessor::start(Reply::Accept, None).await;
    let service = TestService::start(&vars(&redis, &processor, &[])).await;
    let mut client = service.client().await;
    // Some work, so that every family has been touched.
    let task = create(&mut client, "a.mp4").await;
    let _: () = bb8_redis::redis::AsyncCommands::hset(
        &mut redis.connection().await,
        format!("task:{task}"),
        "status",
        "COMPLETED",
    )
    .await
    .unwrap();
    wait_for_status(&client, &task, "COMPLETED", Duration::from_secs(20)).await;
    let exported = exported(&common::metrics::exposition(service.metrics_addr).await);
    assert!(
        exported.contains("task_tasks_created_total"),
        "{exported:?}"
    );

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("observability/grafana/task-service.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    let alerts = std::fs::read_to_string(repo("observability/prometheus/alerts.yml")).unwrap();
    let mut seen = BTreeSet::new();
    for (source, text) in queries
        .iter()
        .map(|q| ("observability/grafana/task-service.json", q.as_str()))
        .chain([("observability/prometheus/alerts.yml", alerts.as_str())])
    {
        for name in metric_names(text) {
            assert!(
                exported.contains(&name),
                "{source} queries {name}, which the service does not export"
            );
            seen.insert(name);
        }
    }
    // The figures the issue asks the dashboard for are there.
    for wanted in [
        "task_rpc_requests_total",
        "task_rpc_duration_seconds_bucket",
        "task_queue_depth",
        "task_queue_oldest_age_seconds",
        "task_circuit_breaker_state",
        "task_dispatch_retries_total",
        "task_dispatch_rescues_total",
        "task_processor_calls_in_flight",
        "task_store_up",
    ] {
        assert!(seen.contains(wanted), "nothing queries {wanted}");
    }
    service.stop().await;
}

#[test]
fn names_are_found_whole() {
    assert_eq!(
        metric_names("rate(task_a_total[1m]) / x_task_b + task_c{job=\"task-service\"}"),
        ["task_a_total", "task_c"].map(str::to_owned).into()
    );
}
