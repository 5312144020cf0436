//! WASM plug-ins in the broker, on the simulated disk with tiny WAT modules: topic
//! transforms (pass-through, restart, dead-letter isolation, stop, hot swap, circuit
//! breaker, runaway modules contained), fetch plug-ins, produce filters and node-side
//! partitioning, and bad uploads.
//!
//! Every test runs on a current-thread runtime with tokio's time paused, and waits on the
//! broker's clock (a `SimClock` that follows the paused time): the waits cost no wall time
//! and the runs interleave the same way each time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, DecodedRecord, EncodeOptions, Record, decode_batch, encode_batch};

use super::metadata::MetadataStore;
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;
use crate::wasm::runtime::tests::{KEEP, TRAP_ON_BANG, Wat};

const DATA: &str = "/data";

/// Drops records at odd positions of each call.
const DROP_ODD: &str = "(i32.store8 (local.get $w) (i32.and (local.get $i) (i32.const 1))) (local.set $w (i32.add (local.get $w) (i32.const 1)))";
/// Fails every record with the message "bad".
const ERROR_ALL: &str = "(i32.store8 (local.get $w) (i32.const 2))
    (i32.store (i32.add (local.get $w) (i32.const 1)) (i32.const 3))
    (i32.store8 (i32.add (local.get $w) (i32.const 5)) (i32.const 98))
    (i32.store8 (i32.add (local.get $w) (i32.const 6)) (i32.const 97))
    (i32.store8 (i32.add (local.get $w) (i32.const 7)) (i32.const 100))
    (local.set $w (i32.add (local.get $w) (i32.const 8)))";
/// Sends record i of a call to partition i % partition_count.
const ROUND_ROBIN: &str = "(i32.store8 (local.get $w) (i32.const 4))
    (i32.store (i32.add (local.get $w) (i32.const 1)) (i32.rem_u (local.get $i) (i32.load (i32.add (local.get $p) (i32.const 8)))))
    (local.set $w (i32.add (local.get $w) (i32.const 5)))";

/// Keeps every record but traps on any input containing `!`.
fn poison_module() -> Bytes {
    Bytes::from(
        Wat {
            before: TRAP_ON_BANG,
            ..Wat::default()
        }
        .module(),
    )
}

/// A fetch plug-in naming `module` with no parameter overrides.
fn named(module: &str) -> Option<PluginRef> {
    Some(PluginRef {
        module: module.into(),
        params: vec![],
    })
}

fn module(per_record: &'static str) -> Bytes {
    Bytes::from(
        Wat {
            per_record,
            ..Wat::default()
        }
        .module(),
    )
}

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    config.wasm.fuel_per_batch = 5_000_000;
    config
}

async fn open(disk: &SimDisk) -> Arc<Broker<SimDisk>> {
    let broker = Broker::open(
        disk.clone(),
        Path::new(DATA),
        config(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let broker = Arc::new(broker);
    broker.transforms().start().await;
    broker
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn create(broker: &Broker<SimDisk>, name: &str, partitions: u32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    broker
        .registry
        .create_topic(name, partitions, &configs)
        .await
        .unwrap();
}

fn values(values: &[String]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|value| Record {
            timestamp: 1000,
            key: Some(Bytes::from(format!("k-{value}"))),
            value: Some(Bytes::from(value.clone())),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn numbered(from: usize, count: usize) -> Vec<String> {
    (from..from + count).map(|n| format!("v{n}")).collect()
}

async fn produce(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
    records: Bytes,
) -> ProducePartitionResponse {
    tests::produce(broker, topic, partition, records, Acks::All).await
}

async fn fetch_with(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
    offset: i64,
    plugin: Option<PluginRef>,
) -> FetchResponse {
    let request = FetchRequest {
        max_wait_ms: 0,
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
        plugin,
    };
    let Response::Fetch(response) = broker.handle(Request::Fetch(request)).await else {
        panic!("wrong response")
    };
    response
}

/// Every record of a partition, through fetches without a plug-in.
async fn read_all(broker: &Broker<SimDisk>, topic: &str, partition: u32) -> Vec<DecodedRecord> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let response = fetch_with(broker, topic, partition, offset, None).await;
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        if answer.records.is_empty() {
            return records;
        }
        for item in BatchIter::new(&answer.records) {
            let (header, raw) = item.unwrap();
            offset = header.last_offset() + 1;
            let decoded =
                decode_batch(&answer.records.slice_ref(raw), &Default::default()).unwrap();
            records.extend(decoded.records);
        }
    }
}

fn text(value: &Option<Bytes>) -> String {
    String::from_utf8(value.as_ref().unwrap().to_vec()).unwrap()
}

fn header(record: &DecodedRecord, key: &str) -> String {
    let header = record
        .headers
        .iter()
        .find(|header| header.key == key)
        .unwrap();
    text(&header.value)
}

fn transform(
    name: &str,
    module: Bytes,
    input: &str,
    on_error: transforms::OnError,
) -> transforms::DeclaredTransform {
    transforms::DeclaredTransform {
        name: name.into(),
        kind: crate::wasm::PluginKind::Filter,
        module,
        input: input.into(),
        output: String::new(),
        params: BTreeMap::new(),
        on_error,
        dead_letter_topic: String::new(),
        window: None,
    }
}

async fn describe(broker: &Broker<SimDisk>, name: &str) -> TransformDescription {
    let response = broker
        .describe_transforms(DescribeTransformsRequest {
            names: vec![name.into()],
        })
        .await;
    response.transforms.into_iter().next().unwrap()
}

async fn wait_for(
    broker: &Broker<SimDisk>,
    name: &str,
    done: impl Fn(&TransformDescription) -> bool,
) -> TransformDescription {
    let mut last = describe(broker, name).await;
    // A liveness bound, not a timing claim: a minute of the broker's (paused) clock, which
    // moves only when every task waits, so a slow machine cannot run it out.
    for _ in 0..6000 {
        if done(&last) {
            return last;
        }
        crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
        last = describe(broker, name).await;
    }
    panic!("transform never got there: {last:#?}");
}

#[test]
fn a_transform_copies_every_record_and_resumes_after_restart_without_duplicates() {
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let broker = open(&disk).await;
        create(&broker, "orders", 2, &[]).await;
        let version = broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "orders",
                transforms::OnError::DeadLetter,
            ))
            .await
            .unwrap();
        assert_eq!(version, 1);
        for round in 0..5 {
            for partition in 0..2 {
                let response = produce(
                    &broker,
                    "orders",
                    partition,
                    values(&numbered(round * 10, 10)),
                )
                .await;
                assert_eq!(response.error, ErrorCode::None, "{}", response.message);
            }
        }
        let status = wait_for(&broker, "copy", |d| d.records_out == 100 && d.lag == 0).await;
        assert_eq!(status.state, "running");
        assert_eq!(status.output, "orders.copy");
        assert_eq!(status.records_in, 100);
        // `busy_us` is time on the node's clock; on paused time a plug-in call takes none,
        // so it is checked against a real node (e2e `wasm`).
        for partition in 0..2 {
            let copied = read_all(&broker, "orders.copy", partition).await;
            let values: Vec<String> = copied.iter().map(|record| text(&record.value)).collect();
            assert_eq!(values, numbered(0, 50), "partition {partition}");
        }
        broker.close().await;
        drop(broker);

        // Restart: the position is stored, so only new input is processed.
        let broker = open(&disk).await;
        produce(&broker, "orders", 0, values(&numbered(50, 5))).await;
        wait_for(&broker, "copy", |d| d.records_out == 5 && d.lag == 0).await;
        let copied = read_all(&broker, "orders.copy", 0).await;
        assert_eq!(copied.len(), 55, "no duplicates after a clean restart");
        assert_eq!(describe(&broker, "copy").await.positions[0].offset, 55);

        // Deleting the transform's input or output is refused with the transform named; once
        // the transform is removed, both go.
        for (topic, role) in [("orders", "input"), ("orders.copy", "output")] {
            let refused = delete_topic(&broker, topic).await;
            assert_eq!(refused.error, ErrorCode::TopicInUse, "{topic}");
            assert!(
                refused
                    .message
                    .contains(&format!("the {role} of transform \"copy\"")),
                "{}",
                refused.message
            );
        }
        assert_eq!(
            read_all(&broker, "orders", 0).await.len(),
            55,
            "nothing deleted"
        );
        let removed = broker
            .alter_transform(AlterTransformRequest {
                name: "copy".into(),
                action: "remove".into(),
            })
            .await;
        assert_eq!(removed.error, ErrorCode::None, "{}", removed.message);
        for topic in ["orders", "orders.copy"] {
            assert_eq!(delete_topic(&broker, topic).await.error, ErrorCode::None);
        }
        broker.close().await;
    });
}

async fn delete_topic(broker: &Broker<SimDisk>, name: &str) -> TopicResult {
    let Response::DeleteTopics(response) = broker
        .handle(Request::DeleteTopics(DeleteTopicsRequest {
            names: vec![name.into()],
        }))
        .await
    else {
        panic!("wrong response")
    };
    response.topics.into_iter().next().unwrap()
}

#[test]
fn a_poison_record_is_isolated_to_the_dead_letter_topic_and_the_rest_flows() {
    runtime().block_on(async {
        let disk = SimDisk::new(2);
        let broker = open(&disk).await;
        create(&broker, "events", 1, &[]).await;
        let poison = poison_module();
        broker
            .transforms
            .deploy(transform(
                "screen",
                poison,
                "events",
                transforms::OnError::DeadLetter,
            ))
            .await
            .unwrap();
        let mut batch = numbered(0, 50);
        batch[17] = "boom!".into();
        produce(&broker, "events", 0, values(&batch)).await;
        let status = wait_for(&broker, "screen", |d| d.lag == 0 && d.records_in == 50).await;
        assert_eq!((status.records_out, status.records_dead), (49, 1));
        assert_eq!(
            status.state, "running",
            "one poison record does not trip the breaker"
        );
        assert!(
            status.last_error.contains("offset 17"),
            "{}",
            status.last_error
        );
        let out = read_all(&broker, "events.screen", 0).await;
        assert_eq!(out.len(), 49);
        assert!(out.iter().all(|record| text(&record.value) != "boom!"));
        let dead = read_all(&broker, "screen.dead-letter", 0).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(text(&dead[0].value), "boom!");
        assert_eq!(text(&dead[0].key), "k-boom!");
        assert_eq!(header(&dead[0], "ledge.transform"), "screen");
        assert_eq!(header(&dead[0], "ledge.source.topic"), "events");
        assert_eq!(header(&dead[0], "ledge.source.partition"), "0");
        assert_eq!(header(&dead[0], "ledge.source.offset"), "17");
        assert!(
            header(&dead[0], "ledge.error").contains("unreachable"),
            "{}",
            header(&dead[0], "ledge.error")
        );
        broker.close().await;
    });
}

#[test]
fn the_stop_policy_stops_before_the_batch_and_a_hot_swap_resumes_without_loss() {
    runtime().block_on(async {
        let disk = SimDisk::new(3);
        let broker = open(&disk).await;
        create(&broker, "in", 1, &[]).await;
        let poison = poison_module();
        broker
            .transforms
            .deploy(transform("strict", poison, "in", transforms::OnError::Stop))
            .await
            .unwrap();
        produce(&broker, "in", 0, values(&numbered(0, 10))).await;
        wait_for(&broker, "strict", |d| d.records_out == 10).await;
        let mut bad = numbered(10, 10);
        bad[3] = "x!".into();
        produce(&broker, "in", 0, values(&bad)).await;
        produce(&broker, "in", 0, values(&numbered(20, 10))).await;
        let status = wait_for(&broker, "strict", |d| d.state == "failed").await;
        assert!(
            status.last_error.contains("offset 10"),
            "{}",
            status.last_error
        );
        assert_eq!(
            status.positions[0].offset, 10,
            "stopped before the failing batch"
        );
        assert_eq!(read_all(&broker, "in.strict", 0).await.len(), 10);
        // The state survives a restart.
        broker.close().await;
        drop(broker);
        let broker = open(&disk).await;
        assert_eq!(describe(&broker, "strict").await.state, "failed");
        // A fixed version swaps in and resumes from the stored position: nothing lost.
        let version = broker
            .transforms
            .deploy(transform(
                "strict",
                module(KEEP),
                "in",
                transforms::OnError::Stop,
            ))
            .await
            .unwrap();
        assert_eq!(version, 2);
        let status = wait_for(&broker, "strict", |d| d.lag == 0 && d.records_out == 20).await;
        assert_eq!(status.state, "running");
        let out: Vec<String> = read_all(&broker, "in.strict", 0)
            .await
            .iter()
            .map(|record| text(&record.value))
            .collect();
        let mut expected = numbered(0, 30);
        expected[13] = "x!".into();
        assert_eq!(out, expected);
        broker.close().await;
    });
}

#[test]
fn a_hot_swap_under_load_loses_nothing() {
    runtime().block_on(async {
        let disk = SimDisk::new(4);
        let broker = open(&disk).await;
        create(&broker, "load", 1, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "swap",
                module(KEEP),
                "load",
                transforms::OnError::DeadLetter,
            ))
            .await
            .unwrap();
        let producer = {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                for round in 0..40 {
                    produce(&broker, "load", 0, values(&numbered(round * 25, 25))).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        for version in 2..=4 {
            crate::clock::sleep(&*broker.clock, Duration::from_millis(15)).await;
            let swapped = broker
                .transforms
                .deploy(transform(
                    "swap",
                    module(KEEP),
                    "load",
                    transforms::OnError::DeadLetter,
                ))
                .await
                .unwrap();
            assert_eq!(swapped, version);
        }
        producer.await.unwrap();
        wait_for(&broker, "swap", |d| {
            d.lag == 0 && d.positions[0].offset == 1000
        })
        .await;
        let out: Vec<String> = read_all(&broker, "load.swap", 0)
            .await
            .iter()
            .map(|record| text(&record.value))
            .collect();
        assert_eq!(out, numbered(0, 1000));
        broker.close().await;
    });
}

#[test]
fn a_failing_transform_trips_the_breaker_and_a_runaway_module_does_not_stall_other_topics() {
    runtime().block_on(async {
        let disk = SimDisk::new(5);
        let broker = open(&disk).await;
        create(&broker, "noisy", 1, &[]).await;
        create(&broker, "other", 1, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "fails",
                module(ERROR_ALL),
                "noisy",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap();
        let looping = Bytes::from(
            Wat {
                before: "(loop $forever (br $forever))",
                ..Wat::default()
            }
            .module(),
        );
        create(&broker, "spin", 1, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "spins",
                looping,
                "spin",
                transforms::OnError::DeadLetter,
            ))
            .await
            .unwrap();
        produce(&broker, "noisy", 0, values(&numbered(0, 200))).await;
        produce(&broker, "spin", 0, values(&numbered(0, 150))).await;
        // Meanwhile another topic is served as usual.
        for round in 0..20 {
            let response = produce(&broker, "other", 0, values(&numbered(round, 1))).await;
            assert_eq!(response.error, ErrorCode::None);
        }
        assert_eq!(read_all(&broker, "other", 0).await.len(), 20);
        let status = wait_for(&broker, "fails", |d| d.state == "paused").await;
        assert!(
            status.last_error.contains("circuit breaker"),
            "{}",
            status.last_error
        );
        assert!(status.last_error.contains("bad"), "{}", status.last_error);
        let status = wait_for(&broker, "spins", |d| d.state == "paused").await;
        assert!(
            status.last_error.contains("out of fuel"),
            "{}",
            status.last_error
        );
        let dead = read_all(&broker, "spins.dead-letter", 0).await;
        assert!(!dead.is_empty());
        assert!(header(&dead[0], "ledge.error").contains("out of fuel"));
        // An operator resumes it after fixing the cause; pause is persisted until then.
        let response = broker
            .alter_transform(AlterTransformRequest {
                name: "fails".into(),
                action: "remove".into(),
            })
            .await;
        assert_eq!(response.error, ErrorCode::None);
        assert_eq!(
            describe(&broker, "fails").await.error,
            ErrorCode::ModuleNotFound
        );
        broker.close().await;
    });
}

#[test]
fn a_fetch_plugin_drops_records_server_side_and_keeps_offsets() {
    runtime().block_on(async {
        let disk = SimDisk::new(6);
        let broker = open(&disk).await;
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 6))).await;
        produce(&broker, "t", 0, values(&numbered(6, 1))).await;
        produce(&broker, "t", 0, values(&numbered(7, 1))).await;
        let uploaded = broker
            .upload_module(UploadModuleRequest {
                name: "evens".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: module(DROP_ODD),
                params: vec![],
            })
            .await;
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        let plugin = named("evens");
        let response = fetch_with(&broker, "t", 0, 0, plugin.clone()).await;
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        let mut offsets = Vec::new();
        let mut ends = Vec::new();
        for item in BatchIter::new(&answer.records) {
            let (header, raw) = item.unwrap();
            ends.push(header.last_offset());
            let decoded =
                decode_batch(&answer.records.slice_ref(raw), &Default::default()).unwrap();
            offsets.extend(decoded.records.iter().map(|record| record.offset));
        }
        // Odd positions within each call are gone; the batches still span every offset.
        assert_eq!(offsets, vec![0, 2, 4, 6, 7]);
        assert_eq!(ends, vec![5, 6, 7]);

        let unknown = fetch_with(&broker, "t", 0, 0, named("nope")).await;
        assert_eq!(unknown.error, ErrorCode::ModuleNotFound);
        let partitioner = broker
            .upload_module(UploadModuleRequest {
                name: "rr".into(),
                kind: crate::wasm::PluginKind::Partitioner,
                module: Bytes::from(
                    Wat {
                        export: "ledge_partitioner",
                        per_record: ROUND_ROBIN,
                        ..Wat::default()
                    }
                    .module(),
                ),
                params: vec![],
            })
            .await;
        assert_eq!(
            partitioner.error,
            ErrorCode::None,
            "{}",
            partitioner.message
        );
        let wrong = fetch_with(&broker, "t", 0, 0, named("rr")).await;
        assert_eq!(wrong.error, ErrorCode::InvalidModule);
        assert!(
            wrong.message.contains("is a partitioner"),
            "{}",
            wrong.message
        );
        // A module that fails a record fails the fetch with the record's offset.
        broker
            .upload_module(UploadModuleRequest {
                name: "picky".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: module(ERROR_ALL),
                params: vec![],
            })
            .await;
        let failed = fetch_with(&broker, "t", 0, 3, named("picky")).await;
        let answer = &failed.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::ModuleFailed);
        assert!(
            answer.message.contains("offset 0: bad"),
            "{}",
            answer.message
        );
        broker.close().await;
    });
}

#[test]
fn produce_hooks_filter_with_offset_gaps_and_partition_on_the_node() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let broker = open(&disk).await;
        for (name, kind, module) in [
            ("evens", "filter", module(DROP_ODD)),
            ("picky", "filter", module(ERROR_ALL)),
            (
                "rr",
                "partitioner",
                Bytes::from(
                    Wat {
                        export: "ledge_partitioner",
                        per_record: ROUND_ROBIN,
                        ..Wat::default()
                    }
                    .module(),
                ),
            ),
        ] {
            let response = broker
                .upload_module(UploadModuleRequest {
                    name: name.into(),
                    kind: kind.parse().unwrap(),
                    module,
                    params: vec![],
                })
                .await;
            assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        }
        create(
            &broker,
            "filtered",
            1,
            &[("produce.filter.module", "evens")],
        )
        .await;
        // An idempotent producer: the filtered batch keeps its span, so the next sequence fits.
        let idempotent = |first: i32, count: usize| {
            let records: Vec<Record> = numbered(first as usize, count)
                .into_iter()
                .map(|value| Record {
                    timestamp: 1000,
                    value: Some(Bytes::from(value)),
                    ..Record::default()
                })
                .collect();
            encode_batch(
                &records,
                &EncodeOptions {
                    producer_id: 7000,
                    producer_epoch: 0,
                    base_sequence: first,
                    ..EncodeOptions::default()
                },
            )
            .unwrap()
        };
        // Records at odd positions are dropped, but each batch keeps its span of offsets.
        for (first, count, base_offset) in [(0, 4, 0), (4, 1, 4), (5, 2, 5)] {
            let response = produce(&broker, "filtered", 0, idempotent(first, count)).await;
            assert_eq!(
                (response.error, response.base_offset),
                (ErrorCode::None, base_offset),
                "{}",
                response.message
            );
        }
        let stored: Vec<i64> = read_all(&broker, "filtered", 0)
            .await
            .iter()
            .map(|record| record.offset)
            .collect();
        assert_eq!(stored, vec![0, 2, 4, 5]);

        create(
            &broker,
            "validated",
            1,
            &[("produce.filter.module", "picky")],
        )
        .await;
        let refused = produce(&broker, "validated", 0, values(&numbered(0, 2))).await;
        assert_eq!(refused.error, ErrorCode::InvalidRecord);
        assert!(
            refused
                .message
                .contains("record 0 of the batch refused by produce filter \"picky\": bad"),
            "{}",
            refused.message
        );
        assert!(read_all(&broker, "validated", 0).await.is_empty());

        create(&broker, "routed", 3, &[("partitioner.module", "rr")]).await;
        let response = produce(&broker, "routed", NODE_PARTITIONED, values(&numbered(0, 7))).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        let routing = response.routed.unwrap();
        assert_eq!(routing.record_partitions, vec![0, 1, 2, 0, 1, 2, 0]);
        for partition in 0..3u32 {
            let values: Vec<String> = read_all(&broker, "routed", partition)
                .await
                .iter()
                .map(|record| text(&record.value))
                .collect();
            let expected: Vec<String> = (0..7)
                .filter(|n| n % 3 == partition as usize)
                .map(|n| format!("v{n}"))
                .collect();
            assert_eq!(values, expected);
        }
        let metadata = broker.metadata(MetadataRequest {
            topics: Some(vec!["routed".into()]),
        });
        assert_eq!(metadata.topics[0].partitioner_module, "rr");
        // Grown over the wire, the topic's partitioner is called with the new count at once
        // (issue 13 item 5): records go to the new partitions too.
        let Response::CreatePartitions(grown) = broker
            .handle(Request::CreatePartitions(CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: "routed".into(),
                    count: 5,
                    assignments: Vec::new(),
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(grown.topics[0].error, ErrorCode::None, "{grown:?}");
        let response = produce(&broker, "routed", NODE_PARTITIONED, values(&numbered(7, 7))).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        assert_eq!(
            response.routed.unwrap().record_partitions,
            vec![0, 1, 2, 3, 4, 0, 1]
        );
        let on_new: Vec<String> = read_all(&broker, "routed", 4)
            .await
            .iter()
            .map(|record| text(&record.value))
            .collect();
        assert_eq!(on_new, ["v11"]);
        let refused = produce(&broker, "routed", NODE_PARTITIONED, idempotent(0, 2)).await;
        assert_eq!(refused.error, ErrorCode::InvalidRequest);
        let no_partitioner = produce(
            &broker,
            "filtered",
            NODE_PARTITIONED,
            values(&numbered(0, 1)),
        )
        .await;
        assert_eq!(no_partitioner.error, ErrorCode::InvalidRequest);
        // The module is in use: deleting it is refused with the topic named.
        let delete = broker
            .delete_module(DeleteModuleRequest { name: "rr".into() })
            .await;
        assert_eq!(delete.error, ErrorCode::ModuleInUse);
        assert!(delete.message.contains("routed"), "{}", delete.message);
        broker.close().await;
    });
}

#[test]
fn bad_uploads_are_refused_with_the_reason_and_modules_survive_a_restart() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let broker = open(&disk).await;
        let upload = |name: &str, kind: &str, module: Bytes| UploadModuleRequest {
            name: name.into(),
            kind: kind.parse().unwrap(),
            module,
            params: vec![],
        };
        let cases = [
            (
                upload("m", "map", module(KEEP)),
                ErrorCode::InvalidModule,
                "no `ledge_map` export",
            ),
            (
                upload("m", "filter", Bytes::from_static(b"not wasm at all")),
                ErrorCode::InvalidModule,
                "not a WebAssembly binary",
            ),
            (
                upload("bad name!", "filter", module(KEEP)),
                ErrorCode::InvalidRequest,
                "not a valid name",
            ),
        ];
        for (request, code, text) in cases {
            let response = broker.upload_module(request).await;
            assert_eq!(response.error, code, "{}", response.message);
            assert!(response.message.contains(text), "{}", response.message);
        }
        let response = broker
            .upload_module(upload("keep", "filter", module(KEEP)))
            .await;
        assert_eq!(response.error, ErrorCode::None);
        assert_eq!(response.hash.len(), 64);
        let unknown_input = broker
            .transforms
            .deploy(transform(
                "t",
                module(KEEP),
                "missing",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            ErrorCode::from(&unknown_input),
            ErrorCode::UnknownTopicOrPartition
        );
        broker.close().await;
        drop(broker);
        let broker = open(&disk).await;
        let listed = broker.list_modules().await;
        assert_eq!(listed.modules.len(), 1);
        assert_eq!(listed.modules[0].name, "keep");
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 2))).await;
        let response = fetch_with(&broker, "t", 0, 0, named("keep")).await;
        assert_eq!(response.topics[0].partitions[0].error, ErrorCode::None);
        let delete = broker
            .delete_module(DeleteModuleRequest {
                name: "keep".into(),
            })
            .await;
        assert_eq!(delete.error, ErrorCode::None);
        assert!(broker.list_modules().await.modules.is_empty());
        broker.close().await;
    });
}

// Goal (issue 11, data item 5): a fetch through a plug-in passes over a stored batch whose
// CRC holds but whose records do not decode (written before appends checked records): the
// consumer gets an empty batch spanning its offsets and the batches after it, instead of
// an error at that offset on every fetch.
#[test]
fn a_fetch_plugin_passes_over_a_stored_batch_that_does_not_decode() {
    runtime().block_on(async {
        let disk = SimDisk::new(12);
        let broker = open(&disk).await;
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 2))).await;
        produce(&broker, "t", 0, values(&numbered(2, 2))).await;
        produce(&broker, "t", 0, values(&numbered(4, 2))).await;
        broker.close().await;
        poison_second_batch(&disk, &broker, "t").await;
        drop(broker);

        let broker = open(&disk).await;
        let uploaded = broker
            .upload_module(UploadModuleRequest {
                name: "evens".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: module(DROP_ODD),
                params: vec![],
            })
            .await;
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        let response = fetch_with(&broker, "t", 0, 0, named("evens")).await;
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        let mut offsets = Vec::new();
        let mut ends = Vec::new();
        for item in BatchIter::new(&answer.records) {
            let (header, raw) = item.unwrap();
            ends.push(header.last_offset());
            let decoded =
                decode_batch(&answer.records.slice_ref(raw), &Default::default()).unwrap();
            offsets.extend(decoded.records.iter().map(|record| record.offset));
        }
        assert_eq!(offsets, vec![0, 4]);
        assert_eq!(ends, vec![1, 3, 5]);
        broker.close().await;
    });
}

async fn create_result(
    broker: &Broker<SimDisk>,
    name: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> TopicResult {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            replication_factor: None,
            name: name.into(),
            partitions: 1,
            configs: configs
                .iter()
                .map(|(name, value)| ConfigEntry {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        }],
        validate_only,
    };
    let Response::CreateTopics(response) = broker.handle(Request::CreateTopics(request)).await
    else {
        panic!("wrong response")
    };
    response.topics.into_iter().next().unwrap()
}

async fn alter_result(
    broker: &Broker<SimDisk>,
    name: &str,
    key: &str,
    value: &str,
    validate_only: bool,
) -> TopicResult {
    let request = AlterConfigsRequest {
        topics: vec![AlterTopicConfigs {
            name: name.into(),
            set: vec![ConfigEntry {
                name: key.into(),
                value: value.into(),
            }],
            delete: Vec::new(),
        }],
        validate_only,
    };
    let Response::AlterConfigs(response) = broker.handle(Request::AlterConfigs(request)).await
    else {
        panic!("wrong response")
    };
    response.topics.into_iter().next().unwrap()
}

fn partitioner_module() -> Bytes {
    Bytes::from(
        Wat {
            export: "ledge_partitioner",
            per_record: ROUND_ROBIN,
            ..Wat::default()
        }
        .module(),
    )
}

// Goal: partitioner.module and produce.filter.module name a module that exists and is of a
// kind the key takes, at create and alter time (validate-only too), and a module a topic
// config names can be neither deleted nor replaced by one of a kind that key does not take.
#[test]
fn topic_configs_refuse_missing_and_wrong_kind_modules() {
    runtime().block_on(async {
        let disk = SimDisk::new(31);
        let broker = open(&disk).await;
        for (name, kind, bytes) in [
            ("keep", "filter", module(KEEP)),
            ("rr", "partitioner", partitioner_module()),
        ] {
            let response = broker
                .upload_module(UploadModuleRequest {
                    name: name.into(),
                    kind: kind.parse().unwrap(),
                    module: bytes,
                    params: vec![],
                })
                .await;
            assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        }
        let refusals = [
            (
                ("partitioner.module", "nope"),
                "partitioner.module: no module named \"nope\"",
            ),
            (
                ("produce.filter.module", "nope"),
                "produce.filter.module: no module named \"nope\"",
            ),
            (
                ("partitioner.module", "keep"),
                "module \"keep\" is a filter; partitioner.module takes a partitioner",
            ),
            (
                ("produce.filter.module", "rr"),
                "module \"rr\" is a partitioner; produce.filter.module takes a filter, map, or filter_map",
            ),
        ];
        for validate_only in [true, false] {
            for ((key, value), text) in &refusals {
                let refused = create_result(&broker, "t", &[(key, value)], validate_only).await;
                assert_eq!(refused.error, ErrorCode::InvalidConfig, "{}", refused.message);
                assert!(refused.message.contains(text), "{}", refused.message);
            }
        }
        assert!(metadata(&broker).topics.iter().all(|topic| topic.name != "t"));
        create(&broker, "t", 2, &[]).await;
        for validate_only in [true, false] {
            for ((key, value), text) in &refusals {
                let refused = alter_result(&broker, "t", key, value, validate_only).await;
                assert_eq!(refused.error, ErrorCode::InvalidConfig, "{}", refused.message);
                assert!(refused.message.contains(text), "{}", refused.message);
            }
        }
        // Right kinds are accepted, and then the modules are held by the topic.
        for (key, value) in [("partitioner.module", "rr"), ("produce.filter.module", "keep")] {
            let accepted = alter_result(&broker, "t", key, value, false).await;
            assert_eq!(accepted.error, ErrorCode::None, "{}", accepted.message);
        }
        let deleted = broker
            .delete_module(DeleteModuleRequest { name: "rr".into() })
            .await;
        assert_eq!(deleted.error, ErrorCode::ModuleInUse, "{}", deleted.message);
        let replaced = broker
            .upload_module(UploadModuleRequest {
                name: "rr".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: module(KEEP),
                params: vec![],
            })
            .await;
        assert_eq!(replaced.error, ErrorCode::ModuleInUse, "{}", replaced.message);
        assert!(
            replaced
                .message
                .contains("topic \"t\" (partitioner.module), which does not take a filter"),
            "{}",
            replaced.message
        );
        let listed = broker.list_modules().await;
        assert!(
            listed
                .modules
                .iter()
                .any(|module| module.name == "rr" && module.kind == crate::wasm::PluginKind::Partitioner)
        );
        // Produce through both hooks still works.
        let routed = broker
            .data
            .produce(ProduceRequest {
                acks: Acks::All,
                timeout_ms: 10_000,
                topics: vec![ProduceTopic {
                    name: "t".into(),
                    partitions: vec![ProducePartition {
                        current_leader_epoch: None,
                        partition: NODE_PARTITIONED,
                        records: values(&numbered(0, 4)),
                    }],
                }],
            }, sequencing::SequencingHold::unobserved())
            .await;
        assert_eq!(
            routed.topics[0].partitions[0].error,
            ErrorCode::None,
            "{}",
            routed.topics[0].partitions[0].message
        );
        broker.close().await;
    });
}

// Goal: the stateful kinds (aggregate, join: docs/STREAMS.md) upload, but every place that runs
// a module record by record refuses them with a message naming the kind: produce hooks,
// fetch plug-ins and transform deploys.
#[test]
fn record_by_record_places_refuse_stateful_modules() {
    runtime().block_on(async {
        let disk = SimDisk::new(35);
        let broker = open(&disk).await;
        let aggregate = crate::wasm::runtime::stateful_tests::Fixed::default().module();
        let uploaded = broker
            .upload_module(UploadModuleRequest {
                name: "counts".into(),
                kind: crate::wasm::PluginKind::Aggregate,
                module: Bytes::from(aggregate.clone()),
                params: vec![],
            })
            .await;
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        let refused =
            create_result(&broker, "t", &[("produce.filter.module", "counts")], false).await;
        assert_eq!(
            refused.error,
            ErrorCode::InvalidConfig,
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains(
                "module \"counts\" is an aggregate (a stateful plug-in, run by stateful \
                 transforms only: docs/STREAMS.md); produce.filter.module takes a filter, map, \
                 or filter_map"
            ),
            "{}",
            refused.message
        );
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 2))).await;
        let fetched = fetch_with(&broker, "t", 0, 0, named("counts")).await;
        assert_eq!(
            fetched.error,
            ErrorCode::InvalidModule,
            "{}",
            fetched.message
        );
        assert!(
            fetched.message.contains("is an aggregate"),
            "{}",
            fetched.message
        );
        // A join is not deployable as a transform yet (an aggregate is: stateful_tests).
        let join = crate::wasm::runtime::stateful_tests::Fixed {
            exports: &["ledge_join"],
            ..Default::default()
        }
        .module();
        let mut declared = transform(
            "joining",
            Bytes::from(join),
            "t",
            transforms::OnError::DeadLetter,
        );
        declared.kind = crate::wasm::PluginKind::Join;
        let error = broker.transforms.deploy(declared).await.unwrap_err();
        assert!(
            matches!(error, transforms::DeployTransformError::StatefulKind(_)),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "join transforms are not built yet; a transform runs filter, map, filter_map, \
             flat_map, partitioner and aggregate modules (docs/STREAMS.md)"
        );
        broker.close().await;
    });
}

fn metadata(broker: &Broker<SimDisk>) -> MetadataResponse {
    broker.metadata(MetadataRequest { topics: None })
}

// Goal: a transform's position group cannot be joined, committed to, reset or deleted through
// the group APIs while the transform exists (it would reprocess its whole input), with an
// error that says to use `ledge transform`; once the transform is removed, nothing is left.
#[test]
fn a_transform_position_group_is_refused_to_the_group_apis() {
    runtime().block_on(async {
        let disk = SimDisk::new(32);
        let broker = open(&disk).await;
        create(&broker, "orders", 1, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "orders",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap();
        produce(&broker, "orders", 0, values(&numbered(0, 5))).await;
        wait_for(&broker, "copy", |d| d.records_out == 5 && d.lag == 0).await;
        let group = "__transform.copy".to_string();
        let says_why = |message: &str| {
            assert!(
                message.contains("transform \"copy\"") && message.contains("ledge transform"),
                "{message}"
            );
        };
        let Response::DeleteGroups(deleted) = broker
            .handle(Request::DeleteGroups(DeleteGroupsRequest {
                group_ids: vec![group.clone()],
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(deleted.groups[0].error, ErrorCode::InvalidGroupId);
        says_why(&deleted.groups[0].message);
        // An admin reset is a commit with no member (what `ledge group reset-offsets` sends).
        let Response::OffsetCommit(committed) = broker
            .handle(Request::OffsetCommit(OffsetCommitRequest {
                group_id: group.clone(),
                member_id: String::new(),
                member_epoch: 0,
                topics: vec![OffsetCommitTopic {
                    name: "orders".into(),
                    partitions: vec![OffsetCommitPartition {
                        partition: 0,
                        offset: 0,
                        metadata: String::new(),
                    }],
                }],
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(committed.error, ErrorCode::InvalidGroupId);
        says_why(&committed.message);
        let Response::ConsumerGroupHeartbeat(joined) = broker
            .handle(Request::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest {
                    group_id: group.clone(),
                    member_epoch: 0,
                    subscribed_topics: vec!["orders".into()],
                    rebalance_timeout_ms: 10_000,
                    session_timeout_ms: 10_000,
                    ..ConsumerGroupHeartbeatRequest::default()
                },
            ))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(joined.error, ErrorCode::InvalidGroupId);
        says_why(&joined.message);
        // The position is untouched: new input is processed once.
        produce(&broker, "orders", 0, values(&numbered(5, 2))).await;
        let status = wait_for(&broker, "copy", |d| d.lag == 0 && d.records_out == 7).await;
        assert_eq!(status.positions[0].offset, 7);
        assert_eq!(read_all(&broker, "orders.copy", 0).await.len(), 7);
        let removed = broker
            .alter_transform(AlterTransformRequest {
                name: "copy".into(),
                action: "remove".into(),
            })
            .await;
        assert_eq!(removed.error, ErrorCode::None, "{}", removed.message);
        let Response::ListGroups(listed) = broker
            .handle(Request::ListGroups(ListGroupsRequest::default()))
            .await
        else {
            panic!("wrong response")
        };
        assert!(listed.groups.iter().all(|listed| listed.group_id != group));
        broker.close().await;
    });
}

// Goal: a transform version at the end of its range (from a damaged or hand-edited
// metadata.json) refuses the next deploy with the way out instead of overflowing.
#[test]
fn a_transform_version_at_its_limit_refuses_the_next_deploy() {
    runtime().block_on(async {
        use crate::storage::DiskFile as _;
        let disk = SimDisk::new(33);
        let path = Path::new(DATA).join(metadata::METADATA_FILE_NAME);
        {
            let broker = open(&disk).await;
            create(&broker, "orders", 1, &[]).await;
            broker
                .transforms
                .deploy(transform(
                    "copy",
                    module(KEEP),
                    "orders",
                    transforms::OnError::Skip,
                ))
                .await
                .unwrap();
            broker.close().await;
        }
        let mut stored: serde_json::Value =
            serde_json::from_slice(&disk.contents(&path).unwrap()).unwrap();
        stored["transforms"]["copy"]["version"] = serde_json::json!(u32::MAX);
        disk.remove_file(&path).await.unwrap();
        let file = disk
            .open(&path, crate::storage::OpenMode::CreateNew)
            .await
            .unwrap();
        file.write_at(0, Bytes::from(serde_json::to_vec(&stored).unwrap()))
            .await
            .unwrap();
        file.sync_data().await.unwrap();
        drop(file);
        let broker = open(&disk).await;
        let error = broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "orders",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert_eq!(ErrorCode::from(&error), ErrorCode::InvalidRequest);
        assert!(
            message.contains("remove it and deploy it again"),
            "{message}"
        );
        broker.close().await;
    });
}

// Goal: what uploads add to metadata.json is bounded (module count, parameter bytes), and
// metadata.json never grows past what the node reads back at start: a change that would is
// refused, and the node still opens.
#[test]
fn uploads_are_bounded_and_metadata_never_outgrows_its_read_limit() {
    runtime().block_on(async {
        let disk = SimDisk::new(34);
        let mut limited = config();
        limited.wasm.modules_max = 2;
        limited.wasm.module_params_bytes_max = 32;
        let broker = Broker::open(
            disk.clone(),
            Path::new(DATA),
            limited,
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let upload = |name: &str, params: Vec<PluginParam>| UploadModuleRequest {
            name: name.into(),
            kind: crate::wasm::PluginKind::Filter,
            module: module(KEEP),
            params,
        };
        for name in ["a", "b"] {
            let response = broker.upload_module(upload(name, vec![])).await;
            assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        }
        let third = broker.upload_module(upload("c", vec![])).await;
        assert_eq!(third.error, ErrorCode::InvalidRequest);
        assert!(
            third.message.contains("wasm.modules_max"),
            "{}",
            third.message
        );
        // Replacing a module under its name is not a new one.
        let replaced = broker.upload_module(upload("a", vec![])).await;
        assert_eq!(replaced.error, ErrorCode::None, "{}", replaced.message);
        let big = broker
            .upload_module(upload(
                "a",
                vec![PluginParam {
                    key: "k".into(),
                    value: "v".repeat(40),
                }],
            ))
            .await;
        assert_eq!(big.error, ErrorCode::InvalidRequest);
        assert!(
            big.message.contains("wasm.module_params_bytes_max (32)"),
            "{}",
            big.message
        );
        broker.close().await;

        // The file-size rule itself, on the store: refused, old file kept, still loadable.
        let (mut store, existed) = MetadataStore::load(disk.clone(), Path::new(DATA))
            .await
            .unwrap();
        assert!(existed);
        let before = store.current().clone();
        let mut next = before.clone();
        next.topics.insert(
            "huge".into(),
            StoredTopic {
                partitions: 1,
                configs: BTreeMap::from([(
                    "k".to_string(),
                    "x".repeat(metadata::METADATA_FILE_BYTES_MAX as usize),
                )]),
                created_ms: 0,
                topic_id: None,
                hosted: None,
                image_index: None,
                local_topic_id: None,
            },
        );
        let error = store.store(next).await.unwrap_err();
        assert_eq!(dispatch::metadata_code(&error), ErrorCode::InvalidRequest);
        assert_eq!(store.current(), &before);
        let (reloaded, _) = MetadataStore::load(disk.clone(), Path::new(DATA))
            .await
            .unwrap();
        assert_eq!(reloaded.current(), &before);
    });
}

/// Makes the second batch of partition 0 of `topic` (closed beforehand) a poison batch on
/// disk: its first record's length overruns it, CRC resealed, as data from before appends
/// checked records could be.
async fn poison_second_batch(disk: &SimDisk, broker: &Broker<SimDisk>, topic: &str) {
    use crate::storage::disk::{Disk as _, DiskFile as _, OpenMode};
    let log = broker
        .registry
        .partition(topic, 0)
        .unwrap()
        .online_log()
        .unwrap();
    let path = log
        .directory()
        .join(crate::storage::segment::segment_file_name(0));
    let file = disk.open(&path, OpenMode::ReadWrite).await.unwrap();
    let size = file.len().await.unwrap();
    let mut bytes = file.read_at(0, size as usize).await.unwrap();
    let second = 16 + BatchHeader::parse(&bytes[16..]).unwrap().total_bytes();
    let end = second + BatchHeader::parse(&bytes[second..]).unwrap().total_bytes();
    bytes[second + 61] = 0x7e;
    let crc = crc32c::crc32c(&bytes[second + 21..end]);
    bytes[second + 17..second + 21].copy_from_slice(&crc.to_be_bytes());
    file.write_at(0, Bytes::from(bytes)).await.unwrap();
    file.sync_data().await.unwrap();
}

// Goal (issue 11, data item 5): a transform whose input holds a stored batch that does not
// decode skips it (reporting it as its last error) and transforms the batches after it,
// instead of failing at it forever; with on_error = stop it stops there instead. (The error
// used to be lost in about half the runs on a multi-threaded runtime: the deploy cleared the
// last error after its tasks had started, so a task that published first was wiped.)
#[test]
fn a_transform_skips_an_input_batch_that_does_not_decode() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let broker = open(&disk).await;
        create(&broker, "events", 1, &[]).await;
        produce(&broker, "events", 0, values(&numbered(0, 2))).await;
        produce(&broker, "events", 0, values(&numbered(2, 2))).await;
        produce(&broker, "events", 0, values(&numbered(4, 2))).await;
        broker.close().await;
        poison_second_batch(&disk, &broker, "events").await;
        drop(broker);

        let broker = open(&disk).await;
        broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "events",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap();
        // The error is published just after the counters, so wait for both.
        let status = wait_for(&broker, "copy", |d| {
            d.lag == 0 && d.records_in == 4 && !d.last_error.is_empty()
        })
        .await;
        assert_eq!(status.state, "running");
        assert!(
            status.last_error.contains("offset 2"),
            "{}",
            status.last_error
        );
        let out: Vec<String> = read_all(&broker, "events.copy", 0)
            .await
            .iter()
            .map(|record| text(&record.value))
            .collect();
        assert_eq!(out, ["v0", "v1", "v4", "v5"]);

        broker
            .transforms
            .deploy(transform(
                "halt",
                module(KEEP),
                "events",
                transforms::OnError::Stop,
            ))
            .await
            .unwrap();
        let status = wait_for(&broker, "halt", |d| d.state != "running").await;
        assert!(status.last_error.contains("does not decode"), "{status:#?}");
        broker.close().await;
    });
}

// Goal (issue 12, item 1): a running transform follows its input topic's registry: when the
// input gains partitions, tasks start for them at once, without a restart or a redeploy.
#[test]
fn a_running_transform_picks_up_partitions_added_to_its_input() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let broker = open(&disk).await;
        create(&broker, "events", 1, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "events",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap();
        produce(&broker, "events", 0, values(&numbered(0, 2))).await;
        wait_for(&broker, "copy", |d| d.records_in == 2).await;

        broker
            .reconcile(&[DeclaredTopic {
                name: "events".into(),
                partitions: 2,
                configs: BTreeMap::new(),
                origin: "test".into(),
            }])
            .await
            .unwrap();
        assert_eq!(broker.registry.partition_count("events"), 2);
        produce(&broker, "events", 1, values(&numbered(2, 2))).await;
        let status = wait_for(&broker, "copy", |d| d.lag == 0 && d.records_in == 4).await;
        assert_eq!(status.state, "running");
        assert_eq!(status.positions.len(), 2);
        // Each input partition, the new one too, with the node running it and its own
        // counters.
        let per_partition: Vec<(u32, u32, i64, u64, u64, u64)> = status
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition,
                    p.node_id,
                    p.position,
                    p.lag,
                    p.records_in,
                    p.records_out,
                )
            })
            .collect();
        assert_eq!(per_partition, [(0, 1, 2, 0, 2, 2), (1, 1, 2, 0, 2, 2)]);
        let mut out: Vec<String> = read_all(&broker, "events.copy", 0)
            .await
            .iter()
            .map(|record| text(&record.value))
            .collect();
        out.sort();
        assert_eq!(out, ["v0", "v1", "v2", "v3"]);
        broker.close().await;
    });
}

// Goal (issue 12, item 1): transform tasks hold narrow handles (registry, plug-in host,
// group service, clock), never the broker; dropping the broker stops its transform driver
// and tasks, which then let go of the registry and the plug-in host (nothing leaks).
#[test]
fn dropping_the_broker_ends_its_transform_tasks_and_releases_their_handles() {
    runtime().block_on(async {
        let disk = SimDisk::new(15);
        let broker = open(&disk).await;
        create(&broker, "events", 2, &[]).await;
        broker
            .transforms
            .deploy(transform(
                "copy",
                module(KEEP),
                "events",
                transforms::OnError::Skip,
            ))
            .await
            .unwrap();
        produce(&broker, "events", 0, values(&numbered(0, 2))).await;
        wait_for(&broker, "copy", |d| d.records_in == 2).await;
        let registry = Arc::downgrade(&broker.registry);
        let plugins = Arc::downgrade(&broker.plugins);
        let broker = Arc::into_inner(broker).expect("no task holds the broker");
        drop(broker);
        // The aborted tasks and the stopped driver end at their next poll: the runtime gets
        // turns to run them (a bounded number, not time).
        for _ in 0..1000 {
            if registry.strong_count() == 0 && plugins.strong_count() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            registry.strong_count(),
            0,
            "something still holds the registry"
        );
        assert_eq!(
            plugins.strong_count(),
            0,
            "something still holds the plug-in host"
        );
    });
}

/// A fetch of partition 0 of `topic` from offset 0 through `plugin`, its plug-in calls
/// drawing on `fuel` (as a QUIC connection's fetches do).
async fn fetch_metered(
    broker: &Broker<SimDisk>,
    topic: &str,
    plugin: Option<PluginRef>,
    fuel: &crate::wasm::fuel_budget::FuelAccount,
) -> FetchResponse {
    let request = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                current_leader_epoch: None,
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
        plugin,
    };
    broker.fetch_metered(request, fuel).await
}

/// A client connection's identity: `principal` proven by certificate from `host`, or
/// anonymous (`None`).
fn client(principal: Option<&str>, host: [u8; 4]) -> crate::security::identity::ClientIdentity {
    use crate::security::identity::{AuthMethod, ClientIdentity};
    match principal {
        Some(principal) => ClientIdentity {
            principal: principal.parse().unwrap(),
            host: std::net::IpAddr::from(host),
            method: AuthMethod::Certificate,
        },
        None => ClientIdentity::anonymous(std::net::IpAddr::from(host)),
    }
}

// Goal: fetches naming a looping plug-in cannot burn more than their principal's share of
// fuel a second (wasm.fetch_fuel_per_principal_per_second), however many connections it
// opens, nor all principals together more than the node's (wasm.fetch_fuel_per_second); once
// spent, a fetch naming a plug-in is answered TooManyRequests (retriable) naming the key,
// fetches without one are served, and the budget comes back with time (issue 15: 8 fetches
// with a looping plug-in burned 6.3 CPU-seconds in 4.9 s). Method: each call of the looping
// plug-in burns exactly its fuel (5M); a manual clock, so no fuel comes back until the test
// moves time; plug-in work runs inline. Each connection's fetches take their account as the
// QUIC listener does (`PluginHost::fetch_fuel_account` with the connection's identity).
#[test]
fn fetch_plugins_spend_at_most_their_fuel_budgets() {
    runtime().block_on(async {
        let disk = SimDisk::new(41);
        let mut limited = config();
        limited.plugin_executor = crate::wasm::PluginExecutor::Inline;
        limited.wasm.batch_records_max = 1;
        limited.wasm.fetch_fuel_per_second = 18_000_000;
        limited.wasm.fetch_fuel_per_principal_per_second = 8_000_000;
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let broker = Broker::open(disk.clone(), Path::new(DATA), limited, clock.clone())
            .await
            .unwrap();
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 1))).await;
        let uploaded = broker
            .upload_module(UploadModuleRequest {
                name: "spin".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: Bytes::from(
                    Wat {
                        before: "(loop $spin (br $spin))",
                        ..Wat::default()
                    }
                    .module(),
                ),
                params: vec![],
            })
            .await;
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        let plugins = broker.plugins();
        // alice's first and second connections (from two addresses), and bob's.
        let alice_first = client(Some("User:alice"), [10, 0, 0, 1]);
        let alice_second = client(Some("User:alice"), [10, 0, 0, 2]);
        let bob = client(Some("User:bob"), [10, 0, 0, 1]);
        let ran_out = |response: &FetchResponse| {
            response.error == ErrorCode::None
                && response.topics[0].partitions[0].error == ErrorCode::ModuleFailed
        };
        let refused = |response: &FetchResponse, key: &str| {
            response.error == ErrorCode::TooManyRequests && response.message.contains(key)
        };
        // 8M for alice: two calls of 5M start on her first connection (the second goes 2M
        // into debt); her second connection shares that budget and is refused at once.
        for _ in 0..2 {
            let fuel = plugins.fetch_fuel_account(&alice_first);
            let response = fetch_metered(&broker, "t", named("spin"), &fuel).await;
            assert!(ran_out(&response), "{response:?}");
        }
        for identity in [&alice_first, &alice_second] {
            let fuel = plugins.fetch_fuel_account(identity);
            let response = fetch_metered(&broker, "t", named("spin"), &fuel).await;
            assert!(
                refused(&response, "wasm.fetch_fuel_per_principal_per_second")
                    && response.message.contains("User:alice"),
                "{response:?}"
            );
        }
        // bob has his own share; the node's 18M are spent after his second call.
        for _ in 0..2 {
            let fuel = plugins.fetch_fuel_account(&bob);
            let response = fetch_metered(&broker, "t", named("spin"), &fuel).await;
            assert!(ran_out(&response), "{response:?}");
        }
        // Anonymous clients share per address: the node's budget refuses this one.
        let anonymous = plugins.fetch_fuel_account(&client(None, [10, 0, 0, 9]));
        let response = fetch_metered(&broker, "t", named("spin"), &anonymous).await;
        assert!(
            refused(&response, "wasm.fetch_fuel_per_second"),
            "{response:?}"
        );
        // A fetch without a plug-in spends no fuel and is served.
        let greedy = plugins.fetch_fuel_account(&alice_second);
        let plain = fetch_metered(&broker, "t", None, &greedy).await;
        assert_eq!(plain.error, ErrorCode::None, "{}", plain.message);
        assert!(!plain.topics[0].partitions[0].records.is_empty());
        // A second later both budgets have refilled enough to start a call again.
        clock.advance_ms(1000);
        let response = fetch_metered(&broker, "t", named("spin"), &greedy).await;
        assert!(ran_out(&response), "{response:?}");
        broker.close().await;
    });
}

// Goal: instantiating a fetch plug-in for parameters not seen before (its `ledge_init` runs)
// is charged to the fetch fuel budget too, so a client cannot burn CPU by asking for a
// plug-in with new parameters each time. Method: a module whose init loops whenever it is
// given parameters; each fetch names new ones and burns its whole init budget (5M) until the
// anonymous client's 8M (its address's share) are spent.
#[test]
fn instantiating_fetch_plugins_spends_the_fuel_budget() {
    runtime().block_on(async {
        let disk = SimDisk::new(42);
        let mut limited = config();
        limited.plugin_executor = crate::wasm::PluginExecutor::Inline;
        limited.wasm.fetch_fuel_per_second = 1_000_000_000;
        limited.wasm.fetch_fuel_per_principal_per_second = 8_000_000;
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let broker = Broker::open(disk.clone(), Path::new(DATA), limited, clock.clone())
            .await
            .unwrap();
        create(&broker, "t", 1, &[]).await;
        produce(&broker, "t", 0, values(&numbered(0, 1))).await;
        let uploaded = broker
            .upload_module(UploadModuleRequest {
                name: "slow-init".into(),
                kind: crate::wasm::PluginKind::Filter,
                module: Bytes::from(
                    Wat {
                        // No parameters encode to a few bytes; any parameter to more.
                        init: "(if (i32.gt_u (local.get $l) (i32.const 8)) (then (loop $spin (br $spin)))) (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1)",
                        ..Wat::default()
                    }
                    .module(),
                ),
                params: vec![],
            })
            .await;
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        let account = broker
            .plugins()
            .fetch_fuel_account(&client(None, [127, 0, 0, 1]));
        let with_params = |value: usize| {
            Some(PluginRef {
                module: "slow-init".into(),
                params: vec![PluginParam {
                    key: "k".into(),
                    value: value.to_string(),
                }],
            })
        };
        for value in 0..2 {
            let response = fetch_metered(&broker, "t", with_params(value), &account).await;
            assert_ne!(response.error, ErrorCode::None, "init ran out of fuel");
            assert_ne!(response.error, ErrorCode::TooManyRequests, "{response:?}");
        }
        let response = fetch_metered(&broker, "t", with_params(2), &account).await;
        assert_eq!(response.error, ErrorCode::TooManyRequests, "{response:?}");
        assert!(
            response
                .message
                .contains("wasm.fetch_fuel_per_principal_per_second"),
            "{}",
            response.message
        );
        broker.close().await;
    });
}
