//! What this node tells clients about the cluster: Metadata's node list, controller and each
//! partition's leader, replicas, ISR and leader epoch; the DescribeCluster answer; the
//! replication checks of CreateTopics; and the leader-epoch check of produce and fetch
//! (KIP-320).
//!
//! A node with no `[cluster]` section is a one-node cluster, and answers as one: it is the
//! only node (alive, node epoch 0, its own controller), the leader and only replica of every
//! online partition at leader epoch 0, and a partition it could not open has no leader (it is
//! offline). Nothing here is stored: the answers are derived from the broker's config and its
//! partitions' states, so they are true by construction.
//!
//! A `[cluster]` node whose controller started sets a [`ClusterSource`]: Metadata's node list
//! and controller, and DescribeCluster's nodes (alive = registered and unfenced, with node
//! epochs), then come from the controller's metadata image, and so do the topics: Metadata
//! lists the image's topics with each partition's leader, replicas, ISR and leader epoch
//! (log figures only for the partitions this node hosts), and DescribeCluster lists the
//! image's offline and under-replicated partitions. Topic admin goes to the controller
//! (`dispatch.rs`, `controller/admin.rs`); CreateTopics accepts a replication factor of 1
//! only until partitions are replicated.
//!
//! Does not own: topic creation itself (`registry.rs`), or the wire codes (`dispatch.rs`).

use std::collections::BTreeMap;

use ledge_protocol::wire::{ClusterNode, ClusterPartition, DescribeClusterResponse, ErrorCode};
use ledge_protocol::wire::{NodeMetadata, PartitionMetadata};

use super::Broker;
use crate::cluster::NodeId;
use crate::controller::MetadataImage;
use crate::storage::Disk;

/// Where a `[cluster]` node reads the cluster from: the controller's metadata image and the
/// active controller as this node knows it.
pub struct ClusterSource {
    /// The image as the local controller applied it.
    pub image: tokio::sync::watch::Receiver<std::sync::Arc<MetadataImage>>,
    /// The active controller, if known.
    pub controller: Box<dyn Fn() -> Option<NodeId> + Send + Sync>,
    /// The cluster's id (`cluster.cluster_id`).
    pub cluster_id: String,
    /// Topic admin through the active controller (`None`: this node has no controller
    /// client, and topic admin is refused with `NotController`).
    pub admin: Option<std::sync::Arc<crate::controller::admin::AdminClient>>,
    /// This incarnation's node epoch once the controller registered it (`None` before).
    /// Leaders are named only from an image holding that registration, as the node leads
    /// only from one (`replication/manager.rs`): an older image is what the controller
    /// decided before this node's restart.
    pub node_epoch: tokio::sync::watch::Receiver<Option<crate::controller::NodeEpoch>>,
}

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClusterSource")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// The leader epoch of every partition of a one-node cluster: there has never been an
/// election, so the first leader's epoch (Kafka starts at 0) is the only one.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

/// Topic config key of the in-sync replica minimum (Kafka's name).
pub const MIN_INSYNC_REPLICAS_KEY: &str = "min.insync.replicas";

/// Why a topic's replication settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// A replication factor of zero keeps no copy at all.
    #[error("replication factor 0 is invalid: a topic needs at least one replica")]
    ZeroReplicationFactor,
    /// More replicas than nodes that could hold them.
    #[error(
        "replication factor {replication_factor} is above the {live_nodes} live node(s); \
         use --replication-factor {live_nodes} or fewer, or start more nodes"
    )]
    AboveLiveNodes {
        /// The factor asked for.
        replication_factor: u16,
        /// Nodes alive now.
        live_nodes: u32,
    },
    /// `min.insync.replicas` above the replication factor: no acks=all produce could ever
    /// succeed.
    #[error(
        "min.insync.replicas {min_insync_replicas} is above the replication factor \
         {replication_factor}; acks=all produces could never succeed"
    )]
    MinInsyncAboveReplicationFactor {
        /// The configured minimum.
        min_insync_replicas: u64,
        /// The topic's replication factor.
        replication_factor: u16,
    },
}

/// Why a produce or fetch named a leader epoch this node does not lead at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaderEpochError {
    /// The client's epoch is older: its metadata is stale (a newer leader was elected).
    #[error("leader epoch {requested} is older than the partition's {current}: refresh metadata")]
    Fenced {
        /// The client's epoch.
        requested: i32,
        /// This node's.
        current: i32,
    },
    /// The client's epoch is newer: this node has not heard of that election yet.
    #[error("leader epoch {requested} is newer than the partition's {current}: retry later")]
    Unknown {
        /// The client's epoch.
        requested: i32,
        /// This node's.
        current: i32,
    },
}

/// Checks the leader epoch a request carries against the partition's (KIP-320): `None`
/// skips the check (an old or metadata-less client).
pub fn check_leader_epoch(requested: Option<i32>, current: i32) -> Result<(), LeaderEpochError> {
    match requested {
        None => Ok(()),
        Some(requested) if requested < current => {
            Err(LeaderEpochError::Fenced { requested, current })
        }
        Some(requested) if requested > current => {
            Err(LeaderEpochError::Unknown { requested, current })
        }
        Some(_) => Ok(()),
    }
}

/// Checks a new topic's replication factor (`None`: the cluster default) and its
/// `min.insync.replicas` (from `configs`, else `min_insync_default`) against the live nodes.
/// Returns the replication factor to use. A `min.insync.replicas` that is not a number is left
/// for the topic config's own validation, which names the key and the value.
pub fn check_replication(
    replication_factor: Option<u16>,
    configs: &BTreeMap<String, String>,
    live_nodes: u32,
    replication_factor_default: u16,
    min_insync_default: u32,
) -> Result<u16, ReplicationError> {
    let replication_factor = replication_factor.unwrap_or(replication_factor_default);
    if replication_factor == 0 {
        return Err(ReplicationError::ZeroReplicationFactor);
    }
    if u32::from(replication_factor) > live_nodes {
        return Err(ReplicationError::AboveLiveNodes {
            replication_factor,
            live_nodes,
        });
    }
    let min_insync_replicas = match configs.get(MIN_INSYNC_REPLICAS_KEY) {
        Some(value) => value.trim().parse::<u64>().ok(),
        None => Some(u64::from(min_insync_default)),
    };
    if let Some(min_insync_replicas) = min_insync_replicas
        && min_insync_replicas > u64::from(replication_factor)
    {
        return Err(ReplicationError::MinInsyncAboveReplicationFactor {
            min_insync_replicas,
            replication_factor,
        });
    }
    Ok(replication_factor)
}

/// A partition's replicas as clients see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub(super) leader: Option<u32>,
    pub(super) leader_epoch: i32,
    pub(super) replicas: Vec<u32>,
    pub(super) isr: Vec<u32>,
}

impl Placement {
    /// Copies the placement into a Metadata partition entry.
    pub(super) fn fill(self, partition: &mut PartitionMetadata) {
        partition.leader = self.leader;
        partition.leader_epoch = self.leader_epoch;
        partition.replicas = self.replicas;
        partition.isr = self.isr;
    }
}

impl<D: Disk> Broker<D> {
    /// Makes the cluster answers come from `source` (a `[cluster]` node, once its controller
    /// started). Returns `false` if a source was set already (the first one stays).
    pub fn set_cluster_source(&self, source: ClusterSource) -> bool {
        self.cluster_source.set(source).is_ok()
    }

    /// This node's id (`node.node_id`, or `[cluster] node_id`).
    pub fn own_node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Where each registered node listens for Kafka clients, as it registered it (`None`
    /// for a registration from a node built before nodes said so). Empty on a one-node
    /// node.
    pub fn registered_kafka_listeners(
        &self,
    ) -> BTreeMap<NodeId, Option<crate::controller::records::KafkaListeners>> {
        let Some(source) = self.cluster_source.get() else {
            return BTreeMap::new();
        };
        let image = source.image.borrow().clone();
        image
            .nodes
            .iter()
            .map(|(node_id, registration)| (*node_id, registration.kafka_listeners.clone()))
            .collect()
    }

    /// The live nodes, by id: this node alone, or in a cluster the registered, unfenced
    /// nodes of the image and this node (it is answering, so clients can reach it, even
    /// before it registered).
    pub(super) fn cluster_nodes(&self) -> Vec<NodeMetadata> {
        let own = NodeMetadata {
            node_id: self.config.node_id,
            address: self.config.advertised_address.clone(),
        };
        let Some(source) = self.cluster_source.get() else {
            return vec![own];
        };
        let image = source.image.borrow().clone();
        let mut nodes: Vec<NodeMetadata> = image
            .nodes
            .iter()
            .filter(|(node_id, node)| !node.fenced && **node_id != own.node_id)
            .map(|(node_id, node)| NodeMetadata {
                node_id: *node_id,
                address: node.address.clone(),
            })
            .collect();
        nodes.push(own);
        nodes.sort_by_key(|node| node.node_id);
        nodes
    }

    /// The active controller: a one-node cluster controls itself; in a cluster, the Raft
    /// leader of the controller quorum as this node knows it (none during an election).
    pub(super) fn controller_id(&self) -> Option<u32> {
        match self.cluster_source.get() {
            None => Some(self.config.node_id),
            Some(source) => (source.controller)(),
        }
    }

    /// DescribeCluster's nodes: this node alone, alive at epoch 0; in a cluster, every node
    /// the image registered (alive = unfenced) and this node if it is not registered yet.
    fn described_nodes(&self) -> (String, Vec<ClusterNode>) {
        let own_id = self.config.node_id;
        let Some(source) = self.cluster_source.get() else {
            let own = ClusterNode {
                node_id: own_id,
                address: self.config.advertised_address.clone(),
                alive: true,
                // No controller registered this node: its only incarnation is epoch 0.
                node_epoch: 0,
            };
            return (String::new(), vec![own]);
        };
        let image = source.image.borrow().clone();
        let mut nodes: Vec<ClusterNode> = image
            .nodes
            .iter()
            .map(|(node_id, node)| ClusterNode {
                node_id: *node_id,
                address: node.address.clone(),
                alive: !node.fenced,
                node_epoch: node.node_epoch,
            })
            .collect();
        if !image.nodes.contains_key(&own_id) {
            nodes.push(ClusterNode {
                node_id: own_id,
                address: self.config.advertised_address.clone(),
                alive: false,
                node_epoch: 0,
            });
            nodes.sort_by_key(|node| node.node_id);
        }
        (source.cluster_id.clone(), nodes)
    }

    /// Where a partition lives: on this node, led by it while it is online. An offline
    /// partition (its log could not be opened) has no leader and no in-sync replica.
    pub(super) fn partition_placement(&self, online: bool) -> Placement {
        let node_id = self.config.node_id;
        Placement {
            leader: online.then_some(node_id),
            leader_epoch: SINGLE_NODE_LEADER_EPOCH,
            replicas: vec![node_id],
            isr: if online { vec![node_id] } else { Vec::new() },
        }
    }

    /// Checks a CreateTopics entry's replication settings against the live nodes. Returns
    /// the replication factor to ask for; in a cluster, `None` (none given) leaves it to the
    /// controller's `default_replication_factor`, which refuses it when too few nodes are
    /// alive rather than silently keeping fewer copies.
    pub(super) fn replication_check(
        &self,
        replication_factor: Option<u16>,
        configs: &BTreeMap<String, String>,
    ) -> Result<Option<u16>, ReplicationError> {
        let live_nodes = self.cluster_nodes().len() as u32;
        if self.cluster_source.get().is_some() {
            let Some(replication_factor) = replication_factor else {
                return Ok(None);
            };
            // Only an explicit min.insync.replicas is checked here; the cluster's default
            // is the controller's, which caps it at the factor.
            return check_replication(
                Some(replication_factor),
                configs,
                live_nodes,
                replication_factor,
                1,
            )
            .map(Some);
        }
        // Kafka's default.replication.factor is min(3, nodes) here (docs/OPERATIONS.md).
        let replication_factor_default = live_nodes.min(3) as u16;
        check_replication(
            replication_factor,
            configs,
            live_nodes,
            replication_factor_default,
            self.config.topic_defaults.min_insync_replicas,
        )
        .map(Some)
    }

    /// The DescribeCluster answer: this node, alive, and its offline partitions (a one-node
    /// cluster has no under-replicated ones: every online partition's ISR is its one replica).
    pub(super) fn describe_cluster(&self) -> DescribeClusterResponse {
        let node_id = self.config.node_id;
        let mut offline = Vec::new();
        let mut under_replicated = Vec::new();
        if let Some(source) = self.cluster_source.get() {
            let image = source.image.borrow().clone();
            for (name, topic) in &image.topics {
                for (index, state) in topic.partitions.iter().enumerate() {
                    let entry = ClusterPartition {
                        topic: name.clone(),
                        partition: u32::try_from(index).unwrap_or(u32::MAX),
                        leader: state.leader,
                        replicas: state.replicas.clone(),
                        isr: state.isr.clone(),
                    };
                    if state.leader.is_none() {
                        offline.push(entry);
                    } else if state.isr.len() < state.replicas.len() {
                        under_replicated.push(entry);
                    }
                }
            }
        }
        // A node's own internal topics stay local in a cluster, unless the image has them
        // (`__consumer_offsets`, created by the controller: listed above).
        let image = self.cluster_image();
        let local_names = self
            .registry
            .topic_names()
            .into_iter()
            .filter(|name| match &image {
                None => true,
                Some(image) => name.starts_with("__") && !image.topics.contains_key(name),
            });
        for name in local_names {
            let Some(topic) = self.registry.topic(&name) else {
                // Deleted since the names were listed.
                continue;
            };
            for partition in topic.partitions() {
                // As in Metadata: a controller-placed topic claims no leader before the
                // image is known.
                let placement = self.partition_placement(
                    partition.online_log().is_ok() && topic.topic_id().is_none(),
                );
                let entry = ClusterPartition {
                    topic: name.clone(),
                    partition: partition.key().partition,
                    leader: placement.leader,
                    replicas: placement.replicas.clone(),
                    isr: placement.isr.clone(),
                };
                if placement.leader.is_none() {
                    offline.push(entry);
                } else if placement.isr.len() < placement.replicas.len() {
                    under_replicated.push(entry);
                }
            }
        }
        let (cluster_id, nodes) = self.described_nodes();
        let response = DescribeClusterResponse {
            error: ErrorCode::None,
            message: String::new(),
            cluster_id,
            controller_id: self.controller_id(),
            nodes,
            under_replicated,
            offline,
        };
        // A one-node node that does not list itself alive would send clients elsewhere for
        // nothing (in a cluster, alive is the controller's word).
        debug_assert!(
            self.cluster_source.get().is_some()
                || response
                    .nodes
                    .iter()
                    .any(|node| node.node_id == node_id && node.alive)
        );
        response
    }
}

impl<D: Disk> Broker<D> {
    /// The image a `[cluster]` node answers topics from; `None` on a one-node node.
    pub(super) fn cluster_image(&self) -> Option<std::sync::Arc<MetadataImage>> {
        self.cluster_source
            .get()
            .map(|source| source.image.borrow().clone())
    }

    /// Whether `image` holds this node's registration at its current node epoch: only then
    /// does Metadata name leaders from it. Right after a restart the image is replayed from
    /// the local store and names the leaders of before (this node among them); a client sent
    /// there would wait on a node that no longer leads.
    pub(super) fn image_is_current(&self, image: &MetadataImage) -> bool {
        let Some(source) = self.cluster_source.get() else {
            return true;
        };
        let Some(node_epoch) = *source.node_epoch.borrow() else {
            return false;
        };
        crate::replication::manager::image_holds_registration(
            image,
            self.config.node_id,
            node_epoch,
        )
    }

    /// A Metadata topic entry from the image: each partition's placement, and the log
    /// figures of the partitions hosted here (the others answer -1 offsets: ask their
    /// leader). From an image that is not current ([`Self::image_is_current`]) no leader is
    /// named: each partition answers `LeaderNotAvailable`, which clients retry.
    pub(super) fn image_topic_metadata(
        &self,
        name: String,
        topic: &crate::controller::TopicImage,
        current: bool,
    ) -> ledge_protocol::wire::TopicMetadata {
        let local = self.registry.topic(&name);
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, state)| {
                let number = u32::try_from(index).unwrap_or(u32::MAX);
                let mut metadata = local
                    .as_ref()
                    .and_then(|local| {
                        super::registry::TopicRegistry::partition_of(local, &name, number).ok()
                    })
                    .filter(|partition| partition.is_hosted())
                    .map_or_else(
                        || PartitionMetadata {
                            partition: number,
                            error: ErrorCode::None,
                            log_start_offset: -1,
                            high_watermark: -1,
                            ..PartitionMetadata::default()
                        },
                        |partition| super::dispatch::partition_metadata(&partition),
                    );
                if !current {
                    metadata.error = ErrorCode::LeaderNotAvailable;
                } else if state.leader.is_none() && metadata.error == ErrorCode::None {
                    metadata.error = ErrorCode::PartitionOffline;
                }
                Placement {
                    leader: state.leader.filter(|_| current),
                    leader_epoch: state.leader_epoch,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                }
                .fill(&mut metadata);
                metadata
            })
            .collect();
        ledge_protocol::wire::TopicMetadata {
            topic_id: topic.topic_id.to_string(),
            internal: name.starts_with("__"),
            partitioner_module: topic
                .configs
                .get("partitioner.module")
                .cloned()
                .unwrap_or_default(),
            name,
            error: ErrorCode::None,
            partitions,
            message: String::new(),
        }
    }
}

impl<D: Disk> super::data_path::DataPath<D> {
    /// The leader epoch a produce or fetch to a partition of this node is checked against.
    pub(super) fn leader_epoch_check(
        &self,
        requested: Option<i32>,
    ) -> Result<(), LeaderEpochError> {
        check_leader_epoch(requested, SINGLE_NODE_LEADER_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    // Goal: the replication factor is checked against the live nodes, the default applies
    // when none is given, and min.insync.replicas may not exceed the factor.
    #[test]
    fn replication_settings_are_checked_against_the_live_nodes() {
        assert_eq!(check_replication(None, &configs(&[]), 1, 1, 1), Ok(1));
        assert_eq!(check_replication(Some(3), &configs(&[]), 3, 1, 2), Ok(3));
        let error = check_replication(Some(3), &configs(&[]), 1, 1, 1).unwrap_err();
        assert_eq!(
            error,
            ReplicationError::AboveLiveNodes {
                replication_factor: 3,
                live_nodes: 1
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("replication factor 3 is above the 1 live node(s)"),
            "{error}"
        );
        assert_eq!(
            check_replication(Some(0), &configs(&[]), 1, 1, 1),
            Err(ReplicationError::ZeroReplicationFactor)
        );
        let error = check_replication(Some(1), &configs(&[("min.insync.replicas", "2")]), 1, 1, 1)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "min.insync.replicas 2 is above the replication factor 1; acks=all produces could \
             never succeed"
        );
        // The default minimum counts too, against the default factor.
        assert!(check_replication(None, &configs(&[]), 3, 1, 2).is_err());
        // Not a number: left for the topic config's validation, which names key and value.
        assert_eq!(
            check_replication(
                Some(1),
                &configs(&[("min.insync.replicas", "two")]),
                1,
                1,
                1
            ),
            Ok(1)
        );
    }

    // Goal: KIP-320's two outcomes: an older epoch is fenced, a newer one unknown, none skips.
    #[test]
    fn leader_epochs_are_compared_both_ways() {
        assert_eq!(check_leader_epoch(None, 5), Ok(()));
        assert_eq!(check_leader_epoch(Some(5), 5), Ok(()));
        assert_eq!(
            check_leader_epoch(Some(4), 5),
            Err(LeaderEpochError::Fenced {
                requested: 4,
                current: 5
            })
        );
        assert_eq!(
            check_leader_epoch(Some(6), 5),
            Err(LeaderEpochError::Unknown {
                requested: 6,
                current: 5
            })
        );
    }
}
