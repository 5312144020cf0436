//! Join transforms on one node (docs/STREAMS.md, "Joins"): the stream-table join of
//! `filters/enrich-orders` (each order enriched with its customer's record current when the
//! order is processed), the stream-stream join against an O(n^2) reference, late records,
//! exactly-once outputs across simulated power loss, and the deploy checks.

use super::stateful_transform_tests::{read_all, runtime};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::partitioner::partition_for_key;
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};
use rand::{Rng, SeedableRng};

use super::metadata::{JoinKind, JoinSpec, StatefulSpec};
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;

const DATA: &str = "/data";
const PARTITIONS: u32 = 2;

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    config.wasm.fuel_per_batch = 50_000_000;
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

fn enrich_orders() -> Bytes {
    Bytes::from(crate::wasm::runtime::stateful_tests::example(
        "enrich_orders",
    ))
}

fn join(name: &str, input: &str, output: &str, spec: JoinSpec) -> transforms::DeclaredTransform {
    transforms::DeclaredTransform {
        name: name.into(),
        kind: crate::wasm::PluginKind::Join,
        module: enrich_orders(),
        input: input.into(),
        output: output.into(),
        join: Some(spec),
        ..Default::default()
    }
}

fn table(topic: &str) -> JoinSpec {
    JoinSpec {
        right: topic.into(),
        kind: JoinKind::Table,
    }
}

async fn create(broker: &Broker<SimDisk>, topic: &str, partitions: u32) {
    broker
        .registry
        .create_topic(topic, partitions, &BTreeMap::new())
        .await
        .unwrap();
}

/// Produces `(key, value or null, timestamp)` records, each to the partition murmur2 gives
/// its key (co-partitioned inputs), one batch per partition.
async fn produce_keyed(
    broker: &Broker<SimDisk>,
    topic: &str,
    records: &[(String, Option<String>, i64)],
) {
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for (key, value, timestamp) in records {
        by_partition
            .entry(partition_for_key(key.as_bytes(), PARTITIONS))
            .or_default()
            .push(Record {
                timestamp: *timestamp,
                key: Some(Bytes::from(key.clone())),
                value: value.clone().map(Bytes::from),
                headers: Vec::new(),
            });
    }
    for (partition, records) in by_partition {
        let batch = encode_batch(&records, &EncodeOptions::default()).unwrap();
        let response = tests::produce(broker, topic, partition, batch, Acks::All).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
    }
}

/// Every output value (JSON) of `topic`, over its partitions.
async fn outputs(broker: &Broker<SimDisk>, topic: &str) -> Vec<serde_json::Value> {
    let mut values = Vec::new();
    for partition in 0..broker.registry.partition_count(topic) {
        for record in read_all(broker, topic, partition).await {
            values.push(serde_json::from_slice(&record.value.unwrap()).unwrap());
        }
    }
    values
}

/// Waits (a bound on the paused clock's steps, not a timing claim) until `topic` holds at
/// least `count` records; returns them.
async fn wait_for_outputs(
    broker: &Broker<SimDisk>,
    topic: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let mut values = Vec::new();
    for _ in 0..6000 {
        values = outputs(broker, topic).await;
        if values.len() >= count {
            return values;
        }
        crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
    }
    panic!(
        "only {} of {count} outputs arrived: {values:?}",
        values.len()
    );
}

async fn describe(broker: &Broker<SimDisk>, name: &str) -> TransformDescription {
    broker
        .describe_transforms(DescribeTransformsRequest {
            names: vec![name.into()],
        })
        .await
        .transforms
        .remove(0)
}

/// Orders `from..from + count`, order n from customer `n % customers`, keyed by the customer.
fn orders(from: u64, count: u64, customers: u64) -> Vec<(String, Option<String>, i64)> {
    (from..from + count)
        .map(|n| {
            let customer = n % customers;
            (
                customer.to_string(),
                Some(format!(r#"{{"order_id": {n}, "customer_id": {customer}}}"#)),
                1000,
            )
        })
        .collect()
}

/// Each output order's id with the `customer` field it got (`None`: not enriched).
fn enriched(values: &[serde_json::Value]) -> BTreeMap<u64, Option<serde_json::Value>> {
    let mut by_order = BTreeMap::new();
    for value in values {
        let id = value["order_id"].as_u64().unwrap();
        let previous = by_order.insert(id, value.get("customer").cloned());
        assert!(
            previous.is_none(),
            "order {id} was output twice: {values:?}"
        );
    }
    by_order
}

// Goal: a stream-table join (filters/enrich-orders against a customers table) deploys on
// one node with a compacted changelog, enriches each order with its customer's latest
// record as of when the order is processed (table updates produced before an order are
// applied before it; a tombstone deletes the customer, so later orders pass un-enriched),
// outputs each order once, shows both inputs in describe, and keeps the table across a
// clean restart (restored from the changelog).
#[test]
fn a_stream_table_join_enriches_each_order_with_the_customer_current_when_processed() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let broker = open(&disk).await;
        create(&broker, "orders", PARTITIONS).await;
        create(&broker, "customers", PARTITIONS).await;
        let version = broker
            .transforms
            .deploy(join("enrich", "orders", "enriched", table("customers")))
            .await
            .unwrap();
        assert_eq!(version, 1);
        let changelog = broker
            .registry
            .topic(&StatefulSpec::changelog_topic("enrich"))
            .unwrap();
        assert_eq!(changelog.partition_count(), PARTITIONS);
        assert!(
            broker
                .registry
                .topic(&StatefulSpec::repartition_topic("enrich"))
                .is_none()
        );

        let customer = |id: u64, version: u64| {
            (
                id.to_string(),
                Some(format!(r#"{{"name":"c{id}","v":{version}}}"#)),
                1000,
            )
        };
        // Customers 0..4 exist (version 1); orders also come from customer 4 and 5.
        produce_keyed(
            &broker,
            "customers",
            &(0..4).map(|id| customer(id, 1)).collect::<Vec<_>>(),
        )
        .await;
        produce_keyed(&broker, "orders", &orders(0, 30, 6)).await;
        let first = enriched(&wait_for_outputs(&broker, "enriched", 30).await);
        for (id, customer) in &first {
            let customer_id = id % 6;
            if customer_id < 4 {
                assert_eq!(
                    customer.as_ref().unwrap(),
                    &serde_json::json!({"name": format!("c{customer_id}"), "v": 1}),
                    "order {id}"
                );
            } else {
                assert_eq!(customer, &None, "order {id} has no customer yet");
            }
        }

        // Version 2 of customers 0 and 4, customer 1 deleted; then more orders.
        produce_keyed(
            &broker,
            "customers",
            &[
                customer(0, 2),
                customer(4, 2),
                ("1".to_string(), None, 1000),
            ],
        )
        .await;
        produce_keyed(&broker, "orders", &orders(30, 30, 6)).await;
        let all = enriched(&wait_for_outputs(&broker, "enriched", 60).await);
        assert_eq!(all.len(), 60);
        let expected_version = |customer_id: u64| match customer_id {
            0 | 4 => Some(2),
            2 | 3 => Some(1),
            _ => None,
        };
        for (id, customer) in all.range(30..) {
            let customer_id = id % 6;
            let version = customer.as_ref().map(|c| c["v"].as_u64().unwrap());
            assert_eq!(version, expected_version(customer_id), "order {id}");
        }
        let description = describe(&broker, "enrich").await;
        assert_eq!(description.state, "running", "{description:?}");
        assert_eq!(description.join_input, "customers");
        assert!(description.join_table);
        assert_eq!(description.join_lag, 0, "{description:?}");
        assert_eq!(description.lag, 0, "{description:?}");
        assert_eq!(description.join_positions.len(), PARTITIONS as usize);
        assert_eq!(description.records_out, 60);
        assert!(description.state_bytes > 0, "{description:?}");
        // The table is in use while the join exists.
        let Response::DeleteTopics(refused) = broker
            .handle(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["customers".into()],
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(refused.topics[0].error, ErrorCode::TopicInUse);
        assert!(
            refused.topics[0]
                .message
                .contains("the join input of transform \"enrich\""),
            "{}",
            refused.topics[0].message
        );

        // A clean restart restores the table: new orders still see version 2.
        broker.close().await;
        drop(broker);
        let broker = open(&disk).await;
        produce_keyed(&broker, "orders", &orders(60, 12, 6)).await;
        let all = enriched(&wait_for_outputs(&broker, "enriched", 72).await);
        assert_eq!(all.len(), 72);
        for (id, customer) in all.range(60..) {
            let version = customer.as_ref().map(|c| c["v"].as_u64().unwrap());
            assert_eq!(version, expected_version(id % 6), "order {id}");
        }
        assert!(describe(&broker, "enrich").await.restore_records > 0);

        // Removing the join takes its state with it.
        let removed = broker
            .alter_transform(AlterTransformRequest {
                name: "enrich".into(),
                action: "remove".into(),
            })
            .await;
        assert_eq!(removed.error, ErrorCode::None, "{}", removed.message);
        assert!(
            broker
                .registry
                .topic(&StatefulSpec::changelog_topic("enrich"))
                .is_none()
        );
        broker.close().await;
    });
}

/// The pairs a stream-stream join must emit: every (left id, right id) with the same key
/// and `tl - before <= tr <= tl + after`, computed pair by pair.
fn reference_pairs(
    lefts: &[(String, i64, u64)],
    rights: &[(String, i64, u64)],
    before: i64,
    after: i64,
) -> Vec<(u64, u64)> {
    let mut pairs = Vec::new();
    for (left_key, tl, left) in lefts {
        for (right_key, tr, right) in rights {
            if left_key == right_key && tl - before <= *tr && *tr <= tl + after {
                pairs.push((*left, *right));
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

// Goal: a stream-stream join emits exactly the pairs of records with one key whose
// timestamps are within the window (before 300 ms, after 500 ms), each once, whatever the
// order the two inputs arrive in: checked against an O(n^2) reference over random keys
// and timestamps (grace wide enough that nothing is late).
#[test]
fn a_stream_stream_join_emits_exactly_the_pairs_within_the_window() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let broker = open(&disk).await;
        create(&broker, "left", PARTITIONS).await;
        create(&broker, "right", PARTITIONS).await;
        let (before, after) = (300, 500);
        let spec = JoinSpec {
            right: "right".into(),
            kind: JoinKind::Stream {
                before_ms: before,
                after_ms: after,
                grace_ms: 1_000_000,
            },
        };
        broker
            .transforms
            .deploy(join("pairs", "left", "paired", spec))
            .await
            .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut lefts, mut rights) = (Vec::new(), Vec::new());
        let mut id = 0u64;
        for round in 0..8 {
            let batch: Vec<(String, i64, u64)> = (0..15)
                .map(|_| {
                    id += 1;
                    (
                        format!("k{}", rng.random_range(0..4)),
                        rng.random_range(0..5_000),
                        id,
                    )
                })
                .collect();
            let topic = if round % 2 == 0 { "left" } else { "right" };
            let records: Vec<(String, Option<String>, i64)> = batch
                .iter()
                .map(|(key, t, id)| {
                    let value = if topic == "left" {
                        format!(r#"{{"l":{id}}}"#)
                    } else {
                        id.to_string()
                    };
                    (key.clone(), Some(value), *t)
                })
                .collect();
            produce_keyed(&broker, topic, &records).await;
            if topic == "left" {
                lefts.extend(batch);
            } else {
                rights.extend(batch);
            }
        }
        let expected = reference_pairs(&lefts, &rights, before, after);
        assert!(
            expected.len() > 20,
            "a test worth running: {}",
            expected.len()
        );
        let values = wait_for_outputs(&broker, "paired", expected.len()).await;
        let mut got: Vec<(u64, u64)> = values
            .iter()
            .map(|value| {
                (
                    value["l"].as_u64().unwrap(),
                    value["customer"].as_u64().unwrap(),
                )
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected);
        let description = describe(&broker, "pairs").await;
        assert_eq!(description.records_late, 0);
        assert!(!description.join_table);
        assert_eq!(description.join_lag, 0, "{description:?}");
        broker.close().await;
    });
}

// Goal: with no grace, a record whose every possible partner is behind the watermark is
// late: counted in describe and dropped (no pair), while a record within reach still
// pairs; a record without a key joins nothing and is counted too.
#[test]
fn late_and_keyless_records_are_counted_and_dropped() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let broker = open(&disk).await;
        create(&broker, "left", PARTITIONS).await;
        create(&broker, "right", PARTITIONS).await;
        let spec = JoinSpec {
            right: "right".into(),
            kind: JoinKind::Stream {
                before_ms: 10,
                after_ms: 10,
                grace_ms: 0,
            },
        };
        broker
            .transforms
            .deploy(join("pairs", "left", "paired", spec))
            .await
            .unwrap();
        let value = |id: u64| Some(format!(r#"{{"l":{id}}}"#));
        produce_keyed(&broker, "left", &[("k".into(), value(1), 10_000)]).await;
        // Wait until the left record is processed (the watermark is 10 000 then).
        for _ in 0..6000 {
            if describe(&broker, "pairs").await.records_in == 1 {
                break;
            }
            crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
        }
        // 100 + 10 < 10 000: late. 9 995 is within 10 of the left: pairs.
        produce_keyed(&broker, "right", &[("k".into(), Some("7".into()), 100)]).await;
        produce_keyed(&broker, "right", &[("k".into(), Some("8".into()), 9_995)]).await;
        let keyless = encode_batch(
            &[Record {
                timestamp: 10_000,
                key: None,
                value: Some(Bytes::from_static(b"9")),
                headers: Vec::new(),
            }],
            &EncodeOptions::default(),
        )
        .unwrap();
        tests::produce(&broker, "right", 0, keyless, Acks::All).await;
        wait_for_outputs(&broker, "paired", 1).await;
        let mut description = describe(&broker, "pairs").await;
        for _ in 0..6000 {
            if description.records_in == 4 {
                break;
            }
            crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
            description = describe(&broker, "pairs").await;
        }
        assert_eq!(description.records_in, 4, "{description:?}");
        assert_eq!(description.records_late, 2, "{description:?}");
        let values = outputs(&broker, "paired").await;
        assert_eq!(values, vec![serde_json::json!({"l": 1, "customer": 8})]);
        broker.close().await;
    });
}

// Goal: power loss at arbitrary points while a stream-table join runs (between the input
// appends, the changelog commit and the forwarding) neither loses nor repeats an output:
// after the last reboot each order is in the output exactly once, enriched.
#[test]
fn power_loss_while_joining_neither_loses_nor_repeats_an_output() {
    let disk = SimDisk::new(31);
    let mut total = 0u64;
    for round in 0..12u64 {
        let rt = runtime();
        let broker = rt.block_on(async {
            let broker = open(&disk).await;
            if round == 0 {
                create(&broker, "orders", PARTITIONS).await;
                create(&broker, "customers", PARTITIONS).await;
                let customers: Vec<_> = (0..5u64)
                    .map(|id| (id.to_string(), Some(format!(r#"{{"id":{id}}}"#)), 1000))
                    .collect();
                produce_keyed(&broker, "customers", &customers).await;
                broker
                    .transforms
                    .deploy(join("enrich", "orders", "enriched", table("customers")))
                    .await
                    .unwrap();
            }
            produce_keyed(&broker, "orders", &orders(total, 9, 5)).await;
            total += 9;
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
        let values = wait_for_outputs(&broker, "enriched", total as usize).await;
        // `enriched` panics on an order output twice.
        let all = enriched(&values);
        assert_eq!(all.len() as u64, total);
        for (id, customer) in &all {
            assert_eq!(
                customer.as_ref(),
                Some(&serde_json::json!({"id": id % 5})),
                "order {id}"
            );
        }
        broker.close().await;
    });
}

// Goal: power loss at arbitrary points while a stream-stream join runs (its buffers in the
// changelog, both inputs' positions and the watermark in one commit) neither loses nor
// repeats a pair: after the last reboot the output holds exactly the reference's pairs.
#[test]
fn power_loss_while_joining_two_streams_keeps_exactly_the_pairs() {
    let disk = SimDisk::new(37);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (before, after) = (200, 200);
    let (mut lefts, mut rights) = (Vec::new(), Vec::new());
    let mut id = 0u64;
    for round in 0..10u64 {
        let rt = runtime();
        let broker = rt.block_on(async {
            let broker = open(&disk).await;
            if round == 0 {
                create(&broker, "left", PARTITIONS).await;
                create(&broker, "right", PARTITIONS).await;
                let spec = JoinSpec {
                    right: "right".into(),
                    kind: JoinKind::Stream {
                        before_ms: before,
                        after_ms: after,
                        grace_ms: 1_000_000,
                    },
                };
                broker
                    .transforms
                    .deploy(join("pairs", "left", "paired", spec))
                    .await
                    .unwrap();
            }
            for topic in ["left", "right"] {
                let batch: Vec<(String, i64, u64)> = (0..6)
                    .map(|_| {
                        id += 1;
                        (
                            format!("k{}", rng.random_range(0..3)),
                            rng.random_range(0..2_000),
                            id,
                        )
                    })
                    .collect();
                let records: Vec<(String, Option<String>, i64)> = batch
                    .iter()
                    .map(|(key, t, id)| {
                        let value = if topic == "left" {
                            format!(r#"{{"l":{id}}}"#)
                        } else {
                            id.to_string()
                        };
                        (key.clone(), Some(value), *t)
                    })
                    .collect();
                produce_keyed(&broker, topic, &records).await;
                if topic == "left" {
                    lefts.extend(batch);
                } else {
                    rights.extend(batch);
                }
            }
            // A different number of scheduler steps each round: the crash lands anywhere.
            for _ in 0..(round * 41 % 200) {
                tokio::task::yield_now().await;
            }
            broker
        });
        disk.crash();
        drop(broker);
        rt.shutdown_background();
    }
    let expected = reference_pairs(&lefts, &rights, before, after);
    let rt = runtime();
    rt.block_on(async {
        let broker = open(&disk).await;
        wait_for_outputs(&broker, "paired", expected.len()).await;
        // Settle: nothing more arrives once every input is processed.
        for _ in 0..6000 {
            let description = describe(&broker, "pairs").await;
            if description.lag == 0 && description.join_lag == 0 {
                break;
            }
            crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
        }
        let values = outputs(&broker, "paired").await;
        let mut got: Vec<(u64, u64)> = values
            .iter()
            .map(|value| {
                (
                    value["l"].as_u64().unwrap(),
                    value["customer"].as_u64().unwrap(),
                )
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected);
        broker.close().await;
    });
}

// Goal: the deploy checks co-partitioning (equal partition counts, both named in the
// refusal) and the join settings, each refusal naming the setting; through the wire too.
#[test]
fn join_deploys_are_checked_and_refusals_name_the_setting() {
    runtime().block_on(async {
        let disk = SimDisk::new(17);
        let broker = open(&disk).await;
        create(&broker, "orders", 3).await;
        create(&broker, "customers", 2).await;
        let error = broker
            .transforms
            .deploy(join("enrich", "orders", "enriched", table("customers")))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"orders\" has 3") && error.contains("\"customers\" has 2"),
            "{error}"
        );
        let cases: Vec<(transforms::DeclaredTransform, &str)> = vec![
            (
                transforms::DeclaredTransform {
                    join: None,
                    ..join("j", "orders", "out", table("customers"))
                },
                "join.table",
            ),
            (
                transforms::DeclaredTransform {
                    kind: crate::wasm::PluginKind::Filter,
                    ..join("j", "orders", "out", table("customers"))
                },
                "join.table and join.with are for join transforms",
            ),
            (
                join(
                    "j",
                    "orders",
                    "out",
                    JoinSpec {
                        right: "customers".into(),
                        kind: JoinKind::Stream {
                            before_ms: -1,
                            after_ms: 0,
                            grace_ms: 0,
                        },
                    },
                ),
                "join.before_ms",
            ),
            (
                join("j", "orders", "out", table("orders")),
                "join.table or join.with",
            ),
            (
                join("j", "orders", "out", table("nothing")),
                "\"nothing\" does not exist",
            ),
        ];
        for (declared, expected) in cases {
            let error = broker
                .transforms
                .deploy(declared)
                .await
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error} should name {expected}");
        }
        // The wire request: both second inputs at once, and a window without join.with.
        for (request, expected) in [
            (
                DeployTransformRequest {
                    join_table: "customers".into(),
                    join_with: "customers".into(),
                    ..deploy_request()
                },
                "join.table and join.with are exclusive",
            ),
            (
                DeployTransformRequest {
                    join_grace_ms: 5,
                    ..deploy_request()
                },
                "join.grace_ms",
            ),
        ] {
            let Response::DeployTransform(response) =
                broker.handle(Request::DeployTransform(request)).await
            else {
                panic!("wrong response")
            };
            assert_eq!(response.error, ErrorCode::InvalidRequest);
            assert!(response.message.contains(expected), "{}", response.message);
        }
        assert!(broker.registry.transform("j").await.is_none());
        broker.close().await;
    });
}

fn deploy_request() -> DeployTransformRequest {
    DeployTransformRequest {
        name: "j".into(),
        kind: crate::wasm::PluginKind::Join,
        module: enrich_orders(),
        input: "orders".into(),
        ..DeployTransformRequest::default()
    }
}
