//! The metadata image: the metadata log folded in order, as a pure state machine.
//!
//! [`MetadataImage::apply`] takes a log index and a record; a record that does not fit the
//! image (a stale node epoch, a partition-epoch CAS that fails, a topic that exists) is
//! refused with an [`ApplyError`] and changes nothing but the applied index, so every replica
//! that applies the same log reaches the same image. A batch of records (one raft entry)
//! applies whole or not at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::records::{
    KafkaListeners, MetadataRecord, NodeEpoch, NodeId, PartitionState, StorageId, TopicId,
};
use crate::broker::metadata::{StoredModule, StoredTransform};

/// Version of the snapshot encoding.
const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// The first producer id handed out (well above Kafka's -1/0 sentinels, as on one node).
pub const PRODUCER_ID_FIRST: i64 = 1_000;

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// Its current epoch.
    pub node_epoch: NodeEpoch,
    /// Its peer address.
    pub address: String,
    /// The start this registration belongs to.
    pub incarnation_id: u64,
    /// The id of the data directory it registered with (`None`: a node built before
    /// storage ids). Another id at the next registration means its replicas' data is gone.
    #[serde(default)]
    pub storage_id: Option<StorageId>,
    /// Where it listens for Kafka clients (`None`: registered by a node built before that
    /// was registered; see [`MetadataRecord::RegisterNode`]).
    #[serde(default)]
    pub kafka_listeners: Option<KafkaListeners>,
    /// Fenced nodes neither lead nor join an ISR.
    pub fenced: bool,
}

/// A topic in the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// The identity.
    pub topic_id: TopicId,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partition `i` at index `i`.
    pub partitions: Vec<PartitionState>,
}

/// Everything the metadata log says, as of `last_applied_index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The log index of the last record applied (0: nothing yet).
    pub last_applied_index: u64,
    /// Registered nodes.
    pub nodes: BTreeMap<NodeId, NodeRegistration>,
    /// The largest node epoch ever given: the next registration gets a larger one, so epochs
    /// never repeat, even across nodes.
    pub node_epoch_high: NodeEpoch,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// The first producer id not yet handed out.
    pub producer_id_next: i64,
    /// Named WASM modules.
    pub modules: BTreeMap<String, StoredModule>,
    /// Topic transforms.
    pub transforms: BTreeMap<String, StoredTransform>,
    /// Partition reassignments in progress (KIP-455), in the order they started.
    /// (`serde(default)`: snapshots written before reassignment read as none.)
    #[serde(default)]
    pub reassignments: Vec<PartitionReassignment>,
    /// SCRAM users, ACL bindings and the cluster's decoy secret (issue 15).
    /// (`serde(default)`: snapshots written before the security store read as empty.)
    #[serde(default)]
    pub security: crate::security::records::SecurityData,
}

/// A partition moving to other replicas: while it lasts, the partition's replicas are
/// `target` followed by the `original` replicas not in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReassignment {
    /// The topic.
    pub topic_id: TopicId,
    /// The partition index.
    pub partition: u32,
    /// The replicas it moves to, the preferred leader first.
    pub target: Vec<NodeId>,
    /// The replicas it had when the move started.
    pub original: Vec<NodeId>,
}

impl PartitionReassignment {
    /// Kafka's `adding` replicas: in the target, not in the original.
    pub fn adding(&self) -> Vec<NodeId> {
        self.target
            .iter()
            .filter(|node| !self.original.contains(node))
            .copied()
            .collect()
    }

    /// Kafka's `removing` replicas: in the original, not in the target.
    pub fn removing(&self) -> Vec<NodeId> {
        self.original
            .iter()
            .filter(|node| !self.target.contains(node))
            .copied()
            .collect()
    }
}

impl Default for MetadataImage {
    fn default() -> Self {
        Self {
            last_applied_index: 0,
            nodes: BTreeMap::new(),
            node_epoch_high: 0,
            topics: BTreeMap::new(),
            producer_id_next: PRODUCER_ID_FIRST,
            modules: BTreeMap::new(),
            transforms: BTreeMap::new(),
            reassignments: Vec::new(),
            security: crate::security::records::SecurityData::default(),
        }
    }
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// The index was applied already (a replay): nothing changes.
    #[error("log index {index} is already applied (last applied {last_applied})")]
    AlreadyApplied {
        /// The index offered.
        index: u64,
        /// The last index applied.
        last_applied: u64,
    },
    /// The node never registered.
    #[error("node {node_id} is not registered")]
    UnknownNode {
        /// The node.
        node_id: NodeId,
    },
    /// The record names an epoch other than the node's current one.
    #[error("node {node_id}: epoch {given} is stale (current {current})")]
    StaleNodeEpoch {
        /// The node.
        node_id: NodeId,
        /// Its current epoch.
        current: NodeEpoch,
        /// The epoch the record named.
        given: NodeEpoch,
    },
    /// A registration whose epoch is not above every epoch given before.
    #[error("node {node_id}: new epoch {given} is not above the highest given, {high}")]
    NodeEpochNotIncreasing {
        /// The node.
        node_id: NodeId,
        /// The highest epoch given so far.
        high: NodeEpoch,
        /// The epoch the record named.
        given: NodeEpoch,
    },
    /// A topic of that name or id exists.
    #[error("topic {name:?} already exists")]
    TopicExists {
        /// The name.
        name: String,
    },
    /// No such topic.
    #[error("unknown topic {topic}")]
    UnknownTopic {
        /// The topic's name or id.
        topic: String,
    },
    /// No such partition.
    #[error("topic {topic_id} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: u32,
    },
    /// A reassignment record that does not fit (one already running, none running, or a
    /// target that is not among the partition's replicas).
    #[error("partition {topic_id}/{partition}: {reason}")]
    Reassignment {
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: u32,
        /// What does not fit.
        reason: String,
    },
    /// A node that cannot be unregistered (alive, or still a replica somewhere).
    #[error("node {node_id} cannot be unregistered: {reason}")]
    NodeInUse {
        /// The node.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// The partition-epoch compare-and-set failed.
    #[error(
        "partition {topic_id}/{partition}: partition epoch {given} is not the current {current} plus one"
    )]
    PartitionEpochMismatch {
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: u32,
        /// The current epoch.
        current: i32,
        /// The epoch the record named.
        given: i32,
    },
    /// A partition state that breaks an invariant (the reason says which).
    #[error("invalid partition state: {0}")]
    InvalidPartitionState(String),
    /// A producer-id block that does not start where the last one ended.
    #[error("producer id block starts at {given}, expected {expected}")]
    ProducerIdBlockMismatch {
        /// The next free id.
        expected: i64,
        /// The first id of the block.
        given: i64,
    },
    /// A security record that does not fit the users, ACLs or decoy secret.
    #[error("security: {reason}")]
    Security {
        /// Why.
        reason: String,
    },
    /// No module or transform of that name.
    #[error("unknown {kind} {name:?}")]
    UnknownName {
        /// `module` or `transform`.
        kind: String,
        /// The name.
        name: String,
    },
}

/// A snapshot that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not JSON of the expected shape.
    #[error("metadata snapshot is not readable: {0}")]
    Decode(#[from] serde_json::Error),
    /// Written by a newer Ledge.
    #[error("metadata snapshot format {found} is not supported (this build reads {supported})")]
    Version {
        /// The version in the snapshot.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    image: MetadataImage,
}

impl MetadataImage {
    /// Applies one record at `index`.
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> Result<(), ApplyError> {
        self.apply_batch(index, std::slice::from_ref(record))
    }

    /// Applies the records of one log entry at `index`: all of them or, if one is refused,
    /// none (the applied index still moves, so the next entry applies).
    pub fn apply_batch(
        &mut self,
        index: u64,
        records: &[MetadataRecord],
    ) -> Result<(), ApplyError> {
        if index <= self.last_applied_index {
            return Err(ApplyError::AlreadyApplied {
                index,
                last_applied: self.last_applied_index,
            });
        }
        self.last_applied_index = index;
        if let [record] = records {
            // One record checks everything before it changes anything: no copy needed.
            return self.apply_record(record);
        }
        let mut next = self.clone();
        for record in records {
            next.apply_record(record)?;
        }
        *self = next;
        Ok(())
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, topic_id: TopicId) -> Option<(&str, &TopicImage)> {
        self.topics
            .iter()
            .find(|(_, topic)| topic.topic_id == topic_id)
            .map(|(name, topic)| (name.as_str(), topic))
    }

    /// One partition's state.
    pub fn partition(&self, topic_id: TopicId, partition: u32) -> Option<&PartitionState> {
        let (_, topic) = self.topic_by_id(topic_id)?;
        topic.partitions.get(usize::try_from(partition).ok()?)
    }

    /// The image as snapshot bytes.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let file = SnapshotFile {
            version: SNAPSHOT_FORMAT_VERSION,
            image: self.clone(),
        };
        // Serializing plain maps, strings and numbers cannot fail; an empty snapshot would be
        // refused on read rather than taken for an empty image.
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// An image from snapshot bytes.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::Version {
                found: version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let file: SnapshotFile = serde_json::from_slice(bytes)?;
        Ok(file.image)
    }

    fn apply_record(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterNode {
                node_id,
                node_epoch,
                address,
                incarnation_id,
                storage_id,
                kafka_listeners,
            } => {
                if *node_epoch <= self.node_epoch_high {
                    return Err(ApplyError::NodeEpochNotIncreasing {
                        node_id: *node_id,
                        high: self.node_epoch_high,
                        given: *node_epoch,
                    });
                }
                self.node_epoch_high = *node_epoch;
                self.nodes.insert(
                    *node_id,
                    NodeRegistration {
                        node_epoch: *node_epoch,
                        address: address.clone(),
                        incarnation_id: *incarnation_id,
                        storage_id: *storage_id,
                        kafka_listeners: kafka_listeners.clone(),
                        fenced: true,
                    },
                );
                Ok(())
            }
            MetadataRecord::FenceNode {
                node_id,
                node_epoch,
            } => {
                self.current_node(*node_id, *node_epoch)?.fenced = true;
                Ok(())
            }
            MetadataRecord::UnfenceNode {
                node_id,
                node_epoch,
            } => {
                self.current_node(*node_id, *node_epoch)?.fenced = false;
                Ok(())
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                configs,
                partitions,
            } => {
                if self.topics.contains_key(name) || self.topic_by_id(*topic_id).is_some() {
                    return Err(ApplyError::TopicExists { name: name.clone() });
                }
                for state in partitions {
                    check_partition_state(state)?;
                }
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        topic_id: *topic_id,
                        configs: configs.clone(),
                        partitions: partitions.clone(),
                    },
                );
                Ok(())
            }
            MetadataRecord::DeleteTopic { name, topic_id } => {
                match self.topics.get(name) {
                    Some(topic) if topic.topic_id == *topic_id => {}
                    _ => {
                        return Err(ApplyError::UnknownTopic {
                            topic: format!("{name:?} ({topic_id})"),
                        });
                    }
                }
                self.topics.remove(name);
                self.reassignments
                    .retain(|reassignment| reassignment.topic_id != *topic_id);
                Ok(())
            }
            MetadataRecord::CreatePartitions {
                topic_id,
                partitions,
            } => {
                for state in partitions {
                    check_partition_state(state)?;
                }
                let topic = self
                    .topics
                    .values_mut()
                    .find(|topic| topic.topic_id == *topic_id)
                    .ok_or_else(|| ApplyError::UnknownTopic {
                        topic: topic_id.to_string(),
                    })?;
                if u32::try_from(topic.partitions.len() + partitions.len()).is_err() {
                    return Err(ApplyError::InvalidPartitionState(format!(
                        "topic {topic_id}: more than {} partitions",
                        u32::MAX
                    )));
                }
                topic.partitions.extend(partitions.iter().cloned());
                Ok(())
            }
            MetadataRecord::AlterPartition {
                topic_id,
                partition,
                state,
            } => {
                check_partition_state(state)?;
                let current = self.partition_mut(*topic_id, *partition)?;
                if Some(state.partition_epoch) != current.partition_epoch.checked_add(1) {
                    return Err(ApplyError::PartitionEpochMismatch {
                        topic_id: *topic_id,
                        partition: *partition,
                        current: current.partition_epoch,
                        given: state.partition_epoch,
                    });
                }
                if state.leader_epoch < current.leader_epoch
                    || (state.leader != current.leader
                        && state.leader_epoch == current.leader_epoch)
                {
                    return Err(ApplyError::InvalidPartitionState(format!(
                        "leader {:?} at epoch {} after leader {:?} at epoch {}: a new leader needs a larger epoch",
                        state.leader, state.leader_epoch, current.leader, current.leader_epoch
                    )));
                }
                *current = state.clone();
                Ok(())
            }
            MetadataRecord::AlterTopicConfig {
                topic_id,
                set,
                delete,
            } => {
                let topic = self
                    .topics
                    .values_mut()
                    .find(|topic| topic.topic_id == *topic_id)
                    .ok_or_else(|| ApplyError::UnknownTopic {
                        topic: topic_id.to_string(),
                    })?;
                for key in delete {
                    topic.configs.remove(key);
                }
                topic
                    .configs
                    .extend(set.iter().map(|(key, value)| (key.clone(), value.clone())));
                Ok(())
            }
            MetadataRecord::AllocateProducerIds {
                node_id,
                node_epoch,
                first_producer_id,
                count,
            } => {
                self.current_node(*node_id, *node_epoch)?;
                if *first_producer_id != self.producer_id_next {
                    return Err(ApplyError::ProducerIdBlockMismatch {
                        expected: self.producer_id_next,
                        given: *first_producer_id,
                    });
                }
                self.producer_id_next = first_producer_id.checked_add(i64::from(*count)).ok_or(
                    ApplyError::ProducerIdBlockMismatch {
                        expected: self.producer_id_next,
                        given: *first_producer_id,
                    },
                )?;
                Ok(())
            }
            MetadataRecord::StartReassignment {
                topic_id,
                partition,
                target,
                original,
            } => self.start_reassignment(*topic_id, *partition, target, original),
            MetadataRecord::EndReassignment {
                topic_id,
                partition,
            } => {
                let position = self
                    .reassignment_position(*topic_id, *partition)
                    .ok_or_else(|| ApplyError::Reassignment {
                        topic_id: *topic_id,
                        partition: *partition,
                        reason: "no reassignment is in progress".to_owned(),
                    })?;
                self.reassignments.remove(position);
                Ok(())
            }
            MetadataRecord::UnregisterNode {
                node_id,
                node_epoch,
            } => self.unregister_node(*node_id, *node_epoch),
            MetadataRecord::PutModule { name, module } => {
                self.modules.insert(name.clone(), module.clone());
                Ok(())
            }
            MetadataRecord::DeleteModule { name } => self
                .modules
                .remove(name)
                .map(drop)
                .ok_or_else(|| ApplyError::UnknownName {
                    kind: "module".to_owned(),
                    name: name.clone(),
                }),
            MetadataRecord::PutTransform { name, transform } => {
                self.transforms.insert(name.clone(), (**transform).clone());
                Ok(())
            }
            MetadataRecord::DeleteTransform { name } => self
                .transforms
                .remove(name)
                .map(drop)
                .ok_or_else(|| ApplyError::UnknownName {
                    kind: "transform".to_owned(),
                    name: name.clone(),
                }),
            MetadataRecord::Security(record) => {
                self.security
                    .apply(record)
                    .map_err(|error| ApplyError::Security {
                        reason: error.to_string(),
                    })
            }
        }
    }

    /// The reassignment of one partition, if it is moving.
    pub fn reassignment(
        &self,
        topic_id: TopicId,
        partition: u32,
    ) -> Option<&PartitionReassignment> {
        self.reassignments.iter().find(|reassignment| {
            reassignment.topic_id == topic_id && reassignment.partition == partition
        })
    }

    fn reassignment_position(&self, topic_id: TopicId, partition: u32) -> Option<usize> {
        self.reassignments.iter().position(|reassignment| {
            reassignment.topic_id == topic_id && reassignment.partition == partition
        })
    }

    fn start_reassignment(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        target: &[NodeId],
        original: &[NodeId],
    ) -> Result<(), ApplyError> {
        let refuse = |reason: String| {
            Err(ApplyError::Reassignment {
                topic_id,
                partition,
                reason,
            })
        };
        if self.reassignment_position(topic_id, partition).is_some() {
            return refuse("a reassignment is already in progress".to_owned());
        }
        let state = self
            .partition(topic_id, partition)
            .ok_or(ApplyError::UnknownPartition {
                topic_id,
                partition,
            })?;
        if target.is_empty() {
            return refuse("an empty target".to_owned());
        }
        // The replicas already hold both sets (the AlterPartition before this record), so
        // every node that must copy or keep serving is a replica throughout the move.
        if let Some(missing) = target
            .iter()
            .chain(original)
            .find(|node| !state.replicas.contains(node))
        {
            return refuse(format!(
                "node {missing} is not among the replicas {:?}",
                state.replicas
            ));
        }
        self.reassignments.push(PartitionReassignment {
            topic_id,
            partition,
            target: target.to_vec(),
            original: original.to_vec(),
        });
        Ok(())
    }

    fn unregister_node(
        &mut self,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<(), ApplyError> {
        let node = self.current_node(node_id, node_epoch)?;
        if !node.fenced {
            return Err(ApplyError::NodeInUse {
                node_id,
                reason: "it is alive (not fenced)".to_owned(),
            });
        }
        for (name, topic) in &self.topics {
            if let Some(index) = topic
                .partitions
                .iter()
                .position(|state| state.replicas.contains(&node_id))
            {
                return Err(ApplyError::NodeInUse {
                    node_id,
                    reason: format!("it is a replica of {name}/{index}"),
                });
            }
        }
        self.nodes.remove(&node_id);
        Ok(())
    }

    fn current_node(
        &mut self,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<&mut NodeRegistration, ApplyError> {
        let node = self
            .nodes
            .get_mut(&node_id)
            .ok_or(ApplyError::UnknownNode { node_id })?;
        if node.node_epoch != node_epoch {
            return Err(ApplyError::StaleNodeEpoch {
                node_id,
                current: node.node_epoch,
                given: node_epoch,
            });
        }
        Ok(node)
    }

    fn partition_mut(
        &mut self,
        topic_id: TopicId,
        partition: u32,
    ) -> Result<&mut PartitionState, ApplyError> {
        let topic = self
            .topics
            .values_mut()
            .find(|topic| topic.topic_id == topic_id)
            .ok_or_else(|| ApplyError::UnknownTopic {
                topic: topic_id.to_string(),
            })?;
        usize::try_from(partition)
            .ok()
            .and_then(|index| topic.partitions.get_mut(index))
            .ok_or(ApplyError::UnknownPartition {
                topic_id,
                partition,
            })
    }
}

/// The invariants every partition state keeps: replicas distinct and non-empty, the ISR a
/// subset of them, non-empty while there is a leader (fencing keeps the last member; only a
/// last member that lost its disk leaves an empty ISR behind, with no leader), the leader in
/// the ISR, the ELR a subset of the replicas disjoint from the ISR.
fn check_partition_state(state: &PartitionState) -> Result<(), ApplyError> {
    let invalid = |reason: String| Err(ApplyError::InvalidPartitionState(reason));
    if state.replicas.is_empty() {
        return invalid("no replicas".to_owned());
    }
    for (position, replica) in state.replicas.iter().enumerate() {
        if state
            .replicas
            .iter()
            .skip(position + 1)
            .any(|other| other == replica)
        {
            return invalid(format!("replica {replica} listed twice"));
        }
    }
    if state.isr.is_empty() && state.leader.is_some() {
        return invalid("empty ISR with a leader".to_owned());
    }
    for (position, member) in state.isr.iter().enumerate() {
        if !state.replicas.contains(member) {
            return invalid(format!("ISR member {member} is not a replica"));
        }
        if state
            .isr
            .iter()
            .skip(position + 1)
            .any(|other| other == member)
        {
            return invalid(format!("ISR member {member} listed twice"));
        }
    }
    if let Some(leader) = state.leader
        && !state.isr.contains(&leader)
    {
        return invalid(format!("leader {leader} is not in the ISR"));
    }
    for (position, member) in state.elr.iter().enumerate() {
        if !state.replicas.contains(member) {
            return invalid(format!("ELR member {member} is not a replica"));
        }
        if state.isr.contains(member) {
            return invalid(format!("ELR member {member} is also in the ISR"));
        }
        if state
            .elr
            .iter()
            .skip(position + 1)
            .any(|other| other == member)
        {
            return invalid(format!("ELR member {member} listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
