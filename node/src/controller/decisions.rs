//! The controller's decisions as pure code: each takes the current [`MetadataImage`] (and the
//! time, where time matters) and returns the [`MetadataRecord`]s to propose, or a refusal.
//!
//! Nothing here does IO or reads a clock; the quorum driver serializes decisions (one at a
//! time, each on the image that includes the previous one's records) and proposes their
//! records as one log entry. A decision that needs several records checks them on a copy of
//! the image, so a batch never fails to apply for a reason the decision could have seen.
//!
//! The rules follow Kafka's KRaft controller:
//! - Registration gives a new, larger node epoch; the node starts fenced. A new incarnation of
//!   a known node (a restart, possibly with an empty disk) first loses the old incarnation's
//!   ISR places and leaderships, exactly as fencing does, so it only rejoins an ISR when a
//!   leader proposes it with its new epoch after it caught up (KIP-903).
//! - A registration whose storage id differs from the node's previous one (KIP-858: its data
//!   directory was wiped or replaced) means the node's replicas are empty: it leaves every
//!   ISR and ELR, even as the last ISR member (the partition then stays offline until a
//!   replica that kept its data returns, or unclean election is on), and a leadership it
//!   still held is given to another eligible replica.
//! - Heartbeats keep a session alive; the first unfences. A node without one for
//!   `node_session_timeout_ms` is fenced: it leaves every ISR where others remain (the last
//!   member stays, leaderless: the partition is offline rather than elected unclean), and its
//!   partitions elect a new leader from the remaining ISR.
//! - Eligible leader replicas (KIP-966's ELR): a member fenced or shrunk out of an ISR that
//!   is then below `min.insync.replicas` is kept in the ELR: the high watermark does not move
//!   while the ISR is that small, so it still holds every committed record. (A member the
//!   leader shrinks out for lagging counts too, as in Kafka: the leader's high watermark
//!   counted it until the shrink.) A replica whose disk is new or whose log is damaged leaves
//!   it. The ELR empties when the ISR reaches `min.insync.replicas` again.
//! - Leaders come from the ISR, then the ELR, among unfenced nodes. A leader elected from the
//!   ELR becomes the ISR alone (the others, ISR or ELR, keep their ELR places). Unclean
//!   election (a live replica outside both) only where `unclean.leader.election.enable` is
//!   true for the topic (default: the cluster's `unclean_leader_election_enable`, false).
//! - AlterPartition (ISR shrink/expand from the leader) is checked: the sender is the current
//!   leader with its current node epoch and leader epoch, the partition epoch matches (CAS),
//!   and every member of the new ISR is registered with the epoch the leader saw, unfenced
//!   (KIP-497/903).
//! - Controlled shutdown (KIP-631's shape, KIP-841's eligibility): a node about to stop asks
//!   to have its leaderships moved ([`ControllerLogic::handle_controlled_shutdown`], which
//!   also counts as a heartbeat). It is marked "in controlled shutdown" (in memory, like the
//!   sessions: the node repeats the request every heartbeat, so a new active controller
//!   learns it again) and leaves its partitions as fencing makes it leave them. While marked
//!   it is elected nowhere and no ISR change may add it, so its followers' catch-up does not
//!   pull it back in. A registration of a new incarnation clears the mark.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::image::{ApplyError, MetadataImage};
use super::records::{
    KafkaListeners, LeaderEpoch, MetadataRecord, NodeEpoch, NodeId, PartitionEpoch, PartitionState,
    StorageId, TopicId,
};
use crate::clock::deadline_after;

/// The node epoch an AlterPartition names for a member it keeps in the ISR without having
/// seen it fetch in this leader epoch (no registration ever gets epoch 0).
pub const NODE_EPOCH_NO_CLAIM: NodeEpoch = 0;

/// Topic config key: the smallest ISR for which acks=all succeeds.
pub const MIN_INSYNC_REPLICAS_KEY: &str = "min.insync.replicas";
/// Topic config key: whether a replica outside the ISR may be elected.
pub const UNCLEAN_LEADER_ELECTION_KEY: &str = "unclean.leader.election.enable";

/// The `[cluster]` settings the controller's decisions use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionConfig {
    /// Kafka's `default.replication.factor` (used when a request gives none).
    pub default_replication_factor: u16,
    /// Default `min.insync.replicas` for topics.
    pub min_insync_replicas: u16,
    /// Default `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// A node without a heartbeat for this long is fenced.
    pub node_session_timeout: Duration,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            default_replication_factor: 3,
            min_insync_replicas: 2,
            unclean_leader_election_enable: false,
            // The node's default `cluster.node_session_timeout_ms`, so tests built on the
            // default decide as a node with the default config does.
            node_session_timeout: Duration::from_millis(
                crate::cluster::config::NODE_SESSION_TIMEOUT_MS_DEFAULT,
            ),
        }
    }
}

/// A node asks to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The node.
    pub node_id: NodeId,
    /// Its peer address.
    pub address: String,
    /// Drawn at the node's start.
    pub incarnation_id: u64,
    /// The node's data directory's id (`None` from a node built before storage ids).
    pub storage_id: Option<StorageId>,
    /// Where it listens for Kafka clients (`None` from a node built before it said so).
    pub kafka_listeners: Option<KafkaListeners>,
}

/// Why a request was refused; [`ControllerError::code`] names the Kafka error for the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// The node is not registered (it must register first).
    #[error("node {node_id} is not registered")]
    UnknownNode {
        /// The node.
        node_id: NodeId,
    },
    /// The node's epoch is not its current one: an older incarnation.
    #[error("node {node_id}: epoch {given} is stale (current {current})")]
    StaleNodeEpoch {
        /// The node.
        node_id: NodeId,
        /// Its current epoch.
        current: NodeEpoch,
        /// The epoch the request carried.
        given: NodeEpoch,
    },
    /// Replication factor out of range.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A config value that cannot be used.
    #[error("{0}")]
    InvalidConfig(String),
    /// Bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// The topic exists.
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    /// No such topic or partition.
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// The sender is not the partition's leader.
    #[error("node {node_id} is not the leader of {partition} (leader {leader:?})")]
    NotLeaderOrFollower {
        /// The sender.
        node_id: NodeId,
        /// The partition.
        partition: String,
        /// The current leader.
        leader: Option<NodeId>,
    },
    /// The sender's leader epoch is older than the current one.
    #[error("leader epoch {given} is fenced (current {current})")]
    FencedLeaderEpoch {
        /// The current epoch.
        current: LeaderEpoch,
        /// The epoch the request carried.
        given: LeaderEpoch,
    },
    /// The sender's leader epoch is newer than the current one.
    #[error("leader epoch {given} is unknown (current {current})")]
    UnknownLeaderEpoch {
        /// The current epoch.
        current: LeaderEpoch,
        /// The epoch the request carried.
        given: LeaderEpoch,
    },
    /// The partition-epoch CAS failed: the sender decided on an old state.
    #[error("partition epoch {given} is not the current {current}")]
    InvalidUpdateVersion {
        /// The current partition epoch.
        current: PartitionEpoch,
        /// The epoch the request carried.
        given: PartitionEpoch,
    },
    /// A proposed ISR member is fenced, unregistered, or known by a stale epoch.
    #[error("node {node_id} cannot join the ISR: {reason}")]
    IneligibleReplica {
        /// The member.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// A reassignment target that cannot be used (empty, a node twice, an unknown or
    /// fenced node).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// The partition is already moving (one reassignment at a time per partition).
    #[error("{0}")]
    ReassignmentInProgress(String),
    /// No reassignment of the partition to cancel.
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// A node that cannot be decommissioned now (alive, a replica, a voter).
    #[error("{0}")]
    NodeInUse(String),
    /// No named module of that name (`plugins.rs`).
    #[error("no module named {0:?}")]
    ModuleNotFound(String),
    /// A topic config names the module for a key its kind does not fit, or at all (delete).
    #[error("{0}")]
    ModuleInUse(String),
    /// No transform of that name.
    #[error("no transform named {0:?}")]
    TransformNotFound(String),
    /// A module or transform request that cannot be recorded as asked (a name, a topic, a
    /// version another deploy took first).
    #[error("{0}")]
    InvalidPluginRequest(String),
    /// A user or ACL change refused (issue 15, `decisions/security.rs`).
    #[error("{message}")]
    Security {
        /// The kind, for the wire code.
        refusal: crate::security::records::SecurityRefusal,
        /// Why, in one line (never a secret).
        message: String,
    },
    /// The decision's records do not apply (a bug in the decision, reported, not applied).
    #[error("records refused by the image: {0}")]
    Refused(#[from] ApplyError),
}

impl ControllerError {
    /// The Kafka error name this maps to on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownNode { .. } | Self::StaleNodeEpoch { .. } => "STALE_BROKER_EPOCH",
            Self::InvalidReplicationFactor(_) => "INVALID_REPLICATION_FACTOR",
            Self::InvalidConfig(_) => "INVALID_CONFIG",
            Self::InvalidPartitions(_) => "INVALID_PARTITIONS",
            Self::TopicAlreadyExists(_) => "TOPIC_ALREADY_EXISTS",
            Self::UnknownTopicOrPartition(_) => "UNKNOWN_TOPIC_OR_PARTITION",
            Self::NotLeaderOrFollower { .. } => "NOT_LEADER_OR_FOLLOWER",
            Self::FencedLeaderEpoch { .. } => "FENCED_LEADER_EPOCH",
            Self::UnknownLeaderEpoch { .. } => "UNKNOWN_LEADER_EPOCH",
            Self::InvalidUpdateVersion { .. } => "INVALID_UPDATE_VERSION",
            Self::IneligibleReplica { .. } => "INELIGIBLE_REPLICA",
            Self::InvalidReplicaAssignment(_) => "INVALID_REPLICA_ASSIGNMENT",
            Self::ReassignmentInProgress(_) => "REASSIGNMENT_IN_PROGRESS",
            Self::NoReassignmentInProgress(_) => "NO_REASSIGNMENT_IN_PROGRESS",
            Self::NodeInUse(_) => "NODE_IN_USE",
            Self::ModuleNotFound(_) => "MODULE_NOT_FOUND",
            Self::ModuleInUse(_) => "MODULE_IN_USE",
            Self::TransformNotFound(_) => "TRANSFORM_NOT_FOUND",
            Self::InvalidPluginRequest(_) => "INVALID_REQUEST",
            Self::Security { refusal, .. } => refusal.kafka_name(),
            Self::Refused(_) => "UNKNOWN_SERVER_ERROR",
        }
    }
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicRequest {
    /// The name (validated by the broker's topic-name rules before it gets here).
    pub name: String,
    /// The identity the caller drew for it.
    pub topic_id: TopicId,
    /// Partition count (at least 1).
    pub partitions: u32,
    /// Replicas per partition; `None`: the cluster default, capped at the node count.
    pub replication_factor: Option<u16>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// A leader asks to change its partition's ISR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    /// The sender (the leader).
    pub node_id: NodeId,
    /// The sender's node epoch.
    pub node_epoch: NodeEpoch,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: u32,
    /// The sender's leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the sender's decision was made on (the CAS token).
    pub partition_epoch: PartitionEpoch,
    /// The new ISR, each member with the node epoch the leader last saw it fetch with.
    pub new_isr: Vec<(NodeId, NodeEpoch)>,
}

/// A replica reports its copy of a partition damaged (issue 13 item 4): it holds fewer
/// records than it did, and cuts its log once the controller no longer counts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDamagedRequest {
    /// The sender (the damaged replica; its certificate's node id).
    pub node_id: NodeId,
    /// The sender's node epoch.
    pub node_epoch: NodeEpoch,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: u32,
}

/// The controller's decision-making state: the replicated image is passed in; the only state
/// kept here is the heartbeat sessions and the controlled-shutdown marks, which (as in KRaft)
/// live on the active controller only and start afresh, with a full timeout, on a new one.
/// One exception: the previous active controller's node, which the new one heard as its
/// Raft leader until it went silent ([`Self::with_predecessor`]).
#[derive(Debug)]
pub struct ControllerLogic {
    config: DecisionConfig,
    /// Per node: the epoch that heartbeated and when its session expires.
    sessions: BTreeMap<NodeId, (NodeEpoch, Instant)>,
    /// Nodes in controlled shutdown, with the epoch that asked (a later epoch is a new
    /// incarnation, no longer shutting down).
    controlled_shutdown: BTreeMap<NodeId, NodeEpoch>,
    /// The node that led the quorum before this controller, and when this controller last
    /// accepted its appends.
    predecessor: Option<(NodeId, Instant)>,
}

impl ControllerLogic {
    /// Logic with these settings and no sessions yet.
    pub fn new(config: DecisionConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
            controlled_shutdown: BTreeMap::new(),
            predecessor: None,
        }
    }

    /// Logic of a controller that, as a voter, last accepted appends from `node` (the active
    /// controller before it) at `heard`. That node's session, until it heartbeats here, ends
    /// one `node_session_timeout` after `heard` instead of one after this controller took
    /// over: a leader that died with the active controller on its node is then replaced as
    /// fast as one that died alone, not an election later. Raft heartbeats arrive every
    /// `controller_raft_heartbeat_ms`, so silence since `heard` is evidence the node stopped
    /// or was cut off; a live node that was cut off from this controller would miss its own
    /// heartbeats here as well, and one that stepped down was heard just now.
    pub fn with_predecessor(mut self, node: NodeId, heard: Instant) -> Self {
        self.predecessor = Some((node, heard));
        self
    }

    /// The nodes in controlled shutdown at their current epoch in `image`: elected nowhere,
    /// added to no ISR.
    pub fn nodes_in_controlled_shutdown(&self, image: &MetadataImage) -> BTreeSet<NodeId> {
        self.controlled_shutdown
            .iter()
            .filter(|(node_id, epoch)| {
                image
                    .nodes
                    .get(node_id)
                    .is_some_and(|node| node.node_epoch == **epoch)
            })
            .map(|(node_id, _)| *node_id)
            .collect()
    }

    /// A working copy of `image` whose elections skip the nodes in controlled shutdown.
    pub(super) fn work(&self, image: &MetadataImage) -> Work {
        let mut work = Work::new(image);
        work.ineligible = self.nodes_in_controlled_shutdown(image);
        work
    }

    /// The settings.
    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    /// A node registers: the records to propose and the node epoch it will have. A retry of
    /// the same incarnation's registration gets its existing epoch and no records.
    pub fn handle_register(
        &mut self,
        image: &MetadataImage,
        now: Instant,
        request: &RegisterRequest,
    ) -> Result<(Vec<MetadataRecord>, NodeEpoch), ControllerError> {
        if let Some(existing) = image.nodes.get(&request.node_id)
            && existing.incarnation_id == request.incarnation_id
        {
            return Ok((Vec::new(), existing.node_epoch));
        }
        // A new incarnation is not shutting down, whatever the last one asked.
        self.controlled_shutdown.remove(&request.node_id);
        let mut work = self.work(image);
        if let Some(existing) = image.nodes.get(&request.node_id) {
            // A node registered before storage ids has none to compare with: it keeps its
            // places (the upgrade path). Otherwise another id, or none, is another disk.
            if existing.storage_id.is_some() && existing.storage_id != request.storage_id {
                tracing::warn!(
                    node_id = request.node_id,
                    previous = ?existing.storage_id.map(|id| id.to_string()),
                    now = ?request.storage_id.map(|id| id.to_string()),
                    "node registered with another storage id: its data directory is new, so it leaves every ISR and ELR"
                );
                work.forget_replica_data(request.node_id, &self.config)?;
            }
            // A new incarnation: it is fenced out of ISRs where others remain, as a session
            // expiry would.
            work.remove_from_partitions(request.node_id, &self.config)?;
            if !existing.fenced {
                work.push(MetadataRecord::FenceNode {
                    node_id: request.node_id,
                    node_epoch: existing.node_epoch,
                })?;
            }
        }
        let node_epoch = image.node_epoch_high.saturating_add(1);
        work.push(MetadataRecord::RegisterNode {
            node_id: request.node_id,
            node_epoch,
            address: request.address.clone(),
            incarnation_id: request.incarnation_id,
            storage_id: request.storage_id,
            kafka_listeners: request.kafka_listeners.clone(),
        })?;
        self.sessions.insert(
            request.node_id,
            (
                node_epoch,
                deadline_after(now, self.config.node_session_timeout),
            ),
        );
        Ok((work.records, node_epoch))
    }

    /// A node heartbeats: extends its session; the first heartbeat of an epoch unfences the
    /// node and elects it where its partitions have no leader and it is in the ISR.
    pub fn handle_heartbeat(
        &mut self,
        image: &MetadataImage,
        now: Instant,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let node = check_sender(image, node_id, node_epoch)?;
        self.sessions.insert(
            node_id,
            (
                node_epoch,
                deadline_after(now, self.config.node_session_timeout),
            ),
        );
        if !node.fenced {
            return Ok(Vec::new());
        }
        let mut work = self.work(image);
        work.push(MetadataRecord::UnfenceNode {
            node_id,
            node_epoch,
        })?;
        work.elect_offline_leaders(&self.config)?;
        Ok(work.records)
    }

    /// Fences every unfenced node whose session expired by `now` (a node with no session yet,
    /// as after a controller change, gets one that starts now, or when the predecessor was
    /// last heard) and elects new leaders.
    pub fn poll_fencing(
        &mut self,
        image: &MetadataImage,
        now: Instant,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let mut work = self.work(image);
        for (node_id, node) in &image.nodes {
            if node.fenced {
                continue;
            }
            let session_start = match self.predecessor {
                Some((predecessor, heard)) if predecessor == *node_id => heard.min(now),
                _ => now,
            };
            let fresh = (
                node.node_epoch,
                deadline_after(session_start, self.config.node_session_timeout),
            );
            let session = self.sessions.entry(*node_id).or_insert(fresh);
            if session.0 != node.node_epoch {
                *session = fresh;
            }
            if session.1 > now {
                continue;
            }
            work.push(MetadataRecord::FenceNode {
                node_id: *node_id,
                node_epoch: node.node_epoch,
            })?;
            work.remove_from_partitions(*node_id, &self.config)?;
        }
        Ok(work.records)
    }

    /// A node asks to stop after its leaderships moved (Kafka's controlled shutdown): it is
    /// marked in controlled shutdown, its session is extended (the request is also its
    /// heartbeat), and it leaves every partition as fencing makes it leave them (out of the
    /// ISR where others remain, into the ELR where the ISR drops below
    /// `min.insync.replicas`, a new leader from the rest; where it is the last ISR member the
    /// partition goes leaderless). Answers the records and how many partitions it still leads
    /// once they are applied. A fenced node is not unfenced by this. Repeating the request
    /// changes nothing more.
    pub fn handle_controlled_shutdown(
        &mut self,
        image: &MetadataImage,
        now: Instant,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<(Vec<MetadataRecord>, u32), ControllerError> {
        check_sender(image, node_id, node_epoch)?;
        self.sessions.insert(
            node_id,
            (
                node_epoch,
                deadline_after(now, self.config.node_session_timeout),
            ),
        );
        if self.controlled_shutdown.insert(node_id, node_epoch) != Some(node_epoch) {
            tracing::info!(node_id, node_epoch, "node in controlled shutdown");
        }
        let mut work = self.work(image);
        work.remove_from_partitions(node_id, &self.config)?;
        let leaderships_left = leaderships(&work.image, node_id);
        Ok((work.records, leaderships_left))
    }

    /// When [`Self::poll_fencing`] next has something to do.
    pub fn poll_timeout(&self, image: &MetadataImage) -> Option<Instant> {
        self.sessions
            .iter()
            .filter(|(node_id, (epoch, _))| {
                image
                    .nodes
                    .get(node_id)
                    .is_some_and(|node| !node.fenced && node.node_epoch == *epoch)
            })
            .map(|(_, (_, deadline))| *deadline)
            .min()
    }

    /// Places a new topic's replicas over the live, unfenced nodes: leaders and replicas
    /// spread round-robin from a start that moves with each topic.
    pub fn create_topic(
        &self,
        image: &MetadataImage,
        request: &CreateTopicRequest,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if image.topics.contains_key(&request.name) {
            return Err(ControllerError::TopicAlreadyExists(request.name.clone()));
        }
        if request.partitions == 0 {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {:?}: the partition count must be at least 1",
                request.name
            )));
        }
        let live = live_nodes(image);
        let live_count = u16::try_from(live.len()).unwrap_or(u16::MAX);
        // The default is not lowered to the live nodes: a topic created during an outage
        // would silently get fewer copies than the cluster promises (Kafka refuses too).
        let replication_factor = request
            .replication_factor
            .unwrap_or(self.config.default_replication_factor);
        if replication_factor == 0 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "topic {:?}: the replication factor must be at least 1",
                request.name
            )));
        }
        if replication_factor > live_count {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "topic {:?}: replication factor {replication_factor} is larger than the {live_count} live node(s)",
                request.name
            )));
        }
        let min_insync = match request.configs.get(MIN_INSYNC_REPLICAS_KEY) {
            Some(text) => text.parse::<u16>().map_err(|_| {
                ControllerError::InvalidConfig(format!(
                    "{MIN_INSYNC_REPLICAS_KEY}={text:?} is not a number from 1 to 65535"
                ))
            })?,
            None => self.config.min_insync_replicas.min(replication_factor),
        };
        if min_insync == 0 || min_insync > replication_factor {
            return Err(ControllerError::InvalidConfig(format!(
                "topic {:?}: {MIN_INSYNC_REPLICAS_KEY}={min_insync} must be between 1 and the replication factor {replication_factor}",
                request.name
            )));
        }
        if let Some(text) = request.configs.get(UNCLEAN_LEADER_ELECTION_KEY)
            && text != "true"
            && text != "false"
        {
            return Err(ControllerError::InvalidConfig(format!(
                "{UNCLEAN_LEADER_ELECTION_KEY}={text:?}: expected true or false"
            )));
        }
        let mut partitions = place(
            &live,
            image.topics.len(),
            0..request.partitions,
            replication_factor,
        );
        lead_elsewhere(&mut partitions, &self.nodes_in_controlled_shutdown(image));
        let mut work = Work::new(image);
        work.push(MetadataRecord::CreateTopic {
            name: request.name.clone(),
            topic_id: request.topic_id,
            configs: request.configs.clone(),
            partitions,
        })?;
        Ok(work.records)
    }

    /// Deletes a topic (by name; the record names its id, so a replay never deletes a
    /// newer topic of the same name).
    pub fn delete_topic(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{name:?}")))?;
        let mut work = Work::new(image);
        work.push(MetadataRecord::DeleteTopic {
            name: name.to_owned(),
            topic_id: topic.topic_id,
        })?;
        Ok(work.records)
    }

    /// Changes a topic's config overrides: `set` keys take new values, `delete` keys return
    /// to the default. The replication keys are checked against the topic's replication
    /// factor as at creation; the broker checked every other key before forwarding.
    pub fn alter_topic_config(
        &self,
        image: &MetadataImage,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let topic = image
            .topics
            .get(name)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{name:?}")))?;
        let replication_factor = topic.partitions.first().map_or(1, |state| {
            u16::try_from(state.replicas.len()).unwrap_or(u16::MAX)
        });
        if let Some(text) = set.get(MIN_INSYNC_REPLICAS_KEY) {
            let min_insync = text.parse::<u16>().map_err(|_| {
                ControllerError::InvalidConfig(format!(
                    "{MIN_INSYNC_REPLICAS_KEY}={text:?} is not a number from 1 to 65535"
                ))
            })?;
            if min_insync == 0 || min_insync > replication_factor {
                return Err(ControllerError::InvalidConfig(format!(
                    "topic {name:?}: {MIN_INSYNC_REPLICAS_KEY}={min_insync} must be between 1 and the replication factor {replication_factor}"
                )));
            }
        }
        if let Some(text) = set.get(UNCLEAN_LEADER_ELECTION_KEY)
            && text != "true"
            && text != "false"
        {
            return Err(ControllerError::InvalidConfig(format!(
                "{UNCLEAN_LEADER_ELECTION_KEY}={text:?}: expected true or false"
            )));
        }
        let unchanged = set
            .iter()
            .all(|(key, value)| topic.configs.get(key) == Some(value))
            && delete.iter().all(|key| !topic.configs.contains_key(key));
        if unchanged {
            return Ok(Vec::new());
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::AlterTopicConfig {
            topic_id: topic.topic_id,
            set: set.clone(),
            delete: delete.to_vec(),
        })?;
        Ok(work.records)
    }

    /// Grows a topic to `partitions` partitions (Kafka's CreatePartitions): the new ones get
    /// the topic's replication factor and are placed over the live nodes as a creation
    /// places them, or on the `assignments` given (see [`plan_new_partitions`]). Partitions
    /// are never removed.
    pub fn create_partitions(
        &self,
        image: &MetadataImage,
        name: &str,
        partitions: u32,
        assignments: &[Vec<NodeId>],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let (topic_id, placed) = plan_new_partitions(
            image,
            name,
            partitions,
            assignments,
            &self.nodes_in_controlled_shutdown(image),
        )?;
        let mut work = Work::new(image);
        work.push(MetadataRecord::CreatePartitions {
            topic_id,
            partitions: placed,
        })?;
        Ok(work.records)
    }

    /// Checks a leader's ISR change and returns the record that makes it.
    pub fn alter_partition(
        &self,
        image: &MetadataImage,
        request: &AlterPartitionRequest,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let name = format!("{}/{}", request.topic_id, request.partition);
        check_sender(image, request.node_id, request.node_epoch)?;
        let current = image
            .partition(request.topic_id, request.partition)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.clone()))?;
        if current.leader != Some(request.node_id) {
            return Err(ControllerError::NotLeaderOrFollower {
                node_id: request.node_id,
                partition: name,
                leader: current.leader,
            });
        }
        if request.leader_epoch < current.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                current: current.leader_epoch,
                given: request.leader_epoch,
            });
        }
        if request.leader_epoch > current.leader_epoch {
            return Err(ControllerError::UnknownLeaderEpoch {
                current: current.leader_epoch,
                given: request.leader_epoch,
            });
        }
        if request.partition_epoch != current.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                current: current.partition_epoch,
                given: request.partition_epoch,
            });
        }
        if !request
            .new_isr
            .iter()
            .any(|(member, _)| *member == request.node_id)
        {
            return Err(ControllerError::IneligibleReplica {
                node_id: request.node_id,
                reason: "the leader must stay in its ISR".to_owned(),
            });
        }
        for (member, epoch) in &request.new_isr {
            let ineligible = |reason: String| ControllerError::IneligibleReplica {
                node_id: *member,
                reason,
            };
            if !current.replicas.contains(member) {
                return Err(ineligible("not a replica of the partition".to_owned()));
            }
            let node = image
                .nodes
                .get(member)
                .ok_or_else(|| ineligible("not registered".to_owned()))?;
            // A member the ISR keeps may come with no claim (KIP-903's -1: the leader has
            // not seen it fetch in this epoch yet); a member joining must name the epoch it
            // fetched with. Refusing the first made every shrink of a new leader fail.
            let kept_without_claim = *epoch == NODE_EPOCH_NO_CLAIM && current.isr.contains(member);
            if *epoch == NODE_EPOCH_NO_CLAIM && !kept_without_claim {
                return Err(ineligible(
                    "a member joining the ISR needs the node epoch it fetched with".to_owned(),
                ));
            }
            if !kept_without_claim && node.node_epoch != *epoch {
                return Err(ineligible(format!(
                    "the leader saw epoch {epoch}, the node is now at {} (it restarted)",
                    node.node_epoch
                )));
            }
            if node.fenced {
                return Err(ineligible("fenced".to_owned()));
            }
            // KIP-841: a node in controlled shutdown is on its way out; adding it back as it
            // catches up would hand the leaderships it is shedding straight back.
            if self.controlled_shutdown.get(member) == Some(&node.node_epoch) {
                return Err(ineligible("in controlled shutdown".to_owned()));
            }
        }
        let isr: Vec<NodeId> = request.new_isr.iter().map(|(member, _)| *member).collect();
        if isr == current.isr {
            return Ok(Vec::new());
        }
        let min_insync = image.topic_by_id(request.topic_id).map_or(1, |(_, topic)| {
            min_insync_replicas(topic, current, &self.config)
        });
        // A member the leader shrinks out while the ISR drops below `min.insync.replicas`
        // joins the ELR, as a fenced one does (KIP-966; Kafka's `PartitionChangeBuilder`
        // puts every member leaving such an ISR there, whatever the reason). It holds every
        // committed record: the leader's high watermark counted it until the controller
        // took it out (the maximal ISR), and does not move while the ISR is that small.
        // Without it, a follower cut off from its leader and shrunk out left an ISR of the
        // leader alone with no ELR, and when that leader came back on a wiped disk the
        // partition had no replica to elect although the follower held every record (seeds
        // 1283 and 7707). A member whose disk is new leaves the ELR at its registration
        // (`forget_replica_data`), and a damaged one on its report.
        let mut elr = current.elr.clone();
        for member in &current.isr {
            if !isr.contains(member) && !elr.contains(member) {
                elr.push(*member);
            }
        }
        let mut next = PartitionState {
            isr,
            elr,
            partition_epoch: current.partition_epoch.saturating_add(1),
            ..current.clone()
        };
        normalize_elr(&mut next, min_insync);
        let mut work = Work::new(image);
        work.push(MetadataRecord::AlterPartition {
            topic_id: request.topic_id,
            partition: request.partition,
            state: next,
        })?;
        Ok(work.records)
    }

    /// A replica whose log is damaged leaves the partition's ISR and ELR, so no election picks
    /// it for records it is about to give up (Kafka's analogue: a broker reporting a log
    /// directory offline). Where it led, a leader is elected from the rest (ISR, ELR, then
    /// unclean where allowed). Unlike fencing, it does not join the ELR when the ISR drops
    /// below `min.insync.replicas`: it no longer holds the committed records. Refused for
    /// the last ISR member (the only copy the controller knows of: it stays in the ISR,
    /// offline, rather than leave the partition with none) and for a stale node epoch.
    pub fn replica_damaged(
        &self,
        image: &MetadataImage,
        request: &ReplicaDamagedRequest,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let name = format!("{}/{}", request.topic_id, request.partition);
        check_sender(image, request.node_id, request.node_epoch)?;
        let (_, topic) = image
            .topic_by_id(request.topic_id)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.clone()))?;
        let current = image
            .partition(request.topic_id, request.partition)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(name.clone()))?;
        if !current.replicas.contains(&request.node_id) {
            return Err(ControllerError::IneligibleReplica {
                node_id: request.node_id,
                reason: format!("not a replica of {name}"),
            });
        }
        if current.isr == [request.node_id] {
            return Err(ControllerError::IneligibleReplica {
                node_id: request.node_id,
                reason: format!(
                    "the only in-sync replica of {name}: no other holds its records, so it stays in the ISR"
                ),
            });
        }
        let min_insync = min_insync_replicas(topic, current, &self.config);
        let mut next = current.clone();
        next.isr.retain(|member| *member != request.node_id);
        next.elr.retain(|member| *member != request.node_id);
        if next.leader == Some(request.node_id) {
            let shutting_down = self.nodes_in_controlled_shutdown(image);
            let election = elect(
                image,
                &next,
                topic,
                &self.config,
                Some(request.node_id),
                &shutting_down,
            );
            install_leader(&mut next, election, min_insync);
        }
        if next == *current {
            return Ok(Vec::new());
        }
        next.partition_epoch = next.partition_epoch.saturating_add(1);
        let mut work = Work::new(image);
        work.push(MetadataRecord::AlterPartition {
            topic_id: request.topic_id,
            partition: request.partition,
            state: next,
        })?;
        Ok(work.records)
    }

    /// Hands `count` producer ids to a node (KRaft's AllocateProducerIds): the block starts
    /// where the last one ended, so no id is ever given twice.
    pub fn allocate_producer_ids(
        &self,
        image: &MetadataImage,
        node_id: NodeId,
        node_epoch: NodeEpoch,
        count: u32,
    ) -> Result<(Vec<MetadataRecord>, i64), ControllerError> {
        check_sender(image, node_id, node_epoch)?;
        let first_producer_id = image.producer_id_next;
        let mut work = Work::new(image);
        work.push(MetadataRecord::AllocateProducerIds {
            node_id,
            node_epoch,
            first_producer_id,
            count,
        })?;
        Ok((work.records, first_producer_id))
    }

    /// Moves leadership back to each partition's preferred replica (the first) where it is in
    /// the ISR, unfenced, and not the leader.
    pub fn elect_preferred_leaders(
        &self,
        image: &MetadataImage,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        self.elect_preferred_leaders_of(image, None)
    }

    /// [`Self::elect_preferred_leaders`] for one topic (`Some`) or all of them.
    pub fn elect_preferred_leaders_of(
        &self,
        image: &MetadataImage,
        only: Option<&str>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if let Some(name) = only
            && !image.topics.contains_key(name)
        {
            return Err(ControllerError::UnknownTopicOrPartition(format!(
                "{name:?}"
            )));
        }
        let mut work = self.work(image);
        let topics = image
            .topics
            .iter()
            .filter(|(name, _)| only.is_none_or(|only| only == name.as_str()));
        for (_, topic) in topics {
            for (index, state) in topic.partitions.iter().enumerate() {
                let Some(&preferred) = state.replicas.first() else {
                    continue;
                };
                if state.leader == Some(preferred)
                    || !state.isr.contains(&preferred)
                    || !is_unfenced(image, preferred)
                    || work.ineligible.contains(&preferred)
                {
                    continue;
                }
                work.push(MetadataRecord::AlterPartition {
                    topic_id: topic.topic_id,
                    partition: u32::try_from(index).unwrap_or(u32::MAX),
                    state: PartitionState {
                        leader: Some(preferred),
                        leader_epoch: state.leader_epoch.saturating_add(1),
                        partition_epoch: state.partition_epoch.saturating_add(1),
                        ..state.clone()
                    },
                })?;
            }
        }
        Ok(work.records)
    }
}

/// The registered, unfenced nodes, in id order.
/// The initial states of the partitions that grow topic `name` to `partitions` (Kafka's
/// CreatePartitions rules), and the topic's id; pure, so a node answering a
/// `validate_only` request runs the controller's own checks on its image.
///
/// Refused: an unknown topic; a count not above the current one (`InvalidPartitions`:
/// partitions are only ever added); a replication factor the live nodes cannot hold; and
/// `assignments` (when not empty) that are not one list per new partition, each of the
/// topic's replication factor, of distinct registered live nodes
/// (`InvalidReplicaAssignment`). Each assigned partition is led by its first replica, or
/// the next one not in `ineligible` (controlled shutdown).
pub fn plan_new_partitions(
    image: &MetadataImage,
    name: &str,
    partitions: u32,
    assignments: &[Vec<NodeId>],
    ineligible: &BTreeSet<NodeId>,
) -> Result<(TopicId, Vec<PartitionState>), ControllerError> {
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{name:?}")))?;
    let current = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
    if partitions < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "cannot shrink {name} from {current} to {partitions} partitions: Kafka and Ledge only add partitions"
        )));
    }
    if partitions == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic {name} already has {current} partitions; ask for more to add some"
        )));
    }
    let replication_factor = topic.partitions.first().map_or(1, |state| {
        u16::try_from(state.replicas.len()).unwrap_or(u16::MAX)
    });
    let adding = partitions - current;
    let mut placed = if assignments.is_empty() {
        let live = live_nodes(image);
        if usize::from(replication_factor) > live.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "topic {name:?}: replication factor {replication_factor} is larger than the {} live node(s)",
                live.len()
            )));
        }
        // The start continues from the topic's own partitions, so new partitions keep
        // spreading leaders where the existing ones left off.
        let start = image
            .topics
            .keys()
            .position(|other| other == name)
            .unwrap_or(0);
        place(&live, start, current..partitions, replication_factor)
    } else {
        if u32::try_from(assignments.len()).ok() != Some(adding) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "topic {name}: {} assignment(s) given for {adding} new partition(s) ({current} to {partitions}); give one per new partition, or none",
                assignments.len()
            )));
        }
        let mut placed = Vec::with_capacity(assignments.len());
        for (offset, replicas) in assignments.iter().enumerate() {
            let partition = u64::from(current) + offset as u64;
            if replicas.len() != usize::from(replication_factor) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{name}/{partition}: {} replica(s) {replicas:?}, but the topic's replication factor is {replication_factor}",
                    replicas.len()
                )));
            }
            for (position, node) in replicas.iter().enumerate() {
                if replicas[..position].contains(node) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "{name}/{partition}: node {node} is listed twice in {replicas:?}"
                    )));
                }
                if !image.nodes.contains_key(node) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "{name}/{partition}: node {node} is not registered in the cluster"
                    )));
                }
                if !is_unfenced(image, *node) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "{name}/{partition}: node {node} is not alive, so it could not create its copy"
                    )));
                }
            }
            placed.push(PartitionState {
                isr: replicas.clone(),
                elr: Vec::new(),
                leader: replicas.first().copied(),
                replicas: replicas.clone(),
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        placed
    };
    lead_elsewhere(&mut placed, ineligible);
    Ok((topic.topic_id, placed))
}

pub(super) fn live_nodes(image: &MetadataImage) -> Vec<NodeId> {
    image
        .nodes
        .iter()
        .filter(|(_, node)| !node.fenced)
        .map(|(id, _)| *id)
        .collect()
}

/// Initial states of the partitions numbered `range`: partition `p`'s replicas are
/// `replication_factor` consecutive live nodes from `start + p` (round-robin), the first
/// leading. `live` must hold at least `replication_factor` nodes (checked by the callers).
fn place(
    live: &[NodeId],
    start: usize,
    range: std::ops::Range<u32>,
    replication_factor: u16,
) -> Vec<PartitionState> {
    range
        .map(|partition| {
            let first = start.wrapping_add(usize::try_from(partition).unwrap_or(0));
            let replicas: Vec<NodeId> = (0..usize::from(replication_factor))
                .filter_map(|offset| {
                    live.get(first.wrapping_add(offset).checked_rem(live.len())?)
                        .copied()
                })
                .collect();
            PartitionState {
                isr: replicas.clone(),
                elr: Vec::new(),
                leader: replicas.first().copied(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            }
        })
        .collect()
}

/// How many partitions `node_id` leads in `image`.
pub fn leaderships(image: &MetadataImage, node_id: NodeId) -> u32 {
    let led = image
        .topics
        .values()
        .flat_map(|topic| &topic.partitions)
        .filter(|state| state.leader == Some(node_id))
        .count();
    u32::try_from(led).unwrap_or(u32::MAX)
}

/// New partitions whose first replica is in controlled shutdown are led by their next
/// replica instead (it would have to give the leadership up at once); the replicas, and so
/// the preferred leader, stay as placed.
fn lead_elsewhere(partitions: &mut [PartitionState], ineligible: &BTreeSet<NodeId>) {
    for state in partitions {
        if state
            .leader
            .is_some_and(|leader| ineligible.contains(&leader))
            && let Some(other) = state
                .replicas
                .iter()
                .find(|node| !ineligible.contains(node))
        {
            state.leader = Some(*other);
        }
    }
}

pub(super) fn is_unfenced(image: &MetadataImage, node_id: NodeId) -> bool {
    image.nodes.get(&node_id).is_some_and(|node| !node.fenced)
}

fn unclean_allowed(image_configs: &BTreeMap<String, String>, config: &DecisionConfig) -> bool {
    match image_configs.get(UNCLEAN_LEADER_ELECTION_KEY) {
        Some(text) => text == "true",
        None => config.unclean_leader_election_enable,
    }
}

/// Records being decided, checked against a working copy of the image as they are added.
pub(super) struct Work {
    pub(super) image: MetadataImage,
    pub(super) records: Vec<MetadataRecord>,
    /// Nodes no election may pick (in controlled shutdown; see [`ControllerLogic::work`]).
    pub(super) ineligible: BTreeSet<NodeId>,
}

impl Work {
    pub(super) fn new(image: &MetadataImage) -> Self {
        Self {
            image: image.clone(),
            records: Vec::new(),
            ineligible: BTreeSet::new(),
        }
    }

    /// Records each changed partition state (topic id, partition index, new state) as an
    /// `AlterPartition`, in order.
    fn push_partition_changes(
        &mut self,
        changes: Vec<(TopicId, usize, PartitionState)>,
    ) -> Result<(), ControllerError> {
        for (topic_id, index, state) in changes {
            self.push(MetadataRecord::AlterPartition {
                topic_id,
                partition: u32::try_from(index).unwrap_or(u32::MAX),
                state,
            })?;
        }
        Ok(())
    }

    pub(super) fn push(&mut self, record: MetadataRecord) -> Result<(), ControllerError> {
        let index = self.image.last_applied_index.saturating_add(1);
        self.image.apply(index, &record)?;
        self.records.push(record);
        Ok(())
    }

    /// Takes `node_id` out of every ISR where others remain and out of leadership, electing
    /// from the rest of the ISR, then the ELR (Kafka's fencing; the last ISR member stays in
    /// the ISR). A member leaving an ISR that is then below `min.insync.replicas` joins the
    /// ELR: it holds every committed record.
    fn remove_from_partitions(
        &mut self,
        node_id: NodeId,
        config: &DecisionConfig,
    ) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in self.image.topics.values() {
            for (index, state) in topic.partitions.iter().enumerate() {
                if !state.isr.contains(&node_id) && state.leader != Some(node_id) {
                    continue;
                }
                let mut next = state.clone();
                let min_insync = min_insync_replicas(topic, state, config);
                if next.isr.len() > 1 {
                    next.isr.retain(|member| *member != node_id);
                    if next.isr.len() < min_insync && !next.elr.contains(&node_id) {
                        next.elr.push(node_id);
                    }
                }
                if next.leader == Some(node_id) {
                    let election = elect(
                        &self.image,
                        &next,
                        topic,
                        config,
                        Some(node_id),
                        &self.ineligible,
                    );
                    install_leader(&mut next, election, min_insync);
                }
                if next == *state {
                    continue;
                }
                next.partition_epoch = next.partition_epoch.saturating_add(1);
                changes.push((topic.topic_id, index, next));
            }
        }
        self.push_partition_changes(changes)
    }

    /// Takes `node_id`, whose data directory is new (another storage id), out of every ISR
    /// and ELR, the last ISR member included: it holds none of the committed records. Where
    /// it led, or where nobody leads, a leader is elected from the rest (ISR, ELR, then
    /// unclean where allowed); else the partition stays offline with an empty ISR.
    fn forget_replica_data(
        &mut self,
        node_id: NodeId,
        config: &DecisionConfig,
    ) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in self.image.topics.values() {
            for (index, state) in topic.partitions.iter().enumerate() {
                if !state.isr.contains(&node_id)
                    && !state.elr.contains(&node_id)
                    && state.leader != Some(node_id)
                {
                    continue;
                }
                let min_insync = min_insync_replicas(topic, state, config);
                let mut next = state.clone();
                next.isr.retain(|member| *member != node_id);
                next.elr.retain(|member| *member != node_id);
                if next.leader == Some(node_id) || next.leader.is_none() {
                    let election = elect(
                        &self.image,
                        &next,
                        topic,
                        config,
                        Some(node_id),
                        &self.ineligible,
                    );
                    install_leader(&mut next, election, min_insync);
                }
                if next == *state {
                    continue;
                }
                next.partition_epoch = next.partition_epoch.saturating_add(1);
                changes.push((topic.topic_id, index, next));
            }
        }
        self.push_partition_changes(changes)
    }

    /// Elects a leader for every leaderless partition that now has an eligible replica.
    fn elect_offline_leaders(&mut self, config: &DecisionConfig) -> Result<(), ControllerError> {
        let mut changes = Vec::new();
        for topic in self.image.topics.values() {
            for (index, state) in topic.partitions.iter().enumerate() {
                if state.leader.is_some() {
                    continue;
                }
                let Some(election) =
                    elect(&self.image, state, topic, config, None, &self.ineligible)
                else {
                    continue;
                };
                let mut next = state.clone();
                install_leader(
                    &mut next,
                    Some(election),
                    min_insync_replicas(topic, state, config),
                );
                next.partition_epoch = next.partition_epoch.saturating_add(1);
                changes.push((topic.topic_id, index, next));
            }
        }
        self.push_partition_changes(changes)
    }
}

/// Refuses a request from a node the image does not hold at `node_epoch` (unknown, or a
/// stale incarnation): only the sender's current incarnation may change its partitions.
fn check_sender(
    image: &MetadataImage,
    node_id: NodeId,
    node_epoch: NodeEpoch,
) -> Result<&super::image::NodeRegistration, ControllerError> {
    let sender = image
        .nodes
        .get(&node_id)
        .ok_or(ControllerError::UnknownNode { node_id })?;
    if sender.node_epoch != node_epoch {
        return Err(ControllerError::StaleNodeEpoch {
            node_id,
            current: sender.node_epoch,
            given: node_epoch,
        });
    }
    Ok(sender)
}

/// A partition's `min.insync.replicas`: the topic's override, else the cluster default
/// (capped at the replication factor, as [`ControllerLogic::create_topic`] caps it).
pub(super) fn min_insync_replicas(
    topic: &super::image::TopicImage,
    state: &PartitionState,
    config: &DecisionConfig,
) -> usize {
    match topic
        .configs
        .get(MIN_INSYNC_REPLICAS_KEY)
        .and_then(|text| text.parse::<usize>().ok())
    {
        Some(min_insync) => min_insync,
        None => usize::from(config.min_insync_replicas).min(state.replicas.len()),
    }
}

/// An ELR is only worth keeping while the ISR is below `min.insync.replicas`: once it is not,
/// the high watermark moves on without the ELR members (KIP-966).
pub(super) fn normalize_elr(state: &mut PartitionState, min_insync: usize) {
    if state.isr.len() >= min_insync {
        state.elr.clear();
    }
    let isr = state.isr.clone();
    state.elr.retain(|member| !isr.contains(member));
}

/// Where a new leader comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Election {
    /// An ISR member: nothing else changes.
    Isr(NodeId),
    /// An ELR member (no ISR member could lead): it holds every committed record, and
    /// becomes the ISR alone; the ISR members it replaces keep an ELR place.
    Elr(NodeId),
    /// Unclean: a replica outside both; its log is the truth from now on.
    Unclean(NodeId),
}

/// Makes `election`'s leader the partition's (with a new leader epoch where it changes), or
/// leaves it leaderless.
pub(super) fn install_leader(
    state: &mut PartitionState,
    election: Option<Election>,
    min_insync: usize,
) {
    let leader = match election {
        None => None,
        Some(Election::Isr(leader)) => Some(leader),
        Some(Election::Elr(leader)) => {
            let mut elr = state.elr.clone();
            elr.extend(
                state
                    .isr
                    .iter()
                    .filter(|m| !elr.contains(m))
                    .copied()
                    .collect::<Vec<_>>(),
            );
            state.isr = vec![leader];
            state.elr = elr;
            Some(leader)
        }
        Some(Election::Unclean(leader)) => {
            state.isr = vec![leader];
            state.elr.clear();
            Some(leader)
        }
    };
    if leader != state.leader {
        state.leader = leader;
        state.leader_epoch = state.leader_epoch.saturating_add(1);
    }
    normalize_elr(state, min_insync);
}

/// The new leader: the first unfenced ISR member in replica order (not `excluded`, not in
/// `ineligible`), else the first such ELR member, or, only where unclean election is on, the
/// first such replica outside both.
pub(super) fn elect(
    image: &MetadataImage,
    state: &PartitionState,
    topic: &super::image::TopicImage,
    config: &DecisionConfig,
    excluded: Option<NodeId>,
    ineligible: &BTreeSet<NodeId>,
) -> Option<Election> {
    let eligible = |node: &&NodeId| {
        Some(**node) != excluded && !ineligible.contains(*node) && is_unfenced(image, **node)
    };
    let from = |members: &[NodeId]| {
        state
            .replicas
            .iter()
            .filter(|node| members.contains(node))
            .find(eligible)
            .copied()
    };
    if let Some(leader) = from(&state.isr) {
        return Some(Election::Isr(leader));
    }
    if let Some(leader) = from(&state.elr) {
        return Some(Election::Elr(leader));
    }
    if !unclean_allowed(&topic.configs, config) {
        return None;
    }
    state
        .replicas
        .iter()
        .find(eligible)
        .map(|leader| Election::Unclean(*leader))
}

mod plugins;
mod security;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod topic_tests;
