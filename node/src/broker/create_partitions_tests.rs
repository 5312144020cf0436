//! CreatePartitions on one node, through `Broker::handle` on the simulated disk: growth
//! that serves produce and fetch and survives a reopen, and every refusal with its code,
//! changing nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;

const DATA: &str = "/data";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn broker(disk: &SimDisk, topic_partitions_max: u32) -> Broker<SimDisk> {
    let config = BrokerConfig {
        topic_partitions_max,
        ..BrokerConfig::default()
    };
    Broker::open(
        disk.clone(),
        Path::new(DATA),
        config,
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap()
}

async fn create(broker: &Broker<SimDisk>, name: &str, partitions: u32) {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            partitions,
            replication_factor: None,
            configs: Vec::new(),
        }],
        validate_only: false,
    });
    let Response::CreateTopics(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    assert_eq!(response.topics[0].error, ErrorCode::None, "{response:?}");
}

async fn grow(
    broker: &Broker<SimDisk>,
    name: &str,
    count: u32,
    assignments: Vec<Vec<u32>>,
    validate_only: bool,
) -> TopicResult {
    let request = Request::CreatePartitions(CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: name.into(),
            count,
            assignments,
        }],
        validate_only,
    });
    let Response::CreatePartitions(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    assert_eq!(response.topics.len(), 1);
    response.topics.into_iter().next().unwrap()
}

fn partitions(broker: &Broker<SimDisk>, name: &str) -> u32 {
    broker.registry.partition_count(name)
}

async fn produce(broker: &Broker<SimDisk>, name: &str, partition: u32) -> ProducePartitionResponse {
    let record = Record {
        timestamp: 1_000_000,
        key: None,
        value: Some(bytes::Bytes::from_static(b"v")),
        headers: Vec::new(),
    };
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: name.into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch: None,
                records: encode_batch(&[record], &EncodeOptions::default()).unwrap(),
            }],
        }],
    });
    let Response::Produce(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    response.topics[0].partitions[0].clone()
}

// Goal: a topic grows to the asked count at once: the new partitions are in Metadata with
// this node leading, take produce, and are still there after a reopen; validate_only and
// valid one-node assignments are accepted.
#[test]
fn a_topic_grows_and_its_new_partitions_serve_and_survive_a_reopen() {
    runtime().block_on(async {
        let disk = SimDisk::new(61);
        let broker = broker(&disk, 1024).await;
        create(&broker, "orders", 2).await;
        let checked = grow(&broker, "orders", 4, Vec::new(), true).await;
        assert_eq!(checked.error, ErrorCode::None, "{checked:?}");
        assert_eq!(
            partitions(&broker, "orders"),
            2,
            "validate_only added partitions"
        );

        let grown = grow(&broker, "orders", 4, vec![vec![1], vec![1]], false).await;
        assert_eq!(grown.error, ErrorCode::None, "{grown:?}");
        assert_eq!(partitions(&broker, "orders"), 4);
        let Response::Metadata(metadata) = broker
            .handle(Request::Metadata(MetadataRequest {
                topics: Some(vec!["orders".into()]),
            }))
            .await
        else {
            panic!()
        };
        let listed = &metadata.topics[0].partitions;
        assert_eq!(listed.len(), 4);
        assert!(listed.iter().all(|partition| partition.leader == Some(1)));
        let produced = produce(&broker, "orders", 3).await;
        assert_eq!(produced.error, ErrorCode::None, "{produced:?}");
        assert_eq!(produced.base_offset, 0);
        broker.close().await;
        drop(broker);

        let broker = self::broker(&disk, 1024).await;
        assert_eq!(partitions(&broker, "orders"), 4);
        assert_eq!(produce(&broker, "orders", 3).await.base_offset, 1);
    });
}

// Goal: every refusal has its code and a message that says what to do, and changes nothing:
// fewer partitions (the message the CLI shows), the same count, an unknown topic, an
// internal topic, a count over limits.topic_partitions_max, assignments that name another
// node or do not match the new partitions, and a topic the config file declares.
#[test]
fn refused_growth_changes_nothing_and_says_why() {
    runtime().block_on(async {
        let disk = SimDisk::new(62);
        let broker = broker(&disk, 8).await;
        create(&broker, "orders", 4).await;
        let shrink = grow(&broker, "orders", 2, Vec::new(), false).await;
        assert_eq!(shrink.error, ErrorCode::InvalidPartitions);
        assert_eq!(
            shrink.message,
            "cannot shrink orders from 4 to 2 partitions: Kafka and Ledge only add partitions"
        );
        let same = grow(&broker, "orders", 4, Vec::new(), false).await;
        assert_eq!(same.error, ErrorCode::InvalidPartitions);
        assert!(same.message.contains("already has 4"), "{}", same.message);
        let unknown = grow(&broker, "missing", 4, Vec::new(), false).await;
        assert_eq!(unknown.error, ErrorCode::UnknownTopicOrPartition);
        let internal = grow(&broker, "__consumer_offsets", 4, Vec::new(), false).await;
        assert_eq!(internal.error, ErrorCode::InternalTopic, "{internal:?}");
        let over = grow(&broker, "orders", 9, Vec::new(), false).await;
        assert_eq!(over.error, ErrorCode::InvalidPartitions);
        assert!(
            over.message.contains("limits.topic_partitions_max (8)"),
            "{}",
            over.message
        );
        let elsewhere = grow(&broker, "orders", 5, vec![vec![2]], false).await;
        assert_eq!(elsewhere.error, ErrorCode::InvalidReplicaAssignment);
        assert!(elsewhere.message.contains("[2]"), "{}", elsewhere.message);
        let too_few = grow(&broker, "orders", 6, vec![vec![1]], true).await;
        assert_eq!(too_few.error, ErrorCode::InvalidReplicaAssignment);
        assert!(
            too_few
                .message
                .contains("1 assignment(s) given for 2 new partition(s)"),
            "{}",
            too_few.message
        );
        assert_eq!(partitions(&broker, "orders"), 4);

        broker
            .reconcile(&[DeclaredTopic {
                name: "declared".into(),
                partitions: 2,
                configs: BTreeMap::new(),
                origin: "edge.toml line 3".into(),
            }])
            .await
            .unwrap();
        let declared = grow(&broker, "declared", 3, Vec::new(), false).await;
        assert_eq!(declared.error, ErrorCode::InvalidRequest);
        assert!(
            declared.message.contains("edge.toml line 3"),
            "{}",
            declared.message
        );
        assert_eq!(partitions(&broker, "declared"), 2);
    });
}

// Goal: one request grows several topics independently: each gets its own result, in
// request order, and a refused one does not stop the others.
#[test]
fn each_topic_of_a_request_gets_its_own_result() {
    runtime().block_on(async {
        let disk = SimDisk::new(63);
        let broker = broker(&disk, 1024).await;
        create(&broker, "a", 1).await;
        create(&broker, "b", 3).await;
        let request = Request::CreatePartitions(CreatePartitionsRequest {
            topics: vec![
                CreatePartitionsTopic {
                    name: "b".into(),
                    count: 2,
                    assignments: Vec::new(),
                },
                CreatePartitionsTopic {
                    name: "a".into(),
                    count: 3,
                    assignments: Vec::new(),
                },
            ],
            validate_only: false,
        });
        let Response::CreatePartitions(response) = broker.handle(request).await else {
            panic!()
        };
        let outcome: Vec<(&str, ErrorCode)> = response
            .topics
            .iter()
            .map(|topic| (topic.name.as_str(), topic.error))
            .collect();
        assert_eq!(
            outcome,
            [("b", ErrorCode::InvalidPartitions), ("a", ErrorCode::None)]
        );
        assert_eq!(partitions(&broker, "a"), 3);
        assert_eq!(partitions(&broker, "b"), 3);
    });
}
