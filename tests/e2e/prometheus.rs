//! The monitoring pieces an operator deploys next to Ledge (`deploy/prometheus`,
//! `deploy/grafana`), checked with the Debian `prometheus` package's own tools: the alert
//! rules load and fire as their unit tests say, and every dashboard query parses.
//!
//! `.ci/run` installs the package and sets `LEDGE_REQUIRE_PROMETHEUS=1`: there a missing
//! `promtool` fails the test; elsewhere the test says it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `promtool`, or `None` (the test skips out loud) where it is absent and not required.
pub(crate) fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var_os("LEDGE_REQUIRE_PROMETHEUS").is_some_and(|value| value == "1") {
        panic!("promtool is missing and LEDGE_REQUIRE_PROMETHEUS=1");
    }
    eprintln!("skipped: promtool not installed (apt-get install prometheus)");
    None
}

fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every PromQL expression of the Grafana dashboard, with Grafana's variables replaced by
/// what Grafana would send (`$__rate_interval` by a duration, the template variables by
/// "all"), paired with its panel's title.
pub(crate) fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/ledge.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$group", ".*");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        // `label_values(METRIC, LABEL)` is Grafana's, not PromQL: its metric must exist.
        let metric = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        queries.push((format!("variable {}", variable["name"]), metric.to_string()));
    }
    queries
}

/// The metric names a PromQL expression reads (`ledge_*` only; histogram series suffixes
/// removed so they name the family).
pub(crate) fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut at = 0;
    while let Some(found) = expr[at..].find("ledge_") {
        let start = at + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut name = &expr[start..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            // `ledge_consumer_group_lag_sum` is a gauge of its own, not a histogram's sum.
            if name.ends_with(suffix) && name != "ledge_consumer_group_lag_sum" {
                name = &name[..name.len() - suffix.len()];
            }
        }
        if !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
        at = end;
    }
    names
}

#[test]
fn alert_rules_load_and_fire_as_their_unit_tests_say() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = repo_root().join("deploy/prometheus");
    let (ok, text) = run(Command::new(promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let (ok, text) = run(Command::new(promtool)
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir));
    assert!(ok, "{text}");

    // The unit tests can fail: an alert whose threshold moved no longer matches them.
    let scratch = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    assert!(rules.contains("ledge_partitions_offline > 0"));
    std::fs::write(
        scratch.path().join("alerts.yml"),
        rules.replace(
            "ledge_partitions_offline > 0",
            "ledge_partitions_offline > 5",
        ),
    )
    .unwrap();
    std::fs::copy(
        dir.join("alerts_test.yml"),
        scratch.path().join("alerts_test.yml"),
    )
    .unwrap();
    let (ok, text) = run(Command::new(promtool)
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(scratch.path()));
    assert!(!ok, "a changed rule still passed its unit tests: {text}");
    assert!(text.contains("LedgePartitionsOffline"), "{text}");
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    let Some(promtool) = promtool() else {
        return;
    };
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    // promtool parses PromQL when it checks recording rules: one rule per query, so an error
    // names the panel.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, (_, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard_query_{index}\n        expr: {expr}\n"
        ));
    }
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("dashboard.yml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, text) = run(Command::new(promtool).arg("check").arg("rules").arg(&file));
    assert!(ok, "{text}\n{rules}");

    // And a broken query is caught: the check is not vacuous.
    std::fs::write(&file, rules.replace("sum by (topic) (", "sum by (topic (")).unwrap();
    let (ok, _) = run(Command::new(promtool).arg("check").arg("rules").arg(&file));
    assert!(!ok, "a query with unbalanced parentheses passed");
}

#[test]
fn metric_names_are_read_from_queries() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(ledge_fsync_duration_seconds_bucket[1m]))) + ledge_consumer_group_lag_sum"
        ),
        [
            "ledge_fsync_duration_seconds",
            "ledge_consumer_group_lag_sum"
        ]
    );
}

/// `GET path` over HTTP/1.0 (so neither side chunks the body): (status, body).
pub(crate) fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Percent-encodes a query parameter's value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include every pair of `labels`, from
/// Prometheus text.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels.iter().all(|(key, value)| {
                rest.split(',')
                    .any(|pair| pair == format!("{key}=\"{value}\""))
            })
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Metric families a scrape declares (`# TYPE name kind`), with the names their samples
/// use (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms).
fn declared_families(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.push(name.to_string());
        if kind == "counter" && !name.ends_with("_total") {
            names.push(format!("{name}_total"));
        }
    }
    names
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks Prometheus `query` until `accept` takes the first result's value (about a minute).
fn query_until(
    prometheus: std::net::SocketAddr,
    query: &str,
    accept: impl Fn(f64) -> bool,
) -> Result<f64, String> {
    let mut last = String::new();
    // 120 tries half a second apart: about a minute.
    for _ in 0..120 {
        if let Ok(stream) = std::net::TcpStream::connect(prometheus) {
            drop(stream);
            let (status, body) = http_get(
                prometheus,
                &format!("/api/v1/query?query={}", encode(query)),
            );
            if status == 200 {
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                let value = answer["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|value| value.parse::<f64>().ok());
                if let Some(value) = value
                    && accept(value)
                {
                    return Ok(value);
                }
            }
            last = body;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Err(format!("{query}: last answer {last}"))
}

fn kafka_exporter() -> Option<PathBuf> {
    let path = repo_root().join("target/kafka_exporter/kafka_exporter");
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("LEDGE_REQUIRE_PROMETHEUS").is_some_and(|value| value == "1") {
        panic!(
            "target/kafka_exporter/kafka_exporter is missing and LEDGE_REQUIRE_PROMETHEUS=1 (.ci/run builds it)"
        );
    }
    eprintln!("skipped: kafka_exporter not built (.ci/run builds it)");
    None
}

// Goal (issue 16 item 3): the Debian `prometheus` scrapes a running node, and a query through
// Prometheus's HTTP API returns the lag of a group that is 100 records behind; kafka_exporter,
// run against the Kafka listener, reports the same lag; every metric the dashboard and the
// alert rules read is one the node declares.
#[test]
fn prometheus_scrapes_the_lag_of_a_group_100_behind_and_kafka_exporter_agrees() {
    let Some(_) = promtool() else {
        return;
    };
    let Some(exporter) = kafka_exporter() else {
        return;
    };
    let node = ledge_e2e::NodeProcess::start();
    let admin = node
        .admin_addr
        .expect("the admin listener is on by default");
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let cli = |args: &[&str], stdin: Option<&str>| {
        let address = node.addr.to_string();
        let ca = node.ca_file.to_string_lossy().into_owned();
        let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
        full.extend_from_slice(args);
        let (status, stdout, stderr) = ledge_e2e::run_cli(&full, stdin);
        assert!(status.success(), "ledge {args:?}: {stderr}");
        stdout
    };
    cli(&["topic", "create", "orders", "--partitions", "1"], None);
    let lines: String = (0..300).map(|i| format!("order {i}\n")).collect();
    cli(&["produce", "orders"], Some(&lines));
    cli(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--max-messages",
            "200",
        ],
        None,
    );

    // The node's own scrape.
    let (status, text) = http_get(admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    let billing = [
        ("group", "billing"),
        ("topic", "orders"),
        ("partition", "0"),
    ];
    assert_eq!(
        sample(&text, "ledge_consumer_group_lag", &billing),
        Some(100.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ledge_consumer_group_lag_sum",
            &[("group", "billing")]
        ),
        Some(100.0),
        "{text}"
    );
    let declared = declared_families(&text);
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut read: Vec<(String, String)> = dashboard_queries();
    read.push(("alerts.yml".to_string(), rules));
    for (source, expr) in &read {
        for name in metric_names(expr) {
            assert!(
                declared.iter().any(|declared| declared == &name),
                "{source} reads {name}, which the node does not declare:\n{text}"
            );
        }
    }

    // kafka_exporter against the Kafka listener.
    let exporter_address: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _exporter = Child(
        Command::new(exporter)
            .arg(format!("--kafka.server={kafka}"))
            .arg(format!("--web.listen-address={exporter_address}"))
            .arg("--kafka.version=3.0.0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Prometheus scraping both every second.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: ledge\n    static_configs:\n      - targets: ['{admin}']\n\
             \x20 - job_name: kafka\n    static_configs:\n      - targets: ['{exporter_address}']\n"
        ),
    )
    .unwrap();
    let prometheus_address: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(scratch.path().join("prometheus.log")).unwrap();
    let _prometheus = Child(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_address}"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let prometheus_log =
        || std::fs::read_to_string(scratch.path().join("prometheus.log")).unwrap_or_default();
    let lag = query_until(
        prometheus_address,
        "ledge_consumer_group_lag_sum{group=\"billing\"}",
        |lag| lag == 100.0,
    )
    .unwrap_or_else(|error| panic!("{error}\n{}", prometheus_log()));
    assert_eq!(lag, 100.0);
    let exported = query_until(
        prometheus_address,
        "sum(kafka_consumergroup_lag{consumergroup=\"billing\",topic=\"orders\"})",
        |lag| lag == 100.0,
    )
    .unwrap_or_else(|error| panic!("{error}\n{}", prometheus_log()));
    assert_eq!(exported, lag, "kafka_exporter and the node disagree");
    // Both series are Prometheus's, side by side, in one query.
    let difference = query_until(
        prometheus_address,
        "sum(ledge_consumer_group_lag{group=\"billing\"}) - sum(kafka_consumergroup_lag{consumergroup=\"billing\"})",
        |_| true,
    )
    .unwrap_or_else(|error| panic!("{error}\n{}", prometheus_log()));
    assert_eq!(difference, 0.0);
}
