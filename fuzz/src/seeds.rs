//! Valid inputs the fuzz corpora start from, built with the same encoders clients and the node
//! use: Kafka requests encoded with `kafka-protocol` as a client writes them, record batches
//! from `ledge_protocol::encode_batch`, native frames from `wire::encode_request`, consumer
//! protocol bytes from both the node's and the schema's encoders. The fuzzer mutates from
//! these, so every API and version, codec and message kind is reached from the first run.

use bytes::Bytes;
use ledge_protocol::wire::codec::{FrameWriter, Wire};
use ledge_protocol::wire::replica::{
    ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResponse,
};
use ledge_protocol::wire::{self, ApiKey as NativeApiKey, ErrorCode};
use ledge_protocol::{
    Compression, EncodeOptions, Header, Record, TimestampType, encode_batch, encode_empty_batch,
};

#[cfg(feature = "node")]
mod node;
#[cfg(feature = "node")]
pub use node::{consumer_protocol, kafka_frame, kafka_requests, sasl, storage_files};

const CODECS: [Compression; 5] = Compression::ALL;

/// A few records with the shapes producers send: keyed, null key, tombstone, headers
/// (repeated key, null value), timestamps out of order.
pub fn sample_records() -> Vec<Record> {
    vec![
        Record {
            timestamp: 1_796_544_000_000,
            key: Some(Bytes::from_static(b"alice")),
            value: Some(Bytes::from_static(b"order 1")),
            headers: Vec::new(),
        },
        Record {
            timestamp: 1_796_544_000_005,
            key: None,
            value: Some(Bytes::from_static(b"{\"amount\":42}")),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"abc")),
                },
                Header {
                    key: "trace".into(),
                    value: None,
                },
            ],
        },
        Record {
            timestamp: 1_796_544_000_002,
            key: Some(Bytes::from_static(b"bob")),
            value: None,
            headers: Vec::new(),
        },
    ]
}

/// One batch of [`sample_records`] per codec, and the other header shapes: log-append time,
/// idempotent and transactional producers, one record, an emptied (compacted) batch.
pub fn record_batches() -> Vec<Vec<u8>> {
    let records = sample_records();
    let mut batches: Vec<Vec<u8>> = CODECS
        .iter()
        .map(|&compression| {
            let options = EncodeOptions {
                compression,
                ..EncodeOptions::default()
            };
            encode_batch(&records, &options)
                .expect("sample batch")
                .to_vec()
        })
        .collect();
    let idempotent = EncodeOptions {
        producer_id: 4_000,
        producer_epoch: 2,
        base_sequence: 17,
        ..EncodeOptions::default()
    };
    let shapes = [
        EncodeOptions {
            timestamp_type: TimestampType::LogAppendTime,
            ..EncodeOptions::default()
        },
        EncodeOptions {
            transactional: true,
            compression: Compression::Zstd,
            ..idempotent.clone()
        },
        EncodeOptions {
            base_offset: 1_000,
            partition_leader_epoch: 3,
            compression: Compression::Lz4,
            ..idempotent.clone()
        },
    ];
    for options in &shapes {
        batches.push(
            encode_batch(&records, options)
                .expect("sample batch")
                .to_vec(),
        );
    }
    batches.push(
        encode_batch(&records[..1], &EncodeOptions::default())
            .expect("one record")
            .to_vec(),
    );
    batches.push(
        encode_empty_batch(2, 1_796_544_000_000, &EncodeOptions::default())
            .expect("emptied batch")
            .to_vec(),
    );
    // A produce payload of two batches back to back, as a partition's records field holds.
    let mut two = batches[0].clone();
    two.extend_from_slice(&batches[4]);
    batches.push(two);
    batches
}

fn native_header(api_key: NativeApiKey) -> FrameWriter {
    let mut out = FrameWriter::new();
    wire::RequestHeader {
        api_key: api_key as u16,
        api_version: wire::API_VERSION,
        correlation_id: 7,
        client_id: "fuzz-seed".into(),
    }
    .encode(&mut out);
    out
}

/// The shortest all-zero body after `prefix` that `accepts`, if one of at most 64 bytes does:
/// a valid empty message of any API without naming its fields.
fn zero_body(prefix: &[u8], accepts: impl Fn(Bytes) -> bool) -> Option<Vec<u8>> {
    (0..=64).find_map(|zeros| {
        let mut frame = prefix.to_vec();
        frame.resize(prefix.len() + zeros, 0);
        accepts(Bytes::from(frame.clone())).then_some(frame)
    })
}

/// Native protocol frames: an empty request of every API, requests with content, an empty
/// response of every API (behind the selector byte `native_frame` reads the API from) and
/// replica fetch messages.
pub fn native_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (index, &api) in NativeApiKey::ALL.iter().enumerate() {
        let header = native_header(api).into_bytes();
        frames.extend(zero_body(&header, |frame| {
            wire::decode_request(frame).is_ok()
        }));
        let mut response_header = FrameWriter::new();
        wire::ResponseHeader {
            correlation_id: 7,
            error: ErrorCode::None,
            message: String::new(),
        }
        .encode(&mut response_header);
        let response_header = response_header.into_bytes();
        if let Some(body) = zero_body(&response_header, |frame| {
            wire::decode_response(api, frame).is_ok()
        }) {
            let selector = u8::try_from(index).expect("fewer than 256 APIs");
            frames.push([&[selector][..], &body].concat());
        }
    }
    let batch = Bytes::from(record_batches().swap_remove(0));
    let requests = [
        wire::Request::Produce(wire::ProduceRequest {
            acks: wire::Acks::All,
            timeout_ms: 30_000,
            topics: vec![wire::ProduceTopic {
                name: "orders".into(),
                partitions: vec![wire::ProducePartition {
                    partition: 0,
                    current_leader_epoch: Some(4),
                    records: batch.clone(),
                }],
            }],
        }),
        wire::Request::Fetch(wire::FetchRequest {
            plugin: None,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![wire::FetchTopic {
                name: "orders".into(),
                partitions: vec![wire::FetchPartition {
                    partition: 0,
                    current_leader_epoch: None,
                    fetch_offset: 42,
                    partition_max_bytes: 1 << 20,
                }],
            }],
        }),
        wire::Request::CreateTopics(wire::CreateTopicsRequest {
            topics: vec![wire::CreatableTopic {
                name: "orders".into(),
                partitions: 3,
                replication_factor: Some(3),
                configs: vec![wire::ConfigEntry {
                    name: "min.insync.replicas".into(),
                    value: "2".into(),
                }],
            }],
            validate_only: false,
        }),
        wire::Request::ListOffsets(wire::ListOffsetsRequest {
            topics: vec![wire::ListOffsetsTopic {
                name: "orders".into(),
                partitions: vec![
                    wire::ListOffsetsPartition {
                        partition: 0,
                        spec: wire::OffsetSpec::Earliest,
                    },
                    wire::ListOffsetsPartition {
                        partition: 1,
                        spec: wire::OffsetSpec::Timestamp(1_796_544_000_000),
                    },
                ],
            }],
        }),
    ];
    for request in &requests {
        frames.push(wire::encode_request(7, "fuzz-seed", request).to_vec());
    }
    let replica_request = ReplicaFetchRequest {
        partitions: vec![ReplicaFetchPartition::default()],
        ..ReplicaFetchRequest::default()
    };
    frames.push(replica_request.encode_frame().into_bytes().to_vec());
    frames.push(
        ReplicaFetchResponse::default()
            .encode_frame()
            .into_bytes()
            .to_vec(),
    );
    frames
}

/// Plug-in outputs of every kind a guest returns (selector byte, partition count, output),
/// and `ledge_init` results (`INIT_SELECTOR`, then the result).
pub fn plugin_outputs() -> Vec<Vec<u8>> {
    use crate::plugin_output::{
        INIT_SELECTOR, STATEFUL_AGGREGATE, STATEFUL_MERGE, STATEFUL_SELECTOR, STATEFUL_STATE_CHECK,
        encode_output,
    };
    use ledge_protocol::wasm_abi::stateful::{
        SlotChange, encode_aggregate_output, encode_merge_output, encode_state_check_output,
    };
    use ledge_protocol::wasm_abi::{OutputEntry, OutputRecordView, PluginKind};

    let record = |timestamp, key: Option<&'static [u8]>| OutputRecordView {
        timestamp,
        key,
        value: Some(b"{\"amount\":42}"),
        headers: vec![("trace", Some(&b"abc"[..])), ("empty", None)],
    };
    let by_kind: [(PluginKind, Vec<OutputEntry<'static>>); 7] = [
        (
            PluginKind::Filter,
            vec![
                OutputEntry::Keep,
                OutputEntry::Drop,
                OutputEntry::Error("bad record"),
            ],
        ),
        (
            PluginKind::Map,
            vec![
                OutputEntry::Records(vec![record(None, Some(b"alice"))]),
                OutputEntry::Keep,
                OutputEntry::Error("cannot map"),
            ],
        ),
        (
            PluginKind::FilterMap,
            vec![
                OutputEntry::Records(vec![record(Some(1_796_544_000_000), None)]),
                OutputEntry::Drop,
            ],
        ),
        (
            PluginKind::FlatMap,
            vec![
                OutputEntry::Records(vec![record(None, None), record(Some(0), Some(b"k"))]),
                OutputEntry::Records(Vec::new()),
                OutputEntry::Drop,
            ],
        ),
        (
            PluginKind::Partitioner,
            vec![
                OutputEntry::Partition(0),
                OutputEntry::Partition(2),
                OutputEntry::Error("no key"),
            ],
        ),
        (
            // `ledge_group`.
            PluginKind::Aggregate,
            vec![
                OutputEntry::Key(b"42"),
                OutputEntry::Keep,
                OutputEntry::Drop,
                OutputEntry::Error("no customer_id"),
            ],
        ),
        (
            // `ledge_join`.
            PluginKind::Join,
            vec![
                OutputEntry::Records(vec![record(None, Some(b"42"))]),
                OutputEntry::Drop,
                OutputEntry::Error("not an object"),
            ],
        ),
    ];
    let mut seeds = Vec::new();
    for (kind, entries) in by_kind {
        seeds.push([&[kind.number(), 3][..], &encode_output(&entries)].concat());
        seeds.push([&[kind.number(), 3][..], &encode_output(&entries[..1])].concat());
    }
    let mut output = Vec::new();
    encode_aggregate_output(
        &[Ok(()), Err("amount is not a number"), Ok(())],
        &[
            SlotChange::Put(b"{\"n\":3}"),
            SlotChange::Unchanged,
            SlotChange::Delete,
        ],
        &mut output,
    )
    .unwrap();
    seeds.push([&[STATEFUL_SELECTOR | STATEFUL_AGGREGATE, 3, 3][..], &output].concat());
    encode_merge_output(&[Ok(b"7"), Err("cannot merge")], &mut output).unwrap();
    seeds.push([&[STATEFUL_SELECTOR | STATEFUL_MERGE, 2, 0][..], &output].concat());
    encode_state_check_output(&[Ok(()), Err("expected u64")], &mut output).unwrap();
    seeds.push(
        [
            &[STATEFUL_SELECTOR | STATEFUL_STATE_CHECK, 2, 0][..],
            &output,
        ]
        .concat(),
    );
    seeds.push(vec![INIT_SELECTOR, 0]);
    seeds.push([&[INIT_SELECTOR, 1][..], &5u32.to_le_bytes(), b"nope!"].concat());
    seeds
}
