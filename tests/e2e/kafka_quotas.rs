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
