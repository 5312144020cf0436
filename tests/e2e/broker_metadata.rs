//! The broker's metadata with real processes: a lost `metadata.json`, module references in
//! topic configs, transforms' internal groups, and what the node logs at start.

use std::time::Duration;

use bytes::Bytes;
use ledge_client::{
    Admin, Client, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata, TopicPartition,
};
use ledge_e2e::{NodeOptions, NodeProcess, connect, run_cli, runtime};

async fn send_one(client: &Client, topic: &str, partition: u32, value: &str) -> RecordMetadata {
    // A fresh idempotent producer (the default) per call: each gets a new producer id, and
    // its first batch starts at sequence 0.
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let delivery = producer
        .send(ProducerRecord::new(topic, value.to_string()).partition(partition))
        .await
        .expect("send");
    let metadata = delivery.await.expect("delivered");
    producer.close().await;
    metadata
}

async fn read_at(client: &Client, topic: &str, partition: u32, offset: i64) -> Option<Bytes> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::None;
    let mut consumer = Consumer::new(client, config);
    let partition = TopicPartition::new(topic, partition);
    consumer.assign(vec![partition.clone()]);
    consumer.seek(&partition, offset).expect("seek");
    let records = consumer
        .poll(Duration::from_secs(5), 1)
        .await
        .expect("poll");
    let record = records
        .first()
        .expect("a record at the acknowledged offset");
    assert_eq!(record.offset, offset);
    record.value.clone()
}

async fn config_of(admin: &Admin, topic: &str, key: &str) -> String {
    let described = admin
        .describe_configs(vec![topic.to_string()])
        .await
        .expect("describe configs");
    described[0]
        .1
        .iter()
        .find(|config| config.name == key)
        .unwrap_or_else(|| panic!("{topic} has no config {key}"))
        .value
        .clone()
}

// Goal: after metadata.json is lost, a new idempotent producer's record is really written
// (readable at the offset it was acknowledged at) and topic configs are unchanged.
// Method: produce with an idempotent producer, kill -9, delete metadata.json, restart,
// produce with a new producer to the same partition, read it back, describe the configs.
#[test]
fn a_lost_metadata_file_loses_no_record_and_no_config() {
    let mut node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        admin
            .create_topics(
                vec![
                    NewTopic::new("kept", 2)
                        .config("retention.ms", "-1")
                        .config("max.message.bytes", "60000"),
                ],
                false,
            )
            .await
            .expect("create topic");
        let first = send_one(&client, "kept", 1, "before the loss").await;
        assert_eq!(first.offset, Some(0));
    });
    node.kill9();
    std::fs::remove_file(node.data_dir.join("metadata.json")).expect("remove metadata.json");
    node.restart();
    runtime().block_on(async {
        let client = connect(&node).await;
        let second = send_one(&client, "kept", 1, "after the loss").await;
        assert_eq!(
            second.offset,
            Some(1),
            "the new producer's record was taken for a resend of the old one"
        );
        assert_eq!(
            read_at(&client, "kept", 1, 0).await,
            Some(Bytes::from("before the loss"))
        );
        assert_eq!(
            read_at(&client, "kept", 1, 1).await,
            Some(Bytes::from("after the loss"))
        );
        let admin = Admin::new(&client);
        assert_eq!(config_of(&admin, "kept", "retention.ms").await, "-1");
        assert_eq!(
            config_of(&admin, "kept", "max.message.bytes").await,
            "60000"
        );
        assert_eq!(
            config_of(&admin, "__consumer_offsets", "cleanup.policy").await,
            "compact"
        );
    });
    assert!(
        node.log().contains("rebuilt the topics"),
        "the rebuild is logged:\n{}",
        node.log()
    );
}

/// Runs `ledge` against `node` with `args`; returns (success, stdout, stderr).
fn ledge(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, stdin);
    (status.success(), stdout, stderr)
}

/// Writes the example module `name` (from `filters/`) to a file beside `node`'s data
/// directory and returns its path.
fn module_file(directory: &std::path::Path, name: &str) -> String {
    let path = directory.join(format!("{name}.wasm"));
    std::fs::write(&path, ledge_e2e::filter_module(name)).expect("write module");
    path.to_string_lossy().into_owned()
}

// Goal: the stream-app shape of config (a `[[module]]`, a topic whose partitioner.module names
// it, a `[[transform]]`) starts cleanly the first time and again: no ERROR in the log. Then
// the transform's position group cannot be deleted or reset with `ledge group`, the error says
// to use `ledge transform`, and the transform does not reprocess its input; and a topic config
// naming a missing or wrong-kind module is refused by `ledge topic create` / `topic alter`.
#[test]
fn declared_plugins_start_cleanly_and_transform_groups_are_guarded() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let vip = module_file(directory.path(), "vip_partitioner");
    let high_value = module_file(directory.path(), "high_value_orders");
    let config = format!(
        r#"
[[module]]
name = "vip"
kind = "partitioner"
path = "{vip}"

[[topic]]
name = "orders"
partitions = 1

[[topic]]
name = "customers"
partitions = 4
config.partitioner.module = "vip"

[[transform]]
name = "high-value"
kind = "filter"
module = "{high_value}"
input = "orders"
output = "orders.high-value"
params = {{ threshold = "1000" }}
on_error = "skip"
"#
    );
    let mut node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(directory.path().join("data")),
        config: Some(config),
        ..NodeOptions::default()
    });
    let first_start = node.log();
    assert!(
        !first_start.contains("ERROR"),
        "an ERROR on a clean first start:\n{first_start}"
    );
    assert!(first_start.contains("transform deployed"), "{first_start}");
    let (success, _, stderr) = ledge(
        &node,
        &["produce", "orders", "--key-separator", ":"],
        Some("a:{\"id\":1,\"amount\":1500}\nb:{\"id\":2,\"amount\":20}\n"),
    );
    assert!(success, "{stderr}");
    let copied = || {
        let (success, stdout, stderr) = ledge(
            &node,
            &["transform", "describe", "high-value", "--format", "json"],
            None,
        );
        assert!(success, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON")
    };
    let mut described = copied();
    for _ in 0..100 {
        if described["lag"] == 0 && described["records_in"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        described = copied();
    }
    assert_eq!(described["records_out"], 1, "{described}");

    for args in [
        vec!["group", "delete", "__transform.high-value"],
        vec![
            "group",
            "reset-offsets",
            "__transform.high-value",
            "--topic",
            "orders",
            "--to-earliest",
        ],
    ] {
        let (success, _, stderr) = ledge(&node, &args, None);
        assert!(!success, "ledge {args:?} was accepted");
        assert!(
            stderr.contains("transform \"high-value\"") && stderr.contains("ledge transform"),
            "ledge {args:?}: {stderr}"
        );
    }
    // Nothing was reprocessed: one more input record makes exactly one more output record.
    let (success, _, stderr) = ledge(
        &node,
        &["produce", "orders", "--key-separator", ":"],
        Some("c:{\"id\":3,\"amount\":2000}\n"),
    );
    assert!(success, "{stderr}");
    for _ in 0..100 {
        described = copied();
        if described["lag"] == 0 && described["records_in"] == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(described["records_in"], 3, "{described}");
    assert_eq!(described["records_out"], 2, "{described}");

    for (args, expected) in [
        (
            vec![
                "topic",
                "create",
                "bad",
                "--config",
                "partitioner.module=missing",
            ],
            "partitioner.module: no module named \"missing\"",
        ),
        (
            vec![
                "topic",
                "create",
                "bad",
                "--config",
                "produce.filter.module=vip",
            ],
            "module \"vip\" is a partitioner; produce.filter.module takes a filter, map, or filter_map",
        ),
        (
            vec![
                "topic",
                "alter",
                "orders",
                "--config",
                "partitioner.module=missing",
            ],
            "partitioner.module: no module named \"missing\"",
        ),
    ] {
        let (success, _, stderr) = ledge(&node, &args, None);
        assert!(!success, "ledge {args:?} was accepted");
        assert!(stderr.contains(expected), "ledge {args:?}: {stderr}");
    }

    // A second start with the same config is clean too.
    let before = node.log().len();
    node.terminate(Duration::from_secs(10));
    node.restart();
    let second_start = node.log()[before..].to_string();
    assert!(
        !second_start.contains("ERROR"),
        "an ERROR on a clean restart:\n{second_start}"
    );
}

// Goal: a session timeout the node refuses is reported once, as one error line naming the
// bounds (the SDK logged it as a warning as well, so the CLI printed it twice).
#[test]
fn a_refused_session_timeout_is_reported_once() {
    let node = NodeProcess::start();
    let (success, _, stderr) = ledge(&node, &["topic", "create", "t"], None);
    assert!(success, "{stderr}");
    let (success, _, stderr) = ledge(
        &node,
        &[
            "consume",
            "t",
            "--group",
            "g",
            "--session-timeout-ms",
            "100",
        ],
        None,
    );
    assert!(!success, "a 100 ms session timeout was accepted");
    assert_eq!(
        stderr
            .matches("session timeout of 100 ms is outside")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(node.log().matches("session timeout of 100 ms").count(), 0);
}

/// Every record of `topic`'s `partition` (polling until `count` arrived, up to 10 s).
async fn read_partition(client: &Client, topic: &str, partition: u32, count: usize) -> Vec<String> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(vec![TopicPartition::new(topic, partition)]);
    let mut keys = Vec::new();
    for _ in 0..50 {
        if keys.len() >= count {
            break;
        }
        let records = consumer
            .poll(Duration::from_millis(200), 100)
            .await
            .expect("poll");
        keys.extend(records.into_iter().map(|record| {
            String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
        }));
    }
    keys
}

// Goal: `transform deploy --kind partitioner` works as documented (docs/WASM-ABI.md, "Where
// plug-ins run"): a repartitioning transform copies every input record unchanged to the output
// partition the module picks among the output topic's partitions. Method: the seed's VIP
// partitioner from one input partition into a 4-partition output, deployed with the CLI; each
// key must be in the partition the module's rule gives, exactly once; a keyless record is
// dead-lettered with the module's message.
#[test]
fn a_partitioner_transform_repartitions_its_input() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let vip = module_file(directory.path(), "vip_partitioner");
    let node = NodeProcess::start();
    for args in [
        vec!["topic", "create", "signups", "--partitions", "1"],
        vec!["topic", "create", "signups.by-tier", "--partitions", "4"],
        vec![
            "transform",
            "deploy",
            "by-tier",
            "--module",
            &vip,
            "--kind",
            "partitioner",
            "--input",
            "signups",
            "--output",
            "signups.by-tier",
            "--on-error",
            "dead-letter",
        ],
    ] {
        let (success, _, stderr) = ledge(&node, &args, None);
        assert!(success, "ledge {args:?}: {stderr}");
    }
    let keys = [
        "vip-ann", "bob", "vip-zoe", "carol", "dave", "erin", "frank",
    ];
    let input: String = keys.iter().map(|key| format!("{key}:{{}}\n")).collect();
    let (success, _, stderr) = ledge(
        &node,
        &["produce", "signups", "--key-separator", ":"],
        Some(&input),
    );
    assert!(success, "{stderr}");
    let (success, _, stderr) = ledge(&node, &["produce", "signups"], Some("keyless\n"));
    assert!(success, "{stderr}");
    runtime().block_on(async {
        let client = connect(&node).await;
        let mut placed = std::collections::BTreeMap::new();
        for partition in 0..4 {
            let expected = keys
                .iter()
                .filter(|key| {
                    let wanted = if key.starts_with("vip-") {
                        0
                    } else {
                        ledge_client::partitioner::partition_for_key(key.as_bytes(), 4)
                    };
                    wanted == partition
                })
                .count();
            let found = read_partition(&client, "signups.by-tier", partition, expected).await;
            for key in found {
                assert!(
                    placed.insert(key.clone(), partition).is_none(),
                    "{key} copied twice"
                );
            }
        }
        assert_eq!(placed.len(), keys.len(), "{placed:?}");
        for key in keys {
            let expected = if key.starts_with("vip-") {
                0
            } else {
                ledge_client::partitioner::partition_for_key(key.as_bytes(), 4)
            };
            assert_eq!(placed[key], expected, "{key}");
        }
        let dead = read_partition(&client, "by-tier.dead-letter", 0, 1).await;
        assert_eq!(dead.len(), 1, "the keyless record is dead-lettered");
    });
    let (success, stdout, stderr) = ledge(
        &node,
        &["transform", "describe", "by-tier", "--format", "json"],
        None,
    );
    assert!(success, "{stderr}");
    let described: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(described["kind"], "partitioner", "{described}");
    assert!(
        described["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("record has no key")),
        "{described}"
    );
}
