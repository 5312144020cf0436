//! The broker's side of the consumer groups: the narrow [`GroupHost`] handle the
//! [`GroupService`](crate::groups::service::GroupService) reaches the node through (the
//! topic registry: topic list, `__consumer_offsets`, transform definitions), and its timer
//! driver, which `main.rs` spawns.
//!
//! In a `[cluster]` (issue 13) a group is coordinated by the leader of its
//! `__consumer_offsets` partition (`groups::placement`): the controller creates that topic
//! at first need ([`Broker::find_coordinator`]), group requests on any other node answer
//! `NotCoordinator` ([`Broker::check_coordinator`]), and [`Broker::run_offsets_loader`]
//! loads a partition's groups when this node becomes its leader and forgets them when it
//! stops being it. A node without `[cluster]` coordinates every group from its one local
//! partition, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, ErrorCode,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupResult, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};

use super::Broker;
use super::cluster_view::ClusterSource;
use crate::cluster::NodeId;
use crate::controller::MetadataImage;
use crate::controller::admin::{AdminError, AdminRefusal, AdminRequest};
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::groups::placement::{
    CoordinatorLookupError, OFFSETS_TOPIC_PARTITIONS_DEFAULT,
    OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT, coordinator_of, leadership_changes,
    led_offsets_partitions, offsets_partition_of,
};
use crate::groups::service::{GroupHost, OffsetsLogError};
use crate::replication::leader::AcksAllError;
use crate::replication::manager::{PartitionRole, ReplicaRoleError};
use crate::storage::{AppendDurability, AppendError, AppendOutcome, Disk};

/// Pause before the offsets loader retries a partition it leads but cannot load yet (the
/// materializer has not created its log here, or it is offline).
pub(super) const OFFSETS_LOAD_RETRY_MS: u64 = 1_000;

/// Why this node does not serve a group's requests.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Another node leads the group's offsets partition.
    #[error(
        "node {this} is not the coordinator of group {group_id:?}: node {coordinator} leads its {OFFSETS_TOPIC} partition {partition}; ask FindCoordinator"
    )]
    NotCoordinator {
        /// The group.
        group_id: String,
        /// This node.
        this: NodeId,
        /// The coordinator.
        coordinator: NodeId,
        /// The group's offsets partition.
        partition: u32,
    },
    /// No node coordinates the group right now (see `reason`); retry after a back-off.
    #[error("the coordinator of group {group_id:?} is not available: {reason}")]
    NotAvailable {
        /// The group.
        group_id: String,
        /// Why.
        reason: String,
    },
}

// The registry is the group service's window on the node: topics, `__consumer_offsets`
// and the transform definitions all live there.
impl<D: Disk> GroupHost for super::registry::TopicRegistry<D> {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.user_topic_partition_counts()
    }

    fn has_partition(&self, topic: &str, partition: u32) -> bool {
        // By number, not by log: in a cluster the coordinator need not host the partitions
        // its groups commit (a node hosts only the partitions it is a replica of).
        partition < self.partition_count(topic)
    }

    fn offsets_partition(&self, group_id: &str) -> u32 {
        offsets_partition_of(group_id, self.partition_count(OFFSETS_TOPIC).max(1))
    }

    async fn transform_exists(&self, name: &str) -> bool {
        self.transform(name).await.is_some()
    }

    async fn append_offsets_batch(
        &self,
        partition: u32,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<i64, OffsetsLogError> {
        self.append_to_offsets_partition(partition, batch, durability)
            .await
            .map(|outcome| outcome.base_offset)
    }
}

impl<D: Disk> super::registry::TopicRegistry<D> {
    /// Appends one batch to partition `partition` of `__consumer_offsets` on this node.
    async fn append_to_offsets_partition(
        &self,
        partition: u32,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<AppendOutcome, OffsetsLogError> {
        let partition = self
            .partition(OFFSETS_TOPIC, partition)
            .map_err(|_| OffsetsLogError::Missing)?;
        let log = partition
            .online_log()
            .map_err(|error| OffsetsLogError::Offline {
                reason: error.to_string(),
            })?;
        match log.append(batch, durability).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                // As for any append: a fenced log is reopened.
                if matches!(error, AppendError::Fenced { .. }) {
                    self.reopen_fenced(&partition);
                }
                Err(error.into())
            }
        }
    }
}

/// The group service's window on a broker: the registry's, plus, in a cluster, Kafka's
/// acks=all for commits (a synced commit is answered once the in-sync replicas of its
/// offsets partition hold it, so it survives the coordinator's death).
pub(crate) struct BrokerGroupHost<'a, D: Disk> {
    broker: &'a Broker<D>,
}

impl<D: Disk> GroupHost for BrokerGroupHost<'_, D> {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.broker.registry.partition_counts()
    }

    fn has_partition(&self, topic: &str, partition: u32) -> bool {
        self.broker.registry.has_partition(topic, partition)
    }

    fn offsets_partition(&self, group_id: &str) -> u32 {
        self.broker.registry.offsets_partition(group_id)
    }

    async fn transform_exists(&self, name: &str) -> bool {
        self.broker.registry.transform_exists(name).await
    }

    async fn append_offsets_batch(
        &self,
        partition: u32,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<i64, OffsetsLogError> {
        let registry = &self.broker.registry;
        let Some(manager) = self.broker.data.replication.get() else {
            return registry
                .append_offsets_batch(partition, batch, durability)
                .await;
        };
        let synced = matches!(durability, AppendDurability::Synced);
        // As a produce: refused before the append when this node does not lead the
        // partition, or (synced) while too few replicas are in sync.
        let leadership = match manager.role(OFFSETS_TOPIC, partition, synced) {
            Ok(PartitionRole::Leader { leadership, .. }) => Some(leadership),
            Ok(PartitionRole::Unreplicated) => None,
            Err(ReplicaRoleError::NotLeaderOrFollower) => return Err(OffsetsLogError::NotLeader),
            Err(ReplicaRoleError::NotEnoughReplicas { isr, min }) => {
                return Err(AcksAllError::NotEnoughReplicas { isr, min }.into());
            }
        };
        // A synced commit waits for the high watermark of the leadership that accepted it.
        if synced && leadership.is_none() {
            return Err(OffsetsLogError::NotLeader);
        }
        let timeout = self.broker.groups.limits().offsets_commit_timeout;
        let deadline = crate::clock::deadline_after(self.broker.clock.now(), timeout);
        // As a produce: the append holds the partition's append gate (a follower's write
        // never lands before it).
        let gate = match leadership {
            Some(leadership) => Some(
                manager
                    .leader_append(OFFSETS_TOPIC, partition, leadership)
                    .await
                    .map_err(|_| OffsetsLogError::NotLeader)?,
            ),
            None => None,
        };
        let outcome = registry
            .append_to_offsets_partition(partition, batch, durability)
            .await?;
        drop(gate);
        if let (true, Some(leadership)) = (synced, leadership) {
            manager
                .wait_acks_all(
                    OFFSETS_TOPIC,
                    partition,
                    leadership,
                    outcome.last_offset + 1,
                    deadline,
                )
                .await?;
        }
        Ok(outcome.base_offset)
    }
}

impl<D: Disk> Broker<D> {
    pub(crate) fn group_host(&self) -> BrokerGroupHost<'_, D> {
        BrokerGroupHost { broker: self }
    }

    /// Replays `__consumer_offsets` into the group service (at start).
    pub(super) async fn load_offsets(&self) {
        match self.registry.partition_log(OFFSETS_TOPIC, 0) {
            Ok(log) => self.groups.load_offsets(&log).await,
            Err(_) => {
                tracing::error!("{OFFSETS_TOPIC} is offline: committed offsets are unavailable");
            }
        }
    }

    /// Expires silent group members (also run on every heartbeat, and by
    /// [`Broker::run_group_timer`]).
    pub fn expire_group_members(&self) {
        self.groups.expire_members(&self.group_host());
    }

    /// Expires group members on time (on the node's clock), for as long as the broker lives.
    pub async fn run_group_timer(self: Arc<Self>) {
        self.groups.run_timer(&self.group_host()).await;
    }

    /// FindCoordinator: the node that coordinates `group_id`. On a node without `[cluster]`
    /// that is the node itself. In a cluster it is the leader of the group's
    /// `__consumer_offsets` partition, and the topic is created through the controller if
    /// the image has none yet.
    pub(super) async fn find_coordinator(
        &self,
        request: FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        let Some(source) = self.cluster_source.get() else {
            return FindCoordinatorResponse {
                error: ErrorCode::None,
                message: String::new(),
                node_id: self.config.node_id,
                address: self.config.advertised_address.clone(),
            };
        };
        let found = match self.lookup_coordinator(source, &request.group_id).await {
            Ok((node, _)) => {
                let image = source.image.borrow().clone();
                match image.nodes.get(&node) {
                    Some(registration) => Ok((node, registration.address.clone())),
                    None => Err(CoordinatorError::NotAvailable {
                        group_id: request.group_id.clone(),
                        reason: format!("its node {node} is not registered"),
                    }),
                }
            }
            Err(error) => Err(error),
        };
        match found {
            Ok((node_id, address)) => FindCoordinatorResponse {
                error: ErrorCode::None,
                message: String::new(),
                node_id,
                address,
            },
            Err(error) => FindCoordinatorResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                node_id: 0,
                address: String::new(),
            },
        }
    }

    /// The coordinator of `group_id` (node, offsets partition) in the current image; creates
    /// `__consumer_offsets` through the controller first if the image has none.
    pub(super) async fn lookup_coordinator(
        &self,
        source: &ClusterSource,
        group_id: &str,
    ) -> Result<(NodeId, u32), CoordinatorError> {
        let not_available = |reason: String| CoordinatorError::NotAvailable {
            group_id: group_id.to_string(),
            reason,
        };
        let mut image = source.image.borrow().clone();
        if !image.topics.contains_key(OFFSETS_TOPIC) {
            self.create_offsets_topic(source, &image)
                .await
                .map_err(|error| not_available(error.to_string()))?;
            image = source.image.borrow().clone();
        }
        match coordinator_of(&image, group_id) {
            Ok(coordinator) => Ok((coordinator.node, coordinator.partition)),
            Err(error @ CoordinatorLookupError::OffsetsTopicMissing)
            | Err(error @ CoordinatorLookupError::NoLeader { .. }) => {
                Err(not_available(error.to_string()))
            }
        }
    }

    /// Asks the controller to create `__consumer_offsets`: `OFFSETS_TOPIC_PARTITIONS_DEFAULT`
    /// partitions, replication factor min(3, live nodes) (Kafka's
    /// `offsets.topic.replication.factor`), `min.insync.replicas` 2 at factor 3, compacted.
    /// Another node creating it at the same moment is not an error.
    async fn create_offsets_topic(
        &self,
        source: &ClusterSource,
        image: &MetadataImage,
    ) -> Result<(), AdminError> {
        let Some(admin) = &source.admin else {
            return Err(AdminError::Failed(
                "this node has no controller client".to_string(),
            ));
        };
        let live_nodes = image.nodes.values().filter(|node| !node.fenced).count();
        let replication_factor = u16::try_from(live_nodes)
            .unwrap_or(u16::MAX)
            .clamp(1, OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT);
        let mut configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        if replication_factor >= 3 {
            configs.insert("min.insync.replicas".to_string(), "2".to_string());
        }
        let request = AdminRequest::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            replication_factor: Some(replication_factor),
            configs,
        };
        match admin.submit(request).await {
            Ok(())
            | Err(AdminError::Refused {
                refusal: AdminRefusal::TopicAlreadyExists,
                ..
            }) => {
                tracing::info!(
                    partitions = OFFSETS_TOPIC_PARTITIONS_DEFAULT,
                    replication_factor,
                    "{OFFSETS_TOPIC} is in the metadata image"
                );
                let image = source.image.borrow().clone();
                self.materialize(&image).await;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Whether this node serves `group_id`'s requests now: always without `[cluster]`; in a
    /// cluster only while it leads the group's offsets partition and has loaded it.
    pub(super) async fn check_coordinator(&self, group_id: &str) -> Result<(), CoordinatorError> {
        let Some(source) = self.cluster_source.get() else {
            return Ok(());
        };
        let (coordinator, partition) = self.lookup_coordinator(source, group_id).await?;
        if coordinator != self.config.node_id {
            return Err(CoordinatorError::NotCoordinator {
                group_id: group_id.to_string(),
                this: self.config.node_id,
                coordinator,
                partition,
            });
        }
        if !self.groups.coordinates(partition) {
            return Err(CoordinatorError::NotAvailable {
                group_id: group_id.to_string(),
                reason: format!(
                    "this node leads {OFFSETS_TOPIC} partition {partition} but is still loading it"
                ),
            });
        }
        Ok(())
    }

    /// The group service, once this node is known to coordinate `group_id` (the Kafka
    /// listener's group handlers, `kafka/groups.rs`).
    pub(crate) async fn coordinated_group_service(
        &self,
        group_id: &str,
    ) -> Result<&crate::groups::service::GroupService, CoordinatorError> {
        self.check_coordinator(group_id).await?;
        Ok(&self.groups)
    }

    /// Every group this node coordinates, classic and KIP-848 (Kafka's ListGroups is asked
    /// of every node and merged by the client).
    pub(crate) async fn coordinated_groups_listing(
        &self,
    ) -> Vec<crate::groups::service::ListedAnyGroup> {
        self.groups.list_any_groups()
    }

    /// The coordinator of `group_id` for Kafka's FindCoordinator: (node id, host, port).
    /// This node is reached at `own_address` (its advertised Kafka `host:port`); another node
    /// at its registered address, where its Kafka listener defaults to (TCP and UDP port
    /// spaces are separate).
    pub(crate) async fn group_coordinator_address(
        &self,
        group_id: &str,
        own_address: &str,
    ) -> Result<(u32, String, i32), CoordinatorError> {
        let own = self.config.node_id;
        let (node_id, address) = match self.cluster_source.get() {
            None => (own, own_address.to_string()),
            Some(source) => {
                let (node, _) = self.lookup_coordinator(source, group_id).await?;
                if node == own {
                    (own, own_address.to_string())
                } else {
                    let image = source.image.borrow().clone();
                    let address = image
                        .nodes
                        .get(&node)
                        .map(|registration| registration.address.clone())
                        .ok_or_else(|| CoordinatorError::NotAvailable {
                            group_id: group_id.to_string(),
                            reason: format!("its node {node} is not registered"),
                        })?;
                    (node, address)
                }
            }
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(-1)),
            None => (address.as_str(), -1),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok((node_id, host, port))
    }

    /// ConsumerGroupHeartbeat, on the group's coordinator only.
    pub(super) async fn group_heartbeat(
        &self,
        request: ConsumerGroupHeartbeatRequest,
        client_id: &str,
        pattern_filter: crate::groups::coordinator::TopicFilter,
    ) -> ConsumerGroupHeartbeatResponse {
        if let Err(error) = self.check_coordinator(&request.group_id).await {
            return ConsumerGroupHeartbeatResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                ..ConsumerGroupHeartbeatResponse::default()
            };
        }
        self.groups
            .heartbeat(&self.group_host(), request, client_id, pattern_filter)
    }

    /// OffsetCommit, on the group's coordinator only.
    pub(super) async fn group_offset_commit(
        &self,
        request: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        if let Err(error) = self.check_coordinator(&request.group_id).await {
            return OffsetCommitResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                topics: Vec::new(),
            };
        }
        self.groups.offset_commit(&self.group_host(), request).await
    }

    /// OffsetFetch, on the group's coordinator only.
    pub(super) async fn group_offset_fetch(
        &self,
        request: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        if let Err(error) = self.check_coordinator(&request.group_id).await {
            return OffsetFetchResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                topics: Vec::new(),
            };
        }
        self.groups.offset_fetch(request)
    }

    /// DescribeGroups: the groups coordinated here, `NotCoordinator` (per group) for the
    /// others.
    pub(super) async fn group_describe(
        &self,
        request: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let mut refused = BTreeMap::new();
        let mut here = Vec::new();
        for group_id in &request.group_ids {
            match self.check_coordinator(group_id).await {
                Ok(()) => here.push(group_id.clone()),
                Err(error) => {
                    refused.insert(group_id.clone(), error);
                }
            }
        }
        let mut described = self
            .groups
            .describe_groups(DescribeGroupsRequest { group_ids: here })
            .groups
            .into_iter();
        let groups = request
            .group_ids
            .into_iter()
            .filter_map(|group_id| match refused.remove(&group_id) {
                Some(error) => Some(DescribedGroup {
                    error: ErrorCode::from(&error),
                    message: crate::broker::client_text::client_text(&error),
                    group_id,
                    ..DescribedGroup::default()
                }),
                None => described.next(),
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// DeleteGroups: the groups coordinated here, `NotCoordinator` (per group) for the
    /// others.
    pub(super) async fn group_delete(&self, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        for group_id in request.group_ids {
            let result = match self.check_coordinator(&group_id).await {
                Ok(()) => self
                    .groups
                    .delete_groups(
                        &self.group_host(),
                        DeleteGroupsRequest {
                            group_ids: vec![group_id.clone()],
                        },
                    )
                    .await
                    .groups
                    .pop(),
                Err(error) => Some(GroupResult {
                    error: ErrorCode::from(&error),
                    message: crate::broker::client_text::client_text(&error),
                    group_id: group_id.clone(),
                }),
            };
            results.extend(result);
        }
        DeleteGroupsResponse { groups: results }
    }

    /// The offsets loader of a `[cluster]` node: coordinates the groups of exactly the
    /// `__consumer_offsets` partitions this node leads, following every image change (and
    /// retrying every `OFFSETS_LOAD_RETRY_MS` while a led partition cannot be loaded yet).
    /// Runs until the image's sender is gone; a node without a cluster source returns at once.
    pub async fn run_offsets_loader(self: Arc<Self>) {
        let Some(source) = self.cluster_source.get() else {
            return;
        };
        // What the node's local `__consumer_offsets` held before it joined is not the
        // cluster's: coordination starts from the image.
        self.groups.unload_all();
        let mut image = source.image.clone();
        loop {
            let current = image.borrow_and_update().clone();
            let pending = self.follow_offsets_leadership(&current).await;
            if pending == 0 {
                if image.changed().await.is_err() {
                    return;
                }
            } else {
                let retry = Duration::from_millis(OFFSETS_LOAD_RETRY_MS);
                match crate::clock::timeout(&*self.clock, retry, image.changed()).await {
                    Ok(Ok(())) | Err(crate::clock::Elapsed) => {}
                    Ok(Err(_)) => return,
                }
            }
        }
    }

    /// Loads the offsets partitions this node newly leads in `image` and unloads the ones it
    /// no longer leads; returns how many it leads but could not load yet.
    pub async fn follow_offsets_leadership(&self, image: &MetadataImage) -> usize {
        let led = led_offsets_partitions(image, self.config.node_id);
        let loaded: BTreeSet<u32> = self.groups.coordinated_partitions();
        let (load, unload) = leadership_changes(&loaded, &led);
        let image_topic = image.topics.get(OFFSETS_TOPIC);
        let count = image_topic
            .map_or(1, |topic| {
                u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX)
            })
            .max(1);
        for partition in unload {
            self.groups.unload_partition(partition, |group| {
                offsets_partition_of(group, count) == partition
            });
        }
        // Only the image's topic is loaded, never a local one of the same name that the
        // materializer has not replaced yet.
        let image_topic_id = image_topic.map(|topic| topic.topic_id.to_string());
        let local_topic_id = self
            .registry
            .hosted_topics()
            .remove(OFFSETS_TOPIC)
            .map(|topic| topic.topic_id);
        let mut pending = 0;
        for partition in load {
            if image_topic_id.is_none() || image_topic_id != local_topic_id {
                pending += 1;
                continue;
            }
            match self.registry.partition_log(OFFSETS_TOPIC, partition) {
                Ok(log) => self.groups.load_partition(partition, &log).await,
                Err(error) => {
                    pending += 1;
                    tracing::warn!(partition, %error, "cannot load {OFFSETS_TOPIC} partition {partition} yet; retrying");
                }
            }
        }
        pending
    }
}
