//! Seeded fuzz-style test of the produce path (issue 11, "Bad input, in general"): produce
//! requests whose batch headers lie in every field, driven through `Broker::handle` on the
//! simulated disk. Runs on stable in `cargo test`; `LEDGE_SIM_SEED=<n>` replays one seed and
//! `LEDGE_SIM_SEED_COUNT=<n>` runs a longer campaign.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{
    BatchIter, Compression, DecodeLimits, EncodeOptions, Header, Record, decode_batch, encode_batch,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::clock::SimClock;
use crate::sim::{self, SimDisk};

const DATA: &str = "/data";
/// Produce requests per seed.
const CASES_PER_SEED: usize = 160;
/// Topics with the settings that send a batch through different code: as it is, recompressed
/// (`compression.type`), and restamped (`message.timestamp.type`).
const TOPICS: [(&str, &[(&str, &str)]); 3] = [
    ("plain", &[]),
    ("recompressed", &[("compression.type", "zstd")]),
    (
        "append-time",
        &[("message.timestamp.type", "LogAppendTime")],
    ),
];
const CODECS: [Compression; 5] = Compression::ALL;

async fn open(disk: &SimDisk) -> Broker<SimDisk> {
    Broker::open(
        disk.clone(),
        Path::new(DATA),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap()
}

/// A valid batch: 1 to 20 records, a random codec, sometimes headers and null keys/values.
fn valid_batch(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let count = rng.random_range(1..=20);
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: 1_000_000 + number,
            key: rng
                .random_bool(0.8)
                .then(|| Bytes::from(format!("key-{}", rng.random_range(0..50)))),
            value: rng
                .random_bool(0.9)
                .then(|| Bytes::from(vec![b'v'; rng.random_range(0..200)])),
            headers: (0..rng.random_range(0..3))
                .map(|header| Header {
                    key: format!("h{header}"),
                    value: Some(Bytes::from_static(b"x")),
                })
                .collect(),
        })
        .collect();
    let options = EncodeOptions {
        compression: CODECS[rng.random_range(0..CODECS.len())],
        ..EncodeOptions::default()
    };
    encode_batch(&records, &options).unwrap().to_vec()
}

/// A value for a lying `i32` field: near its true value, an edge of the type, or anything.
fn lie_i32(rng: &mut ChaCha8Rng, truth: i32) -> i32 {
    match rng.random_range(0..4) {
        0 => truth.wrapping_add(rng.random_range(-3..=3)),
        1 => [i32::MIN, -1, 0, 1, i32::MAX - 1, i32::MAX][rng.random_range(0..6)],
        2 => rng.random_range(0..1 << 20),
        _ => rng.random(),
    }
}

fn lie_i64(rng: &mut ChaCha8Rng, truth: i64) -> i64 {
    match rng.random_range(0..3) {
        0 => truth.wrapping_add(rng.random_range(-3..=3)),
        1 => [i64::MIN, -1, 0, i64::MAX][rng.random_range(0..4)],
        _ => rng.random(),
    }
}

fn put(batch: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = batch.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

/// The field at `at`, or 0 once an earlier lie truncated the batch before it.
fn read_i32(batch: &[u8], at: usize) -> i32 {
    batch
        .get(at..at + 4)
        .map_or(0, |bytes| i32::from_be_bytes(bytes.try_into().unwrap()))
}

fn read_i64(batch: &[u8], at: usize) -> i64 {
    batch
        .get(at..at + 8)
        .map_or(0, |bytes| i64::from_be_bytes(bytes.try_into().unwrap()))
}

/// `batch` with one to four header fields lying, its CRC usually resealed (so only the lie
/// is wrong), and sometimes truncated or with bytes flipped in the records.
fn lying_batch(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut batch = valid_batch(rng);
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..12) {
            0 => {
                let lie = lie_i32(rng, read_i32(&batch, 8));
                put(&mut batch, 8, &lie.to_be_bytes());
            }
            1 => put(&mut batch, 16, &[rng.random()]),
            2 => {
                let attributes = if rng.random_bool(0.5) {
                    rng.random::<i16>()
                } else {
                    // Flip one meaningful bit: codec, timestamp type, transactional, control,
                    // delete horizon.
                    (read_i32(&batch, 21) >> 16) as i16 ^ (1 << rng.random_range(0..7))
                };
                put(&mut batch, 21, &attributes.to_be_bytes());
            }
            3 => {
                let lie = lie_i32(rng, read_i32(&batch, 23));
                put(&mut batch, 23, &lie.to_be_bytes());
            }
            4 => {
                let lie = lie_i64(rng, read_i64(&batch, 27));
                put(&mut batch, 27, &lie.to_be_bytes());
            }
            5 => {
                let lie = lie_i64(rng, read_i64(&batch, 35));
                put(&mut batch, 35, &lie.to_be_bytes());
            }
            6 => {
                let lie = lie_i64(rng, read_i64(&batch, 43));
                put(&mut batch, 43, &lie.to_be_bytes());
            }
            7 => {
                let epoch: i16 = if rng.random_bool(0.5) {
                    -1
                } else {
                    rng.random()
                };
                put(&mut batch, 51, &epoch.to_be_bytes());
            }
            8 => {
                let lie = lie_i32(rng, read_i32(&batch, 53));
                put(&mut batch, 53, &lie.to_be_bytes());
            }
            9 => {
                // The record count, often with the last offset delta that matches it.
                let lie = lie_i32(rng, read_i32(&batch, 57));
                put(&mut batch, 57, &lie.to_be_bytes());
                if rng.random_bool(0.7) {
                    put(&mut batch, 23, &lie.wrapping_sub(1).to_be_bytes());
                }
            }
            10 => {
                if batch.len() > 61 {
                    let at = rng.random_range(61..batch.len());
                    batch[at] ^= 1 << rng.random_range(0..8);
                }
            }
            _ => {
                let keep = rng.random_range(0..=batch.len());
                batch.truncate(keep);
            }
        }
    }
    if rng.random_bool(0.8) && batch.len() >= 21 {
        let crc = crc32c::crc32c(&batch[21..]);
        put(&mut batch, 17, &crc.to_be_bytes());
    }
    batch
}

async fn produce_to(
    broker: &Broker<SimDisk>,
    topic: &str,
    partitions: Vec<ProducePartition>,
    acks: Acks,
) -> Vec<ProducePartitionResponse> {
    let request = ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions,
        }],
    };
    let Response::Produce(response) = broker.handle(Request::Produce(request)).await else {
        panic!("wrong response kind")
    };
    response.topics.into_iter().next().unwrap().partitions
}

/// Produces one valid batch to `topic` and requires it to be accepted.
async fn produce_valid(broker: &Broker<SimDisk>, topic: &str, rng: &mut ChaCha8Rng) {
    let records = Bytes::from(valid_batch(rng));
    let responses = produce_to(
        broker,
        topic,
        vec![ProducePartition {
            current_leader_epoch: None,
            partition: 0,
            records,
        }],
        Acks::All,
    )
    .await;
    assert_eq!(
        responses[0].error,
        ErrorCode::None,
        "a valid batch to {topic}: {}",
        responses[0].message
    );
}

/// A fetch and a list-offsets whose numbers are anything a client could send (offsets,
/// partitions, byte limits, timestamps): each is answered, with an error where one is due.
async fn read_with_hostile_values(broker: &Broker<SimDisk>, topic: &str, rng: &mut ChaCha8Rng) {
    let offset = [i64::MIN, -2, -1, 0, 1, i64::MAX, rng.random()][rng.random_range(0..7)];
    let partition = [0, 1, u32::MAX, rng.random()][rng.random_range(0..4)];
    let request = FetchRequest {
        max_wait_ms: rng.random_range(0..20),
        min_bytes: rng.random(),
        max_bytes: rng.random(),
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                current_leader_epoch: None,
                partition,
                fetch_offset: offset,
                partition_max_bytes: rng.random(),
            }],
        }],
        plugin: None,
    };
    let Response::Fetch(response) = broker.handle(Request::Fetch(request)).await else {
        panic!("wrong response kind")
    };
    let answer = &response.topics[0].partitions[0];
    if partition != 0 {
        assert_eq!(answer.error, ErrorCode::UnknownTopicOrPartition);
    }
    let timestamp = [i64::MIN, -3, -1, 0, i64::MAX, rng.random()][rng.random_range(0..6)];
    let request = ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition,
                spec: OffsetSpec::Timestamp(timestamp),
            }],
        }],
    };
    let Response::ListOffsets(response) = broker.handle(Request::ListOffsets(request)).await else {
        panic!("wrong response kind")
    };
    assert_eq!(response.topics[0].partitions.len(), 1);
}

/// Reads the whole partition and decodes every batch: whatever was accepted is readable.
async fn read_back(broker: &Broker<SimDisk>, topic: &str) -> i64 {
    let partition = broker.registry.partition(topic, 0).unwrap();
    let log = partition.online_log().unwrap();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20).await.unwrap();
        for item in BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            let decoded = decode_batch(&read.bytes.slice_ref(bytes), &DecodeLimits::default());
            assert!(
                decoded.is_ok(),
                "{topic}: stored batch at {} does not decode: {decoded:?}",
                header.base_offset
            );
            // The header's max timestamp (what produce bounds and retention reads) covers
            // every stored record, however the produced header lied about it.
            if let Ok(decoded) = &decoded {
                for record in &decoded.records {
                    assert!(
                        record.timestamp <= header.max_timestamp,
                        "{topic}: record {} stamped {} after its batch's max timestamp {}",
                        record.offset,
                        record.timestamp,
                        header.max_timestamp
                    );
                }
            }
            offset = header.last_offset() + 1;
        }
    }
    log.high_watermark()
}

// Goal: no produce request whose batch headers lie (length, magic, CRC, attributes, last
// offset delta, timestamps, producer id and epoch, base sequence, record count), alone, in
// several batches of one request or in concurrent entries for one partition, panics the
// broker or its writers; valid batches are accepted after every lie; fetches and offset
// lookups with hostile numbers in between are answered; everything accepted decodes with
// every record within its header's max timestamp; and a reopen (recovery) of the same disk
// succeeds with the same offsets.
#[test]
fn lying_batch_headers_never_panic_and_the_log_keeps_working() {
    for seed in sim::seeds(1, 3) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let disk = SimDisk::new(seed);
            let broker = open(&disk).await;
            for (topic, configs) in TOPICS {
                let request = CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        replication_factor: None,
                        name: topic.into(),
                        partitions: 1,
                        configs: configs
                            .iter()
                            .map(|(name, value)| ConfigEntry {
                                name: name.to_string(),
                                value: value.to_string(),
                            })
                            .collect(),
                    }],
                    validate_only: false,
                };
                let Response::CreateTopics(created) =
                    broker.handle(Request::CreateTopics(request)).await
                else {
                    panic!("wrong response kind")
                };
                assert_eq!(created.topics[0].error, ErrorCode::None);
            }
            for case in 0..CASES_PER_SEED {
                let (topic, _) = TOPICS[rng.random_range(0..TOPICS.len())];
                // One partition entry with several batches, or several entries for the same
                // partition (appended concurrently, so they share a group commit).
                let entries = if rng.random_bool(0.3) {
                    rng.random_range(2..=4)
                } else {
                    1
                };
                let partitions = (0..entries)
                    .map(|_| {
                        let mut records = Vec::new();
                        for _ in 0..rng.random_range(1..=3) {
                            if rng.random_bool(0.75) {
                                records.extend(lying_batch(&mut rng));
                            } else {
                                records.extend(valid_batch(&mut rng));
                            }
                        }
                        ProducePartition {
                            current_leader_epoch: None,
                            partition: 0,
                            records: Bytes::from(records),
                        }
                    })
                    .collect();
                let acks = [Acks::None, Acks::Leader, Acks::All][rng.random_range(0..3)];
                let responses = produce_to(&broker, topic, partitions, acks).await;
                assert_eq!(responses.len(), entries, "seed {seed} case {case}");
                for response in &responses {
                    assert_ne!(
                        response.error,
                        ErrorCode::ShuttingDown,
                        "seed {seed} case {case}: a writer died: {}",
                        response.message
                    );
                }
                if case % 8 == 0 {
                    produce_valid(&broker, topic, &mut rng).await;
                }
                if case % 4 == 0 {
                    read_with_hostile_values(&broker, topic, &mut rng).await;
                }
            }
            let mut watermarks = Vec::new();
            for (topic, _) in TOPICS {
                produce_valid(&broker, topic, &mut rng).await;
                watermarks.push(read_back(&broker, topic).await);
            }
            broker.close().await;
            drop(broker);

            let reopened = open(&disk).await;
            for ((topic, _), watermark) in TOPICS.iter().zip(&watermarks) {
                assert_eq!(
                    read_back(&reopened, topic).await,
                    *watermark,
                    "seed {seed}: {topic} after reopen"
                );
                produce_valid(&reopened, topic, &mut rng).await;
            }
        });
    }
}

// Goal: a batch with an intact CRC whose records do not decode, or whose record count lies,
// is answered `InvalidRecord` (not retriable) on every produce path: plain append,
// recompression (`compression.type`) and log-append time; a damaged CRC stays
// `CorruptMessage` (retriable). Before, recompression answered `CorruptMessage` for both.
#[test]
fn records_that_do_not_match_their_header_are_invalid_record_on_every_path() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let disk = SimDisk::new(99);
            let broker = open(&disk).await;
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            for (topic, configs) in TOPICS {
                let request = CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        replication_factor: None,
                        name: topic.into(),
                        partitions: 1,
                        configs: configs
                            .iter()
                            .map(|(name, value)| ConfigEntry {
                                name: name.to_string(),
                                value: value.to_string(),
                            })
                            .collect(),
                    }],
                    validate_only: false,
                };
                broker.handle(Request::CreateTopics(request)).await;
                let reseal = |batch: &mut Vec<u8>| {
                    let crc = crc32c::crc32c(&batch[21..]);
                    batch[17..21].copy_from_slice(&crc.to_be_bytes());
                };
                let mut poison = encode_batch(
                    &[Record {
                        timestamp: 1_000_000,
                        key: Some(Bytes::from_static(b"k")),
                        value: Some(Bytes::from_static(b"v")),
                        headers: Vec::new(),
                    }],
                    &EncodeOptions::default(),
                )
                .unwrap()
                .to_vec();
                let mut inflated = poison.clone();
                poison[61] = 0x7e;
                reseal(&mut poison);
                inflated[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
                inflated[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
                reseal(&mut inflated);
                let mut damaged = valid_batch(&mut rng);
                let last = damaged.len() - 1;
                damaged[last] ^= 1;
                for (records, expected) in [
                    (poison, ErrorCode::InvalidRecord),
                    (inflated, ErrorCode::InvalidRecord),
                    (damaged, ErrorCode::CorruptMessage),
                ] {
                    let responses = produce_to(
                        &broker,
                        topic,
                        vec![ProducePartition {
                            current_leader_epoch: None,
                            partition: 0,
                            records: Bytes::from(records),
                        }],
                        Acks::All,
                    )
                    .await;
                    assert_eq!(
                        responses[0].error, expected,
                        "{topic}: {}",
                        responses[0].message
                    );
                }
                produce_valid(&broker, topic, &mut rng).await;
            }
        });
}
