//! Broker tests on the simulated disk: every API through `Broker::handle`, persistence
//! across reopen, config reconcile, and bad input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, Compression, EncodeOptions, Record, decode_batch, encode_batch};

use super::*;
use crate::clock::{Clock, ManualClock, SimClock};
use crate::sim::SimDisk;

const DATA: &str = "/data";

/// Paused time: timers (fetch deadlines, flush intervals, group timeouts) fire when the
/// runtime has nothing else to do, so no test waits on wall time.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn broker(disk: &SimDisk) -> Broker<SimDisk> {
    Broker::open(
        disk.clone(),
        Path::new(DATA),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap()
}

fn records(count: usize, timestamp: i64) -> Vec<Record> {
    (0..count)
        .map(|number| Record {
            timestamp: timestamp + number as i64,
            key: Some(Bytes::from(format!("key-{number}"))),
            value: Some(Bytes::from(format!("value-{number}"))),
            headers: Vec::new(),
        })
        .collect()
}

fn batch(count: usize, timestamp: i64) -> Bytes {
    encode_batch(&records(count, timestamp), &EncodeOptions::default()).unwrap()
}

async fn create(
    broker: &Broker<SimDisk>,
    name: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> TopicResult {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            replication_factor: None,
            name: name.into(),
            partitions,
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
    let Response::CreateTopics(response) = broker.handle(Request::CreateTopics(request)).await
    else {
        panic!("wrong response")
    };
    response.topics.into_iter().next().unwrap()
}

pub(super) async fn produce(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
    records: Bytes,
    acks: Acks,
) -> ProducePartitionResponse {
    let request = ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch: None,
                records,
            }],
        }],
    };
    let Response::Produce(response) = broker.handle(Request::Produce(request)).await else {
        panic!("wrong response")
    };
    response
        .topics
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

async fn fetch(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
    offset: i64,
    max_wait_ms: u32,
) -> FetchPartitionResponse {
    let request = FetchRequest {
        plugin: None,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                current_leader_epoch: None,
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let Response::Fetch(response) = broker.handle(Request::Fetch(request)).await else {
        panic!("wrong response")
    };
    response
        .topics
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

async fn list_offset(
    broker: &Broker<SimDisk>,
    topic: &str,
    spec: OffsetSpec,
) -> ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition { partition: 0, spec }],
        }],
    };
    let Response::ListOffsets(response) = broker.handle(Request::ListOffsets(request)).await else {
        panic!("wrong response")
    };
    response
        .topics
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

/// Metadata without internal topics.
async fn metadata(broker: &Broker<SimDisk>, topics: Option<Vec<String>>) -> MetadataResponse {
    let Response::Metadata(mut response) = broker
        .handle(Request::Metadata(MetadataRequest { topics }))
        .await
    else {
        panic!("wrong response")
    };
    response.topics.retain(|topic| !topic.internal);
    response
}

// Goal: topics are created with their partitions and refused with the right code when the
// name, partition count or configs are wrong.
#[test]
fn create_topics_validates_and_reports() {
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let broker = broker(&disk).await;
        assert_eq!(
            create(&broker, "orders", 3, &[("retention.ms", "1000")])
                .await
                .error,
            ErrorCode::None
        );
        let cases = [
            ("orders", 1, vec![], ErrorCode::TopicAlreadyExists),
            ("bad/name", 1, vec![], ErrorCode::InvalidTopic),
            ("__internal", 1, vec![], ErrorCode::InvalidTopic),
            ("zero", 0, vec![], ErrorCode::InvalidPartitions),
            ("huge", 5000, vec![], ErrorCode::InvalidPartitions),
            (
                "badconfig",
                1,
                vec![("retention.mss", "1")],
                ErrorCode::InvalidConfig,
            ),
            (
                "badvalue",
                1,
                vec![("segment.bytes", "ten")],
                ErrorCode::InvalidConfig,
            ),
        ];
        for (name, partitions, configs, expected) in cases {
            let result = create(&broker, name, partitions, &configs).await;
            assert_eq!(result.error, expected, "{name}: {}", result.message);
            assert!(!result.message.is_empty());
        }
        let all = metadata(&broker, None).await;
        assert_eq!(all.topics.len(), 1);
        assert_eq!(all.topics[0].partitions.len(), 3);
        let unknown = metadata(&broker, Some(vec!["nope".into()])).await;
        assert_eq!(unknown.topics[0].error, ErrorCode::UnknownTopicOrPartition);
    });
}

// Goal: produced batches come back from fetch with dense offsets; list offsets answers
// earliest, latest and by time; unknown topics and partitions get their code.
#[test]
fn produce_fetch_and_list_offsets() {
    runtime().block_on(async {
        let disk = SimDisk::new(2);
        let broker = broker(&disk).await;
        create(&broker, "events", 2, &[]).await;
        let first = produce(&broker, "events", 1, batch(3, 100), Acks::All).await;
        assert_eq!((first.error, first.base_offset), (ErrorCode::None, 0));
        let second = produce(&broker, "events", 1, batch(2, 200), Acks::Leader).await;
        assert_eq!((second.error, second.base_offset), (ErrorCode::None, 3));
        // The acks=1 batch becomes visible once synced (within flush.interval): a long
        // poll from its offset returns it.
        let later = fetch(&broker, "events", 1, 3, 10_000).await;
        assert_eq!((later.error, later.high_watermark), (ErrorCode::None, 5));
        let read = fetch(&broker, "events", 1, 0, 5_000).await;
        assert_eq!(read.error, ErrorCode::None);
        let offsets: Vec<i64> = BatchIter::new(&read.records)
            .map(|item| item.unwrap().0.base_offset)
            .collect();
        assert_eq!(offsets, [0, 3]);
        assert_eq!(
            fetch(&broker, "events", 1, 6, 0).await.error,
            ErrorCode::OffsetOutOfRange
        );
        assert_eq!(
            fetch(&broker, "events", 7, 0, 0).await.error,
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            fetch(&broker, "missing", 0, 0, 0).await.error,
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            produce(&broker, "missing", 0, batch(1, 0), Acks::All)
                .await
                .error,
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            produce(&broker, "events", 9, batch(1, 0), Acks::All)
                .await
                .error,
            ErrorCode::UnknownTopicOrPartition
        );

        produce(&broker, "events", 0, batch(3, 1000), Acks::All).await;
        assert_eq!(
            list_offset(&broker, "events", OffsetSpec::Earliest)
                .await
                .offset,
            Some(0)
        );
        assert_eq!(
            list_offset(&broker, "events", OffsetSpec::Latest)
                .await
                .offset,
            Some(3)
        );
        let by_time = list_offset(&broker, "events", OffsetSpec::Timestamp(1001)).await;
        assert_eq!((by_time.offset, by_time.timestamp), (Some(1), Some(1001)));
        assert_eq!(
            list_offset(&broker, "events", OffsetSpec::Timestamp(5000))
                .await
                .offset,
            None
        );
    });
}

// Goal: bad batches are refused with a clear code and nothing is stored.
#[test]
fn bad_batches_are_refused_and_nothing_is_stored() {
    runtime().block_on(async {
        let disk = SimDisk::new(3);
        let broker = broker(&disk).await;
        create(&broker, "t", 1, &[("max.message.bytes", "200")]).await;
        let mut corrupt = batch(2, 0).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let cases = [
            (Bytes::from(corrupt), ErrorCode::CorruptMessage),
            (Bytes::from_static(b"garbage"), ErrorCode::CorruptMessage),
            (Bytes::new(), ErrorCode::CorruptMessage),
            (batch(30, 0), ErrorCode::MessageTooLarge),
        ];
        for (records, expected) in cases {
            let response = produce(&broker, "t", 0, records, Acks::All).await;
            assert_eq!(response.error, expected, "{}", response.message);
        }
        assert_eq!(
            list_offset(&broker, "t", OffsetSpec::Latest).await.offset,
            Some(0)
        );
    });
}

// Goal: a fetch at the end waits (long poll) and returns as soon as data arrives; without
// data it returns empty when its wait is over.
#[test]
fn fetch_long_polls_until_data_or_deadline() {
    runtime().block_on(async {
        let disk = SimDisk::new(4);
        let broker = Arc::new(broker(&disk).await);
        create(&broker, "t", 1, &[]).await;
        let empty = fetch(&broker, "t", 0, 0, 20).await;
        assert_eq!((empty.error, empty.records.len()), (ErrorCode::None, 0));
        let waiting = {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move { fetch(&broker, "t", 0, 0, 30_000).await })
        };
        tokio::task::yield_now().await;
        produce(&broker, "t", 0, batch(2, 0), Acks::All).await;
        let woken = crate::clock::timeout(&*broker.clock(), Duration::from_secs(20), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(BatchIter::new(&woken.records).count(), 1);
    });
}

// Goal: a consumer waiting at the end of a partition gets acks=1 records after one sync,
// not after flush.interval (an hour here); with `log.sync_for_readers` off it waits for the
// interval, and never sees the unsynced records early.
#[test]
fn a_waiting_fetch_gets_acks_1_records_without_the_flush_interval() {
    runtime().block_on(async {
        for sync_for_readers in [true, false] {
            let disk = SimDisk::new(6);
            let mut config = BrokerConfig::default();
            config.log.flush_interval = Duration::from_secs(3600);
            config.log.sync_for_readers = sync_for_readers;
            let broker = Arc::new(
                Broker::open(
                    disk.clone(),
                    Path::new(DATA),
                    config,
                    Arc::new(SimClock::new(1_000_000)),
                )
                .await
                .unwrap(),
            );
            create(&broker, "t", 1, &[]).await;
            let max_wait_ms = if sync_for_readers { 20_000 } else { 300 };
            let waiting = {
                let broker = Arc::clone(&broker);
                tokio::spawn(async move { fetch(&broker, "t", 0, 0, max_wait_ms).await })
            };
            tokio::task::yield_now().await;
            let produced = produce(&broker, "t", 0, batch(2, 0), Acks::Leader).await;
            assert_eq!(produced.error, ErrorCode::None);
            let answer = crate::clock::timeout(&*broker.clock(), Duration::from_secs(10), waiting)
                .await
                .unwrap()
                .unwrap();
            let expected = if sync_for_readers { (1, 2) } else { (0, 0) };
            assert_eq!(
                (
                    BatchIter::new(&answer.records).count(),
                    answer.high_watermark
                ),
                expected,
                "sync_for_readers {sync_for_readers}"
            );
        }
    });
}

// Goal: with `log.visible_at_write` a waiting consumer reads acks=1 records as soon as they
// are written, with no fdatasync (syncs are held here, so none can finish), and the answer's
// high watermark is the written end while the log's synced end stays where it was; without
// it the same fetch sees nothing until a sync. After a power loss that drops unsynced
// writes, the record that consumer read is gone: the mode's documented consequence.
#[test]
fn visible_at_write_serves_written_records_before_they_are_synced() {
    for visible_at_write in [true, false] {
        let disk = SimDisk::new(7);
        let mut config = BrokerConfig::default();
        config.log.flush_interval = Duration::from_secs(3600);
        config.log.visible_at_write = visible_at_write;
        let rt = runtime();
        let broker = rt.block_on(async {
            let broker = Arc::new(
                Broker::open(
                    disk.clone(),
                    Path::new(DATA),
                    config.clone(),
                    Arc::new(SimClock::new(1_000_000)),
                )
                .await
                .unwrap(),
            );
            create(&broker, "t", 1, &[]).await;
            // The first batch of a leader epoch stores the epoch file (a sync): before
            // syncs are held.
            let first = produce(&broker, "t", 0, batch(2, 0), Acks::All).await;
            assert_eq!(first.error, ErrorCode::None);
            disk.hold_syncs();
            let max_wait_ms = if visible_at_write { 20_000 } else { 300 };
            let waiting = {
                let broker = Arc::clone(&broker);
                tokio::spawn(async move { fetch(&broker, "t", 0, 2, max_wait_ms).await })
            };
            tokio::task::yield_now().await;
            let produced = produce(&broker, "t", 0, batch(2, 0), Acks::Leader).await;
            assert_eq!(produced.error, ErrorCode::None);
            let answer = crate::clock::timeout(&*broker.clock(), Duration::from_secs(10), waiting)
                .await
                .unwrap()
                .unwrap();
            let expected = if visible_at_write { (1, 4) } else { (0, 2) };
            assert_eq!(
                (
                    BatchIter::new(&answer.records).count(),
                    answer.high_watermark
                ),
                expected,
                "visible_at_write {visible_at_write}"
            );
            let log = broker.registry.partition_log("t", 0).unwrap();
            assert_eq!(
                log.high_watermark(),
                2,
                "the second batch is not synced yet"
            );
            broker
        });
        if !visible_at_write {
            disk.release_syncs();
            continue;
        }
        // A power loss now takes back the record the consumer has read.
        disk.crash_dropping_unsynced();
        drop(broker);
        rt.shutdown_background();
        disk.release_syncs();
        runtime().block_on(async {
            let reopened = Broker::open(
                disk.clone(),
                Path::new(DATA),
                config,
                Arc::new(SimClock::new(2_000_000)),
            )
            .await
            .unwrap();
            let after = fetch(&reopened, "t", 0, 0, 0).await;
            assert_eq!(
                (BatchIter::new(&after.records).count(), after.high_watermark),
                (1, 2),
                "only the synced first batch is left"
            );
        });
    }
}

// Goal: config changes apply to live partitions, are described with their source, and
// unknown keys are refused.
#[test]
fn alter_and_describe_configs() {
    runtime().block_on(async {
        let disk = SimDisk::new(5);
        let broker = broker(&disk).await;
        create(&broker, "t", 1, &[]).await;
        let alter = |set: Vec<(&str, &str)>, delete: Vec<&str>| AlterConfigsRequest {
            topics: vec![AlterTopicConfigs {
                name: "t".into(),
                set: set
                    .into_iter()
                    .map(|(name, value)| ConfigEntry {
                        name: name.into(),
                        value: value.into(),
                    })
                    .collect(),
                delete: delete.into_iter().map(String::from).collect(),
            }],
            validate_only: false,
        };
        let Response::AlterConfigs(response) = broker
            .handle(Request::AlterConfigs(alter(
                vec![("max.message.bytes", "100")],
                vec![],
            )))
            .await
        else {
            panic!()
        };
        assert_eq!(response.topics[0].error, ErrorCode::None);
        assert_eq!(
            produce(&broker, "t", 0, batch(5, 0), Acks::All).await.error,
            ErrorCode::MessageTooLarge
        );
        let Response::DescribeConfigs(described) = broker
            .handle(Request::DescribeConfigs(DescribeConfigsRequest {
                topics: vec!["t".into(), "nope".into()],
            }))
            .await
        else {
            panic!()
        };
        let entry = described.topics[0]
            .configs
            .iter()
            .find(|config| config.name == "max.message.bytes")
            .unwrap();
        assert_eq!((entry.value.as_str(), entry.is_default), ("100", false));
        assert_eq!(
            described.topics[1].error,
            ErrorCode::UnknownTopicOrPartition
        );
        let Response::AlterConfigs(response) = broker
            .handle(Request::AlterConfigs(alter(
                vec![],
                vec!["max.message.bytes"],
            )))
            .await
        else {
            panic!()
        };
        assert_eq!(response.topics[0].error, ErrorCode::None);
        assert_eq!(
            produce(&broker, "t", 0, batch(5, 0), Acks::All).await.error,
            ErrorCode::None
        );
        let Response::AlterConfigs(response) = broker
            .handle(Request::AlterConfigs(alter(
                vec![("colour", "blue")],
                vec![],
            )))
            .await
        else {
            panic!()
        };
        assert_eq!(response.topics[0].error, ErrorCode::InvalidConfig);
        assert!(response.topics[0].message.contains("colour"));
    });
}

// Goal: topics, configs and data survive a reopen; producer ids are never handed out twice
// across reopens; a deleted topic stays deleted and its files are gone.
#[test]
fn state_survives_reopen_and_deletion_is_durable() {
    runtime().block_on(async {
        let disk = SimDisk::new(6);
        let mut producer_ids = Vec::new();
        {
            let broker = broker(&disk).await;
            create(&broker, "keep", 2, &[("retention.ms", "5000")]).await;
            create(&broker, "drop", 1, &[]).await;
            produce(&broker, "keep", 1, batch(4, 0), Acks::All).await;
            produce(&broker, "drop", 0, batch(4, 0), Acks::All).await;
            let Response::InitProducerId(id) = broker
                .handle(Request::InitProducerId(InitProducerIdRequest::default()))
                .await
            else {
                panic!()
            };
            producer_ids.push(id.producer_id);
            let Response::DeleteTopics(deleted) = broker
                .handle(Request::DeleteTopics(DeleteTopicsRequest {
                    names: vec!["drop".into(), "never".into()],
                }))
                .await
            else {
                panic!()
            };
            assert_eq!(deleted.topics[0].error, ErrorCode::None);
            assert_eq!(deleted.topics[1].error, ErrorCode::UnknownTopicOrPartition);
            broker.close().await;
        }
        assert!(
            disk.list_dir(Path::new("/data/logs/drop-0")).await.is_err(),
            "deleted partition directory is gone"
        );
        let broker = broker(&disk).await;
        let all = metadata(&broker, None).await;
        assert_eq!(
            all.topics
                .iter()
                .map(|topic| topic.name.as_str())
                .collect::<Vec<_>>(),
            ["keep"]
        );
        assert_eq!(all.topics[0].partitions[1].high_watermark, 4);
        let Response::DescribeConfigs(described) = broker
            .handle(Request::DescribeConfigs(DescribeConfigsRequest {
                topics: vec!["keep".into()],
            }))
            .await
        else {
            panic!()
        };
        assert!(
            described.topics[0]
                .configs
                .iter()
                .any(|config| config.name == "retention.ms" && config.value == "5000")
        );
        let Response::InitProducerId(id) = broker
            .handle(Request::InitProducerId(InitProducerIdRequest::default()))
            .await
        else {
            panic!()
        };
        assert!(
            id.producer_id > producer_ids[0],
            "producer ids must not repeat across restarts"
        );
    });
}

async fn init_producer_id(broker: &Broker<SimDisk>) -> InitProducerIdResponse {
    let Response::InitProducerId(id) = broker
        .handle(Request::InitProducerId(InitProducerIdRequest::default()))
        .await
    else {
        panic!("wrong response")
    };
    assert_eq!(id.error, ErrorCode::None);
    id
}

// Goal: the nodes of a cluster never hand out the same producer id (each keeps its own
// durable counter; a shared id made one producer's batch a "duplicate" of another's, so it
// was acknowledged at an offset holding the other record). Method: three brokers in slots
// 0, 1 and 2 of 3 hand out more than two blocks each, across a restart of one of them; no
// id repeats, within a node or across nodes.
#[test]
fn cluster_nodes_hand_out_disjoint_producer_ids() {
    runtime().block_on(async {
        let mut seen = std::collections::BTreeSet::new();
        for slot in 0..3u32 {
            let disk = SimDisk::new(40 + u64::from(slot));
            for _start in 0..2 {
                let broker = broker(&disk).await;
                broker.set_producer_id_slot(slot, 3);
                for _ in 0..(2 * metadata::PRODUCER_ID_BLOCK + 5) {
                    let id = init_producer_id(&broker).await.producer_id;
                    assert_eq!((id / metadata::PRODUCER_ID_BLOCK) % 3, i64::from(slot));
                    assert!(seen.insert(id), "producer id {id} handed out twice");
                }
                broker.close().await;
            }
        }
    });
}

async fn described_config(broker: &Broker<SimDisk>, topic: &str, key: &str) -> String {
    let Response::DescribeConfigs(described) = broker
        .handle(Request::DescribeConfigs(DescribeConfigsRequest {
            topics: vec![topic.into()],
        }))
        .await
    else {
        panic!("wrong response")
    };
    described.topics[0]
        .configs
        .iter()
        .find(|config| config.name == key)
        .unwrap_or_else(|| panic!("{topic} has no config {key}"))
        .value
        .clone()
}

// Goal: with metadata.json lost, a new idempotent producer's first batch is written, not
// taken for a resend of an old producer's batch, and topic configs survive the rebuild.
// Method: produce with an idempotent producer, remove metadata.json, reopen, produce the same
// sequence with a new producer id, and read it back at its acknowledged offset.
#[test]
fn a_lost_metadata_file_keeps_producer_ids_unique_and_configs() {
    runtime().block_on(async {
        let disk = SimDisk::new(21);
        let old_id;
        {
            let broker = broker(&disk).await;
            create(
                &broker,
                "t",
                2,
                &[("retention.ms", "-1"), ("max.message.bytes", "60000")],
            )
            .await;
            old_id = init_producer_id(&broker).await;
            let options = EncodeOptions {
                producer_id: old_id.producer_id,
                producer_epoch: old_id.producer_epoch,
                base_sequence: 0,
                ..EncodeOptions::default()
            };
            let first = encode_batch(&records(1, 0), &options).unwrap();
            assert_eq!(
                produce(&broker, "t", 1, first, Acks::All).await.error,
                ErrorCode::None
            );
            broker.close().await;
        }
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        let broker = broker(&disk).await;
        let new_id = init_producer_id(&broker).await;
        assert!(
            new_id.producer_id > old_id.producer_id,
            "a producer id the logs hold was handed out again: {} after {}",
            new_id.producer_id,
            old_id.producer_id
        );
        let options = EncodeOptions {
            producer_id: new_id.producer_id,
            producer_epoch: new_id.producer_epoch,
            base_sequence: 0,
            ..EncodeOptions::default()
        };
        let second = encode_batch(
            &[Record {
                timestamp: 5,
                key: None,
                value: Some(Bytes::from_static(b"after the rebuild")),
                headers: Vec::new(),
            }],
            &options,
        )
        .unwrap();
        let written = produce(&broker, "t", 1, second, Acks::All).await;
        assert_eq!(written.error, ErrorCode::None);
        assert_eq!(
            written.base_offset, 1,
            "acknowledged at the old record's offset"
        );
        let fetched = fetch(&broker, "t", 1, 1, 0).await;
        let decoded = decode_batch(&fetched.records, &Default::default()).unwrap();
        assert_eq!(decoded.header.base_offset, 1);
        let values: Vec<Bytes> = decoded
            .records
            .into_iter()
            .filter_map(|record| record.value)
            .collect();
        assert_eq!(values, [Bytes::from_static(b"after the rebuild")]);
        // Configs are restored, not guessed.
        assert_eq!(described_config(&broker, "t", "retention.ms").await, "-1");
        assert_eq!(
            described_config(&broker, "t", "max.message.bytes").await,
            "60000"
        );
        assert_eq!(
            described_config(&broker, OFFSETS_TOPIC, "cleanup.policy").await,
            "compact"
        );
        assert_eq!(
            metadata(&broker, Some(vec!["t".into()])).await.topics[0]
                .partitions
                .len(),
            2
        );
    });
}

// Goal (issue 11, data item 1, review follow-up): with metadata.json lost while a partition
// is offline, no producer id is handed out that only the offline partition remembers.
// InitProducerId answers StorageError (retriable) until every partition is online, across
// restarts too, and then hands out ids above what the partition holds, so a new producer's
// first batch is written, not taken for a resend. Deleting the offline partition's topic
// (at runtime) also ends the hold. Before, the rebuilt node handed out the old producer's id again.
#[test]
fn a_lost_metadata_file_with_an_offline_partition_holds_producer_ids_back() {
    runtime().block_on(async {
        let disk = SimDisk::new(22);
        let old_id;
        {
            let broker = broker(&disk).await;
            create(&broker, "t", 2, &[]).await;
            create(&broker, "other", 1, &[]).await;
            old_id = init_producer_id(&broker).await;
            for sequence in 0..2 {
                let options = EncodeOptions {
                    producer_id: old_id.producer_id,
                    producer_epoch: old_id.producer_epoch,
                    base_sequence: sequence,
                    ..EncodeOptions::default()
                };
                let batch = encode_batch(&records(1, 0), &options).unwrap();
                assert_eq!(
                    produce(&broker, "t", 1, batch, Acks::All).await.error,
                    ErrorCode::None
                );
            }
            broker.close().await;
        }
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        // Damage t-1's first batch (followed by a valid one): it stays offline.
        let segment = Path::new(DATA).join("logs/t-1/00000000000000000000.log");
        assert!(disk.corrupt_bit(&segment, 16 + 30, 2));
        for restart in 0..2 {
            let broker = broker(&disk).await;
            assert!(broker.registry.partition("t", 1).unwrap().online_log().is_err());
            let Response::InitProducerId(held) = broker
                .handle(Request::InitProducerId(InitProducerIdRequest::default()))
                .await
            else {
                panic!("wrong response")
            };
            assert_eq!(
                held.error,
                ErrorCode::StorageError,
                "restart {restart}: producer id {} handed out while t-1 is offline (the old one was {})",
                held.producer_id,
                old_id.producer_id
            );
            assert!(held.error.is_retriable());
            broker.close().await;
        }
        // The byte restored (as a restore from a copy would): ids come from above t-1's.
        assert!(disk.corrupt_bit(&segment, 16 + 30, 2));
        {
            let broker = broker(&disk).await;
            let new_id = init_producer_id(&broker).await;
            assert!(
                new_id.producer_id > old_id.producer_id,
                "{} after {}",
                new_id.producer_id,
                old_id.producer_id
            );
            let options = EncodeOptions {
                producer_id: new_id.producer_id,
                producer_epoch: new_id.producer_epoch,
                base_sequence: 0,
                ..EncodeOptions::default()
            };
            let batch = encode_batch(&records(1, 0), &options).unwrap();
            let written = produce(&broker, "t", 1, batch, Acks::All).await;
            assert_eq!(written.error, ErrorCode::None);
            assert_eq!(written.base_offset, 2, "taken for a resend");
            broker.close().await;
        }
        // The hold is lifted once, for good: a later offline partition does not bring it back.
        assert!(disk.corrupt_bit(&segment, 16 + 30, 2));
        {
            let broker = broker(&disk).await;
            assert!(broker.registry.partition("t", 1).unwrap().online_log().is_err());
            assert!(init_producer_id(&broker).await.producer_id > old_id.producer_id);
            broker.close().await;
        }
        // Lost again with t-1 offline: held; deleting t at runtime ends the hold.
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        let broker = broker(&disk).await;
        let Response::InitProducerId(held) = broker
            .handle(Request::InitProducerId(InitProducerIdRequest::default()))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(held.error, ErrorCode::StorageError);
        let Response::DeleteTopics(deleted) = broker
            .handle(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["t".into()],
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(deleted.topics[0].error, ErrorCode::None);
        init_producer_id(&broker).await;
        broker.close().await;
    });
}

// Goal: a data directory that lost metadata.json and whose topic has no topic file (made by
// an older build) is refused at start with the way out, never given default configs.
#[test]
fn a_lost_metadata_file_without_topic_files_is_refused_with_the_way_out() {
    runtime().block_on(async {
        let disk = SimDisk::new(22);
        {
            let broker = broker(&disk).await;
            create(&broker, "old", 1, &[("retention.ms", "-1")]).await;
            produce(&broker, "old", 0, batch(2, 0), Acks::All).await;
            broker.close().await;
        }
        let data = Path::new(DATA);
        disk.remove_file(&data.join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        disk.remove_file(&data.join(metadata::TOPICS_DIR_NAME).join("old.json"))
            .await
            .unwrap();
        let Err(error) = Broker::open(
            disk.clone(),
            data,
            BrokerConfig::default(),
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        else {
            panic!("opened with a topic whose configs are unknown");
        };
        let message = error.to_string();
        assert!(
            message.contains("metadata.json is missing")
                && message.contains("\"old\"")
                && message.contains("/data/topics/old.json")
                && message.contains("backup"),
            "{message}"
        );
        // Nothing was removed: the partition is still there for the operator to recover.
        assert!(disk.list_dir(&data.join("logs/old-0")).await.is_ok());
    });
}

// Goal: topic files follow create, alter, add-partitions and delete, and a damaged topic file
// is reported naming it when it is needed.
#[test]
fn topic_files_follow_topic_changes() {
    runtime().block_on(async {
        let disk = SimDisk::new(23);
        let topics_dir = Path::new(DATA).join(metadata::TOPICS_DIR_NAME);
        {
            let broker = broker(&disk).await;
            create(&broker, "a", 1, &[]).await;
            create(&broker, "b", 1, &[]).await;
            let Response::AlterConfigs(altered) = broker
                .handle(Request::AlterConfigs(AlterConfigsRequest {
                    topics: vec![AlterTopicConfigs {
                        name: "a".into(),
                        set: vec![ConfigEntry {
                            name: "retention.ms".into(),
                            value: "123456".into(),
                        }],
                        delete: Vec::new(),
                    }],
                    validate_only: false,
                }))
                .await
            else {
                panic!()
            };
            assert_eq!(altered.topics[0].error, ErrorCode::None);
            broker
                .reconcile(&[DeclaredTopic {
                    name: "a".into(),
                    partitions: 3,
                    configs: BTreeMap::from([("retention.ms".to_string(), "123456".to_string())]),
                    origin: "test".into(),
                }])
                .await
                .unwrap();
            let Response::DeleteTopics(deleted) = broker
                .handle(Request::DeleteTopics(DeleteTopicsRequest {
                    names: vec!["b".into()],
                }))
                .await
            else {
                panic!()
            };
            assert_eq!(deleted.topics[0].error, ErrorCode::None);
            broker.close().await;
        }
        let mut names = disk.list_dir(&topics_dir).await.unwrap();
        names.sort();
        assert_eq!(names, ["__consumer_offsets.json", "a.json"]);
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        {
            let broker = broker(&disk).await;
            assert_eq!(
                described_config(&broker, "a", "retention.ms").await,
                "123456"
            );
            assert_eq!(
                metadata(&broker, Some(vec!["a".into()])).await.topics[0]
                    .partitions
                    .len(),
                3
            );
            broker.close().await;
        }
        // A damaged topic file is named when a rebuild needs it.
        use crate::storage::DiskFile as _;
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        let file = disk
            .open(
                &topics_dir.join("a.json"),
                crate::storage::OpenMode::ReadWrite,
            )
            .await
            .unwrap();
        file.write_at(0, Bytes::from_static(b"}}}}")).await.unwrap();
        file.sync_data().await.unwrap();
        drop(file);
        let Err(error) = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        else {
            panic!("opened with a damaged topic file");
        };
        assert!(error.to_string().contains("/data/topics/a.json"), "{error}");
    });
}

async fn write_file(disk: &SimDisk, path: &Path, bytes: &[u8]) {
    use crate::storage::DiskFile as _;
    let _ = disk.remove_file(path).await;
    if let Some(parent) = path.parent() {
        crate::storage::disk::create_dir_durable(disk, parent)
            .await
            .unwrap();
    }
    let file = disk
        .open(path, crate::storage::OpenMode::CreateNew)
        .await
        .unwrap();
    file.write_at(0, Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
    file.sync_data().await.unwrap();
}

async fn open_error(disk: &SimDisk) -> String {
    match Broker::open(
        disk.clone(),
        Path::new(DATA),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    {
        Ok(_) => panic!("opened"),
        Err(error) => error.to_string(),
    }
}

// Goal: values from metadata.json that become file names or loop bounds, or that arithmetic
// runs on, are checked: a topic name or module hash that would lead outside the data
// directory and a partition count beyond limits.partitions_max refuse the start with the
// reason (before anything is created or removed); producer ids at the end of the id space
// leave the node serving, with InitProducerId refused.
#[test]
fn hostile_metadata_values_are_refused_or_contained() {
    runtime().block_on(async {
        let metadata_path = Path::new(DATA).join(metadata::METADATA_FILE_NAME);
        let module = |hash: &str| {
            format!(
                r#"{{"hash": "{hash}", "kind": "filter", "size_bytes": 1, "params": {{}}, "uploaded_ms": 0}}"#
            )
        };
        let file = |topics: &str, modules: &str, reserved: i64| {
            format!(
                r#"{{"version": 1, "topics": {{{topics}}}, "producer_ids_reserved_until": {reserved}, "modules": {{{modules}}}}}"#
            )
        };
        let cases = [
            (
                file(r#""../escape": {"partitions": 1, "configs": {}, "created_ms": 0}"#, "", 1000),
                "topic \"../escape\"",
            ),
            (
                file("", &format!(r#""m": {}"#, module("../../../etc/passwd")), 1000),
                "is not a SHA-256 in lowercase hex",
            ),
            (
                file(r#""wide": {"partitions": 4000000000, "configs": {}, "created_ms": 0}"#, "", 1000),
                "more than limits.partitions_max (4096)",
            ),
        ];
        for (seed, (text, expected)) in (40..).zip(cases) {
            let disk = SimDisk::new(seed);
            write_file(&disk, &metadata_path, text.as_bytes()).await;
            let error = open_error(&disk).await;
            assert!(error.contains(expected), "{error}");
            assert!(
                disk.list_dir(Path::new("/escape")).await.is_err()
                    && disk.list_dir(&Path::new(DATA).join("logs")).await.unwrap().is_empty(),
                "nothing was created"
            );
        }
        let disk = SimDisk::new(45);
        write_file(&disk, &metadata_path, file("", "", i64::MAX - 10).as_bytes()).await;
        let broker = broker(&disk).await;
        let Response::InitProducerId(refused) = broker
            .handle(Request::InitProducerId(InitProducerIdRequest::default()))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(refused.error, ErrorCode::StorageError);
        // Everything else serves.
        assert_eq!(create(&broker, "t", 1, &[]).await.error, ErrorCode::None);
        assert_eq!(produce(&broker, "t", 0, batch(2, 0), Acks::All).await.error, ErrorCode::None);
    });
}

// Goal: the partition-count errors name config keys that exist (`limits.*`).
#[test]
fn partition_limit_errors_name_real_config_keys() {
    runtime().block_on(async {
        let disk = SimDisk::new(24);
        let config = BrokerConfig {
            topic_partitions_max: 4,
            partitions_max: 6,
            ..BrokerConfig::default()
        };
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            config,
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let too_many = create(&broker, "wide", 5, &[]).await;
        assert_eq!(too_many.error, ErrorCode::InvalidPartitions);
        assert!(
            too_many.message.contains("limits.topic_partitions_max (4)"),
            "{}",
            too_many.message
        );
        assert_eq!(create(&broker, "four", 4, &[]).await.error, ErrorCode::None);
        let over_node = create(&broker, "more", 2, &[]).await;
        assert_eq!(over_node.error, ErrorCode::InvalidPartitions);
        assert!(
            over_node.message.contains("limits.partitions_max (6)"),
            "{}",
            over_node.message
        );
    });
}

// Goal: reconcile creates missing topics, adds partitions, applies changed configs, and
// refuses to shrink a topic with a message naming where it was declared.
#[test]
fn reconcile_creates_grows_and_refuses_shrinking() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let broker = broker(&disk).await;
        let declared = |partitions: u32, retention: &str| DeclaredTopic {
            name: "orders".into(),
            partitions,
            configs: BTreeMap::from([("retention.ms".to_string(), retention.to_string())]),
            origin: "edge.toml line 7".into(),
        };
        broker.reconcile(&[declared(2, "1000")]).await.unwrap();
        assert_eq!(metadata(&broker, None).await.topics[0].partitions.len(), 2);
        broker.reconcile(&[declared(4, "2000")]).await.unwrap();
        assert_eq!(metadata(&broker, None).await.topics[0].partitions.len(), 4);
        let Response::DescribeConfigs(described) = broker
            .handle(Request::DescribeConfigs(DescribeConfigsRequest {
                topics: vec!["orders".into()],
            }))
            .await
        else {
            panic!()
        };
        assert!(
            described.topics[0]
                .configs
                .iter()
                .any(|config| config.name == "retention.ms" && config.value == "2000")
        );
        let error = broker
            .reconcile(&[declared(3, "2000")])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("edge.toml line 7") && error.contains("has 4 partitions"),
            "{error}"
        );
    });
}

// Goal: an idempotent producer's retried batch is stored once; a gap is refused.
#[test]
fn idempotent_produce_is_deduplicated() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let broker = broker(&disk).await;
        create(&broker, "t", 1, &[]).await;
        let Response::InitProducerId(id) = broker
            .handle(Request::InitProducerId(InitProducerIdRequest::default()))
            .await
        else {
            panic!()
        };
        let options = |sequence| EncodeOptions {
            producer_id: id.producer_id,
            producer_epoch: id.producer_epoch,
            base_sequence: sequence,
            ..EncodeOptions::default()
        };
        let first = encode_batch(&records(3, 0), &options(0)).unwrap();
        assert_eq!(
            produce(&broker, "t", 0, first.clone(), Acks::All)
                .await
                .base_offset,
            0
        );
        assert_eq!(
            produce(&broker, "t", 0, first, Acks::All).await.base_offset,
            0
        );
        assert_eq!(
            list_offset(&broker, "t", OffsetSpec::Latest).await.offset,
            Some(3)
        );
        let gap = encode_batch(&records(1, 0), &options(9)).unwrap();
        assert_eq!(
            produce(&broker, "t", 0, gap, Acks::All).await.error,
            ErrorCode::OutOfOrderSequenceNumber
        );
    });
}

// Goal: message.timestamp.type=LogAppendTime stamps the broker's time; compression.type
// recompresses batches that arrive in another codec.
#[test]
fn topic_timestamp_type_and_compression_are_applied() {
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let broker = broker(&disk).await;
        create(
            &broker,
            "t",
            1,
            &[
                ("message.timestamp.type", "LogAppendTime"),
                ("compression.type", "zstd"),
            ],
        )
        .await;
        let response = produce(&broker, "t", 0, batch(3, 5), Acks::All).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        assert_eq!(response.log_append_time_ms, 1_000_000);
        let read = fetch(&broker, "t", 0, 0, 0).await;
        let (header, _) = BatchIter::new(&read.records).next().unwrap().unwrap();
        assert_eq!(header.compression().unwrap(), Compression::Zstd);
        let decoded = decode_batch(&read.records, &Default::default()).unwrap();
        assert!(
            decoded
                .records
                .iter()
                .all(|record| record.timestamp == 1_000_000)
        );
        assert_eq!(decoded.records[2].value.as_deref(), Some(&b"value-2"[..]));
    });
}

// Goal: a partition damaged below its recovery point is reported offline; the rest of the
// node serves.
#[test]
fn a_damaged_partition_is_offline_and_others_serve() {
    runtime().block_on(async {
        let disk = SimDisk::new(10);
        {
            let broker = broker(&disk).await;
            create(&broker, "t", 2, &[]).await;
            for partition in 0..2 {
                produce(&broker, "t", partition, batch(3, 0), Acks::All).await;
                produce(&broker, "t", partition, batch(3, 0), Acks::All).await;
            }
            broker.close().await;
        }
        assert!(disk.corrupt_bit(Path::new("/data/logs/t-1/00000000000000000000.log"), 40, 2));
        let broker = broker(&disk).await;
        let offline = broker.offline_partitions();
        assert_eq!(offline.len(), 1);
        assert!(
            offline[0].2.contains("t-1/00000000000000000000.log"),
            "{}",
            offline[0].2
        );
        let partitions = &metadata(&broker, None).await.topics[0].partitions;
        assert_eq!(
            (partitions[0].error, partitions[1].error),
            (ErrorCode::None, ErrorCode::PartitionOffline)
        );
        assert_eq!(
            produce(&broker, "t", 1, batch(1, 0), Acks::All).await.error,
            ErrorCode::PartitionOffline
        );
        assert_eq!(
            produce(&broker, "t", 0, batch(1, 0), Acks::All).await.error,
            ErrorCode::None
        );
        // The metadata (topic describe) says why, with the file (its name: clients never
        // see the node's paths; the log has the full one).
        assert!(partitions[0].damage.is_empty());
        assert!(
            partitions[1]
                .damage
                .contains("segment …/00000000000000000000.log"),
            "{}",
            partitions[1].damage
        );
    });
}

// Goal: damage appearing in a sealed segment of a running node is found by one verifier
// pass, shown in the metadata (`topic describe`) with file and position, and a fetch of the
// damaged range answers DataDamaged (not retriable) with that message instead of the damaged bytes;
// healthy partitions and ranges are unaffected.
#[test]
fn the_verifier_reports_damage_in_describe_and_fetch() {
    runtime().block_on(async {
        let disk = SimDisk::new(19);
        let broker = broker(&disk).await;
        create(
            &broker,
            "t",
            2,
            &[("segment.bytes", "1024"), ("max.message.bytes", "1000")],
        )
        .await;
        for partition in 0..2 {
            for _ in 0..20 {
                let response = produce(&broker, "t", partition, batch(3, 0), Acks::All).await;
                assert_eq!(response.error, ErrorCode::None);
            }
        }
        let clean = broker.verify_pass(u64::MAX).await;
        assert_eq!(clean.segments_damaged, 0);
        assert!(
            clean.segments_checked >= 4 && clean.bytes_read > 0,
            "{clean:?}"
        );
        let segment = Path::new("/data/logs/t-1/00000000000000000000.log");
        assert!(disk.corrupt_bit(segment, 16 + 61 + 5, 0));
        let report = broker.verify_pass(u64::MAX).await;
        assert_eq!(report.segments_damaged, 1, "{report:?}");
        let partitions = &metadata(&broker, None).await.topics[0].partitions;
        assert!(partitions[0].damage.is_empty());
        assert_eq!(partitions[1].error, ErrorCode::None, "still online");
        assert!(
            partitions[1]
                .damage
                .contains("segment …/00000000000000000000.log")
                && partitions[1].damage.contains("byte 16"),
            "{}",
            partitions[1].damage
        );
        let damaged = fetch(&broker, "t", 1, 0, 0).await;
        assert_eq!(damaged.error, ErrorCode::DataDamaged);
        assert!(damaged.records.is_empty());
        assert!(
            damaged.message.contains("background verifier"),
            "{}",
            damaged.message
        );
        assert_eq!(fetch(&broker, "t", 0, 0, 0).await.error, ErrorCode::None);
        assert_eq!(fetch(&broker, "t", 1, 30, 0).await.error, ErrorCode::None);
    });
}

async fn join_group(
    broker: &Broker<SimDisk>,
    member_id: &str,
    epoch: i32,
    owned: Vec<TopicPartitions>,
) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerGroupHeartbeatRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        member_epoch: epoch,
        instance_id: None,
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscribed_topics: vec!["t".into()],
        subscribed_pattern: None,
        assignor: "range".into(),
        owned_partitions: owned,
    };
    let Response::ConsumerGroupHeartbeat(response) = broker
        .handle(Request::ConsumerGroupHeartbeat(request))
        .await
    else {
        panic!()
    };
    response
}

fn commit_request(member_id: &str, epoch: i32, partition: u32, offset: i64) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        member_epoch: epoch,
        topics: vec![OffsetCommitTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitPartition {
                partition,
                offset,
                metadata: "m".into(),
            }],
        }],
    })
}

// Goal: a member joins, commits offsets for its partitions (not for others), the offsets
// survive a node restart through __consumer_offsets, and group admin refuses to touch a
// group with members but resets and deletes an empty one.
#[test]
fn group_commits_survive_restart_and_admin_respects_members() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        {
            let broker = broker(&disk).await;
            create(&broker, "t", 2, &[]).await;
            let joined = join_group(&broker, "", 0, vec![]).await;
            assert_eq!(joined.error, ErrorCode::None, "{}", joined.message);
            assert_eq!(
                joined.assignment,
                vec![TopicPartitions {
                    topic: "t".into(),
                    partitions: vec![0, 1]
                }]
            );
            let Response::OffsetCommit(committed) = broker
                .handle(commit_request(
                    &joined.member_id,
                    joined.member_epoch,
                    1,
                    42,
                ))
                .await
            else {
                panic!()
            };
            assert_eq!(
                (committed.error, committed.topics[0].partitions[0].error),
                (ErrorCode::None, ErrorCode::None)
            );
            let Response::OffsetCommit(stranger) =
                broker.handle(commit_request("nobody", 1, 1, 7)).await
            else {
                panic!()
            };
            assert_eq!(stranger.error, ErrorCode::UnknownMemberId);
            let Response::OffsetCommit(admin) = broker.handle(commit_request("", 0, 1, 0)).await
            else {
                panic!()
            };
            assert_eq!(admin.error, ErrorCode::NonEmptyGroup);
            let Response::DeleteGroups(deleted) = broker
                .handle(Request::DeleteGroups(DeleteGroupsRequest {
                    group_ids: vec!["g".into()],
                }))
                .await
            else {
                panic!()
            };
            assert_eq!(deleted.groups[0].error, ErrorCode::NonEmptyGroup);
            let Response::DescribeGroups(described) = broker
                .handle(Request::DescribeGroups(DescribeGroupsRequest {
                    group_ids: vec!["g".into(), "none".into()],
                }))
                .await
            else {
                panic!()
            };
            assert_eq!(described.groups[0].state, "Stable");
            assert_eq!(described.groups[0].members.len(), 1);
            assert_eq!(described.groups[1].error, ErrorCode::GroupIdNotFound);
            broker.close().await;
        }
        let broker = broker(&disk).await;
        let Response::OffsetFetch(fetched) = broker
            .handle(Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(fetched.topics[0].partitions[0].offset, Some(42));
        assert_eq!(fetched.topics[0].partitions[0].metadata, "m");
        let Response::ListGroups(listed) = broker
            .handle(Request::ListGroups(ListGroupsRequest::default()))
            .await
        else {
            panic!()
        };
        assert_eq!(
            (
                listed.groups[0].group_id.as_str(),
                listed.groups[0].state.as_str()
            ),
            ("g", "Empty")
        );
        // Empty now (the member did not survive the restart): reset, then delete.
        let Response::OffsetCommit(reset) = broker.handle(commit_request("", 0, 1, 0)).await else {
            panic!()
        };
        assert_eq!(reset.error, ErrorCode::None);
        let Response::DeleteGroups(deleted) = broker
            .handle(Request::DeleteGroups(DeleteGroupsRequest {
                group_ids: vec!["g".into()],
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.groups[0].error, ErrorCode::None);
        let Response::OffsetFetch(fetched) = broker
            .handle(Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
            }))
            .await
        else {
            panic!()
        };
        assert!(fetched.topics.is_empty());
        broker.close().await;
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(SimClock::new(2_000_000)),
        )
        .await
        .unwrap();
        let Response::ListGroups(listed) = broker
            .handle(Request::ListGroups(ListGroupsRequest::default()))
            .await
        else {
            panic!()
        };
        assert!(listed.groups.is_empty(), "deletion survives restart");
    });
}

// Goal: bad group requests get specific codes: unknown assignor, bad pattern, commit for a
// partition not owned, a stale member.
#[test]
fn bad_group_requests_get_specific_codes() {
    runtime().block_on(async {
        let disk = SimDisk::new(12);
        let broker = broker(&disk).await;
        create(&broker, "t", 2, &[]).await;
        let first = join_group(&broker, "", 0, vec![]).await;
        let second = join_group(&broker, "", 0, vec![]).await;
        // The first gives up partition 1; the second then gets it.
        let first = join_group(
            &broker,
            &first.member_id,
            first.member_epoch,
            first.assignment,
        )
        .await;
        let first = join_group(
            &broker,
            &first.member_id,
            first.member_epoch,
            first.assignment,
        )
        .await;
        let second = join_group(&broker, &second.member_id, second.member_epoch, vec![]).await;
        assert_eq!(
            second.assignment,
            vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![1]
            }]
        );
        let Response::OffsetCommit(not_mine) = broker
            .handle(commit_request(&first.member_id, first.member_epoch, 1, 5))
            .await
        else {
            panic!()
        };
        assert_eq!(
            not_mine.topics[0].partitions[0].error,
            ErrorCode::PartitionNotAssigned
        );
        let mut bad = ConsumerGroupHeartbeatRequest {
            group_id: "g".into(),
            assignor: "fastest".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 1000,
            ..Default::default()
        };
        let Response::ConsumerGroupHeartbeat(reply) = broker
            .handle(Request::ConsumerGroupHeartbeat(bad.clone()))
            .await
        else {
            panic!()
        };
        assert_eq!(reply.error, ErrorCode::InconsistentGroupProtocol);
        bad.assignor = "range".into();
        bad.subscribed_pattern = Some("[".into());
        let Response::ConsumerGroupHeartbeat(reply) =
            broker.handle(Request::ConsumerGroupHeartbeat(bad)).await
        else {
            panic!()
        };
        assert_eq!(reply.error, ErrorCode::InvalidRegularExpression);
        assert!(reply.message.contains("invalid subscription pattern"));
    });
}

// Goal: retention deletes whole sealed segments past retention.ms (by an injected clock,
// no sleeping) or beyond retention.bytes, the log start advances, a fetch below it is out
// of range, and compacted-only topics are left alone.
#[test]
fn retention_by_time_and_size() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let clock = ManualClock::new(1_000_000);
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let small = [("segment.bytes", "1024"), ("max.message.bytes", "1000")];
        create(
            &broker,
            "timed",
            1,
            &[small[0], small[1], ("retention.ms", "60000")],
        )
        .await;
        create(
            &broker,
            "sized",
            1,
            &[
                small[0],
                small[1],
                ("retention.bytes", "2048"),
                ("retention.ms", "-1"),
            ],
        )
        .await;
        create(
            &broker,
            "kept",
            1,
            &[
                small[0],
                small[1],
                ("cleanup.policy", "compact"),
                ("retention.ms", "1"),
            ],
        )
        .await;
        for topic in ["timed", "sized", "kept"] {
            for _ in 0..40 {
                // Record timestamps from the same clock the retention check uses.
                assert_eq!(
                    produce(&broker, topic, 0, batch(3, clock.wall_time_ms()), Acks::All)
                        .await
                        .error,
                    ErrorCode::None
                );
            }
        }
        assert_eq!(
            broker.enforce_retention().await,
            1,
            "only the size limit applies yet"
        );
        let sized = list_offset(&broker, "sized", OffsetSpec::Earliest)
            .await
            .offset
            .unwrap();
        assert!(sized > 0);
        clock.advance_ms(120_000);
        assert_eq!(
            broker.enforce_retention().await,
            1,
            "now the time limit too"
        );
        let timed = list_offset(&broker, "timed", OffsetSpec::Earliest)
            .await
            .offset
            .unwrap();
        let latest = list_offset(&broker, "timed", OffsetSpec::Latest)
            .await
            .offset
            .unwrap();
        assert!(timed > 0 && timed <= latest, "start {timed}, end {latest}");
        assert_eq!(
            fetch(&broker, "timed", 0, 0, 0).await.error,
            ErrorCode::OffsetOutOfRange
        );
        assert_eq!(
            fetch(&broker, "timed", 0, timed, 0).await.error,
            ErrorCode::None
        );
        assert_eq!(
            list_offset(&broker, "kept", OffsetSpec::Earliest)
                .await
                .offset,
            Some(0)
        );
        // Survives a restart.
        broker.close().await;
        let broker = Broker::open(
            disk,
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            list_offset(&broker, "timed", OffsetSpec::Earliest)
                .await
                .offset,
            Some(timed)
        );
    });
}

// Goal: one far-future timestamp cannot stop time retention: a create-time batch more than
// message.timestamp.after.max.ms (default 1 hour) ahead of the node's clock is refused with
// InvalidTimestamp and nothing is stored, so every segment still expires on time. Before,
// the batch was acknowledged and pinned its segment (and every later one) forever.
#[test]
fn a_far_future_timestamp_is_refused_and_retention_goes_on() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let clock = ManualClock::new(1_000_000);
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let configs = [
            ("segment.bytes", "1024"),
            ("max.message.bytes", "1000"),
            ("retention.ms", "60000"),
        ];
        create(&broker, "timed", 1, &configs).await;
        let year_ms = 365 * 24 * 3_600_000;
        let future = produce(
            &broker,
            "timed",
            0,
            batch(3, clock.wall_time_ms() + 100 * year_ms),
            Acks::All,
        )
        .await;
        assert_eq!(
            future.error,
            ErrorCode::InvalidTimestamp,
            "{}",
            future.message
        );
        assert!(future.message.contains("message.timestamp.after.max.ms"));
        assert_eq!(
            list_offset(&broker, "timed", OffsetSpec::Latest)
                .await
                .offset,
            Some(0),
            "nothing of the refused batch is stored"
        );
        for _ in 0..40 {
            let response = produce(
                &broker,
                "timed",
                0,
                batch(3, clock.wall_time_ms()),
                Acks::All,
            )
            .await;
            assert_eq!(response.error, ErrorCode::None);
        }
        let latest = list_offset(&broker, "timed", OffsetSpec::Latest)
            .await
            .offset
            .unwrap();
        clock.advance_ms(120_000);
        broker.enforce_retention().await;
        let earliest = list_offset(&broker, "timed", OffsetSpec::Earliest)
            .await
            .offset
            .unwrap();
        assert!(
            earliest > latest / 2,
            "every sealed segment expired: start {earliest}, end {latest}"
        );
    });
}

// Goal (issue 11, data item 6, review follow-up): a create-time batch whose header looks
// honest (max timestamp = now) but which carries a record stamped a century ahead is
// refused with InvalidRecord naming the record, and nothing is stored: the header bounds
// (message.timestamp.after.max.ms) now cover every record. Before, it was acknowledged, and
// compaction (which recomputes max_timestamp from the records) would pin retention with it.
#[test]
fn a_far_future_record_under_an_honest_header_is_refused() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let clock = ManualClock::new(1_000_000);
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        create(&broker, "timed", 1, &[]).await;
        let now = clock.wall_time_ms();
        let century_ms = 100 * 365 * 24 * 3_600_000i64;
        let mut stamped = records(3, now);
        stamped[1].timestamp = now + century_ms;
        let mut lying = encode_batch(&stamped, &EncodeOptions::default())
            .unwrap()
            .to_vec();
        // The header's max timestamp (bytes 35..43) says "now"; the CRC (bytes 17..21,
        // over byte 21 on) is made to match, so only the record walk can see the lie.
        lying[35..43].copy_from_slice(&(now + 2).to_be_bytes());
        let crc = crc32c::crc32c(&lying[21..]);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let refused = produce(&broker, "timed", 0, Bytes::from(lying), Acks::All).await;
        assert_eq!(
            refused.error,
            ErrorCode::InvalidRecord,
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("record 1") && refused.message.contains("max timestamp"),
            "{}",
            refused.message
        );
        assert_eq!(
            list_offset(&broker, "timed", OffsetSpec::Latest)
                .await
                .offset,
            Some(0),
            "nothing of the refused batch is stored"
        );
        let honest = produce(&broker, "timed", 0, batch(3, now), Acks::All).await;
        assert_eq!(honest.error, ErrorCode::None, "{}", honest.message);
    });
}

// Goal: over the configured disk usage, produce gets a clear DiskFull while reads go on;
// once retention frees space the guard resets and produce resumes. A real ENOSPC is
// answered DiskFull too, and loses nothing.
#[test]
fn disk_guard_and_enospc_refuse_produce_but_keep_reads() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let clock = ManualClock::new(1_000_000);
        let config = BrokerConfig {
            disk_usage_bytes_max: Some(6_000),
            ..BrokerConfig::default()
        };
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            config,
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        create(
            &broker,
            "t",
            1,
            &[
                ("segment.bytes", "1024"),
                ("max.message.bytes", "1000"),
                ("retention.bytes", "2048"),
            ],
        )
        .await;
        while broker.check_disk_usage().is_none() {
            assert_eq!(
                produce(&broker, "t", 0, batch(3, 0), Acks::All).await.error,
                ErrorCode::None
            );
        }
        let refused = produce(&broker, "t", 0, batch(3, 0), Acks::All).await;
        assert_eq!(refused.error, ErrorCode::DiskFull);
        assert!(
            refused.message.contains("disk_usage_bytes_max"),
            "{}",
            refused.message
        );
        assert_eq!(
            fetch(
                &broker,
                "t",
                0,
                list_offset(&broker, "t", OffsetSpec::Earliest)
                    .await
                    .offset
                    .unwrap(),
                0
            )
            .await
            .error,
            ErrorCode::None
        );
        assert!(broker.enforce_retention().await > 0);
        assert_eq!(broker.check_disk_usage(), None);
        assert_eq!(
            produce(&broker, "t", 0, batch(3, 0), Acks::All).await.error,
            ErrorCode::None
        );

        let before = list_offset(&broker, "t", OffsetSpec::Latest)
            .await
            .offset
            .unwrap();
        disk.set_space_bytes_max(Some(disk.used_bytes() + 20));
        let full = produce(&broker, "t", 0, batch(3, 0), Acks::All).await;
        assert_eq!(full.error, ErrorCode::DiskFull, "{}", full.message);
        disk.set_space_bytes_max(None);
        assert_eq!(
            list_offset(&broker, "t", OffsetSpec::Latest)
                .await
                .offset
                .unwrap(),
            before
        );
        assert_eq!(
            produce(&broker, "t", 0, batch(3, 0), Acks::All).await.error,
            ErrorCode::None
        );
    });
}

fn keyed(key: &str, value: Option<&str>) -> Bytes {
    let record = Record {
        timestamp: 0,
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|value| Bytes::from(value.to_string())),
        headers: Vec::new(),
    };
    encode_batch(&[record], &EncodeOptions::default()).unwrap()
}

// Goal: the broker compacts topics with cleanup.policy=compact once their dirty ratio is
// reached: a consumer reading from the beginning sees the latest value of every key (plus
// the uncompacted tail); __consumer_offsets is compacted too and still loads after restart.
#[test]
fn compacted_topics_and_consumer_offsets_are_compacted() {
    runtime().block_on(async {
        let disk = SimDisk::new(15);
        let clock = ManualClock::new(1_000_000);
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        create(
            &broker,
            "state",
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1024"),
                ("max.message.bytes", "1000"),
            ],
        )
        .await;
        for round in 0..60 {
            let key = format!("device-{}", round % 5);
            assert_eq!(
                produce(
                    &broker,
                    "state",
                    0,
                    keyed(&key, Some(&format!("v{round}"))),
                    Acks::All
                )
                .await
                .error,
                ErrorCode::None
            );
        }
        let before = fetch(&broker, "state", 0, 0, 0).await.records.len();
        assert!(broker.enforce_compaction().await >= 1);
        // Read everything from the start, batch by batch.
        let mut latest = BTreeMap::new();
        let mut count = 0;
        let mut offset = 0;
        let end = list_offset(&broker, "state", OffsetSpec::Latest)
            .await
            .offset
            .unwrap();
        while offset < end {
            let read = fetch(&broker, "state", 0, offset, 0).await;
            for item in BatchIter::new(&read.records) {
                let (header, bytes) = item.unwrap();
                for record in decode_batch(&read.records.slice_ref(bytes), &Default::default())
                    .unwrap()
                    .records
                {
                    if record.offset >= offset {
                        latest.insert(record.key.clone().unwrap(), record.value.clone().unwrap());
                        count += 1;
                    }
                }
                offset = offset.max(header.last_offset() + 1);
            }
        }
        assert!(
            count < 60,
            "compaction removed superseded values ({count} left)"
        );
        for device in 0..5 {
            let newest = (0..60).filter(|round| round % 5 == device).max().unwrap();
            assert_eq!(
                latest[&Bytes::from(format!("device-{device}"))],
                Bytes::from(format!("v{newest}"))
            );
        }
        assert!(fetch(&broker, "state", 0, 0, 0).await.records.len() <= before);

        // Many commits of the same partition (small segments for the offsets topic): it
        // compacts, and the last commit is what a restart loads.
        let Response::AlterConfigs(altered) = broker
            .handle(Request::AlterConfigs(AlterConfigsRequest {
                topics: vec![AlterTopicConfigs {
                    name: "__consumer_offsets".into(),
                    set: vec![
                        ConfigEntry {
                            name: "segment.bytes".into(),
                            value: "1024".into(),
                        },
                        ConfigEntry {
                            name: "max.message.bytes".into(),
                            value: "1000".into(),
                        },
                    ],
                    delete: vec![],
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(
            altered.topics[0].error,
            ErrorCode::None,
            "{}",
            altered.topics[0].message
        );
        create(&broker, "t", 1, &[]).await;
        for offset in 0..80 {
            let Response::OffsetCommit(committed) =
                broker.handle(commit_request("", 0, 0, offset)).await
            else {
                panic!()
            };
            assert_eq!(committed.error, ErrorCode::None);
        }
        assert!(broker.enforce_compaction().await >= 1);
        broker.close().await;
        let broker = Broker::open(
            disk,
            Path::new(DATA),
            BrokerConfig::default(),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        let Response::OffsetFetch(fetched) = broker
            .handle(Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(fetched.topics[0].partitions[0].offset, Some(79));
    });
}

// Goal: an unreadable batch in a sealed segment of __consumer_offsets does not stop the node
// from starting. The replay advances only on batches it parses; `PartitionLog::read` refuses
// a damaged batch today, and the replay also stops when a read makes no progress, so neither
// layer can loop forever. Method: roll __consumer_offsets with small segments, damage the
// first batch's magic byte in the oldest segment, reopen under a timeout.
#[test]
fn a_damaged_offsets_batch_does_not_stall_the_start() {
    runtime().block_on(async {
        let disk = SimDisk::new(46);
        {
            let broker = broker(&disk).await;
            create(&broker, "t", 1, &[]).await;
            broker
                .registry
                .alter_topic(
                    OFFSETS_TOPIC,
                    &BTreeMap::from([
                        ("segment.bytes".to_string(), "1024".to_string()),
                        ("max.message.bytes".to_string(), "1000".to_string()),
                    ]),
                    &[],
                )
                .await
                .unwrap();
            for offset in 0..40 {
                let Response::OffsetCommit(committed) =
                    broker.handle(commit_request("", 0, 0, offset)).await
                else {
                    panic!("wrong response")
                };
                assert_eq!(committed.error, ErrorCode::None, "{}", committed.message);
            }
            broker.close().await;
        }
        let directory = Path::new(DATA)
            .join("logs")
            .join(format!("{OFFSETS_TOPIC}-0"));
        let mut segments: Vec<String> = disk
            .list_dir(&directory)
            .await
            .unwrap()
            .into_iter()
            .filter(|name| name.ends_with(".log"))
            .collect();
        segments.sort();
        assert!(segments.len() > 1, "{segments:?}");
        // 16-byte segment header, then the first batch; its magic byte is at 16 + 16.
        assert!(disk.corrupt_bit(&directory.join(&segments[0]), 32, 0));
        // The broker's own clock is not there yet; every SimClock follows tokio's paused time.
        let clock = SimClock::new(1_000_000);
        let opened = crate::clock::timeout(&clock, Duration::from_secs(30), broker(&disk)).await;
        let broker = opened.expect("the start finished");
        assert_eq!(create(&broker, "u", 1, &[]).await.error, ErrorCode::None);
    });
}

fn commit_with_metadata(metadata: String) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: "g".into(),
        member_id: String::new(),
        member_epoch: 0,
        topics: vec![OffsetCommitTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitPartition {
                partition: 0,
                offset: 7,
                metadata,
            }],
        }],
    })
}

// Goal: a committed offset's metadata is bounded (groups.offset_metadata_bytes_max, Kafka's
// offset.metadata.max.bytes): a longer one is refused with the limit named, instead of being
// cut to the stored 16-bit length (inside a character here, which made the acknowledged
// commit unreadable, and so lost, at the next start). One at the limit survives a restart.
#[test]
fn offset_commit_metadata_is_bounded_and_survives_restart() {
    runtime().block_on(async {
        let disk = SimDisk::new(47);
        {
            let broker = broker(&disk).await;
            create(&broker, "t", 1, &[]).await;
            let straddling = format!("{}é", "a".repeat(65_534));
            let Response::OffsetCommit(refused) =
                broker.handle(commit_with_metadata(straddling)).await
            else {
                panic!("wrong response")
            };
            assert_eq!(refused.error, ErrorCode::InvalidRequest);
            assert!(
                refused
                    .message
                    .contains("more than groups.offset_metadata_bytes_max (4096)"),
                "{}",
                refused.message
            );
            let Response::OffsetCommit(accepted) =
                broker.handle(commit_with_metadata("é".repeat(2048))).await
            else {
                panic!("wrong response")
            };
            assert_eq!(accepted.error, ErrorCode::None, "{}", accepted.message);
            broker.close().await;
        }
        let broker = broker(&disk).await;
        let Response::OffsetFetch(fetched) = broker
            .handle(Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
            }))
            .await
        else {
            panic!("wrong response")
        };
        let committed = &fetched.topics[0].partitions[0];
        assert_eq!(committed.offset, Some(7));
        assert_eq!(committed.metadata, "é".repeat(2048));
    });
}

// Goal: whoever runs on topics (transforms, later replication) hears of every durable
// change to the registry, in order, and of nothing that failed.
#[test]
fn registry_events_tell_created_grown_and_deleted_topics_in_order() {
    use super::registry::RegistryEvent;
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let broker = broker(&disk).await;
        let mut events = broker.subscribe_registry_events();
        let declared = |partitions: u32| DeclaredTopic {
            name: "orders".into(),
            partitions,
            configs: BTreeMap::new(),
            origin: "edge.toml line 3".into(),
        };
        broker.reconcile(&[declared(1)]).await.unwrap();
        broker.reconcile(&[declared(3)]).await.unwrap();
        // Refused: already exists. Not an event.
        assert_eq!(
            create(&broker, "orders", 1, &[]).await.error,
            ErrorCode::TopicAlreadyExists
        );
        let Response::DeleteTopics(deleted) = broker
            .handle(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["orders".into()],
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.topics[0].error, ErrorCode::None);
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        assert_eq!(
            seen,
            vec![
                RegistryEvent::TopicCreated {
                    name: "orders".into(),
                    partitions: 1
                },
                RegistryEvent::PartitionsAdded {
                    name: "orders".into(),
                    before: 1,
                    after: 3
                },
                RegistryEvent::TopicDeleted {
                    name: "orders".into()
                },
            ]
        );
        broker.close().await;
    });
}

/// One partition entry carrying `batches` (each of `records_per_batch` records) back to
/// back, as a client that packs several batches per partition sends it.
fn batches(count: usize, records_per_batch: usize) -> Vec<Bytes> {
    (0..count)
        .map(|number| batch(records_per_batch, 1_000 + number as i64))
        .collect()
}

fn concatenated(batches: &[Bytes]) -> Bytes {
    Bytes::from(batches.concat())
}

// Goal: the batches of one partition in one produce request are handed to the writer
// together (issue 12 item 5): with acks=all they share one fdatasync, not one each, and get
// dense offsets in request order.
#[test]
fn several_batches_for_one_partition_share_one_sync() {
    runtime().block_on(async {
        let disk = SimDisk::new(71);
        let broker = broker(&disk).await;
        assert_eq!(create(&broker, "t", 1, &[]).await.error, ErrorCode::None);
        // A first produce, so opening and checkpoint writes of the new log are behind us.
        let first = produce(&broker, "t", 0, batch(1, 999), Acks::All).await;
        assert_eq!(first.error, ErrorCode::None);
        let syncs_before = disk.sync_count();
        let sent = batches(4, 3);
        let response = produce(&broker, "t", 0, concatenated(&sent), Acks::All).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        assert_eq!(response.base_offset, 1, "the first batch's offset");
        assert_eq!(
            disk.sync_count() - syncs_before,
            1,
            "four batches of one request, one fdatasync"
        );
        let fetched = fetch(&broker, "t", 0, 1, 0).await;
        assert_eq!(fetched.high_watermark, 1 + 4 * 3);
        let base_offsets: Vec<i64> = BatchIter::new(&fetched.records)
            .map(|item| item.unwrap().0.base_offset)
            .collect();
        assert_eq!(base_offsets, vec![1, 4, 7, 10], "dense, in request order");
    });
}

// Goal: a bad batch in the middle of one partition's batches fails the partition's answer
// (Kafka answers the whole partition with the error), the batches before it are appended
// and durable (as when they were appended one at a time), and none after it is.
#[test]
fn a_bad_batch_in_the_middle_fails_the_partition_and_stops_there() {
    runtime().block_on(async {
        let disk = SimDisk::new(72);
        let broker = broker(&disk).await;
        assert_eq!(create(&broker, "t", 1, &[]).await.error, ErrorCode::None);
        let mut sent = batches(3, 2);
        // A flipped byte in the second batch's records: the header still parses, the CRC
        // no longer matches.
        let mut damaged = sent[1].to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        sent[1] = Bytes::from(damaged);
        let response = produce(&broker, "t", 0, concatenated(&sent), Acks::All).await;
        assert_eq!(
            response.error,
            ErrorCode::CorruptMessage,
            "{}",
            response.message
        );
        assert_eq!(response.base_offset, -1);
        let fetched = fetch(&broker, "t", 0, 0, 0).await;
        assert_eq!(
            fetched.high_watermark, 2,
            "only the first batch is appended"
        );
        let base_offsets: Vec<i64> = BatchIter::new(&fetched.records)
            .map(|item| item.unwrap().0.base_offset)
            .collect();
        assert_eq!(base_offsets, vec![0]);
        // The partition serves on: the next produce lands right after the first batch.
        let next = produce(&broker, "t", 0, batch(1, 5_000), Acks::All).await;
        assert_eq!(next.error, ErrorCode::None);
        assert_eq!(next.base_offset, 2);
    });
}

/// The id the broker's Metadata gives `topic`.
async fn topic_id_of(broker: &Broker<SimDisk>, topic: &str) -> String {
    let answer = metadata(broker, Some(vec![topic.to_owned()])).await;
    assert_eq!(answer.topics[0].error, ErrorCode::None);
    answer.topics[0].topic_id.clone()
}

// Goal (issue 14): a topic's id is stored with the topic: it survives a restart, and one
// rebuilt from its topic file (metadata.json lost) keeps it too.
#[test]
fn a_topic_id_survives_restarts_and_rebuilds() {
    runtime().block_on(async {
        let disk = SimDisk::new(46);
        let id = {
            let broker = broker(&disk).await;
            create(&broker, "t", 1, &[]).await;
            let id = topic_id_of(&broker, "t").await;
            assert_eq!(id.len(), 32, "{id}");
            broker.close().await;
            id
        };
        let restarted = broker(&disk).await;
        assert_eq!(topic_id_of(&restarted, "t").await, id);
        restarted.close().await;
        disk.remove_file(&Path::new(DATA).join(metadata::METADATA_FILE_NAME))
            .await
            .unwrap();
        let rebuilt = broker(&disk).await;
        assert_eq!(
            topic_id_of(&rebuilt, "t").await,
            id,
            "rebuilt from the topic file"
        );
    });
}

// Goal (issue 14): a data directory of a build that stored no topic ids starts, each topic
// gets the id that build showed Kafka clients (derived from the name), and that id is
// stored, in metadata.json and the topic file.
#[test]
fn topics_stored_without_an_id_get_their_old_id_once() {
    runtime().block_on(async {
        let disk = SimDisk::new(47);
        let old_topic = r#""partitions": 1, "configs": {}, "created_ms": 5"#;
        write_file(
            &disk,
            &Path::new(DATA).join(metadata::METADATA_FILE_NAME),
            format!(
                r#"{{"version": 1, "topics": {{"old": {{{old_topic}}}}}, "producer_ids_reserved_until": 1000}}"#
            )
            .as_bytes(),
        )
        .await;
        write_file(
            &disk,
            &Path::new(DATA).join("topics/old.json"),
            format!(r#"{{"version": 1, "name": "old", {old_topic}}}"#).as_bytes(),
        )
        .await;
        let broker = broker(&disk).await;
        let expected = metadata::legacy_topic_id("old");
        assert_eq!(topic_id_of(&broker, "old").await, expected);
        assert_eq!(
            crate::kafka::handlers::kafka_topic_id(&expected, "old"),
            crate::kafka::handlers::kafka_topic_id("", "old"),
            "the id Kafka clients were given before"
        );
        broker.close().await;
        let (store, _) = metadata::MetadataStore::load(disk.clone(), Path::new(DATA))
            .await
            .unwrap();
        assert_eq!(
            store.current().topics["old"].local_topic_id.as_deref(),
            Some(expected.as_str())
        );
        let files = metadata::TopicFiles::open(disk.clone(), Path::new(DATA))
            .await
            .unwrap()
            .load_all()
            .await
            .unwrap();
        assert_eq!(files["old"].local_topic_id.as_deref(), Some(expected.as_str()));
    });
}

// Goal: topic ids are drawn as Kafka's `Uuid.randomUuid`: version 4, and an id whose base64
// text would start with '-' is drawn again; a generator that fails, or gives only refused
// ids, yields no id rather than a bad one.
#[test]
fn new_topic_ids_are_v4_and_never_start_with_a_dash() {
    let id = |text: &str| u128::from_str_radix(text, 16).unwrap();
    let mut draws = [[0xf8u8; 16], [0x12; 16]].into_iter();
    let drawn = metadata::new_topic_id(|| draws.next()).unwrap();
    assert_eq!(
        &drawn[..2],
        "12",
        "the '-' draw (0xf8: 111110..) was refused: {drawn}"
    );
    assert_eq!(uuid::Uuid::from_u128(id(&drawn)).get_version_num(), 4);
    assert_eq!(metadata::new_topic_id(|| None), None);
    let mut refused = 0;
    let none = metadata::new_topic_id(|| {
        refused += 1;
        Some([0xfb; 16])
    });
    assert_eq!((none, refused), (None, metadata::TOPIC_ID_DRAWS_MAX));
    let random = metadata::random_topic_id().unwrap();
    assert_ne!(random, metadata::random_topic_id().unwrap());
    assert_eq!(metadata::topic_id_text(1), format!("{:032x}", 1));
}

#[test]
fn deleting_a_topic_closes_every_file_of_it() {
    // Goal: after a topic's sealed segments were read (which caches their descriptors
    // node-wide) and its partition handed out, deleting the topic leaves no handle open on
    // any of its removed files, so their space is freed now rather than at restart.
    runtime().block_on(async {
        let disk = SimDisk::new(29);
        let broker = broker(&disk).await;
        let small = [("segment.bytes", "1024"), ("max.message.bytes", "1000")];
        assert_eq!(
            create(&broker, "gone", 2, &small).await.error,
            ErrorCode::None
        );
        for partition in 0..2 {
            for _ in 0..30 {
                let produced = produce(&broker, "gone", partition, batch(3, 0), Acks::All).await;
                assert_eq!(produced.error, ErrorCode::None);
            }
            // Consume it all: every sealed segment is opened and cached.
            let mut offset = 0;
            while offset < 90 {
                let read = fetch(&broker, "gone", partition, offset, 0).await;
                assert_eq!(read.error, ErrorCode::None);
                let last = BatchIter::new(&read.records)
                    .map(|item| item.unwrap().0)
                    .last()
                    .unwrap();
                offset = last.base_offset + i64::from(last.last_offset_delta) + 1;
            }
        }
        assert!(
            disk.list_dir(Path::new("/data/logs/gone-0"))
                .await
                .unwrap()
                .len()
                > 4,
            "the partition has sealed segments"
        );
        // A handle someone kept (a fetch session, a task) must not keep the files either.
        let kept = broker.registry.partition("gone", 0).unwrap();
        let Response::DeleteTopics(deleted) = broker
            .handle(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["gone".into()],
            }))
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.topics[0].error, ErrorCode::None);
        assert!(disk.list_dir(Path::new("/data/logs/gone-0")).await.is_err());
        assert_eq!(disk.removed_files_open(), 0, "deleted files still open");
        assert!(
            kept.online_log().is_err(),
            "a kept partition is no longer online"
        );
        broker.close().await;
    });
}
