//! The client's view of the cluster: which node leads each partition, at which leader epoch,
//! and where each node is; when that view must be refreshed.
//!
//! A pure state machine (no IO, time passed in), in quinn's `handle_*` shape: the
//! [`crate::Client`] feeds it every Metadata answer ([`ClusterMetadata::handle_metadata`]),
//! every partition error that means "your metadata is stale"
//! ([`ClusterMetadata::handle_partition_error`]) and every lost connection
//! ([`ClusterMetadata::handle_node_lost`]), and asks it where to send a partition's produce or
//! fetch ([`ClusterMetadata::route`]) and whether to ask for metadata again
//! ([`ClusterMetadata::needs_refresh`]).
//!
//! Rules (Kafka's client, KIP-320):
//! - A partition with no known leader, or whose leader's address is not in the node list,
//!   has no route: the caller refreshes before sending.
//! - `NotLeaderOrFollower` and `FencedLeaderEpoch` forget the partition's leader and ask for a
//!   refresh; `UnknownTopicOrPartition` asks for a refresh (the topic may have grown or been
//!   created); `UnknownLeaderEpoch` changes nothing (the node is behind; retry it later).
//! - A Metadata answer whose leader epoch for a partition is *older* than the cached one
//!   comes from a node that has not heard of the latest election: that partition keeps its
//!   cached route, and the view stays due for refresh.
//! - A lost connection forgets every leader on that node and asks for a refresh.
//! - The whole view is refreshed at least every `max_age` (Kafka's `metadata.max.age.ms`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ledge_protocol::wire::{ErrorCode, MetadataResponse};

/// A node id, as the cluster numbers its nodes.
pub(crate) type NodeId = u32;

/// Where a partition's produce and fetch go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The leader.
    pub(crate) node_id: NodeId,
    /// The leader's client address (`host:port`).
    pub(crate) address: String,
    /// The leader epoch the requests carry (KIP-320).
    pub(crate) leader_epoch: i32,
}

/// One partition's last known leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leadership {
    leader: Option<NodeId>,
    leader_epoch: i32,
}

/// The cluster as this client last heard it. See the module docs for the rules.
#[derive(Debug)]
pub(crate) struct ClusterMetadata {
    nodes: BTreeMap<NodeId, String>,
    controller: Option<NodeId>,
    /// By topic, then partition: looked up by `&str` on every send, so no key is allocated.
    partitions: HashMap<String, BTreeMap<u32, Leadership>>,
    /// Topics whose routes are kept; a refresh asks for all of them.
    topics: BTreeSet<String>,
    fetched_at: Option<Instant>,
    refresh_requested: bool,
    max_age: Duration,
}

impl ClusterMetadata {
    /// An empty view, refreshed at least every `max_age`.
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            nodes: BTreeMap::new(),
            controller: None,
            partitions: HashMap::new(),
            topics: BTreeSet::new(),
            fetched_at: None,
            refresh_requested: false,
            max_age,
        }
    }

    /// Takes in a Metadata answer received at `now`.
    pub(crate) fn handle_metadata(&mut self, response: &MetadataResponse, now: Instant) {
        // An answer without nodes (a node that lists none) must not erase what we know.
        if !response.nodes.is_empty() {
            self.nodes = response
                .nodes
                .iter()
                .map(|node| (node.node_id, node.address.clone()))
                .collect();
        }
        self.controller = response.controller_id;
        let mut stale_answer = false;
        for topic in &response.topics {
            if topic.error == ErrorCode::UnknownTopicOrPartition {
                self.partitions.remove(&topic.name);
                continue;
            }
            if topic.error != ErrorCode::None {
                continue;
            }
            self.topics.insert(topic.name.clone());
            let known = self.partitions.remove(&topic.name).unwrap_or_default();
            // Partitions not in the answer are gone (the topic was recreated smaller).
            let mut partitions = BTreeMap::new();
            for partition in &topic.partitions {
                let fresh = Leadership {
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                };
                let kept = match known.get(&partition.partition) {
                    Some(known) if known.leader_epoch > fresh.leader_epoch => {
                        // KIP-320: this node has not heard of the latest election yet.
                        stale_answer = true;
                        *known
                    }
                    _ => fresh,
                };
                partitions.insert(partition.partition, kept);
            }
            self.partitions.insert(topic.name.clone(), partitions);
        }
        self.fetched_at = Some(now);
        self.refresh_requested = stale_answer;
    }

    /// Takes in a partition's error from a produce or fetch answer.
    pub(crate) fn handle_partition_error(&mut self, topic: &str, partition: u32, code: ErrorCode) {
        match code {
            ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch => {
                if let Some(known) = self
                    .partitions
                    .get_mut(topic)
                    .and_then(|partitions| partitions.get_mut(&partition))
                {
                    known.leader = None;
                }
                self.refresh_requested = true;
            }
            ErrorCode::UnknownTopicOrPartition => self.refresh_requested = true,
            _ => {}
        }
    }

    /// Takes in a lost connection to the node at `address`.
    pub(crate) fn handle_node_lost(&mut self, address: &str) {
        let lost: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, known)| known.as_str() == address)
            .map(|(node_id, _)| *node_id)
            .collect();
        for leadership in self.partitions.values_mut().flat_map(BTreeMap::values_mut) {
            if leadership
                .leader
                .is_some_and(|leader| lost.contains(&leader))
            {
                leadership.leader = None;
            }
        }
        self.refresh_requested = true;
    }

    /// Keeps `topic`'s routes from now on; a topic not known yet makes the view due.
    pub(crate) fn track(&mut self, topic: &str) {
        if !self.topics.contains(topic) {
            self.topics.insert(topic.to_string());
            self.refresh_requested = true;
        }
    }

    /// Where `topic`/`partition`'s produce and fetch go, if known.
    pub(crate) fn route(&self, topic: &str, partition: u32) -> Option<Route> {
        let leadership = self.partitions.get(topic)?.get(&partition)?;
        let node_id = leadership.leader?;
        let address = self.nodes.get(&node_id)?;
        Some(Route {
            node_id,
            address: address.clone(),
            leader_epoch: leadership.leader_epoch,
        })
    }

    /// Whether to ask for metadata before trusting the view at `now`.
    pub(crate) fn needs_refresh(&self, now: Instant) -> bool {
        self.refresh_requested
            || self
                .fetched_at
                .is_none_or(|fetched| now.saturating_duration_since(fetched) >= self.max_age)
    }

    /// The topics a refresh asks for.
    pub(crate) fn tracked_topics(&self) -> Vec<String> {
        self.topics.iter().cloned().collect()
    }

    /// Every known node's address, by node id: where to ask for metadata when the usual node
    /// is gone.
    pub(crate) fn node_addresses(&self) -> Vec<String> {
        self.nodes.values().cloned().collect()
    }

    /// The active controller, if the last answer named one.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for the admin client's cluster calls")
    )]
    pub(crate) fn controller(&self) -> Option<NodeId> {
        self.controller
    }
}

#[cfg(test)]
mod tests;
