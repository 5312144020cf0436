//! Issue 13 item 5 (added partitions), on one node with the real binaries: `ledge topic alter
//! --partitions` grows a topic (with a config change in the same command), refuses to
//! shrink it in one line, and a keyed producer that was already running hashes its keys
//! over the new count once its metadata is refreshed, as Kafka's does; every acknowledged
//! record is then read back from the partition it was acknowledged on.

use std::collections::BTreeMap;
use std::time::Duration;

use ledge_client::partitioner::partition_for_key;
use ledge_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::NodeProcess;

use crate::cli::{fails, ok};

fn described(node: &NodeProcess, topic: &str) -> serde_json::Value {
    serde_json::from_str(&ok(
        node,
        &["topic", "describe", topic, "--format", "json"],
        None,
    ))
    .unwrap()
}

fn retention(described: &serde_json::Value) -> String {
    described["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|config| config["name"] == "retention.ms")
        .map(|config| config["value"].as_str().unwrap().to_string())
        .unwrap()
}

/// Sends `key-<n>` -> `<round>-<n>` to `topic` for `0..count` and returns each record's key,
/// partition and offset as acknowledged.
pub(crate) async fn send_keyed(
    producer: &Producer,
    topic: &str,
    round: &str,
    count: u32,
) -> Vec<(String, u32, i64)> {
    let mut deliveries = Vec::new();
    for n in 0..count {
        let record = ProducerRecord::new(topic, format!("{round}-{n}")).key(format!("key-{n}"));
        deliveries.push((
            format!("key-{n}"),
            producer.send(record).await.expect("send"),
        ));
    }
    let mut acknowledged = Vec::new();
    for (key, delivery) in deliveries {
        let metadata = delivery.await.expect("acknowledged");
        acknowledged.push((key, metadata.partition, metadata.offset.expect("acks=all")));
    }
    acknowledged
}

// Goal: added partitions are usable at once and keyed records follow the new count after
// the producer's metadata refresh (Kafka's behaviour: the key-to-partition mapping
// changes); shrinking, and a config change paired with a refused count, change nothing.
// Method: the real node and CLI; an SDK producer with a 300 ms metadata_max_age created
// before the growth; every acknowledged (partition, offset) read back.
#[test]
fn topic_alter_adds_partitions_and_keyed_records_follow_the_new_count() {
    let node = NodeProcess::start();
    ok(
        &node,
        &["topic", "create", "orders", "--partitions", "2"],
        None,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = ClientConfig::new(node.addr.to_string(), Trust::CaFile(node.ca_file.clone()));
    config.metadata_max_age = Duration::from_millis(300);
    let client = runtime.block_on(Client::connect(config)).expect("connect");
    let producer = runtime
        .block_on(Producer::new(&client, ProducerConfig::default()))
        .expect("producer");
    let before = runtime.block_on(send_keyed(&producer, "orders", "before", 40));
    for (key, partition, _) in &before {
        assert_eq!(*partition, partition_for_key(key.as_bytes(), 2), "{key}");
    }

    let altered: serde_json::Value = serde_json::from_str(&ok(
        &node,
        &[
            "topic",
            "alter",
            "orders",
            "--partitions",
            "5",
            "--config",
            "retention.ms=3600000",
            "--format",
            "json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(altered["partitions"], 5, "{altered}");
    assert_eq!(altered["changed"], true, "{altered}");
    let topic = described(&node, "orders");
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 5, "{topic}");
    assert_eq!(retention(&topic), "3600000");
    for partition in topic["partitions"].as_array().unwrap() {
        assert_eq!(partition["leader"], 1, "{partition}");
    }

    let shrink = fails(
        &node,
        &["topic", "alter", "orders", "--partitions", "3"],
        None,
    );
    assert!(
        shrink.contains(
            "cannot shrink orders from 5 to 3 partitions: Kafka and Ledge only add partitions (InvalidPartitions)"
        ),
        "{shrink}"
    );
    // Checked together: the refused count leaves the config as it was.
    let both = fails(
        &node,
        &[
            "topic",
            "alter",
            "orders",
            "-p",
            "5",
            "--config",
            "retention.ms=60000",
        ],
        None,
    );
    assert!(both.contains("already has 5 partitions"), "{both}");
    assert_eq!(retention(&described(&node, "orders")), "3600000");
    let validated = ok(
        &node,
        &["topic", "alter", "orders", "-p", "6", "--validate-only"],
        None,
    );
    assert!(
        validated.contains("Valid change of topic orders: 6 partitions."),
        "{validated}"
    );
    assert_eq!(
        described(&node, "orders")["partitions"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // The producer's cached count is older than its metadata_max_age now: its next sends
    // look the topic up again and hash over 5.
    std::thread::sleep(Duration::from_millis(400));
    let after = runtime.block_on(send_keyed(&producer, "orders", "after", 40));
    for (key, partition, _) in &after {
        assert_eq!(*partition, partition_for_key(key.as_bytes(), 5), "{key}");
    }
    assert!(
        after.iter().any(|(_, partition, _)| *partition >= 2),
        "some keys land on the new partitions: {after:?}"
    );
    runtime.block_on(producer.close());

    // Every acknowledged record is where it was acknowledged.
    let expected: BTreeMap<(u32, i64), String> = before
        .iter()
        .map(|(key, partition, offset)| ((*partition, *offset), format!("before-{}", &key[4..])))
        .chain(after.iter().map(|(key, partition, offset)| {
            ((*partition, *offset), format!("after-{}", &key[4..]))
        }))
        .collect();
    let read = runtime.block_on(async {
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, config);
        consumer.assign(
            (0..5)
                .map(|partition| TopicPartition::new("orders", partition))
                .collect(),
        );
        let mut read = BTreeMap::new();
        for _ in 0..100 {
            if read.len() >= expected.len() {
                break;
            }
            for record in consumer
                .poll(Duration::from_millis(200), 1000)
                .await
                .expect("poll")
            {
                let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                    .into_owned();
                read.insert((record.partition, record.offset), value);
            }
        }
        read
    });
    assert_eq!(read, expected);
    runtime.block_on(client.close());
}
