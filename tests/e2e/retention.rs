//! Retention and compaction seen from a client: a consumer positioned before the log start
//! is moved by its `auto_offset_reset`; a compacted topic read from the beginning holds the
//! last value of every key; `ledge topic describe` shows the partition's disk figures.

use std::time::Duration;

use ledge_client::{
    Admin, Client, ClientConfig, ConsumeError, Consumer, ConsumerConfig, NewTopic, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::{NodeOptions, NodeProcess, run_cli};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn node() -> NodeProcess {
    NodeProcess::start_with(NodeOptions {
        config: Some("[log]\nretention_check_interval_ms = 200\n".into()),
        ..NodeOptions::default()
    })
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(
        node.addr.to_string(),
        Trust::CaFile(node.ca_file.clone()),
    ))
    .await
    .unwrap()
}

async fn produce(
    client: &Client,
    topic: &str,
    records: impl IntoIterator<Item = (String, String)>,
) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for (key, value) in records {
        // One record per batch, so the small segments roll often.
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic, value).key(key))
                .await
                .unwrap(),
        );
        producer.flush().await;
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await;
}

// Goal: retention.bytes deletes old segments in the background; a consumer at offset 0
// gets the records from the new log start with auto_offset_reset=earliest, and a clear
// error with auto_offset_reset=none.
#[test]
fn consumers_before_the_log_start_follow_auto_offset_reset() {
    let node = node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        let topic = NewTopic::new("events", 1)
            .config("segment.bytes", "1024")
            .config("max.message.bytes", "1000")
            .config("retention.bytes", "2048");
        admin.create_topics(vec![topic], false).await.unwrap();
        produce(
            &client,
            "events",
            (0..100).map(|index| (format!("k{index}"), format!("value-{index:04}"))),
        )
        .await;
        let partition = TopicPartition::new("events", 0);
        let mut start = 0;
        for _ in 0..100 {
            let listed = admin
                .list_offsets(vec![(
                    partition.clone(),
                    ledge_client::OffsetSpec::Earliest,
                )])
                .await
                .unwrap();
            start = listed
                .values()
                .next()
                .and_then(|listed| listed.offset)
                .unwrap_or(0);
            if start > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(start > 0, "retention moved the log start");

        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, config);
        consumer.assign(vec![partition.clone()]);
        consumer.seek(&partition, 0).unwrap();
        let records = consumer.poll(Duration::from_secs(5), 10).await.unwrap();
        assert!(!records.is_empty());
        assert!(
            records[0].offset >= start,
            "first record {} is at or after the log start {start}",
            records[0].offset
        );

        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::None;
        let mut strict = Consumer::new(&client, config);
        strict.assign(vec![partition.clone()]);
        strict.seek(&partition, 0).unwrap();
        let error = strict.poll(Duration::from_secs(5), 10).await.unwrap_err();
        assert!(
            matches!(
                error,
                ConsumeError::OffsetOutOfRange { .. } | ConsumeError::NoOffsetForPartition { .. }
            ),
            "{error}"
        );
    });
}

// Goal: a compacted topic read from the beginning has the last value of every key; the
// CLI shows the partition's size, segments and dirty ratio.
#[test]
fn a_compacted_topic_keeps_the_last_value_of_every_key() {
    let node = node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        let topic = NewTopic::new("devices", 1)
            .config("cleanup.policy", "compact")
            .config("segment.bytes", "1024")
            .config("max.message.bytes", "1000");
        admin.create_topics(vec![topic], false).await.unwrap();
        produce(
            &client,
            "devices",
            (0..120).map(|index| (format!("device-{}", index % 6), format!("state-{index:03}"))),
        )
        .await;
        // Wait for a compaction pass (the check runs every 200 ms).
        let partition = TopicPartition::new("devices", 0);
        let mut compacted = false;
        for _ in 0..100 {
            let described = admin
                .describe_topics(vec!["devices".to_string()])
                .await
                .unwrap();
            if described[0].partitions[0].last_compaction_ms.is_some() {
                compacted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(compacted, "the node compacted the topic");
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, config);
        consumer.assign(vec![partition.clone()]);
        let mut latest = std::collections::BTreeMap::new();
        let mut count = 0;
        for _ in 0..20 {
            let records = consumer
                .poll(Duration::from_millis(500), 1000)
                .await
                .unwrap();
            if records.is_empty() && count > 0 {
                break;
            }
            for record in records {
                count += 1;
                latest.insert(record.key.clone().unwrap(), record.value.clone().unwrap());
            }
        }
        assert!(count < 120, "superseded values were removed ({count} left)");
        for device in 0..6 {
            let newest = (0..120).filter(|index| index % 6 == device).max().unwrap();
            assert_eq!(
                latest[format!("device-{device}").as_bytes()],
                format!("state-{newest:03}").as_bytes()
            );
        }
    });
    let server = node.addr.to_string();
    let ca = node.ca_file.display().to_string();
    let (status, stdout, stderr) = run_cli(
        &[
            "--server", &server, "--ca", &ca, "topic", "describe", "devices",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("SEGMENTS")
            && stdout.contains("DIRTY")
            && stdout.contains("LAST COMPACTION"),
        "{stdout}"
    );
}
