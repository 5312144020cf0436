//! Stateful (aggregate) transforms on one node (docs/STREAMS.md): deploy with internal
//! topics, the two stages, the change records, and exact counts across clean restarts and
//! power loss at arbitrary points.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, DecodedRecord, EncodeOptions, Record, decode_batch, encode_batch};

use super::metadata::StatefulSpec;
use super::topic_config::CleanupPolicy;
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;

const DATA: &str = "/data";
const CUSTOMERS: u64 = 7;

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    config.wasm.fuel_per_batch = 50_000_000;
    config
}

async fn open(disk: &SimDisk) -> Arc<Broker<SimDisk>> {
    open_with(disk, config()).await
}

async fn open_with(disk: &SimDisk, config: BrokerConfig) -> Arc<Broker<SimDisk>> {
    let broker = Broker::open(
        disk.clone(),
        Path::new(DATA),
        config,
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let broker = Arc::new(broker);
    broker.transforms().start().await;
    broker
}

/// A paused current-thread runtime (the other transform test modules use it too).
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn order_counts() -> Bytes {
    Bytes::from(crate::wasm::runtime::stateful_tests::example(
        "order_counts",
    ))
}

fn counts(name: &str) -> transforms::DeclaredTransform {
    transforms::DeclaredTransform {
        name: name.into(),
        kind: crate::wasm::PluginKind::Aggregate,
        module: order_counts(),
        input: "orders".into(),
        output: "order-counts".into(),
        params: BTreeMap::new(),
        on_error: transforms::OnError::DeadLetter,
        dead_letter_topic: String::new(),
        ..Default::default()
    }
}

/// Orders `from..from + count`, order n from customer `n % CUSTOMERS`; every fifth one is
/// not JSON (it fails to the dead-letter topic and is not counted).
fn orders(from: u64, count: u64) -> Bytes {
    let records: Vec<Record> = (from..from + count)
        .map(|n| Record {
            timestamp: 1000,
            key: Some(Bytes::from(format!("order-{n}"))),
            value: Some(Bytes::from(if n % 5 == 4 {
                format!("not json {n}")
            } else {
                format!(
                    r#"{{"order_id": {n}, "customer_id": {}, "amount": 10}}"#,
                    n % CUSTOMERS
                )
            })),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// The true counts of orders `0..total`.
fn true_counts(total: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for n in (0..total).filter(|n| n % 5 != 4) {
        *counts.entry((n % CUSTOMERS).to_string()).or_insert(0) += 1;
    }
    counts
}

async fn produce(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
    records: Bytes,
) -> ProducePartitionResponse {
    tests::produce(broker, topic, partition, records, Acks::All).await
}

/// Every record of `topic`'s `partition`, from offset 0 (the other transform test modules
/// use it too).
pub(super) async fn read_all(
    broker: &Broker<SimDisk>,
    topic: &str,
    partition: u32,
) -> Vec<DecodedRecord> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
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
            plugin: None,
        };
        let Response::Fetch(response) = broker.handle(Request::Fetch(request)).await else {
            panic!("wrong response")
        };
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

/// The output's change records by key, in log order, as (key, count).
async fn changes(broker: &Broker<SimDisk>) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for partition in 0..broker.registry.partition_count("order-counts") {
        for record in read_all(broker, "order-counts", partition).await {
            let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let value: u64 = std::str::from_utf8(&record.value.unwrap())
                .unwrap()
                .parse()
                .unwrap();
            by_key.entry(key).or_default().push(value);
        }
    }
    by_key
}

/// Checks that each key's change records (one per commit that changed the key) strictly
/// increase, so none is repeated, and returns the latest count per key.
fn checked_latest(changes: &BTreeMap<String, Vec<u64>>) -> BTreeMap<String, u64> {
    for (key, values) in changes {
        assert!(
            values.windows(2).all(|pair| pair[0] < pair[1]),
            "change records of key {key} repeat or go back: {values:?}"
        );
    }
    changes
        .iter()
        .map(|(key, values)| (key.clone(), values.last().copied().unwrap_or(0)))
        .collect()
}

/// Waits (a bound on the paused clock's steps, not a timing claim) until the output holds
/// the true counts of `total` orders.
async fn wait_for_counts(broker: &Broker<SimDisk>, total: u64) {
    let expected = true_counts(total);
    let mut latest = BTreeMap::new();
    for _ in 0..6000 {
        latest = checked_latest(&changes(broker).await);
        if latest == expected {
            return;
        }
        crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
    }
    panic!("counts never got there: {latest:?}, expected {expected:?}");
}

// Goal: an aggregate deploys on one node with its internal topics (a compacted changelog,
// a repartition topic since order_counts re-keys by customer_id), counts orders per
// customer into a topic of change records with no count twice, sends what its module
// fails to the dead-letter topic, resumes after a clean restart without counting twice,
// refuses client writes to its internal topics, and takes them with it when removed.
#[test]
fn an_aggregate_counts_orders_per_customer_and_resumes_exactly() {
    runtime().block_on(async {
        let disk = SimDisk::new(17);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 3, &BTreeMap::new())
            .await
            .unwrap();
        let version = broker.transforms.deploy(counts("counts")).await.unwrap();
        assert_eq!(version, 1);
        let changelog = StatefulSpec::changelog_topic("counts");
        let repartition = StatefulSpec::repartition_topic("counts");
        let topic = broker.registry.topic(&changelog).unwrap();
        assert_eq!(topic.partition_count(), 3);
        assert_eq!(topic.config().cleanup_policy, CleanupPolicy::Compact);
        let topic = broker.registry.topic(&repartition).unwrap();
        assert_eq!(topic.config().cleanup_policy, CleanupPolicy::Delete);
        for topic in [&changelog, &repartition] {
            let refused = produce(&broker, topic, 0, orders(0, 1)).await;
            assert_eq!(refused.error, ErrorCode::InternalTopic, "{topic}");
        }

        let mut total = 0;
        for round in 0..6 {
            produce(&broker, "orders", round % 3, orders(total, 10)).await;
            total += 10;
        }
        wait_for_counts(&broker, total).await;
        let dead: usize = read_all(&broker, "counts.dead-letter", 0).await.len();
        assert_eq!(dead as u64, total / 5, "every fifth order fails once");
        let description = broker
            .describe_transforms(DescribeTransformsRequest {
                names: vec!["counts".into()],
            })
            .await
            .transforms
            .remove(0);
        assert_eq!(description.state, "running", "{description:?}");
        assert_eq!(description.state_partitions, 3);
        assert_eq!(description.state_partitions_ready, 3);
        assert!(description.state_bytes > 0, "{description:?}");
        // Counted once each: in = the orders read from the input (stage 2's reads of the
        // repartition topic are not the transform's input), out = the change records in the
        // output topic (stage 1's repartition writes are not its output).
        assert_eq!(description.records_in, total, "{description:?}");
        let change_records: usize = changes(&broker).await.values().map(Vec::len).sum();
        assert_eq!(
            description.records_out, change_records as u64,
            "{description:?}"
        );
        assert_eq!(
            description
                .partitions
                .iter()
                .map(|partition| partition.records_in)
                .sum::<u64>(),
            total
        );

        broker.close().await;
        drop(broker);
        let broker = open(&disk).await;
        produce(&broker, "orders", 1, orders(total, 20)).await;
        total += 20;
        wait_for_counts(&broker, total).await;
        // The restart restored the state from the changelog.
        let description = broker
            .describe_transforms(DescribeTransformsRequest {
                names: vec!["counts".into()],
            })
            .await
            .transforms
            .remove(0);
        assert!(description.restore_records > 0, "{description:?}");
        assert_eq!(
            read_all(&broker, "counts.dead-letter", 0).await.len() as u64,
            total / 5
        );

        // The table answers from the state: each key's count, and scans in key order.
        let expected = true_counts(total);
        for (key, count) in &expected {
            let answer = broker
                .transforms
                .table_get(TableGetRequest {
                    name: "counts".into(),
                    key: Bytes::from(key.clone()),
                })
                .await;
            assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
            assert!(answer.found);
            assert_eq!(answer.value, Bytes::from(count.to_string()), "key {key}");
        }
        let missing = broker
            .transforms
            .table_get(TableGetRequest {
                name: "counts".into(),
                key: Bytes::from_static(b"no-such-customer"),
            })
            .await;
        assert_eq!((missing.error, missing.found), (ErrorCode::None, false));
        let scan = broker
            .transforms
            .table_scan(TableScanRequest {
                name: "counts".into(),
                prefix: Bytes::new(),
                limit: 0,
            })
            .await;
        assert_eq!(scan.error, ErrorCode::None, "{}", scan.message);
        let scanned: BTreeMap<String, u64> = scan
            .entries
            .iter()
            .map(|entry| {
                (
                    String::from_utf8(entry.key.to_vec()).unwrap(),
                    std::str::from_utf8(&entry.value).unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(scanned, expected);
        assert!(
            scan.entries
                .windows(2)
                .all(|pair| pair[0].key < pair[1].key)
        );
        assert!(!scan.truncated);
        let limited = broker
            .transforms
            .table_scan(TableScanRequest {
                name: "counts".into(),
                prefix: Bytes::new(),
                limit: 2,
            })
            .await;
        let first_two: Vec<&String> = expected.keys().take(2).collect();
        let got: Vec<String> = limited
            .entries
            .iter()
            .map(|entry| String::from_utf8(entry.key.to_vec()).unwrap())
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), first_two);
        assert!(limited.truncated);
        let unknown = broker
            .transforms
            .table_get(TableGetRequest {
                name: "nothing".into(),
                key: Bytes::new(),
            })
            .await;
        assert_eq!(unknown.error, ErrorCode::TransformNotFound);

        // A redeploy of the same module keeps the state (and its topics).
        assert_eq!(broker.transforms.deploy(counts("counts")).await.unwrap(), 2);
        produce(&broker, "orders", 2, orders(total, 10)).await;
        total += 10;
        wait_for_counts(&broker, total).await;

        let removed = broker
            .alter_transform(AlterTransformRequest {
                name: "counts".into(),
                action: "remove".into(),
            })
            .await;
        assert_eq!(removed.error, ErrorCode::None, "{}", removed.message);
        assert!(broker.registry.topic(&changelog).is_none());
        assert!(broker.registry.topic(&repartition).is_none());
        broker.close().await;
    });
}

// Goal: power loss at arbitrary points while an aggregate runs (between its input, the
// repartition append, the changelog commit and the forwarding) neither loses nor repeats a
// count: after the last reboot the output converges to the true counts, and each key's
// change records strictly increase (no value twice).
#[test]
fn power_loss_while_aggregating_neither_loses_nor_repeats_a_count() {
    let disk = SimDisk::new(29);
    let mut total = 0u64;
    for round in 0..12u64 {
        let rt = runtime();
        let broker = rt.block_on(async {
            let broker = open(&disk).await;
            if round == 0 {
                broker
                    .registry
                    .create_topic("orders", 2, &BTreeMap::new())
                    .await
                    .unwrap();
                broker.transforms.deploy(counts("counts")).await.unwrap();
            }
            for partition in 0..2 {
                let response = produce(&broker, "orders", partition, orders(total, 7)).await;
                assert_eq!(response.error, ErrorCode::None, "{}", response.message);
                total += 7;
            }
            // A different number of scheduler steps each round: the crash lands anywhere.
            for _ in 0..(round * 37 % 200) {
                tokio::task::yield_now().await;
            }
            broker
        });
        disk.crash();
        drop(broker);
        rt.shutdown_background();
    }
    let rt = runtime();
    rt.block_on(async {
        let broker = open(&disk).await;
        wait_for_counts(&broker, total).await;
        broker.close().await;
    });
}

// Goal: an input batch whose one commit would pass `transforms.commit_batch_bytes_max`
// (here 200 orders of 200 customers against 4 KiB) is committed in smaller pieces instead of
// stalling the partition, and still counts each order once.
#[test]
fn a_batch_too_large_for_one_commit_is_split() {
    runtime().block_on(async {
        let disk = SimDisk::new(41);
        let mut config = config();
        config.transforms.commit_batch_bytes_max = 4096;
        let broker = open_with(&disk, config).await;
        broker
            .registry
            .create_topic("orders", 1, &BTreeMap::new())
            .await
            .unwrap();
        broker.transforms.deploy(counts("counts")).await.unwrap();
        let records: Vec<Record> = (0..200u64)
            .map(|n| Record {
                timestamp: 1000,
                key: None,
                value: Some(Bytes::from(format!(
                    r#"{{"order_id": {n}, "customer_id": {n}, "amount": 1}}"#
                ))),
                headers: Vec::new(),
            })
            .collect();
        let batch = encode_batch(&records, &EncodeOptions::default()).unwrap();
        assert_eq!(
            produce(&broker, "orders", 0, batch).await.error,
            ErrorCode::None
        );
        let expected: BTreeMap<String, u64> = (0..200u64).map(|n| (n.to_string(), 1)).collect();
        let mut latest = BTreeMap::new();
        for _ in 0..6000 {
            latest = checked_latest(&changes(&broker).await);
            if latest == expected {
                break;
            }
            crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
        }
        assert_eq!(latest, expected);
        broker.close().await;
    });
}

/// A module `order_counts` could be swapped for: the same layout (`ledge_group`, so a
/// repartition topic), the state schema `schema`, and every call answering as
/// `ledge_state_check` would: each of the `u32 n` states read (`accept`) or refused with
/// the message `bad`. Only the check is called in these tests.
fn swapped_module(schema: &[u8], accept: bool) -> Bytes {
    // Output at 32768, clear of the input (written at 8192 by `ledge_alloc`).
    let body = if accept {
        r#"(local $n i32)
        (local.set $n (i32.load (local.get 0)))
        (memory.fill (i32.const 32768) (i32.const 0) (local.get $n))
        (i64.or (i64.shl (i64.const 32768) (i64.const 32)) (i64.extend_i32_u (local.get $n)))"#
    } else {
        r#"(local $n i32) (local $i i32) (local $at i32)
        (local.set $n (i32.load (local.get 0)))
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $at (i32.add (i32.const 32768) (i32.mul (local.get $i) (i32.const 8))))
          (i32.store8 (local.get $at) (i32.const 2))
          (i32.store (i32.add (local.get $at) (i32.const 1)) (i32.const 3))
          (i32.store8 (i32.add (local.get $at) (i32.const 5)) (i32.const 98))
          (i32.store8 (i32.add (local.get $at) (i32.const 6)) (i32.const 97))
          (i32.store8 (i32.add (local.get $at) (i32.const 7)) (i32.const 100))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
        (i64.or (i64.shl (i64.const 32768) (i64.const 32))
          (i64.extend_i32_u (i32.mul (local.get $n) (i32.const 8))))"#
    };
    Bytes::from(
        crate::wasm::runtime::stateful_tests::Fixed {
            exports: &["ledge_aggregate", "ledge_state_check", "ledge_group"],
            schema,
            output: &[],
            body: Some(body),
        }
        .module(),
    )
}

async fn version_of(broker: &Broker<SimDisk>, name: &str) -> u32 {
    broker
        .describe_transforms(DescribeTransformsRequest {
            names: vec![name.into()],
        })
        .await
        .transforms
        .remove(0)
        .version
}

// Goal (hot swap, docs/STREAMS.md): a redeploy whose module names another state schema is
// refused, naming a key, when its `ledge_state_check` refuses a stored state (the running
// version goes on counting), and keeps the state when the check reads every one.
#[test]
fn a_new_state_schema_is_taken_only_when_its_check_reads_every_stored_state() {
    runtime().block_on(async {
        let disk = SimDisk::new(31);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 3, &BTreeMap::new())
            .await
            .unwrap();
        broker.transforms.deploy(counts("counts")).await.unwrap();
        let mut total = 0;
        for partition in 0..3 {
            produce(&broker, "orders", partition, orders(total, 20)).await;
            total += 20;
        }
        wait_for_counts(&broker, total).await;

        let refused = broker
            .transforms
            .deploy(transforms::DeclaredTransform {
                module: swapped_module(b"u64;schema=3", false),
                ..counts("counts")
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("state schema changes (u64 -> u64;schema=3)")
                && refused.contains("cannot read the state of key")
                && refused.contains(": bad"),
            "{refused}"
        );
        assert_eq!(version_of(&broker, "counts").await, 1);
        produce(&broker, "orders", 0, orders(total, 10)).await;
        total += 10;
        wait_for_counts(&broker, total).await;

        let version = broker
            .transforms
            .deploy(transforms::DeclaredTransform {
                module: swapped_module(b"u64;schema=2", true),
                ..counts("counts")
            })
            .await
            .unwrap();
        assert_eq!(version, 2);
        // The new version restored the same state: every count is still there.
        for (key, count) in true_counts(total) {
            let mut answer = TableGetResponse::default();
            for _ in 0..1000 {
                answer = broker
                    .transforms
                    .table_get(TableGetRequest {
                        name: "counts".into(),
                        key: Bytes::from(key.clone()),
                    })
                    .await;
                if answer.error != ErrorCode::LeaderNotAvailable {
                    break;
                }
                crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
            }
            assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
            assert_eq!(answer.value, Bytes::from(count.to_string()), "key {key}");
        }
        broker.close().await;
    });
}

// Goal: stage 2 deletes the repartition records it has committed (Kafka Streams' purge of
// repartition topics), so the internal topic does not keep every re-keyed input record; a
// restart after the purge restores and goes on counting exactly.
#[test]
fn consumed_repartition_records_are_deleted_and_counting_goes_on() {
    runtime().block_on(async {
        let disk = SimDisk::new(37);
        let mut config = config();
        config.transforms.repartition_purge_interval = Duration::ZERO;
        let broker = open_with(&disk, config.clone()).await;
        broker
            .registry
            .create_topic("orders", 2, &BTreeMap::new())
            .await
            .unwrap();
        broker.transforms.deploy(counts("counts")).await.unwrap();
        let mut total = 0;
        for _ in 0..2 {
            for partition in 0..2 {
                produce(&broker, "orders", partition, orders(total, 20)).await;
                total += 20;
            }
        }
        wait_for_counts(&broker, total).await;
        let repartition = StatefulSpec::repartition_topic("counts");
        for partition in 0..2 {
            let log = broker
                .registry
                .partition_log(&repartition, partition)
                .unwrap();
            for _ in 0..1000 {
                if log.log_start_offset() == log.high_watermark() {
                    break;
                }
                crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
            }
            assert!(
                log.high_watermark() > 0,
                "partition {partition} got records"
            );
            assert_eq!(
                log.log_start_offset(),
                log.high_watermark(),
                "partition {partition}: every committed record deleted"
            );
        }
        broker.close().await;
        drop(broker);

        let broker = open_with(&disk, config).await;
        produce(&broker, "orders", 1, orders(total, 20)).await;
        total += 20;
        wait_for_counts(&broker, total).await;
        broker.close().await;
    });
}
