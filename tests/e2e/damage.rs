//! Damaged data on a real node's disk: damage followed by valid batches, or in a whole
//! final batch, keeps a partition offline instead of being cut (with or without the
//! checkpoint), a lowered
//! `max.message.bytes` does not take a partition offline at restart, and the background
//! verifier reports a bit flip in a sealed segment of a running node to `topic describe`
//! and to consumers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledge_client::{
    Admin, Client, ClientConfig, ConsumeError, Consumer, ConsumerConfig, ErrorCode, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::{NodeOptions, NodeProcess, run_cli};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(
        node.addr.to_string(),
        Trust::CaFile(node.ca_file.clone()),
    ))
    .await
    .unwrap()
}

/// Sends `count` records of `value_bytes` bytes, one batch each (a flush after every send),
/// and waits for every acknowledgement.
async fn produce_batches(client: &Client, topic: &str, count: usize, value_bytes: usize) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..count {
        let mut value = format!("value-{index:06}-").into_bytes();
        value.resize(value_bytes.max(value.len()), b'x');
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic, value))
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

/// Every record of partition 0 of `topic` from offset 0, read until `expected` arrived (or
/// a bounded number of empty polls).
async fn consume_all(client: &Client, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    let partition = TopicPartition::new(topic, 0);
    consumer.assign(vec![partition.clone()]);
    consumer.seek(&partition, 0).unwrap();
    let mut values = Vec::new();
    for _ in 0..60 {
        for record in consumer
            .poll(Duration::from_millis(500), 1000)
            .await
            .unwrap()
        {
            values.push(record.value.clone().unwrap_or_default().to_vec());
        }
        if values.len() >= expected {
            break;
        }
    }
    values
}

fn flip_bit(path: &Path, position: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn segment_path(node: &NodeProcess, topic: &str, base: u64) -> PathBuf {
    node.data_dir
        .join("logs")
        .join(format!("{topic}-0"))
        .join(format!("{base:020}.log"))
}

// Goal (issue 11, data item 2): a bit flip in the middle of the active segment, with the
// checkpoint deleted, is not taken for a torn tail: the restarted node keeps the partition
// offline, `topic describe` names the file and byte, and nothing is truncated; once the
// byte is restored every acknowledged record is there. Before, the 300 records after the
// flip were cut and their offsets reused.
#[test]
fn a_bit_flip_without_the_checkpoint_keeps_the_partition_offline_and_loses_nothing() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("events", 1)], false)
            .await
            .unwrap();
        produce_batches(&client, "events", 600, 100).await;
    });
    node.terminate(Duration::from_secs(30)).unwrap();
    let segment = segment_path(&node, "events", 0);
    let length = std::fs::metadata(&segment).unwrap().len();
    let middle = length / 2;
    flip_bit(&segment, middle);
    std::fs::remove_file(segment.with_file_name("checkpoint")).unwrap();
    node.restart();
    let described = runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .describe_topics(vec!["events".to_string()])
            .await
            .unwrap()
    });
    let partition = &described[0].partitions[0];
    assert_eq!(partition.error, Some(ErrorCode::PartitionOffline));
    let damage = partition.damage.clone().unwrap_or_default();
    assert!(
        damage.contains("00000000000000000000.log")
            && damage.contains("is corrupt at byte")
            && damage.contains("valid batches follow"),
        "{damage}"
    );
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), length);
    let server = node.addr.to_string();
    let ca = node.ca_file.display().to_string();
    let (status, stdout, stderr) = run_cli(
        &[
            "--server", &server, "--ca", &ca, "topic", "describe", "events",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("PartitionOffline") && stdout.contains("is corrupt at byte"),
        "{stdout}"
    );
    // Restoring the byte (as restoring the file from a copy would) brings every record back.
    node.terminate(Duration::from_secs(30));
    flip_bit(&segment, middle);
    node.restart();
    runtime.block_on(async {
        let client = connect(&node).await;
        let values = consume_all(&client, "events", 600).await;
        assert_eq!(values.len(), 600);
        for (index, value) in values.iter().enumerate() {
            assert!(value.starts_with(format!("value-{index:06}-").as_bytes()));
        }
    });
}

// Goal (issue 11, data item 2): a bit flip in the LAST batch of the active segment, with
// the checkpoint deleted, is not taken for a torn tail either: no valid batch follows, but
// the batch is whole and shows no lost sector. The restarted node keeps the partition
// offline naming the file, byte and first affected offset, and truncates nothing; restoring
// the byte brings every record back. Before, the final batch was cut and its offset reused.
#[test]
fn a_bit_flip_in_the_final_batch_keeps_the_partition_offline_and_loses_nothing() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("events", 1)], false)
            .await
            .unwrap();
        produce_batches(&client, "events", 50, 100).await;
    });
    node.terminate(Duration::from_secs(30)).unwrap();
    let segment = segment_path(&node, "events", 0);
    let length = std::fs::metadata(&segment).unwrap().len();
    // Inside the last record's value (each batch holds one record of 100 bytes).
    let in_final_batch = length - 20;
    flip_bit(&segment, in_final_batch);
    std::fs::remove_file(segment.with_file_name("checkpoint")).unwrap();
    node.restart();
    let described = runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .describe_topics(vec!["events".to_string()])
            .await
            .unwrap()
    });
    let partition = &described[0].partitions[0];
    assert_eq!(partition.error, Some(ErrorCode::PartitionOffline));
    let damage = partition.damage.clone().unwrap_or_default();
    assert!(
        damage.contains("00000000000000000000.log")
            && damage.contains("is corrupt at byte")
            && damage.contains("should start offset 49")
            && damage.contains("final batch is whole"),
        "{damage}"
    );
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), length);
    node.terminate(Duration::from_secs(30));
    flip_bit(&segment, in_final_batch);
    node.restart();
    runtime.block_on(async {
        let client = connect(&node).await;
        let values = consume_all(&client, "events", 50).await;
        assert_eq!(values.len(), 50);
        for (index, value) in values.iter().enumerate() {
            assert!(value.starts_with(format!("value-{index:06}-").as_bytes()));
        }
    });
}

// Goal (issue 11, data item 4): lowering max.message.bytes below a batch already stored
// does not take the partition offline at the next restart; the batch stays readable and
// only new batches meet the new limit. Before, recovery reported the stored batch as
// corruption ("batch length ... exceeds the limit").
#[test]
fn lowering_max_message_bytes_keeps_stored_batches_readable_after_restart() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        admin
            .create_topics(
                vec![NewTopic::new("big", 1).config("max.message.bytes", "700000")],
                false,
            )
            .await
            .unwrap();
        produce_batches(&client, "big", 1, 600_000).await;
        produce_batches(&client, "big", 3, 100).await;
        admin
            .alter_configs(
                "big",
                vec![("max.message.bytes".into(), "100000".into())],
                Vec::new(),
                false,
            )
            .await
            .unwrap();
    });
    node.restart();
    runtime.block_on(async {
        let client = connect(&node).await;
        let described = Admin::new(&client)
            .describe_topics(vec!["big".to_string()])
            .await
            .unwrap();
        assert_eq!(described[0].partitions[0].error, None, "{described:?}");
        let values = consume_all(&client, "big", 4).await;
        assert_eq!(values.len(), 4);
        assert_eq!(values[0].len(), 600_000);
    });
}

// Goal (issue 11, data item 3): a bit flip in a sealed segment of a running node is found by
// the background verifier (`log.verify_bytes_per_second`) without any consumer reading it:
// `topic describe` shows the partition damaged with the file, and a consumer reading it
// stops with DataDamaged instead of receiving the damaged batch.
#[test]
fn the_verifier_reports_a_bit_flip_in_a_sealed_segment_of_a_running_node() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some(
            "[log]\nverify_bytes_per_second = 10485760\nretention_check_interval_ms = 200\n".into(),
        ),
        ..NodeOptions::default()
    });
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        let topic = NewTopic::new("events", 1)
            .config("segment.bytes", "1024")
            .config("max.message.bytes", "1000");
        admin.create_topics(vec![topic], false).await.unwrap();
        produce_batches(&client, "events", 60, 100).await;
        let described = admin
            .describe_topics(vec!["events".to_string()])
            .await
            .unwrap();
        assert!(described[0].partitions[0].segment_count >= 3);
        assert_eq!(described[0].partitions[0].damage, None);
        // Inside the first batch's CRC-covered header of the first (sealed) segment.
        flip_bit(&segment_path(&node, "events", 0), 16 + 40);
        let mut damage = None;
        for _ in 0..300 {
            let described = admin
                .describe_topics(vec!["events".to_string()])
                .await
                .unwrap();
            damage = described[0].partitions[0].damage.clone();
            if damage.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let damage = damage.expect("the verifier reported the damage within 30 s");
        assert!(
            damage.contains("00000000000000000000.log") && damage.contains("byte 16"),
            "{damage}"
        );
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::None;
        let mut consumer = Consumer::new(&client, config);
        let partition = TopicPartition::new("events", 0);
        consumer.assign(vec![partition.clone()]);
        consumer.seek(&partition, 0).unwrap();
        let error = consumer
            .poll(Duration::from_secs(5), 10)
            .await
            .expect_err("the damaged range is not served");
        assert!(
            matches!(
                error,
                ConsumeError::Partition {
                    code: ErrorCode::DataDamaged,
                    ..
                }
            ),
            "{error}"
        );
    });
    assert!(node.log().contains("damage found in a sealed segment"));
    let server = node.addr.to_string();
    let ca = node.ca_file.display().to_string();
    let (status, stdout, stderr) = run_cli(
        &[
            "--server", &server, "--ca", &ca, "topic", "describe", "events",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("damaged") && stdout.contains("00000000000000000000.log"),
        "{stdout}"
    );
}

// Goal (issue 11, data item 6): a record stamped far in the future is refused with
// InvalidTimestamp (the topic's message.timestamp.after.max.ms, default one hour) instead of
// being acknowledged and keeping its segment, and every later one, from time retention; a
// record stamped now on the same topic is accepted.
#[test]
fn a_far_future_timestamp_is_refused_by_a_real_node() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("timed", 1)], false)
            .await
            .unwrap();
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .unwrap();
        #[expect(
            clippy::disallowed_methods,
            reason = "the record must be stamped against the real node's wall clock"
        )]
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let century_ms = 100 * 365 * 24 * 3_600_000;
        let refused = producer
            .send(ProducerRecord::new("timed", "from the future").timestamp(now_ms + century_ms))
            .await
            .unwrap()
            .await
            .expect_err("a timestamp a century ahead is refused");
        assert_eq!(
            refused.code(),
            Some(ErrorCode::InvalidTimestamp),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .contains("message.timestamp.after.max.ms"),
            "{refused}"
        );
        producer
            .send(ProducerRecord::new("timed", "now").timestamp(now_ms))
            .await
            .unwrap()
            .await
            .unwrap();
        producer.close().await;
    });
}

// Goal: the operator's way back when damaged records can be given up: `ledge-repair
// truncate` from the offset the damage report names brings the partition online with every
// record before it, and producing continues from there. It is refused while the node runs
// on the data directory (the node's lock, holder named) and works once the node stopped.
#[test]
fn ledge_repair_truncate_brings_an_offline_partition_back() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("events", 1)], false)
            .await
            .unwrap();
        produce_batches(&client, "events", 200, 100).await;
    });
    node.terminate(Duration::from_secs(30)).unwrap();
    let segment = segment_path(&node, "events", 0);
    let length = std::fs::metadata(&segment).unwrap().len();
    flip_bit(&segment, length / 2);
    std::fs::remove_file(segment.with_file_name("checkpoint")).unwrap();
    node.restart();
    let damage = runtime.block_on(async {
        let client = connect(&node).await;
        let described = Admin::new(&client)
            .describe_topics(vec!["events".to_string()])
            .await
            .unwrap();
        described[0].partitions[0]
            .damage
            .clone()
            .unwrap_or_default()
    });
    let offset: i64 = damage
        .split("should start offset ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("the report names the offset: {damage}"));
    assert!(offset > 0 && offset < 200, "{damage}");
    let data_dir = node.data_dir.clone();
    let repair = || {
        std::process::Command::new(ledge_e2e::binary("ledge-repair"))
            .args(["truncate", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--topic",
                "events",
                "--partition",
                "0",
                "--from-offset",
                &offset.to_string(),
            ])
            .output()
            .unwrap()
    };
    // While the node runs on the data directory, the repair is refused (it takes the
    // node's lock first), naming the holder, and cuts nothing. Before, it cut the segment
    // under the running node.
    let refused = repair();
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refusal}");
    assert!(
        refusal.contains(&format!("{} is in use", node.data_dir.display()))
            && refusal.contains(&format!("pid {}", node.pid()))
            && refusal.trim().lines().count() == 1,
        "{refusal}"
    );
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), length);
    node.terminate(Duration::from_secs(30));
    let output = repair();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("gets offset {offset}")),
        "{stdout}"
    );
    node.restart();
    runtime.block_on(async {
        let client = connect(&node).await;
        let values = consume_all(&client, "events", offset as usize).await;
        assert_eq!(values.len(), offset as usize);
        for (index, value) in values.iter().enumerate() {
            assert!(value.starts_with(format!("value-{index:06}-").as_bytes()));
        }
        produce_batches(&client, "events", 1, 10).await;
        let end = Admin::new(&client)
            .describe_topics(vec!["events".to_string()])
            .await
            .unwrap()[0]
            .partitions[0]
            .high_watermark;
        assert_eq!(end, offset + 1);
    });
}
