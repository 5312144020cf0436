//! Issue 13 item 3, plug-ins in a cluster, with real processes: a module uploaded on one
//! node is recorded by the controller and its bytes reach every node (a produce filter
//! naming it runs on each partition's leader); it cannot be deleted while a topic config
//! names it, and a delete on another node removes it everywhere; a transform deployed on
//! one node runs on the leaders of its input partitions and keeps producing its output
//! across kill -9 of a node running it, with no input lost and its positions resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use ledge_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::RawClient;
use ledge_protocol::OnError;
use ledge_protocol::wire::*;

use crate::cluster_topics::{Cluster, until};

const INPUT: &str = "raw";
const OUTPUT: &str = "kept";
const PARTITIONS: u32 = 3;

/// The plug-in lines of every node's log (warnings, errors, transforms, modules), for a
/// failure's message.
fn plugin_log(cluster: &Cluster) -> String {
    cluster
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(index, node)| {
            node.log()
                .lines()
                .filter(|line| {
                    line.contains("WARN")
                        || line.contains("ERROR")
                        || line.contains("transform")
                        || line.contains("module")
                })
                .map(|line| format!("node {}: {line}", index + 1))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn raw_at(cluster: &Cluster, node_id: u32) -> RawClient {
    RawClient::connect_trusting(
        &cluster.nodes[node_id as usize - 1],
        &PathBuf::from(&cluster.ca),
    )
    .await
    .expect("connect")
}

async fn call(raw: &RawClient, request: Request) -> Response {
    match raw.request(&request).await {
        (_, Some(response)) => response,
        (header, None) => panic!("refused: {} {}", header.error, header.message),
    }
}

async fn client_at(cluster: &Cluster, addresses: &[String]) -> Client {
    let mut config = ClientConfig::new(
        addresses.join(","),
        Trust::CaFile(PathBuf::from(&cluster.ca)),
    );
    config.request_timeout = Duration::from_secs(20);
    Client::connect(config).await.expect("connect")
}

async fn modules(raw: &RawClient) -> BTreeMap<String, String> {
    let Response::ListModules(listed) =
        call(raw, Request::ListModules(ListModulesRequest {})).await
    else {
        panic!("wrong response")
    };
    listed
        .modules
        .into_iter()
        .map(|module| (module.name, module.hash))
        .collect()
}

async fn delete_module(raw: &RawClient, name: &str) -> DeleteModuleResponse {
    let Response::DeleteModule(response) = call(
        raw,
        Request::DeleteModule(DeleteModuleRequest { name: name.into() }),
    )
    .await
    else {
        panic!("wrong response")
    };
    response
}

async fn describe(raw: &RawClient, name: &str) -> TransformDescription {
    let Response::DescribeTransforms(response) = call(
        raw,
        Request::DescribeTransforms(DescribeTransformsRequest {
            names: vec![name.into()],
        }),
    )
    .await
    else {
        panic!("wrong response")
    };
    response.transforms.into_iter().next().expect("one")
}

/// Produces `msg-<n>` for `range` to partition `n % PARTITIONS` of the input, idempotent
/// and acks=all.
async fn produce_input(client: &Client, range: std::ops::Range<u32>) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for n in range {
        let record = ProducerRecord::new(INPUT, format!("msg-{n}")).partition(n % PARTITIONS);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("acknowledged");
    }
    producer.close().await;
}

/// Reads the whole output until every `msg-<n>` of `0..count` is there (or 60 s pass);
/// returns how many times each value was read.
async fn read_output(client: &Client, count: u32) -> BTreeMap<String, u32> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(
        (0..PARTITIONS)
            .map(|partition| TopicPartition::new(OUTPUT, partition))
            .collect(),
    );
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let all = (0..count).all(|n| seen.contains_key(&format!("msg-{n}")));
        if all {
            break;
        }
        match consumer.poll(Duration::from_millis(300), 10_000).await {
            Ok(records) => {
                for record in records {
                    let value =
                        String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                            .into_owned();
                    *seen.entry(value).or_default() += 1;
                }
            }
            // A leader change while reading: the SDK finds the new leader on the next poll.
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    seen
}

// Goal (issue 13 item 3): modules and transforms are the controller's; every node has a
// module's bytes; a transform runs where its input is led and survives kill -9 of a node
// running it with no input lost (at-least-once) and its positions resumed.
// Method: the real binaries, 3 nodes, RF=3; the module is a WAT filter that keeps records
// and traps on "on!", so a produce filter's refusal shows the module ran on that leader;
// every wait is a bounded poll.
#[test]
fn modules_and_transforms_follow_the_controller_and_a_transform_survives_kill_9() {
    let mut cluster = Cluster::start();
    cluster.ok(
        1,
        &[
            "topic",
            "create",
            INPUT,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    let addresses = cluster.addresses();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let module = Bytes::from(ledge_e2e::wat_to_wasm(crate::wasm::KEEP_UNLESS_BANG));
    runtime.block_on(async {
        // Uploaded on node 2, listed alike by every node.
        let raw2 = raw_at(&cluster, 2).await;
        let Response::UploadModule(uploaded) = call(
            &raw2,
            Request::UploadModule(UploadModuleRequest {
                name: "guard".into(),
                kind: "filter".parse().unwrap(),
                module: module.clone(),
                params: Vec::new(),
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        for node_id in 1..=3 {
            let raw = raw_at(&cluster, node_id).await;
            let mut listed = BTreeMap::new();
            for _ in 0..100 {
                listed = modules(&raw).await;
                if listed.get("guard") == Some(&uploaded.hash) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(listed.get("guard"), Some(&uploaded.hash), "node {node_id}");
        }
    });
    // A topic whose produce filter is the module: its 3 partitions are led by the 3 nodes,
    // so each node runs the module (bytes fetched by digest by nodes 1 and 3).
    cluster.ok(
        3,
        &[
            "topic",
            "create",
            "guarded",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "produce.filter.module=guard",
        ],
    );
    let leaders: BTreeSet<u64> = cluster
        .placement(1, "guarded")
        .unwrap()
        .iter()
        .filter_map(|partition| partition["leader"].as_u64())
        .collect();
    assert_eq!(leaders.len(), 3, "one leader per node: {leaders:?}");
    runtime.block_on(async {
        let client = client_at(&cluster, &addresses).await;
        let mut config = ProducerConfig::default();
        config.enable_idempotence = false;
        config.retries = 0;
        let producer = Producer::new(&client, config).await.expect("producer");
        for partition in 0..3 {
            let fine = ProducerRecord::new("guarded", "fine").partition(partition);
            let fine = producer.send(fine).await.expect("send").await;
            assert!(fine.is_ok(), "partition {partition}: {fine:?}");
            let poison = ProducerRecord::new("guarded", "poison on!").partition(partition);
            let refused = producer.send(poison).await.expect("send").await;
            let error = format!("{:?}", refused.expect_err("the filter traps"));
            assert!(error.contains("guard"), "partition {partition}: {error}");
        }
        producer.close().await;
        // In use by the topic: refused on node 3 too; gone everywhere once the topic is.
        let raw3 = raw_at(&cluster, 3).await;
        let refused = delete_module(&raw3, "guard").await;
        assert_eq!(refused.error, ErrorCode::ModuleInUse, "{}", refused.message);
        assert!(refused.message.contains("guarded"), "{}", refused.message);
    });
    cluster.ok(2, &["topic", "delete", "guarded"]);
    runtime.block_on(async {
        let raw3 = raw_at(&cluster, 3).await;
        let mut deleted = delete_module(&raw3, "guard").await;
        for _ in 0..50 {
            // The topic's deletion may not be applied on the controller's copy yet.
            if deleted.error != ErrorCode::ModuleInUse {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            deleted = delete_module(&raw3, "guard").await;
        }
        assert_eq!(deleted.error, ErrorCode::None, "{}", deleted.message);
        let raw1 = raw_at(&cluster, 1).await;
        let mut listed = modules(&raw1).await;
        for _ in 0..100 {
            if !listed.contains_key("guard") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            listed = modules(&raw1).await;
        }
        assert!(!listed.contains_key("guard"), "{listed:?}");

        // A transform deployed on node 2 over the 3-partition input.
        let raw2 = raw_at(&cluster, 2).await;
        let Response::DeployTransform(deployed) = call(
            &raw2,
            Request::DeployTransform(DeployTransformRequest {
                name: "keep".into(),
                kind: "filter".parse().unwrap(),
                module: module.clone(),
                input: INPUT.into(),
                output: OUTPUT.into(),
                on_error: OnError::Skip,
                ..DeployTransformRequest::default()
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(deployed.error, ErrorCode::None, "{}", deployed.message);
        assert_eq!(deployed.version, 1);
        let client = client_at(&cluster, &addresses).await;
        produce_input(&client, 0..1500).await;
        let seen = read_output(&client, 1500).await;
        for n in 0..1500 {
            assert!(
                seen.contains_key(&format!("msg-{n}")),
                "msg-{n} missing\n{}",
                plugin_log(&cluster)
            );
        }
    });
    // Kill -9 the leader of input partition 0 (a node running one of the tasks).
    let placement = cluster.placement(1, INPUT).unwrap();
    let victim = placement[0]["leader"].as_u64().expect("a leader") as u32;
    cluster.nodes[victim as usize - 1].kill9();
    let survivors: Vec<String> = (1..=3u32)
        .filter(|id| *id != victim)
        .map(|id| addresses[id as usize - 1].clone())
        .collect();
    let survivor = (1..=3u32).find(|id| *id != victim).unwrap();
    until("input partition 0 led by a survivor", || {
        cluster.placement(survivor, INPUT).is_some_and(|placement| {
            placement[0]["leader"]
                .as_u64()
                .is_some_and(|leader| leader as u32 != victim)
        })
    });
    runtime.block_on(async {
        let client = client_at(&cluster, &survivors).await;
        produce_input(&client, 1500..3000).await;
        let seen = read_output(&client, 3000).await;
        for n in 0..3000 {
            assert!(
                seen.contains_key(&format!("msg-{n}")),
                "msg-{n} missing\n{}",
                plugin_log(&cluster)
            );
        }
        // At-least-once: a chunk in flight at the kill may be written twice, never lost.
        let duplicates: u32 = seen.values().map(|count| count - 1).sum();
        assert!(duplicates <= 1500, "{duplicates} duplicates");
        // Positions resumed and committed at the new coordinator: every input partition's
        // position reaches its end (1000 records each).
        let raw = raw_at(&cluster, survivor).await;
        let mut described = describe(&raw, "keep").await;
        for _ in 0..300 {
            let done = described.positions.len() == PARTITIONS as usize
                && described
                    .positions
                    .iter()
                    .all(|position| position.offset == 1000);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            described = describe(&raw, "keep").await;
        }
        assert_eq!(
            described
                .positions
                .iter()
                .map(|position| (position.partition, position.offset))
                .collect::<Vec<_>>(),
            vec![(0, 1000), (1, 1000), (2, 1000)],
            "{described:#?}"
        );
        assert_eq!(described.state, "running", "{described:#?}");
        // Removed through one survivor: gone on the other as well.
        let Response::AlterTransform(removed) = call(
            &raw,
            Request::AlterTransform(AlterTransformRequest {
                name: "keep".into(),
                action: "remove".into(),
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(removed.error, ErrorCode::None, "{}", removed.message);
        let other = (1..=3u32)
            .find(|id| *id != victim && *id != survivor)
            .unwrap();
        let raw_other = raw_at(&cluster, other).await;
        let mut gone = describe(&raw_other, "keep").await;
        for _ in 0..100 {
            if gone.error == ErrorCode::TransformNotFound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            gone = describe(&raw_other, "keep").await;
        }
        assert_eq!(gone.error, ErrorCode::TransformNotFound, "{gone:#?}");
    });
}

/// A partitioner that sends record `i` of each batch to partition `i % 3`.
const ROUND_ROBIN_PARTITIONER: &str = r#"(module
  (memory (export "memory") 1)
  (func $ensure (param $bytes i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size)))))))
  (func (export "ledge_abi_version") (result i32) (i32.const 1))
  (func (export "ledge_alloc") (param $len i32) (result i32)
    (call $ensure (i32.add (i32.const 1024) (i32.add (i32.mul (local.get $len) (i32.const 6)) (i32.const 65536))))
    (i32.const 1024))
  (func (export "ledge_init") (param i32 i32) (result i64)
    (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
  (func (export "ledge_partitioner") (param $p i32) (param $l i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32) (local $e i32)
    (local.set $out (i32.add (local.get $p) (local.get $l)))
    (local.set $n (i32.load (local.get $p)))
    (i32.store (local.get $out) (local.get $n))
    (local.set $e (i32.add (local.get $out) (i32.const 4)))
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (local.get $e) (i32.const 4))
      (i32.store (i32.add (local.get $e) (i32.const 1)) (i32.rem_u (local.get $i) (i32.const 3)))
      (local.set $e (i32.add (local.get $e) (i32.const 5)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $e) (local.get $out))))))"#;

// Goal (issue 13 item 3, produce-side plug-ins): a produce to NODE_PARTITIONED sent to any
// node of a cluster is partitioned there by the topic's partitioner and each partition's
// records are appended on that partition's leader (acks=all), wherever it is.
// Method: the real binaries, 3 nodes, RF=3, the 3 partitions led by the 3 nodes; a WAT
// partitioner sending record i to partition i % 3; one produce through each node; the
// records read back from each partition.
#[test]
fn a_node_partitioned_produce_to_any_node_lands_on_each_partitions_leader() {
    let cluster = Cluster::start();
    let module = Bytes::from(ledge_e2e::wat_to_wasm(ROUND_ROBIN_PARTITIONER));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let raw1 = raw_at(&cluster, 1).await;
        let Response::UploadModule(uploaded) = call(
            &raw1,
            Request::UploadModule(UploadModuleRequest {
                name: "spread".into(),
                kind: "partitioner".parse().unwrap(),
                module,
                params: Vec::new(),
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(uploaded.error, ErrorCode::None, "{}", uploaded.message);
        // Node 2 checks the topic config below against its copy of the names, which
        // follows the controller's log a moment behind node 1.
        let raw2 = raw_at(&cluster, 2).await;
        for _ in 0..100 {
            if modules(&raw2).await.contains_key("spread") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    cluster.ok(
        2,
        &[
            "topic",
            "create",
            "spread",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "partitioner.module=spread",
        ],
    );
    let leaders: BTreeSet<u64> = cluster
        .placement(1, "spread")
        .unwrap()
        .iter()
        .filter_map(|partition| partition["leader"].as_u64())
        .collect();
    assert_eq!(leaders.len(), 3, "one leader per node: {leaders:?}");
    let addresses = cluster.addresses();
    runtime.block_on(async {
        for node_id in 1..=3u32 {
            let raw = raw_at(&cluster, node_id).await;
            let records: Vec<ledge_protocol::Record> = (0..30)
                .map(|n| ledge_protocol::Record {
                    timestamp: 1,
                    key: None,
                    value: Some(Bytes::from(format!("node{node_id}-{n}"))),
                    headers: Vec::new(),
                })
                .collect();
            let batch =
                ledge_protocol::encode_batch(&records, &ledge_protocol::EncodeOptions::default())
                    .unwrap();
            let Response::Produce(produced) = call(
                &raw,
                Request::Produce(ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 10_000,
                    topics: vec![ProduceTopic {
                        name: "spread".into(),
                        partitions: vec![ProducePartition {
                            current_leader_epoch: None,
                            partition: NODE_PARTITIONED,
                            records: batch,
                        }],
                    }],
                }),
            )
            .await
            else {
                panic!("wrong response")
            };
            let answer = &produced.topics[0].partitions[0];
            assert_eq!(
                answer.error,
                ErrorCode::None,
                "node {node_id}: {}",
                answer.message
            );
            let routed = answer.routed.clone().expect("routing");
            assert_eq!(
                routed.record_partitions,
                (0..30).map(|n| n % 3).collect::<Vec<u32>>()
            );
            assert_eq!(routed.base_offsets.len(), 3, "{routed:?}");
        }
        // Each partition holds exactly its 10 records of each produce.
        let client = client_at(&cluster, &addresses).await;
        for partition in 0..3u32 {
            let mut config = ConsumerConfig::default();
            config.auto_offset_reset = OffsetReset::Earliest;
            let mut consumer = Consumer::new(&client, config);
            consumer.assign(vec![TopicPartition::new("spread", partition)]);
            let mut values = BTreeSet::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while values.len() < 30 && tokio::time::Instant::now() < deadline {
                for record in consumer
                    .poll(Duration::from_millis(300), 1000)
                    .await
                    .expect("poll")
                {
                    values.insert(
                        String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                            .into_owned(),
                    );
                }
            }
            let expected: BTreeSet<String> = (1..=3)
                .flat_map(|node_id| {
                    (0..30)
                        .filter(move |n| n % 3 == partition)
                        .map(move |n| format!("node{node_id}-{n}"))
                })
                .collect();
            assert_eq!(values, expected, "partition {partition}");
        }
    });
}
