//! The SDK against a real node: durability of acknowledged records across `kill -9`,
//! idempotent resends across a restart, and the consumer's positioning calls.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;
use ledge_client::partitioner::partition_for_key;
use ledge_client::{
    Admin, Client, ClientConfig, Compression, ConsumeError, Consumer, ConsumerConfig,
    ConsumerRecord, DeliveryFuture, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata, Stream, TopicPartition, Trust,
};
use ledge_e2e::NodeProcess;
use rand::{Rng, SeedableRng};

const TIMESTAMP_BASE: i64 = 1_700_000_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A seed from `LEDGE_E2E_SEED`, or a fresh one; printed so a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("LEDGE_E2E_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| std::hash::RandomState::new().build_hasher().finish());
    println!("LEDGE_E2E_SEED={seed}");
    seed
}

/// Client settings that notice a killed node within about two seconds.
fn client_config(node: &NodeProcess) -> ClientConfig {
    let mut config = ClientConfig::new(node.addr.to_string(), Trust::CaFile(node.ca_file.clone()));
    config.idle_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(10);
    config
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(client_config(node))
        .await
        .expect("connect to the node")
}

async fn create_topic(client: &Client, name: &str, partitions: u32) {
    Admin::new(client)
        .create_topics(vec![NewTopic::new(name, partitions)], false)
        .await
        .expect("create topic");
}

fn record(topic: &str, index: u64) -> ProducerRecord {
    ProducerRecord::new(topic, format!("value-{index}"))
        .key(format!("key-{}", index % 997))
        .header("index", index.to_string())
        .header(
            "parity",
            if index.is_multiple_of(2) {
                "even"
            } else {
                "odd"
            },
        )
        .timestamp(TIMESTAMP_BASE + index as i64)
}

/// Reads every record of `topic` (all `partitions`) from the start up to the end offsets.
async fn read_all(client: &Client, topic: &str, partitions: u32) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    let assignment: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition::new(topic, partition))
        .collect();
    consumer.assign(assignment.clone());
    let ends = consumer
        .end_offsets(&assignment)
        .await
        .expect("end offsets");
    let expected: i64 = ends.values().sum();
    let mut records = Vec::new();
    let mut idle_polls = 0;
    while (records.len() as i64) < expected {
        let batch = consumer
            .poll(Duration::from_secs(1), 10_000)
            .await
            .expect("poll");
        if batch.is_empty() {
            idle_polls += 1;
            assert!(
                idle_polls < 30,
                "read {} of {expected} records, then nothing for 30 s",
                records.len()
            );
        }
        records.extend(batch);
    }
    assert_eq!(records.len() as i64, expected, "read past the end offsets");
    records
}

/// Waits (up to 30 s) until `partition`'s end offset reaches `expected`.
async fn wait_for_end_offset(client: &Client, partition: TopicPartition, expected: i64) {
    let consumer = Consumer::new(client, ConsumerConfig::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ends = consumer
            .end_offsets(std::slice::from_ref(&partition))
            .await
            .expect("end offsets");
        let end = ends.get(&partition).copied().unwrap_or(0);
        if end >= expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "end offset of {partition:?} stayed at {end}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn index_of(record: &ConsumerRecord) -> u64 {
    let header = record
        .headers
        .iter()
        .find(|header| header.key == "index")
        .expect("every record has an index header");
    std::str::from_utf8(header.value.as_deref().expect("index header has a value"))
        .expect("index header is UTF-8")
        .parse()
        .expect("index header is a number")
}

/// Checks the log against what was acknowledged: every acknowledged record exactly once, at
/// its acknowledged offset, with its key, headers and timestamp; no record twice; within a
/// partition, records in the order they were sent.
fn verify(
    topic: &str,
    partitions: u32,
    records: &[ConsumerRecord],
    acknowledged: &HashMap<u64, RecordMetadata>,
) {
    let mut seen: HashMap<u64, (u32, i64)> = HashMap::new();
    let mut last_index: BTreeMap<u32, u64> = BTreeMap::new();
    for record in records {
        let index = index_of(record);
        if let Some(previous) = seen.insert(index, (record.partition, record.offset)) {
            panic!(
                "record {index} is in the log twice: {previous:?} and ({}, {})",
                record.partition, record.offset
            );
        }
        if let Some(&previous) = last_index.get(&record.partition) {
            assert!(
                index > previous,
                "partition {} holds record {index} after record {previous}",
                record.partition
            );
        }
        last_index.insert(record.partition, index);
        let expected = self::record(topic, index);
        assert_eq!(record.key, expected.key, "key of record {index}");
        assert_eq!(record.value, expected.value, "value of record {index}");
        assert_eq!(
            record.headers, expected.headers,
            "headers of record {index}"
        );
        assert_eq!(
            Some(record.timestamp),
            expected.timestamp,
            "timestamp of record {index}"
        );
        let key = expected.key.as_deref().expect("test records have keys");
        assert_eq!(
            record.partition,
            partition_for_key(key, partitions),
            "record {index} is not where Kafka's partitioner puts its key"
        );
    }
    for (index, metadata) in acknowledged {
        let Some(&(partition, offset)) = seen.get(index) else {
            panic!("acknowledged record {index} ({metadata:?}) is missing from the log");
        };
        assert_eq!(
            (partition, Some(offset)),
            (metadata.partition, metadata.offset),
            "record {index} is not where its acknowledgement said"
        );
    }
}

/// Goal: no acknowledged record is lost or duplicated when the node dies mid-stream.
/// Method: send 100,000 keyed records with headers and timestamps (acks=all, idempotent) to
/// four partitions; at a random point `kill -9` the node and restart it while sending goes
/// on; then read the whole topic back and check it against the acknowledgements.
#[test]
fn acknowledged_records_survive_kill_9_exactly_once_and_in_order() {
    const RECORDS: u64 = 100_000;
    const PARTITIONS: u32 = 4;
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let kill_at = random.random_range(10_000..RECORDS - 10_000);
    println!("killing the node after {kill_at} sends");
    let node = NodeProcess::start();
    runtime().block_on(async move {
        let client = connect(&node).await;
        create_topic(&client, "durable", PARTITIONS).await;
        let mut config = ProducerConfig::default();
        config.delivery_timeout = Duration::from_secs(60);
        let producer = Producer::new(&client, config).await.expect("producer");

        let mut deliveries: Vec<(u64, DeliveryFuture)> = Vec::with_capacity(RECORDS as usize);
        let mut node = Some(node);
        let mut restart = None;
        for index in 0..RECORDS {
            if index == kill_at {
                let mut dying = node.take().expect("the node is killed once");
                restart = Some(tokio::task::spawn_blocking(move || {
                    dying.kill9();
                    dying.restart();
                    dying
                }));
            }
            let delivery = producer.send(record("durable", index)).await.expect("send");
            deliveries.push((index, delivery));
        }
        let node = restart
            .expect("the kill point is inside the run")
            .await
            .expect("restart task");
        producer.flush().await;
        let mut acknowledged = HashMap::new();
        for (index, delivery) in deliveries {
            match delivery.await {
                Ok(metadata) => {
                    acknowledged.insert(index, metadata);
                }
                Err(error) => panic!("record {index} failed: {error}; node log:\n{}", node.log()),
            }
        }
        producer.close().await;
        assert_eq!(acknowledged.len() as u64, RECORDS);

        let records = read_all(&client, "durable", PARTITIONS).await;
        assert_eq!(
            records.len() as u64,
            RECORDS,
            "the log holds more records than were sent"
        );
        verify("durable", PARTITIONS, &records, &acknowledged);
        client.close().await;
    });
}

/// Goal: a batch that reached the log before a crash but whose acknowledgement was lost is not
/// written again when the producer resends it to the restarted node.
/// Method: one partition, small batches, five requests in flight; `kill -9` right after the
/// sends, with many batches between "written" and "acknowledged"; restart; every record must
/// be acknowledged and be in the log once, in order, with no gaps.
#[test]
fn idempotent_resends_across_a_restart_write_no_duplicates() {
    const RECORDS: u64 = 20_000;
    let mut node = NodeProcess::start();
    let runtime = runtime();
    let client = runtime.block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "resent", 1).await;
        client
    });
    let mut config = ProducerConfig::default();
    // Many small batches in flight across the restart: fixed 2 KiB batches.
    config.batch_size = 2048;
    config.batch_size_max = 2048;
    config.linger = Duration::ZERO;
    config.delivery_timeout = Duration::from_secs(60);
    let (producer, deliveries) = runtime.block_on(async {
        let producer = Producer::new(&client, config).await.expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..RECORDS {
            let delivery = producer
                .send(record("resent", index).partition(0))
                .await
                .expect("send");
            deliveries.push((index, delivery));
        }
        // Let some batches reach the log, but not all of them their acks.
        tokio::time::sleep(Duration::from_millis(30)).await;
        (producer, deliveries)
    });
    let pending_at_kill = producer.pending_records();
    node.kill9();
    println!("killed with {pending_at_kill} records unacknowledged");
    node.restart();
    runtime.block_on(async {
        producer.flush().await;
        let mut acknowledged = HashMap::new();
        let mut failed = Vec::new();
        for (index, delivery) in deliveries {
            match delivery.await {
                Ok(metadata) => {
                    acknowledged.insert(index, metadata);
                }
                Err(error) => failed.push((index, error)),
            }
        }
        if let Some((index, error)) = failed.first() {
            let records = read_all(&client, "resent", 1).await;
            let logged: Vec<u64> = records.iter().map(index_of).collect();
            let around: Vec<_> = (index.saturating_sub(50)..index + 5)
                .map(|i| {
                    (
                        i,
                        acknowledged.get(&i).and_then(|m| m.offset),
                        logged.contains(&i),
                    )
                })
                .collect();
            panic!(
                "{} records failed, first {index}: {error}; log has {} records; around: {around:?}",
                failed.len(),
                logged.len()
            );
        }
        producer.close().await;
        let records = read_all(&client, "resent", 1).await;
        assert_eq!(
            records.len() as u64,
            RECORDS,
            "duplicates or losses in the log"
        );
        // One partition, sent in order: offset n must hold record n.
        for (offset, record) in records.iter().enumerate() {
            assert_eq!(record.offset, offset as i64);
            assert_eq!(
                index_of(record),
                offset as u64,
                "record out of order at offset {offset}"
            );
        }
        verify("resent", 1, &records, &acknowledged);
        client.close().await;
    });
    drop(node);
}

/// Goal: the consumer's positioning calls behave as Kafka's do.
/// Method: 100 zstd-compressed records with timestamps 10 ms apart, then `auto_offset_reset`
/// none, `seek`, `position`, `offsets_for_times`, `seek_to_beginning/end`, an out-of-range
/// seek, the other reset policies, and the record stream.
#[test]
fn consumer_positions_seek_and_offsets_for_times() {
    let node = NodeProcess::start();
    runtime().block_on(async move {
        let client = connect(&node).await;
        create_topic(&client, "positions", 1).await;
        let mut config = ProducerConfig::default();
        config.compression = Compression::Zstd;
        let producer = Producer::new(&client, config).await.expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..100i64 {
            let record = ProducerRecord::new("positions", format!("v{index}"))
                .timestamp(TIMESTAMP_BASE + index * 10);
            deliveries.push(producer.send(record).await.expect("send"));
        }
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.expect("delivered");
            assert_eq!(metadata.offset, Some(index as i64));
        }
        producer.close().await;

        let partition = TopicPartition::new("positions", 0);
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::None;
        let mut consumer = Consumer::new(&client, config);
        assert!(matches!(
            consumer.poll(Duration::from_millis(100), 10).await,
            Err(ConsumeError::NoAssignment)
        ));
        consumer.assign(vec![partition.clone()]);
        assert!(matches!(
            consumer.poll(Duration::from_millis(100), 10).await,
            Err(ConsumeError::NoOffsetForPartition { .. })
        ));
        assert!(matches!(
            consumer.position(&partition).await,
            Err(ConsumeError::NoOffsetForPartition { .. })
        ));

        consumer.seek(&partition, 50).expect("seek");
        let records = consumer
            .poll(Duration::from_secs(5), 10)
            .await
            .expect("poll");
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, (50..60).collect::<Vec<_>>());
        assert_eq!(records[0].value, Some(Bytes::from("v50")));
        assert_eq!(records[0].timestamp, TIMESTAMP_BASE + 500);
        assert_eq!(consumer.position(&partition).await.expect("position"), 60);

        let lookup = consumer
            .offsets_for_times(BTreeMap::from([(partition.clone(), TIMESTAMP_BASE + 255)]))
            .await
            .expect("offsets_for_times");
        let found = lookup[&partition].expect("a record at or after the time");
        assert_eq!((found.offset, found.timestamp), (26, TIMESTAMP_BASE + 260));
        let lookup = consumer
            .offsets_for_times(BTreeMap::from([(
                partition.clone(),
                TIMESTAMP_BASE + 10_000,
            )]))
            .await
            .expect("offsets_for_times");
        assert_eq!(lookup[&partition], None, "every record is older");

        consumer.seek_to_end(&[]).await.expect("seek_to_end");
        assert_eq!(consumer.position(&partition).await.expect("position"), 100);
        assert!(
            consumer
                .poll(Duration::from_millis(200), 10)
                .await
                .expect("poll at the end")
                .is_empty()
        );
        consumer
            .seek_to_beginning(std::slice::from_ref(&partition))
            .await
            .expect("seek_to_beginning");
        let first = consumer
            .poll(Duration::from_secs(5), 1)
            .await
            .expect("poll");
        assert_eq!(first[0].offset, 0);

        consumer.seek(&partition, 1000).expect("seek");
        match consumer.poll(Duration::from_secs(5), 10).await {
            Err(ConsumeError::OffsetOutOfRange {
                offset: 1000,
                high_watermark: 100,
                ..
            }) => {}
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }

        consumer.seek(&partition, 10).expect("seek");
        let streamed: Vec<i64> = {
            let stream = consumer.stream();
            let mut stream = std::pin::pin!(stream);
            let mut offsets = Vec::new();
            while offsets.len() < 5 {
                let next = std::future::poll_fn(|context| stream.as_mut().poll_next(context));
                let record = next.await.expect("stream goes on").expect("record");
                offsets.push(record.offset);
            }
            offsets
        };
        assert_eq!(streamed, vec![10, 11, 12, 13, 14]);
        assert_eq!(consumer.position(&partition).await.expect("position"), 15);

        for (reset, expected) in [(OffsetReset::Earliest, 0), (OffsetReset::Latest, 100)] {
            let mut config = ConsumerConfig::default();
            config.auto_offset_reset = reset;
            let mut consumer = Consumer::new(&client, config);
            consumer.assign(vec![partition.clone()]);
            assert_eq!(
                consumer.position(&partition).await.expect("position"),
                expected
            );
        }
        let ends = consumer
            .end_offsets(std::slice::from_ref(&partition))
            .await
            .expect("ends");
        let starts = consumer
            .beginning_offsets(std::slice::from_ref(&partition))
            .await
            .expect("starts");
        assert_eq!((starts[&partition], ends[&partition]), (0, 100));
        client.close().await;
        drop(node);
    });
}

/// Goal: when the node cannot keep up (here: it is gone), `send` waits at most `max_block` for
/// room in `buffer_memory`, then fails with a clear error instead of growing without bound.
/// Method: a 64 KiB buffer, a killed node, and sends until one is refused.
#[test]
fn a_full_buffer_fails_send_after_max_block() {
    let mut node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "stalled", 1).await;
        let mut config = ProducerConfig::default();
        config.buffer_memory = 64 * 1024;
        config.max_request_size = 16 * 1024;
        config.max_block = Duration::from_millis(200);
        let producer = Producer::new(&client, config).await.expect("producer");
        // One delivered record first, so the topic's metadata is cached.
        let first = producer.send(ProducerRecord::new("stalled", "first")).await;
        first.expect("send").await.expect("first record");
        node.kill9();
        let mut deliveries = Vec::new();
        let error = loop {
            assert!(deliveries.len() < 10_000, "the buffer never filled up");
            match producer
                .send(ProducerRecord::new("stalled", vec![0u8; 1000]))
                .await
            {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => break error,
            }
        };
        assert!(
            matches!(error, ledge_client::ProduceError::BufferFull { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("buffer_memory"), "{error}");
        // About 64 records of ~1 KiB fit; none of them was lost track of.
        assert!(
            (50..=64).contains(&deliveries.len()),
            "{}",
            deliveries.len()
        );
        assert_eq!(producer.pending_records(), deliveries.len());
    });
}

// Goal: with acks=0 nothing is acknowledged by the node, but records that `send` handed
// over and `close` flushed are not thrown away when the client closes right after.
#[test]
fn acks_0_records_are_not_lost_on_close() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "fire-and-forget", 1).await;
        let mut config = ProducerConfig::default();
        config.acks = ledge_client::Acks::None;
        config.enable_idempotence = false;
        let producer = Producer::new(&client, config).await.expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..20_000 {
            deliveries.push(
                producer
                    .send(record("fire-and-forget", index))
                    .await
                    .expect("send"),
            );
        }
        for delivery in deliveries {
            delivery.await.expect("handed over");
        }
        producer.close().await;
        client.close().await;
        let reader = connect(&node).await;
        // Nothing is acknowledged with acks=0, so the node may still be appending what it
        // received when the reader asks; wait for the end offset before reading it all.
        wait_for_end_offset(&reader, TopicPartition::new("fire-and-forget", 0), 20_000).await;
        assert_eq!(read_all(&reader, "fire-and-forget", 1).await.len(), 20_000);
    });
}

// Goal: a closed client stays closed. A consumer's prefetch (a long-poll fetch started when
// `poll` handed out records) that asks for the connection after `close` must fail, not open
// a new connection that nobody closes (which kept `close` waiting for its full bound and the
// node serving a fetch for a client that had gone).
#[test]
fn a_closed_client_does_not_reconnect() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "closing", 1).await;
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        for index in 0..10 {
            producer
                .send(record("closing", index))
                .await
                .expect("send")
                .await
                .expect("acknowledged");
        }
        producer.close().await;

        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        config.fetch_max_wait = Duration::from_secs(5);
        let mut consumer = Consumer::new(&client, config);
        let partition = TopicPartition::new("closing", 0);
        consumer.assign(vec![partition.clone()]);
        let mut records = Vec::new();
        while records.len() < 10 {
            records.extend(
                consumer
                    .poll(Duration::from_secs(5), 10)
                    .await
                    .expect("poll"),
            );
        }
        // The last poll started a prefetch that waits at the end of the log.
        client.close().await;

        match client.api_versions().await {
            Err(ledge_client::RequestError::Connect(ledge_client::ConnectError::Closed)) => {}
            other => panic!("expected ConnectError::Closed, got {other:?}"),
        }
        match consumer.poll(Duration::from_secs(5), 10).await {
            Err(ConsumeError::Request(ledge_client::RequestError::Connect(
                ledge_client::ConnectError::Closed,
            ))) => {}
            other => {
                panic!("expected the consumer to fail with ConnectError::Closed, got {other:?}")
            }
        }
        assert_eq!(
            consumer
                .position(&partition)
                .await
                .expect("a known position"),
            10,
            "nothing was handed out twice or skipped"
        );
    });
}

// Goal: closing the client under a producer with records still waiting fails those records
// with `ConnectError::Closed` and lets `Producer::close` return, instead of the idempotent
// producer asking for a fresh producer id forever.
#[test]
fn a_producer_whose_client_closed_fails_its_records_and_closes() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "abandoned", 1).await;
        // A long linger keeps the records waiting in the producer when the client closes.
        let mut config = ProducerConfig::default();
        config.linger = Duration::from_secs(60);
        let producer = Producer::new(&client, config).await.expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..100 {
            deliveries.push(
                producer
                    .send(record("abandoned", index))
                    .await
                    .expect("send"),
            );
        }
        client.close().await;
        tokio::time::timeout(Duration::from_secs(30), producer.close())
            .await
            .expect("Producer::close returns once its client is closed");
        for delivery in deliveries {
            match tokio::time::timeout(Duration::from_secs(30), delivery)
                .await
                .expect("every delivery resolves")
            {
                Err(ledge_client::ProduceError::Request(ledge_client::RequestError::Connect(
                    ledge_client::ConnectError::Closed,
                ))) => {}
                other => panic!("expected ConnectError::Closed, got {other:?}"),
            }
        }
    });
}

// Goal: a record too large to send is refused by `send` with a clear error, also when it is
// only too large once the batch header is counted (it used to pass the SDK's check and be
// refused by the node), while a large record that fits is written.
#[test]
fn records_too_large_for_a_request_are_refused_by_send() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "large", 1).await;
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        let limit = ledge_client::MAX_REQUEST_SIZE_DEFAULT;
        for value_bytes in [limit - 36, limit + 1] {
            match producer
                .send(ProducerRecord::new("large", vec![7u8; value_bytes]))
                .await
            {
                Err(ledge_client::ProduceError::RecordTooLarge { bytes, limit: said }) => {
                    assert!(bytes > said, "{bytes} > {said}");
                    assert_eq!(said, limit);
                }
                other => {
                    panic!("a {value_bytes}-byte value: expected RecordTooLarge, got {other:?}")
                }
            }
        }
        let written = producer
            .send(ProducerRecord::new("large", vec![7u8; limit - 1024]))
            .await
            .expect("send")
            .await
            .expect("a record that fits is written");
        assert_eq!(written.offset, Some(0));
        producer.close().await;
    });
}

// Goal: a batch the node refuses as too large is split and resent, as Kafka's producer does,
// and every record lands exactly once, in send order, at the offset its future reported; with
// idempotence (sequences of the halves continue the refused batch's) and without. Method:
// the producer learns the topic's max.message.bytes (1 MiB), the topic is then altered to
// 20,000 bytes, and ~370 KB of 900-byte records are sent with a long linger, so the
// producer's stale limit builds batches the node refuses; a refused half is split again.
#[test]
fn batches_refused_as_too_large_are_split_and_every_record_lands_once_in_order() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        for (topic, idempotent) in [("split-idempotent", true), ("split-plain", false)] {
            create_topic(&client, topic, 1).await;
            let mut config = ProducerConfig::default();
            config.enable_idempotence = idempotent;
            if !idempotent {
                config.acks = ledge_client::Acks::Leader;
            }
            config.batch_size = 256 * 1024;
            config.linger = Duration::from_millis(300);
            let producer = Producer::new(&client, config).await.expect("producer");
            let padding = "x".repeat(900);
            let value = |index: u64| format!("value-{index}-{padding}");
            let mut acknowledged = HashMap::new();
            // The first record makes the producer read the topic's limit (1 MiB).
            let first = producer
                .send(ProducerRecord::new(topic, value(0)).header("index", "0"))
                .await
                .expect("send")
                .await
                .expect("the first record is written");
            acknowledged.insert(0u64, first);
            Admin::new(&client)
                .alter_configs(
                    topic,
                    vec![("max.message.bytes".into(), "20000".into())],
                    Vec::new(),
                    false,
                )
                .await
                .expect("lower max.message.bytes");
            let count = 400u64;
            let mut deliveries = Vec::new();
            for index in 1..=count {
                let record =
                    ProducerRecord::new(topic, value(index)).header("index", index.to_string());
                deliveries.push((index, producer.send(record).await.expect("send")));
            }
            producer.flush().await;
            for (index, delivery) in deliveries {
                let metadata = delivery
                    .await
                    .unwrap_or_else(|error| panic!("{topic}: record {index} failed: {error}"));
                acknowledged.insert(index, metadata);
            }
            producer.close().await;
            // With acks=1 the last records become readable at the next sync.
            wait_for_end_offset(&client, TopicPartition::new(topic, 0), count as i64 + 1).await;
            let records = read_all(&client, topic, 1).await;
            assert_eq!(
                records.len() as u64,
                count + 1,
                "{topic}: one copy of each record"
            );
            for (position, record) in records.iter().enumerate() {
                let index = index_of(record);
                assert_eq!(index, position as u64, "{topic}: records in send order");
                assert_eq!(record.value.as_deref(), Some(value(index).as_bytes()));
                assert_eq!(
                    acknowledged[&index].offset,
                    Some(record.offset),
                    "{topic}: record {index} is where its future said"
                );
            }
        }
    });
}
