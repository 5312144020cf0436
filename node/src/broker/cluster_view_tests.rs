//! The one-node cluster as clients see it, through `Broker::handle` on the simulated disk:
//! Metadata's nodes, controller and placements, DescribeCluster, the refused replication
//! settings (nothing stored), and the leader-epoch check of produce and fetch.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
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

async fn broker(disk: &SimDisk, node_id: u32) -> Broker<SimDisk> {
    let config = BrokerConfig {
        node_id,
        advertised_address: "127.0.0.1:9092".into(),
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

async fn create(
    broker: &Broker<SimDisk>,
    name: &str,
    replication_factor: Option<u16>,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> TopicResult {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            partitions: 2,
            replication_factor,
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

async fn metadata(broker: &Broker<SimDisk>) -> MetadataResponse {
    let request = Request::Metadata(MetadataRequest { topics: None });
    let Response::Metadata(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    response
}

fn batch() -> Bytes {
    let record = Record {
        timestamp: 1_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
    };
    encode_batch(&[record], &EncodeOptions::default()).unwrap()
}

async fn produce(broker: &Broker<SimDisk>, epoch: Option<i32>) -> ProducePartitionResponse {
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "orders".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                current_leader_epoch: epoch,
                records: batch(),
            }],
        }],
    });
    let Response::Produce(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    response.topics[0].partitions[0].clone()
}

async fn fetch(broker: &Broker<SimDisk>, epoch: Option<i32>) -> FetchPartitionResponse {
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "orders".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: epoch,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
        plugin: None,
    });
    let Response::Fetch(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    response.topics[0].partitions[0].clone()
}

// Goal: a node with no [cluster] section describes itself as a one-node cluster: itself as
// the only node and the controller, and the leader, only replica and only ISR member of every
// partition at leader epoch 0. Method: a node with id 7, one topic, Metadata and
// DescribeCluster.
#[test]
fn a_single_node_answers_as_a_one_node_cluster() {
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let broker = broker(&disk, 7).await;
        assert_eq!(
            create(&broker, "orders", Some(1), &[], false).await.error,
            ErrorCode::None
        );

        let metadata = metadata(&broker).await;
        assert_eq!(metadata.node_id, 7);
        assert_eq!(
            metadata.nodes,
            vec![NodeMetadata {
                node_id: 7,
                address: "127.0.0.1:9092".into()
            }]
        );
        assert_eq!(metadata.controller_id, Some(7));
        let orders = metadata
            .topics
            .iter()
            .find(|topic| topic.name == "orders")
            .unwrap();
        assert_eq!(orders.partitions.len(), 2);
        for partition in &orders.partitions {
            assert_eq!(partition.leader, Some(7));
            assert_eq!(partition.leader_epoch, 0);
            assert_eq!(partition.replicas, vec![7]);
            assert_eq!(partition.isr, vec![7]);
        }

        let Response::DescribeCluster(cluster) = broker
            .handle(Request::DescribeCluster(DescribeClusterRequest {}))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(cluster.error, ErrorCode::None);
        assert_eq!(cluster.controller_id, Some(7));
        assert_eq!(
            cluster.nodes,
            vec![ClusterNode {
                node_id: 7,
                address: "127.0.0.1:9092".into(),
                alive: true,
                node_epoch: 0
            }]
        );
        assert!(cluster.under_replicated.is_empty());
        assert!(cluster.offline.is_empty());
        broker.close().await;
    });
}

// Goal: a replication factor above the live nodes, and min.insync.replicas above the
// replication factor, are refused with their codes and one clear line, for a real create and
// a validate-only one, and nothing is stored: the topic does not exist afterwards, also after
// a reopen, and the same name can then be created with valid settings.
#[test]
fn impossible_replication_settings_are_refused_and_nothing_is_stored() {
    runtime().block_on(async {
        let disk = SimDisk::new(2);
        let broker = broker(&disk, 1).await;
        for validate_only in [true, false] {
            let refused = create(&broker, "orders", Some(3), &[], validate_only).await;
            assert_eq!(refused.error, ErrorCode::InvalidReplicationFactor);
            assert!(
                refused
                    .message
                    .starts_with("replication factor 3 is above the 1 live node(s)"),
                "{}",
                refused.message
            );
            let refused = create(
                &broker,
                "orders",
                Some(1),
                &[("min.insync.replicas", "2")],
                validate_only,
            )
            .await;
            assert_eq!(refused.error, ErrorCode::InvalidConfig);
            assert!(
                refused
                    .message
                    .starts_with("min.insync.replicas 2 is above the replication factor 1"),
                "{}",
                refused.message
            );
            let refused = create(&broker, "orders", Some(0), &[], validate_only).await;
            assert_eq!(refused.error, ErrorCode::InvalidReplicationFactor);
        }
        assert!(
            metadata(&broker)
                .await
                .topics
                .iter()
                .all(|topic| topic.name != "orders")
        );
        broker.close().await;

        let broker = self::broker(&disk, 1).await;
        assert!(
            metadata(&broker)
                .await
                .topics
                .iter()
                .all(|topic| topic.name != "orders")
        );
        // The default factor (one node: 1) and an explicit min.insync.replicas=1 are fine.
        let created = create(
            &broker,
            "orders",
            None,
            &[("min.insync.replicas", "1")],
            false,
        )
        .await;
        assert_eq!(created.error, ErrorCode::None, "{}", created.message);
        broker.close().await;
    });
}

// Goal: produce and fetch carrying a leader epoch are checked against the partition's
// (KIP-320): the current one (0) and none pass, an older one is FencedLeaderEpoch and a newer
// one UnknownLeaderEpoch, and a refused produce writes nothing.
#[test]
fn produce_and_fetch_check_the_leader_epoch() {
    runtime().block_on(async {
        let disk = SimDisk::new(3);
        let broker = broker(&disk, 1).await;
        assert_eq!(
            create(&broker, "orders", None, &[], false).await.error,
            ErrorCode::None
        );

        let refused = produce(&broker, Some(-1)).await;
        assert_eq!(refused.error, ErrorCode::FencedLeaderEpoch);
        assert!(
            refused.message.contains("refresh metadata"),
            "{}",
            refused.message
        );
        assert_eq!(
            produce(&broker, Some(1)).await.error,
            ErrorCode::UnknownLeaderEpoch
        );
        let written = produce(&broker, Some(0)).await;
        assert_eq!((written.error, written.base_offset), (ErrorCode::None, 0));
        let written = produce(&broker, None).await;
        assert_eq!((written.error, written.base_offset), (ErrorCode::None, 1));

        assert_eq!(
            fetch(&broker, Some(-1)).await.error,
            ErrorCode::FencedLeaderEpoch
        );
        assert_eq!(
            fetch(&broker, Some(2)).await.error,
            ErrorCode::UnknownLeaderEpoch
        );
        let read = fetch(&broker, Some(0)).await;
        assert_eq!((read.error, read.high_watermark), (ErrorCode::None, 2));
        broker.close().await;
    });
}

// Goal: a `[cluster]` node answers from the controller's image: Metadata lists the
// registered, unfenced nodes and itself, with the controller the quorum names;
// DescribeCluster lists every registered node with alive = unfenced and its node epoch, and
// itself not alive while unregistered; topics stay local, so a replication factor above 1 is
// refused. Method: node 7 with a source whose image holds node 5 (alive, epoch 3) and node 8
// (fenced, epoch 4); then the image changes (node 7 registers) and the answers follow.
#[test]
fn a_cluster_node_answers_from_the_metadata_image() {
    use crate::controller::{MetadataImage, NodeRegistration};
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let broker = broker(&disk, 7).await;
        let registration = |node_epoch, port, fenced| NodeRegistration {
            node_epoch,
            address: format!("127.0.0.1:{port}"),
            incarnation_id: node_epoch,
            storage_id: None,
            fenced,
            kafka_listeners: None,
        };
        let mut image = MetadataImage::default();
        image.nodes.insert(5, registration(3, 9105, false));
        image.nodes.insert(8, registration(4, 9108, true));
        let (publish, image_receiver) = tokio::sync::watch::channel(Arc::new(image.clone()));
        assert!(broker.set_cluster_source(cluster_view::ClusterSource {
            image: image_receiver,
            controller: Box::new(|| Some(5)),
            cluster_id: "c1".into(),
            admin: None,
            node_epoch: tokio::sync::watch::channel(None).1,
        }));

        let answer = metadata(&broker).await;
        let ids: Vec<u32> = answer.nodes.iter().map(|node| node.node_id).collect();
        assert_eq!(ids, vec![5, 7]);
        assert_eq!(answer.nodes[0].address, "127.0.0.1:9105");
        assert_eq!(answer.controller_id, Some(5));
        let describe = || async {
            let Response::DescribeCluster(cluster) = broker
                .handle(Request::DescribeCluster(DescribeClusterRequest {}))
                .await
            else {
                panic!("wrong response")
            };
            cluster
        };
        let cluster = describe().await;
        assert_eq!(cluster.cluster_id, "c1");
        assert_eq!(cluster.controller_id, Some(5));
        let nodes: Vec<(u32, bool, u64)> = cluster
            .nodes
            .iter()
            .map(|node| (node.node_id, node.alive, node.node_epoch))
            .collect();
        assert_eq!(nodes, vec![(5, true, 3), (7, false, 0), (8, false, 4)]);
        // Only two nodes are alive (node 8 is fenced): three replicas are refused, saying why.
        let wide = create(&broker, "wide", Some(3), &[], false).await;
        assert_eq!(wide.error, ErrorCode::InvalidReplicationFactor);
        assert!(
            wide.message.contains("above the 2 live node(s)"),
            "{}",
            wide.message
        );
        // Topics are the controller's: without a controller client, refused, not made here.
        let narrow = create(&broker, "narrow", Some(1), &[], false).await;
        assert_eq!(narrow.error, ErrorCode::NotController, "{}", narrow.message);
        assert!(broker.registry.topic("narrow").is_none());

        image.nodes.insert(7, registration(6, 9092, false));
        publish.send_replace(Arc::new(image));
        let nodes: Vec<(u32, bool, u64)> = describe()
            .await
            .nodes
            .iter()
            .map(|node| (node.node_id, node.alive, node.node_epoch))
            .collect();
        assert_eq!(nodes, vec![(5, true, 3), (7, true, 6), (8, false, 4)]);
        let answer = metadata(&broker).await;
        assert_eq!(
            answer
                .nodes
                .iter()
                .map(|node| node.node_id)
                .collect::<Vec<_>>(),
            vec![5, 7]
        );
        // 7's address is the one it advertises (it is the node answering).
        assert_eq!(answer.nodes[1].address, "127.0.0.1:9092");
    });
}
