//! A `[cluster]` node's registry following the metadata image, through `Broker` on the
//! simulated disk: the pure plan, then image changes making local logs appear and
//! disappear, a restart keeping them, an old image (a replay at start) changing nothing,
//! and a delete + recreate of the same name told apart by topic id.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::*;
use crate::broker::registry::RegistryEvent;
use crate::broker::{BrokerConfig, cluster_view::ClusterSource};
use crate::clock::SimClock;
use crate::controller::records::{PartitionState, TopicId};
use crate::controller::{MetadataImage, TopicImage};
use crate::sim::SimDisk;

const DATA: &str = "/data";
const NODE: NodeId = 7;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Node 7's broker with a cluster source publishing `image` (no controller client).
async fn broker(
    disk: &SimDisk,
    image: &MetadataImage,
) -> (
    Arc<Broker<SimDisk>>,
    tokio::sync::watch::Sender<Arc<MetadataImage>>,
) {
    let config = BrokerConfig {
        node_id: NODE,
        advertised_address: "127.0.0.1:9107".into(),
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
    let (publish, receiver) = tokio::sync::watch::channel(Arc::new(image.clone()));
    assert!(broker.set_cluster_source(ClusterSource {
        image: receiver,
        controller: Box::new(|| Some(5)),
        cluster_id: "c1".into(),
        admin: None,
        node_epoch: tokio::sync::watch::channel(Some(NODE_EPOCH)).1,
    }));
    (Arc::new(broker), publish)
}

/// Partition states with the given single replicas, each leading itself.
fn partitions(replicas: &[NodeId]) -> Vec<PartitionState> {
    replicas
        .iter()
        .map(|replica| PartitionState {
            replicas: vec![*replica],
            isr: vec![*replica],
            elr: Vec::new(),
            leader: Some(*replica),
            leader_epoch: 0,
            partition_epoch: 0,
        })
        .collect()
}

/// A topic of a test image: name, topic id byte, each partition's replica, configs.
type TopicSpec<'a> = (&'a str, u8, &'a [NodeId], &'a [(&'a str, &'a str)]);

/// Node 7's node epoch in the test images (they hold its registration, as a current image
/// does).
const NODE_EPOCH: crate::controller::NodeEpoch = 3;

fn image(index: u64, topics: &[TopicSpec<'_>]) -> MetadataImage {
    let mut image = MetadataImage {
        last_applied_index: index,
        ..MetadataImage::default()
    };
    image.nodes.insert(
        NODE,
        crate::controller::NodeRegistration {
            node_epoch: NODE_EPOCH,
            address: "127.0.0.1:9107".into(),
            incarnation_id: 1,
            storage_id: None,
            fenced: false,
            kafka_listeners: None,
        },
    );
    for (name, id, replicas, configs) in topics {
        image.topics.insert(
            (*name).to_owned(),
            TopicImage {
                topic_id: TopicId([*id; 16]),
                configs: configs
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect(),
                partitions: partitions(replicas),
            },
        );
    }
    image
}

async fn directories(disk: &SimDisk) -> Vec<String> {
    let mut names = disk.list_dir(&Path::new(DATA).join("logs")).await.unwrap();
    names.retain(|name| !name.starts_with("__"));
    names.sort();
    names
}

async fn produce(broker: &Broker<SimDisk>, partition: u32) -> ErrorCode {
    let record = Record {
        timestamp: 1_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
    };
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "orders".into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch: None,
                records: encode_batch(std::slice::from_ref(&record), &EncodeOptions::default())
                    .unwrap(),
            }],
        }],
    });
    let Response::Produce(response) = broker.handle(request).await else {
        panic!("wrong response")
    };
    // No replication driver runs here, and a controller-placed partition is never served
    // by the single-node rules: the node cannot know it leads, so even a hosted partition
    // refuses the produce. What a replica holds is then written as a follower would.
    assert_eq!(
        response.topics[0].partitions[0].error,
        ErrorCode::NotLeaderOrFollower
    );
    let Ok(log) = broker.registry.partition_log("orders", partition) else {
        return ErrorCode::NotLeaderOrFollower;
    };
    let batch = encode_batch(&[record], &EncodeOptions::default()).unwrap();
    log.append(batch, crate::storage::AppendDurability::Synced)
        .await
        .unwrap();
    ErrorCode::None
}

fn end_offset(broker: &Broker<SimDisk>, partition: u32) -> i64 {
    broker
        .registry
        .partition_log("orders", partition)
        .unwrap()
        .high_watermark()
}

// Goal: the plan hosts what the image places here, drops what it deleted, leaves alone what
// matches, and never acts on a topic recorded from a newer image than the one at hand.
#[test]
fn the_plan_follows_the_image_but_never_an_older_one() {
    let current = image(
        10,
        &[("orders", 1, &[7, 5, 7], &[]), ("gone", 2, &[5], &[])],
    );
    let actions = plan(&current, NODE, &BTreeMap::new());
    let hosted: Vec<(&str, Vec<u32>)> = actions
        .iter()
        .map(|action| match action {
            HostAction::Host { name, wanted } => {
                (name.as_str(), wanted.hosted.iter().copied().collect())
            }
            HostAction::Drop { .. } => panic!("nothing to drop: {action:?}"),
        })
        .collect();
    assert_eq!(hosted, vec![("gone", vec![]), ("orders", vec![0, 2])]);
    let held: BTreeMap<String, HostedTopic> = actions
        .into_iter()
        .map(|action| match action {
            HostAction::Host { name, wanted } => (name, wanted),
            HostAction::Drop { .. } => unreachable!(),
        })
        .collect();
    assert!(plan(&current, NODE, &held).is_empty(), "idempotent");
    let later = image(12, &[("orders", 1, &[7, 5, 7], &[])]);
    assert_eq!(
        plan(&later, NODE, &held),
        vec![HostAction::Drop {
            name: "gone".into(),
            topic_id: TopicId([2; 16]).to_string()
        }]
    );
    // An image still replaying (index 3, before these topics were recorded) drops nothing
    // and replaces nothing, even with an older topic of the same name.
    let replaying = image(3, &[("orders", 9, &[5], &[])]);
    assert!(plan(&replaying, NODE, &held).is_empty());
}

// Goal (issue 13 item 2): image changes make local logs appear and disappear: only hosted
// partitions have a directory and a log (others answer NotLeaderOrFollower), a restart keeps
// them and their records, an older image replayed at start changes nothing, a change of
// hosted partitions and configs is followed, a delete + recreate of the same name (another
// topic id) replaces the data, and a topic gone from the image is removed.
#[test]
fn local_logs_follow_the_image_across_restarts_and_recreates() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let first = image(10, &[("orders", 1, &[7, 5, 7], &[])]);
        let (node, _publish) = broker(&disk, &first).await;
        let mut events = node.subscribe_registry_events();
        assert_eq!(node.materialize(&first).await, 0);
        assert_eq!(
            events.try_recv().unwrap(),
            RegistryEvent::TopicCreated {
                name: "orders".into(),
                partitions: 3
            }
        );
        assert_eq!(
            events.try_recv().unwrap(),
            RegistryEvent::PartitionsHosted {
                name: "orders".into(),
                hosted: vec![0, 2]
            }
        );
        assert_eq!(directories(&disk).await, ["orders-0", "orders-2"]);
        assert_eq!(produce(&node, 0).await, ErrorCode::None);
        assert_eq!(produce(&node, 1).await, ErrorCode::NotLeaderOrFollower);
        assert_eq!(end_offset(&node, 0), 1);
        // Metadata answers from the image: placement for all, log figures where hosted.
        let Response::Metadata(metadata) = node
            .handle(Request::Metadata(MetadataRequest { topics: None }))
            .await
        else {
            panic!("wrong response")
        };
        let orders = metadata
            .topics
            .iter()
            .find(|topic| topic.name == "orders")
            .unwrap();
        let summary: Vec<(Option<u32>, i64)> = orders
            .partitions
            .iter()
            .map(|partition| (partition.leader, partition.high_watermark))
            .collect();
        assert_eq!(summary, vec![(Some(7), 1), (Some(5), -1), (Some(7), 0)]);
        node.close().await;
        drop(node);

        // Restart: the topic, its id and its records are back before any image; an image
        // still replaying from before the topic was recorded changes nothing.
        let (node, _publish) = broker(&disk, &MetadataImage::default()).await;
        assert_eq!(end_offset(&node, 0), 1);
        assert!(node.registry.partition_log("orders", 1).is_err());
        let replaying = image(4, &[("orders", 9, &[7], &[])]);
        assert_eq!(node.materialize(&replaying).await, 0);
        assert_eq!(node.materialize(&MetadataImage::default()).await, 0);
        assert_eq!(directories(&disk).await, ["orders-0", "orders-2"]);
        assert_eq!(end_offset(&node, 0), 1);

        // Partition 1 moves here, 2 moves away, a config changes.
        let moved = image(
            12,
            &[("orders", 1, &[7, 7, 5], &[("retention.ms", "5000")])],
        );
        let mut events = node.subscribe_registry_events();
        assert_eq!(node.materialize(&moved).await, 0);
        assert_eq!(
            events.try_recv().unwrap(),
            RegistryEvent::PartitionsHosted {
                name: "orders".into(),
                hosted: vec![0, 1]
            }
        );
        assert_eq!(directories(&disk).await, ["orders-0", "orders-1"]);
        assert_eq!(end_offset(&node, 0), 1);
        assert_eq!(end_offset(&node, 1), 0);
        let topic = node.registry.topic("orders").unwrap();
        assert_eq!(topic.config().overrides["retention.ms"], "5000");
        assert_eq!(produce(&node, 2).await, ErrorCode::NotLeaderOrFollower);

        // Deleted and re-created under the same name while away: another id, fresh logs.
        let recreated = image(20, &[("orders", 3, &[7], &[])]);
        assert_eq!(node.materialize(&recreated).await, 0);
        assert_eq!(directories(&disk).await, ["orders-0"]);
        assert_eq!(end_offset(&node, 0), 0);
        assert_eq!(
            node.registry.topic("orders").unwrap().topic_id(),
            Some(TopicId([3; 16]).to_string())
        );

        // Gone from the image: gone here, and stays gone after a restart.
        assert_eq!(node.materialize(&image(22, &[])).await, 0);
        assert!(directories(&disk).await.is_empty());
        assert!(node.registry.topic("orders").is_none());
        node.close().await;
        drop(node);
        let (node, _publish) = broker(&disk, &MetadataImage::default()).await;
        assert!(node.registry.topic("orders").is_none());
        node.close().await;
    });
}

// Goal: the driver reconciles at start and after each image change, without being called.
// Method: the driver task on paused time, the image published through the watch.
#[test]
fn the_driver_follows_published_images() {
    runtime().block_on(async {
        let disk = SimDisk::new(12);
        let (node, publish) = broker(&disk, &image(5, &[("orders", 1, &[7], &[])])).await;
        let driver = tokio::spawn(Arc::clone(&node).run_materializer());
        let clock = SimClock::new(0);
        let settle = || crate::clock::sleep(&clock, Duration::from_millis(50));
        settle().await;
        assert_eq!(directories(&disk).await, ["orders-0"]);
        publish.send_replace(Arc::new(image(6, &[("orders", 1, &[7, 7], &[])])));
        settle().await;
        assert_eq!(directories(&disk).await, ["orders-0", "orders-1"]);
        publish.send_replace(Arc::new(image(7, &[])));
        settle().await;
        assert!(directories(&disk).await.is_empty());
        driver.abort();
        node.close().await;
    });
}

// Goal (issue 13 item 3): DescribeCluster lists the image's offline partitions (no leader)
// and under-replicated ones (ISR smaller than the replicas), whichever node hosts them, and
// Metadata marks an offline one `PartitionOffline` with no leader.
#[test]
fn describe_cluster_lists_offline_and_under_replicated_partitions_from_the_image() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let mut current = image(9, &[("orders", 1, &[7, 5, 6], &[])]);
        let states = &mut current.topics.get_mut("orders").unwrap().partitions;
        states[1] = PartitionState {
            replicas: vec![5, 6],
            isr: vec![5],
            elr: Vec::new(),
            leader: Some(5),
            leader_epoch: 1,
            partition_epoch: 1,
        };
        states[2] = PartitionState {
            replicas: vec![6],
            isr: vec![6],
            elr: Vec::new(),
            leader: None,
            leader_epoch: 1,
            partition_epoch: 1,
        };
        let (node, _publish) = broker(&disk, &current).await;
        let Response::DescribeCluster(described) = node
            .handle(Request::DescribeCluster(DescribeClusterRequest {}))
            .await
        else {
            panic!("wrong response")
        };
        let listed = |entries: &[ClusterPartition]| -> Vec<(String, u32, Option<u32>)> {
            entries
                .iter()
                .map(|entry| (entry.topic.clone(), entry.partition, entry.leader))
                .collect()
        };
        assert_eq!(
            listed(&described.under_replicated),
            vec![("orders".to_owned(), 1, Some(5))]
        );
        assert_eq!(
            listed(&described.offline),
            vec![("orders".to_owned(), 2, None)]
        );
        assert_eq!(described.under_replicated[0].isr, vec![5]);
        let Response::Metadata(metadata) = node
            .handle(Request::Metadata(MetadataRequest {
                topics: Some(vec!["orders".into()]),
            }))
            .await
        else {
            panic!("wrong response")
        };
        let partition = &metadata.topics[0].partitions[2];
        assert_eq!(
            (partition.error, partition.leader, partition.leader_epoch),
            (ErrorCode::PartitionOffline, None, 1)
        );
        node.close().await;
    });
}

/// Node 1's broker whose cluster source is a one-voter controller (the active one), with
/// nodes 1-3 registered: topic admin goes through the controller as on a real node.
async fn broker_with_controller(
    disk: &SimDisk,
) -> (Arc<Broker<SimDisk>>, Arc<crate::controller::Controller>) {
    let controller =
        crate::controller::admin::tests::single_voter(disk.clone(), Path::new("/controller"), 3)
            .await;
    let config = BrokerConfig {
        node_id: 1,
        advertised_address: "127.0.0.1:9101".into(),
        ..BrokerConfig::default()
    };
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SimClock::new(1_000_000));
    let broker = Broker::open(disk.clone(), Path::new(DATA), config, Arc::clone(&clock))
        .await
        .unwrap();
    let admin = crate::controller::admin::AdminClient::new(
        1,
        vec![1],
        Arc::clone(&controller),
        BTreeMap::new(),
        clock,
        Duration::from_millis(2_000),
        crate::controller::admin::tests::LIMITS,
    );
    let leader_of = Arc::clone(&controller);
    assert!(broker.set_cluster_source(ClusterSource {
        image: controller.subscribe(),
        controller: Box::new(move || leader_of.leader()),
        cluster_id: "c1".into(),
        admin: Some(Arc::new(admin)),
        node_epoch: tokio::sync::watch::channel(Some(controller.image().nodes[&1].node_epoch)).1,
    }));
    (Arc::new(broker), controller)
}

async fn create_topic(
    broker: &Broker<SimDisk>,
    name: &str,
    configs: &[(&str, &str)],
) -> TopicResult {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            partitions: 6,
            // One replica each: the placement, not replication, is what is checked here
            // (this broker runs no replication driver).
            replication_factor: Some(1),
            configs: configs
                .iter()
                .map(|(name, value)| ConfigEntry {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
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

// Goal (issue 13 item 1): CreateTopics, AlterConfigs and DeleteTopics on a cluster node are
// decided by the controller and answered once applied here: Metadata right after the
// create lists the placement, the hosted partitions serve at once, a config change reaches
// the local logs, a delete removes them; local checks answer as on one node (bad name, bad
// config value) and nothing reaches the image. Method: a broker over a one-voter controller.
#[test]
fn topic_admin_on_a_cluster_node_goes_through_the_controller() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let (node, controller) = broker_with_controller(&disk).await;
        let created = create_topic(&node, "orders", &[]).await;
        assert_eq!(created.error, ErrorCode::None, "{}", created.message);
        let topic = controller.image().topics["orders"].clone();
        assert_eq!(topic.partitions.len(), 6);
        let Response::Metadata(metadata) = node
            .handle(Request::Metadata(MetadataRequest {
                topics: Some(vec!["orders".into()]),
            }))
            .await
        else {
            panic!("wrong response")
        };
        let leaders: Vec<Option<u32>> = metadata.topics[0]
            .partitions
            .iter()
            .map(|partition| partition.leader)
            .collect();
        let expected: Vec<Option<u32>> =
            topic.partitions.iter().map(|state| state.leader).collect();
        assert_eq!(leaders, expected);
        // Node 1 leads some partitions, but with no replication driver running here it
        // serves none of them by the single-node rules (NotLeaderOrFollower, as elsewhere).
        let own = expected
            .iter()
            .position(|leader| *leader == Some(1))
            .unwrap();
        let other = expected
            .iter()
            .position(|leader| *leader != Some(1))
            .unwrap();
        assert_eq!(
            produce_to(&node, "orders", own as u32).await,
            ErrorCode::NotLeaderOrFollower
        );
        assert_eq!(
            produce_to(&node, "orders", other as u32).await,
            ErrorCode::NotLeaderOrFollower
        );

        // Checked here first, with the one-node errors; the image is untouched.
        let before = controller.image().topics.clone();
        assert_eq!(
            create_topic(&node, "bad name!", &[]).await.error,
            ErrorCode::InvalidTopic
        );
        assert_eq!(
            create_topic(&node, "configs", &[("retention.ms", "soon")])
                .await
                .error,
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            create_topic(&node, "orders", &[]).await.error,
            ErrorCode::TopicAlreadyExists
        );
        assert_eq!(controller.image().topics, before);

        let request = AlterConfigsRequest {
            topics: vec![AlterTopicConfigs {
                name: "orders".into(),
                set: vec![ConfigEntry {
                    name: "retention.ms".into(),
                    value: "5000".into(),
                }],
                delete: Vec::new(),
            }],
            validate_only: false,
        };
        let Response::AlterConfigs(altered) = node.handle(Request::AlterConfigs(request)).await
        else {
            panic!("wrong response")
        };
        assert_eq!(
            altered.topics[0].error,
            ErrorCode::None,
            "{}",
            altered.topics[0].message
        );
        assert_eq!(
            controller.image().topics["orders"].configs["retention.ms"],
            "5000"
        );
        let local = node.registry.topic("orders").unwrap();
        assert_eq!(local.config().overrides["retention.ms"], "5000");

        let Response::DeleteTopics(deleted) = node
            .handle(Request::DeleteTopics(DeleteTopicsRequest {
                names: vec!["orders".into(), "__consumer_offsets".into()],
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(
            deleted.topics[0].error,
            ErrorCode::None,
            "{}",
            deleted.topics[0].message
        );
        assert_eq!(deleted.topics[1].error, ErrorCode::InternalTopic);
        assert!(controller.image().topics.is_empty());
        assert!(node.registry.topic("orders").is_none());
        assert!(directories(&disk).await.is_empty());
        node.close().await;
        controller.shutdown().await;
    });
}

async fn produce_to(broker: &Broker<SimDisk>, topic: &str, partition: u32) -> ErrorCode {
    let record = Record {
        timestamp: 1_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
    };
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
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
    response.topics[0].partitions[0].error
}

// Goal: partitions placed here beyond `limits.partitions_max` are not opened: the action
// fails (logged, retried), nothing is created, and partitions held by other nodes do not
// count against the limit. Method: a node allowing 3 partitions (one is
// `__consumer_offsets`) given 3 and then 2 of a 6-partition topic.
#[test]
fn placement_beyond_the_node_partition_limit_is_refused_and_others_partitions_do_not_count() {
    runtime().block_on(async {
        let disk = SimDisk::new(15);
        let config = BrokerConfig {
            node_id: NODE,
            partitions_max: 3,
            ..BrokerConfig::default()
        };
        let node = Broker::open(
            disk.clone(),
            Path::new(DATA),
            config,
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let too_many = image(5, &[("orders", 1, &[7, 7, 7, 5, 5, 5], &[])]);
        assert_eq!(node.materialize(&too_many).await, 1);
        assert!(node.registry.topic("orders").is_none());
        assert!(directories(&disk).await.is_empty());
        let fitting = image(6, &[("orders", 1, &[7, 7, 5, 5, 5, 5], &[])]);
        assert_eq!(node.materialize(&fitting).await, 0);
        assert_eq!(directories(&disk).await, ["orders-0", "orders-1"]);
        // A name no node may hold (a path, a reserved one) is never made a directory.
        let hostile = image(
            7,
            &[
                ("orders", 1, &[7, 7, 5, 5, 5, 5], &[]),
                ("../escape", 2, &[7], &[]),
                ("__offsets_too", 3, &[7], &[]),
            ],
        );
        assert_eq!(node.materialize(&hostile).await, 0);
        assert_eq!(directories(&disk).await, ["orders-0", "orders-1"]);
        assert!(node.registry.topic("../escape").is_none());
        assert!(node.registry.topic("__offsets_too").is_none());
        node.close().await;
    });
}

// Goal (issue 13): a node names leaders only from an image that holds its own registration
// at its node epoch. Right after a restart its image is replayed from the local store and
// names the leaders of before (this node among them): Metadata then answers each partition
// LeaderNotAvailable with no leader, which clients retry; once the image holds the
// registration, the leaders are named. Method: node 7's broker, its node epoch 3, fed an
// image without its registration, then one with it at an older epoch, then the current one.
#[test]
fn metadata_names_no_leader_from_an_image_older_than_the_registration() {
    runtime().block_on(async {
        let disk = SimDisk::new(17);
        let current = image(10, &[("orders", 1, &[7, 5], &[])]);
        let mut replayed = current.clone();
        replayed.nodes.remove(&NODE);
        let (node, publish) = broker(&disk, &replayed).await;
        node.materialize(&replayed).await;
        let answer = |node: Arc<Broker<SimDisk>>| async move {
            let Response::Metadata(metadata) = node
                .handle(Request::Metadata(MetadataRequest {
                    topics: Some(vec!["orders".into()]),
                }))
                .await
            else {
                panic!("wrong response")
            };
            metadata.topics[0]
                .partitions
                .iter()
                .map(|partition| (partition.error, partition.leader))
                .collect::<Vec<_>>()
        };
        let none = vec![
            (ErrorCode::LeaderNotAvailable, None),
            (ErrorCode::LeaderNotAvailable, None),
        ];
        assert_eq!(answer(Arc::clone(&node)).await, none);
        // The registration of an earlier incarnation is no better.
        let mut earlier = current.clone();
        earlier.nodes.get_mut(&NODE).unwrap().node_epoch = NODE_EPOCH - 1;
        publish.send(Arc::new(earlier)).unwrap();
        assert_eq!(answer(Arc::clone(&node)).await, none);
        publish.send(Arc::new(current)).unwrap();
        assert_eq!(
            answer(Arc::clone(&node)).await,
            vec![(ErrorCode::None, Some(7)), (ErrorCode::None, Some(5))]
        );
        node.close().await;
    });
}

// Goal (DescribeProducers on a cluster node): a partition led by another node answers
// NOT_LEADER_OR_FOLLOWER, as Kafka's brokers do, so the admin client asks the leader.
// (What a leader answers is `kafka::tests::describe_producers_lists_each_partitions_idempotent_producers`;
// this harness runs no replication driver, so no partition is led here.)
#[test]
fn describe_producers_of_a_partition_led_elsewhere_is_not_leader_or_follower() {
    runtime().block_on(async {
        let disk = SimDisk::new(61);
        let placed = image(10, &[("orders", 1, &[7, 5], &[])]);
        let (node, _publish) = broker(&disk, &placed).await;
        assert_eq!(node.materialize(&placed).await, 0);
        let elsewhere = node.describe_producers("orders", 1).await.unwrap_err();
        assert_eq!(
            elsewhere.0,
            ErrorCode::NotLeaderOrFollower,
            "{}",
            elsewhere.1
        );
    });
}
