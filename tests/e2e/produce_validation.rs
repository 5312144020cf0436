//! Produce requests whose batches lie about their records, sent as raw frames over QUIC to a
//! real `ledge-node` (issue 11, "First" and data item 5): the node refuses them, keeps the
//! partition working, and survives `kill -9` and a restart.

use std::sync::Arc;

use bytes::Bytes;
use ledge_e2e::{NodeProcess, RawClient};
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, DecodeLimits, EncodeOptions, Record, decode_batch, encode_batch};

/// A valid uncompressed batch of `count` small records.
fn batch(count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{number}"))),
            value: Some(Bytes::from(format!("v{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// CRC-32C (Castagnoli), bit by bit: the tests crate has no CRC dependency and these
/// batches are tiny.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the batch CRC (over `attributes` to the end) after an edit.
fn reseal(batch: &mut [u8]) {
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One real record whose header claims 2^31 - 1 records over as many offsets, CRC intact:
/// the batch that used to take two billion offsets and, drained with others into one group
/// commit, panic the writer (and every later start).
fn inflated() -> Bytes {
    let mut bytes = batch(1).to_vec();
    bytes[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    reseal(&mut bytes);
    Bytes::from(bytes)
}

/// A batch with an intact CRC over a record whose length runs past the batch: every reader
/// would stop at it (the "poison batch").
fn poison() -> Bytes {
    let mut bytes = batch(1).to_vec();
    // The first record's length varint: zigzag 0x7e is 63 bytes, more than remain.
    bytes[61] = 0x7e;
    reseal(&mut bytes);
    Bytes::from(bytes)
}

fn produce_request(topic: &str, records: Bytes, acks: Acks) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                current_leader_epoch: None,
                partition: 0,
                records,
            }],
        }],
    })
}

async fn produce(client: &RawClient, topic: &str, records: Bytes, acks: Acks) -> (ErrorCode, i64) {
    let (_, Some(Response::Produce(response))) =
        client.request(&produce_request(topic, records, acks)).await
    else {
        panic!("no Produce response")
    };
    let partition = &response.topics[0].partitions[0];
    (partition.error, partition.base_offset)
}

async fn create_topic(client: &RawClient, name: &str) {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            replication_factor: None,
            name: name.into(),
            partitions: 1,
            configs: Vec::new(),
        }],
        validate_only: false,
    });
    let (_, Some(Response::CreateTopics(response))) = client.request(&request).await else {
        panic!("no CreateTopics response")
    };
    assert_eq!(response.topics[0].error, ErrorCode::None);
}

/// Every record value from offset 0 to the high watermark, read with Fetch and decoded.
async fn values(client: &RawClient, topic: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    current_leader_epoch: None,
                    partition: 0,
                    fetch_offset: offset,
                    partition_max_bytes: 1 << 20,
                }],
            }],
            plugin: None,
        });
        let (_, Some(Response::Fetch(response))) = client.request(&request).await else {
            panic!("no Fetch response")
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error, ErrorCode::None, "{}", partition.message);
        if partition.records.is_empty() {
            assert_eq!(offset, partition.high_watermark);
            return values;
        }
        for item in BatchIter::new(&partition.records) {
            let (_, bytes) = item.unwrap();
            let decoded = decode_batch(
                &partition.records.slice_ref(bytes),
                &DecodeLimits::default(),
            )
            .unwrap();
            for record in decoded.records {
                offset = record.offset + 1;
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
    }
}

// Goal (issue 11, "First"): 16 concurrent acks=1 produce requests, each one batch claiming
// 2^31 - 1 records, are each refused with InvalidRecord; the partition keeps taking valid
// batches; after kill -9 the node starts again with every acknowledged record and nothing
// of the refused batches. Before the fix the partition answered "partition log is closed"
// to every later produce and the node panicked at every start.
#[test]
fn inflated_record_counts_are_refused_and_the_node_survives_kill_9() {
    let mut node = NodeProcess::start();
    ledge_e2e::runtime().block_on(async {
        let client = Arc::new(RawClient::connect(&node).await);
        create_topic(&client, "inflated").await;
        let requests: Vec<_> = (0..16)
            .map(|_| {
                let client = Arc::clone(&client);
                tokio::spawn(
                    async move { produce(&client, "inflated", inflated(), Acks::Leader).await },
                )
            })
            .collect();
        for request in requests {
            let (error, _) = request.await.unwrap();
            assert_eq!(error, ErrorCode::InvalidRecord);
        }
        assert_eq!(
            produce(&client, "inflated", batch(3), Acks::All).await,
            (ErrorCode::None, 0)
        );
        assert_eq!(
            produce(&client, "inflated", batch(2), Acks::Leader).await,
            (ErrorCode::None, 3)
        );
    });
    node.kill9();
    node.restart();
    ledge_e2e::runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        assert_eq!(
            produce(&client, "inflated", batch(1), Acks::All).await,
            (ErrorCode::None, 5)
        );
        assert_eq!(
            values(&client, "inflated").await,
            ["v0", "v1", "v2", "v0", "v1", "v0"]
        );
    });
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

// Goal (issue 11, data item 5): a batch whose CRC is valid but whose records do not decode
// is refused at produce with InvalidRecord, so no consumer ever meets it; the partition and
// its readers carry on.
#[test]
fn a_poison_batch_is_refused_at_produce() {
    let node = NodeProcess::start();
    ledge_e2e::runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        create_topic(&client, "poison").await;
        assert_eq!(
            produce(&client, "poison", batch(2), Acks::All).await,
            (ErrorCode::None, 0)
        );
        let (error, _) = produce(&client, "poison", poison(), Acks::All).await;
        assert_eq!(error, ErrorCode::InvalidRecord);
        assert_eq!(
            produce(&client, "poison", batch(1), Acks::All).await,
            (ErrorCode::None, 2)
        );
        assert_eq!(values(&client, "poison").await, ["v0", "v1", "v0"]);
    });
    assert!(!node.log().contains("panicked"), "{}", node.log());
}
