//! Structured logs (issue 16, item 7): `--log-format json` writes one JSON object per line;
//! the start-up summary and readiness lines carry their fields; a request's lines name its
//! principal, topic and partition.

use std::time::Duration;

use ledge_e2e::{NodeOptions, NodeProcess};

/// The node's stdout contract lines (`ledge-node listening on ...`), which stay plain text
/// for whoever waits on them; everything else in the shared output pipe is a log line.
fn is_stdout_contract_line(line: &str) -> bool {
    line.starts_with("ledge-node ")
}

/// Every log line of `output`, parsed; panics naming the first line that is not JSON.
fn json_lines(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty() && !is_stdout_contract_line(line))
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"))
        })
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// The value of `name` in any of the line's spans.
fn span_field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|span| span.get(name))
}

#[test]
fn json_logs_carry_the_summary_readiness_and_request_fields() {
    // Debug for the node's per-partition produce lines; `env` sets it over the harness's.
    let mut node = NodeProcess::start_wrapped(
        NodeOptions {
            args: vec!["--log-format".into(), "json".into()],
            ..NodeOptions::default()
        },
        &["env", "RUST_LOG=info,ledge_node::broker=debug"],
    );
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        ledge_e2e::create_topic(&client, "logged", 2).await;
        ledge_e2e::produce_numbered(&client, "logged", 0, 10).await;
    });
    node.terminate(Duration::from_secs(30));
    let output = node.log();
    let lines = json_lines(&output);
    assert!(!lines.is_empty(), "{output}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
    }

    let summaries: Vec<_> = lines
        .iter()
        .filter(|line| message(line) == "ledge-node started")
        .collect();
    assert_eq!(summaries.len(), 1, "{output}");
    let summary = &summaries[0]["fields"];
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"), "{summary}");
    let listeners = summary["listeners"].as_str().unwrap();
    assert!(
        listeners.contains(&format!("quic {}", node.addr)),
        "{summary}"
    );
    assert_eq!(
        summary["data_dir"].as_str().unwrap(),
        node.data_dir.display().to_string()
    );
    assert!(
        ["io_uring", "std"].contains(&summary["disk_backend"].as_str().unwrap()),
        "{summary}"
    );
    // A fresh node holds only `__consumer_offsets` at start.
    assert!(summary["topics"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["partitions"].as_u64().unwrap() >= 1, "{summary}");

    let ready = lines
        .iter()
        .position(|line| message(line) == "ready: serving clients")
        .unwrap_or_else(|| panic!("no readiness line: {output}"));
    let summary_at = lines
        .iter()
        .position(|line| message(line) == "ledge-node started")
        .unwrap();
    assert!(summary_at < ready, "{output}");
    assert_eq!(
        lines[ready]["fields"]["address"].as_str().unwrap(),
        node.addr.to_string()
    );

    let produced: Vec<_> = lines
        .iter()
        .filter(|line| message(line) == "produced")
        .collect();
    assert!(!produced.is_empty(), "no produce line: {output}");
    for line in produced {
        assert_eq!(span_field(line, "topic"), Some(&"logged".into()), "{line}");
        let partition = span_field(line, "partition").and_then(serde_json::Value::as_u64);
        assert!(matches!(partition, Some(0 | 1)), "{line}");
        // Loopback without SASL or a client certificate: the anonymous principal.
        assert_eq!(
            span_field(line, "principal"),
            Some(&"User:ANONYMOUS".into()),
            "{line}"
        );
        assert_eq!(span_field(line, "api"), Some(&"Produce".into()), "{line}");
    }
}

#[test]
fn the_config_file_sets_the_log_format_and_the_flag_overrides_it() {
    let mut json = NodeProcess::start_with(NodeOptions {
        config: Some("[logging]\nformat = \"json\"\n".into()),
        ..NodeOptions::default()
    });
    json.terminate(Duration::from_secs(30));
    let output = json.log();
    let lines = json_lines(&output);
    assert!(
        lines
            .iter()
            .any(|line| message(line) == "ledge-node started"),
        "{output}"
    );

    let mut text = NodeProcess::start_with(NodeOptions {
        config: Some("[logging]\nformat = \"json\"\n".into()),
        args: vec!["--log-format".into(), "text".into()],
        ..NodeOptions::default()
    });
    text.terminate(Duration::from_secs(30));
    let output = text.log();
    let summary = output
        .lines()
        .find(|line| line.contains("ledge-node started"))
        .unwrap_or_else(|| panic!("no summary line: {output}"));
    assert!(summary.contains("INFO"), "{summary}");
    assert!(
        serde_json::from_str::<serde_json::Value>(summary).is_err(),
        "{summary}"
    );
}
