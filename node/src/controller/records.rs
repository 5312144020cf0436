//! The metadata log's records: the only way the cluster's metadata changes (KRaft's model).
//!
//! Each record is one fact the controller decided; [`super::MetadataImage::apply`] folds them
//! into the image in log order. Records are plain data (serde) so they travel in openraft's log
//! entries and snapshots unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::broker::metadata::{StoredModule, StoredTransform};
pub use crate::storage::storage_id::StorageId;

// The shared vocabulary of issue 13 has one definition, in `cluster`.
pub use crate::cluster::{LeaderEpoch, NodeEpoch, NodeId, PartitionEpoch};

/// A topic's identity beyond its name (Kafka's topic UUID): a deleted and re-created topic
/// of the same name is another topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// The id of a topic created by the log entry at `index`: the index (unique: every
    /// creation is its own entry, applied after every earlier one) and a hash of the name
    /// (FNV-1a, so two ids are told apart at a glance in a listing).
    pub fn derive(index: u64, name: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&index.to_be_bytes());
        bytes[8..].copy_from_slice(&hash.to_be_bytes());
        Self(bytes)
    }

    /// Parses the 32 hex digits [`Display`](std::fmt::Display) writes.
    pub fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// One partition's replication state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas: every acknowledged record is on each one's disk. Empty only
    /// while the partition has no leader and the last member lost its disk (see `elr`).
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966's ELR): replicas fenced out of the ISR while it
    /// was below `min.insync.replicas`. The high watermark cannot move while the ISR is that
    /// small, so each of them still holds every committed record and may lead when no ISR
    /// member can. Emptied when the ISR reaches `min.insync.replicas` again; a member that
    /// registers with another storage id (an empty disk) is removed. Disjoint from the ISR.
    /// (`serde(default)`: records and snapshots written before ELR read as empty.)
    #[serde(default)]
    pub elr: Vec<NodeId>,
    /// The leader, or `None` while the partition is offline (no eligible ISR or ELR
    /// member).
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change of replicas, ISR or leader.
    pub partition_epoch: PartitionEpoch,
}

/// Where a node listens for Kafka clients, as it registered it: the `host:port` its
/// Metadata answers give for itself on each listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaListeners {
    /// The plaintext listener's advertised address; `None` when the node has none.
    pub plaintext: Option<String>,
    /// The TLS listener's advertised address; `None` when the node has none.
    pub tls: Option<String>,
}

/// A record of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A node (re)registered: a new incarnation with a new, larger node epoch. It starts
    /// fenced and is unfenced by its first heartbeat.
    RegisterNode {
        /// The node.
        node_id: NodeId,
        /// Its epoch from now on; larger than any epoch it had before.
        node_epoch: NodeEpoch,
        /// Its peer address (`host:port`).
        address: String,
        /// Drawn by the node at each start: a retried registration of the same start is
        /// recognised and keeps its epoch.
        incarnation_id: u64,
        /// The node's data directory's id (KIP-858); `None` from a node built before
        /// storage ids (and in records written then).
        #[serde(default)]
        storage_id: Option<StorageId>,
        /// Where it listens for Kafka clients; `None` from a node built before nodes
        /// registered it (and in records written then): such a node is taken to listen for
        /// Kafka at `address` on TCP, the default `[kafka] listen`.
        #[serde(default)]
        kafka_listeners: Option<KafkaListeners>,
    },
    /// The node missed its heartbeats (or was replaced by a new incarnation): it may not
    /// lead or be added to an ISR.
    FenceNode {
        /// The node.
        node_id: NodeId,
        /// The epoch being fenced (must be the current one).
        node_epoch: NodeEpoch,
    },
    /// The node heartbeats again.
    UnfenceNode {
        /// The node.
        node_id: NodeId,
        /// The epoch being unfenced (must be the current one).
        node_epoch: NodeEpoch,
    },
    /// A topic and its partitions.
    CreateTopic {
        /// The name.
        name: String,
        /// The identity.
        topic_id: TopicId,
        /// Config overrides (Kafka key -> value text).
        configs: BTreeMap<String, String>,
        /// Partition `i`'s initial state at index `i`.
        partitions: Vec<PartitionState>,
    },
    /// A topic is gone.
    DeleteTopic {
        /// The name.
        name: String,
        /// The identity (a delete of an older topic of the same name is refused).
        topic_id: TopicId,
    },
    /// Partitions added to a topic (Kafka's CreatePartitions): the new partitions' states,
    /// numbered from the topic's current count.
    CreatePartitions {
        /// The topic.
        topic_id: TopicId,
        /// The new partitions' initial states, in order.
        partitions: Vec<PartitionState>,
    },
    /// A partition's ISR, leader or epochs changed.
    AlterPartition {
        /// The topic.
        topic_id: TopicId,
        /// The partition index.
        partition: u32,
        /// The whole new state; its `partition_epoch` must be the current one plus one.
        state: PartitionState,
    },
    /// Topic config overrides changed.
    AlterTopicConfig {
        /// The topic.
        topic_id: TopicId,
        /// Keys set to new values.
        set: BTreeMap<String, String>,
        /// Keys returned to the default.
        delete: Vec<String>,
    },
    /// A block of producer ids handed to a node.
    AllocateProducerIds {
        /// The node given the block.
        node_id: NodeId,
        /// Its epoch when asking.
        node_epoch: NodeEpoch,
        /// The first id of the block (must be where the previous block ended).
        first_producer_id: i64,
        /// How many ids.
        count: u32,
    },
    /// A named WASM module (its bytes stay in each node's module store, by digest).
    PutModule {
        /// The name.
        name: String,
        /// Its digest, kind, size and parameters.
        module: StoredModule,
    },
    /// A named module is gone.
    DeleteModule {
        /// The name.
        name: String,
    },
    /// A topic transform's definition.
    PutTransform {
        /// The name.
        name: String,
        /// The definition (boxed: a stateful one's window and join settings make it the
        /// largest record by far).
        transform: Box<StoredTransform>,
    },
    /// A transform is gone.
    DeleteTransform {
        /// The name.
        name: String,
    },
    /// A partition reassignment started (KIP-455): the partition's replicas are already the
    /// union of `target` and `original` (an `AlterPartition` in the same entry), so the new
    /// replicas materialize and fetch as followers while the old ones keep serving.
    StartReassignment {
        /// The topic.
        topic_id: TopicId,
        /// The partition index.
        partition: u32,
        /// The replicas it moves to, the preferred leader first.
        target: Vec<NodeId>,
        /// The replicas it had before (what a cancel returns to).
        original: Vec<NodeId>,
    },
    /// A partition reassignment ended: completed (its replicas are the target now) or
    /// cancelled (they are the original again), by an `AlterPartition` in the same entry.
    EndReassignment {
        /// The topic.
        topic_id: TopicId,
        /// The partition index.
        partition: u32,
    },
    /// A decommissioned node leaves the cluster: it is fenced and holds no replica. Its
    /// epochs are never given again (`node_epoch_high` stays).
    UnregisterNode {
        /// The node.
        node_id: NodeId,
        /// Its current epoch (the one being removed).
        node_epoch: NodeEpoch,
    },
    /// A change to the SCRAM users, ACLs or decoy secret (issue 15; `security/records.rs`).
    Security(crate::security::records::SecurityRecord),
}
