//! The broker's metadata with real processes: a lost `metadata.json`, module references in
//! topic configs, transforms' internal groups, and what the node logs at start.

use std::time::Duration;

use bytes::Bytes;
use ledge_client::{
    Admin, Client, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata, TopicPartition,
};
use ledge_e2e::{NodeProcess, connect, runtime};

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
