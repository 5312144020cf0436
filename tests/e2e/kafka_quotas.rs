//! Client quotas through Kafka's own tools (issue 15): `kafka-configs --alter --add-config
//! producer_byte_rate=... --entity-type users --entity-default` (AlterClientQuotas) and
//! `--describe` (DescribeClientQuotas) against a node's Kafka listener, the quota surviving
//! a restart, and a kafka-python producer over it seeing throttle times (its
//! `throttle-time-max` metric, KIP-219).

use ledge_e2e::NodeProcess;

use crate::kafka_java::{kafka_java_lib, missing, tool_ok};

const CONFIGS: &str = "kafka.admin.ConfigCommand";

/// Produces 16 records of 1000 bytes one at a time with kafka-python and prints the
/// largest `throttle-time-max` among the client's metrics.
const PRODUCE_AND_REPORT_THROTTLE: &str = r#"
import json, sys
from kafka import KafkaProducer
producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks=1, linger_ms=0,
                         max_block_ms=60000, request_timeout_ms=60000)
for _ in range(16):
    producer.send('quota-topic', b'x' * 1000).get(timeout=60)
values = [value for group in producer.metrics().values() for name, value in group.items()
          if name.endswith('throttle-time-max') and isinstance(value, (int, float))]
print(json.dumps({'throttle_max': max(values or [0])}))
producer.close(timeout=5)
"#;

#[test]
fn kafka_configs_sets_a_user_quota_and_a_kafka_python_producer_is_throttled() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let Some(python) = crate::kafka_confluent_aiokafka::python_with("kafka") else {
        missing("kafka-python");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let options = || ledge_e2e::NodeOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let node = NodeProcess::start_with(options());
    let configs = |node: &NodeProcess, args: &[&str]| -> String {
        let kafka = node
            .kafka_addr
            .expect("the Kafka listener is on by default")
            .to_string();
        let mut all = vec!["--bootstrap-server", kafka.as_str()];
        all.extend_from_slice(args);
        tool_ok(node, &lib, CONFIGS, &all, "")
    };
    // The client is anonymous on loopback (User:ANONYMOUS): the default user's quota
    // applies to it.
    let altered = configs(
        &node,
        &[
            "--alter",
            "--add-config",
            "producer_byte_rate=1024",
            "--entity-type",
            "users",
            "--entity-default",
        ],
    );
    assert!(altered.contains("Completed updating"), "{altered}");
    let altered = configs(
        &node,
        &[
            "--alter",
            "--add-config",
            "consumer_byte_rate=4096",
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    );
    assert!(altered.contains("Completed updating"), "{altered}");
    drop(node);
    // Stored durably: still there after a restart.
    let node = NodeProcess::start_with(options());
    let described = configs(
        &node,
        &["--describe", "--entity-type", "users", "--entity-default"],
    );
    assert!(described.contains("producer_byte_rate=1024"), "{described}");
    let described = configs(
        &node,
        &[
            "--describe",
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    );
    assert!(described.contains("consumer_byte_rate=4096"), "{described}");
    // 16 kB at 1 kB/s: the node answers with throttle times and the client records them.
    let kafka = node.kafka_addr.unwrap().to_string();
    let output = std::process::Command::new(&python)
        .args(["-c", PRODUCE_AND_REPORT_THROTTLE, &kafka])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        node.log()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no report: {stdout}")),
    )
    .unwrap();
    let throttle_max = report["throttle_max"].as_f64().unwrap();
    assert!(throttle_max > 0.0, "no throttle seen: {stdout}");
    // The native CLI sees and changes the same quotas.
    let set = crate::cli::ok(
        &node,
        &["quota", "set", "bob", "--producer-byte-rate", "1048576"],
        None,
    );
    assert!(
        set.contains("Set producer_byte_rate=1048576 for user bob."),
        "{set}"
    );
    let listed = crate::cli::ok(&node, &["quota", "list", "--format", "json"], None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            {"user": null, "default": true, "producer_byte_rate": 1024, "consumer_byte_rate": null},
            {"user": "alice", "default": false, "producer_byte_rate": null, "consumer_byte_rate": 4096},
            {"user": "bob", "default": false, "producer_byte_rate": 1048576, "consumer_byte_rate": null},
        ])
    );
    let table = crate::cli::ok(&node, &["quota", "list"], None);
    assert!(
        table
            .lines()
            .any(|line| line.trim_start().starts_with("<default>")),
        "{table}"
    );
    crate::cli::ok(&node, &["quota", "remove", "--default"], None);
    let described = configs(&node, &["--describe", "--entity-type", "users"]);
    assert!(
        !described.contains("producer_byte_rate=1024"),
        "{described}"
    );
    assert!(
        described.contains("producer_byte_rate=1048576"),
        "{described}"
    );
}

/// Runs `ledge produce native-quota --format json` with `lines` on standard input against
/// `node`; requires success and returns (stdout, stderr).
fn produce_with_cli(node: &NodeProcess, lines: &str) -> (String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let args = [
        "--server",
        address.as_str(),
        "--ca",
        ca.as_str(),
        "produce",
        "native-quota",
        "--format",
        "json",
    ];
    let (status, stdout, stderr) = ledge_e2e::run_cli(&args, Some(lines));
    assert!(status.success(), "ledge produce failed:\n{stderr}");
    (stdout, stderr)
}

/// The `throttle_time_ms` of each line of `produce --format json` (0 when absent).
fn throttle_times(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(line["offset"].is_i64(), "not written: {line}");
            line["throttle_time_ms"].as_u64().unwrap_or(0)
        })
        .collect()
}

/// A fresh SDK consumer of `native-quota`/0 from its start: its fetch throttle time once it
/// has read a record.
async fn first_fetch_throttle(client: &ledge_client::Client) -> std::time::Duration {
    let mut config = ledge_client::ConsumerConfig::default();
    config.auto_offset_reset = ledge_client::OffsetReset::Earliest;
    let mut consumer = ledge_client::Consumer::new(client, config);
    consumer.assign(vec![ledge_client::TopicPartition::new("native-quota", 0)]);
    loop {
        let records = consumer
            .poll(std::time::Duration::from_secs(10), 10)
            .await
            .expect("poll");
        if !records.is_empty() {
            return consumer.fetch_throttle_time();
        }
    }
}

/// Goal (issue 15, KIP-219 on the native protocol): once the default user's
/// producer_byte_rate and consumer_byte_rate are 1 byte per second (`ledge quota set
/// --default`), the `ledge produce` CLI reports the throttle time its produce answers
/// carried (each record's `throttle_time_ms` in `--format json`, and the summary line), and
/// an SDK consumer's fetch reports its own; before the quota neither is throttled. Bounds
/// from the formula: a few hundred bytes against 1 B/s is far past its cap, so the throttle is
/// all the windows together, 11 s with the default `[quota]`.
#[test]
fn native_clients_over_their_quota_are_told_their_throttle_time() {
    let node = NodeProcess::start();
    crate::cli::ok(&node, &["topic", "create", "native-quota"], None);
    let (stdout, stderr) = produce_with_cli(&node, "before the quota\n");
    assert_eq!(throttle_times(&stdout), [0], "{stdout}");
    assert!(!stderr.contains("throttled"), "{stderr}");
    let runtime = ledge_e2e::runtime();
    let client = runtime.block_on(ledge_e2e::connect(&node));
    assert_eq!(
        runtime.block_on(first_fetch_throttle(&client)),
        std::time::Duration::ZERO
    );
    runtime.block_on(client.close());
    // The client is anonymous on loopback (User:ANONYMOUS): the default user's quota applies.
    crate::cli::ok(
        &node,
        &[
            "quota",
            "set",
            "--default",
            "--producer-byte-rate",
            "1",
            "--consumer-byte-rate",
            "1",
        ],
        None,
    );
    let (stdout, stderr) = produce_with_cli(&node, "over the quota\n");
    assert_eq!(throttle_times(&stdout), [11_000], "{stdout}");
    assert!(
        stderr.contains("throttled by the producer_byte_rate quota (longest throttle 11000 ms)"),
        "{stderr}"
    );
    let client = runtime.block_on(ledge_e2e::connect(&node));
    assert_eq!(
        runtime.block_on(first_fetch_throttle(&client)),
        std::time::Duration::from_secs(11)
    );
    runtime.block_on(client.close());
}
