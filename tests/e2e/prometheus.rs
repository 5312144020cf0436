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
