//! The client's view of the cluster: which node leads each partition, at which leader epoch,
//! and where each node is; when that view must be refreshed.
//!
//! A pure state machine (no IO, time passed in), in quinn's `handle_*` shape: the
//! [`crate::Client`] feeds it every Metadata answer ([`ClusterMetadata::handle_metadata`]),
//! every partition error that means "your metadata is stale"
//! ([`ClusterMetadata::handle_partition_error`]), every node it could not reach
//! ([`ClusterMetadata::handle_node_unreachable`]) and every node that answered
//! ([`ClusterMetadata::handle_node_answered`]), and asks it where to send a partition's produce
//! or fetch ([`ClusterMetadata::route`]), whether a request still out went to a deposed leader
//! ([`ClusterMetadata::leader_moved`]), which nodes to ask for metadata
//! ([`ClusterMetadata::metadata_nodes`]) and whether to ask again
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
//!   cached route, and the view stays due for refresh. Unless the answer's topic id differs
//!   from the cached one (KIP-516): the topic was deleted and created again under the same
//!   name, its epochs started over, and what was cached about the old topic is dropped.
//! - A node that cannot be reached (a handshake that timed out, a connection lost, a request
//!   unanswered) forgets every leader on that node and asks for a refresh. It is then skipped
//!   as a source of metadata for a backoff that doubles with each failure in a row
//!   ([`NODE_BACKOFF_MIN`] to [`NODE_BACKOFF_MAX`], librdkafka's `reconnect.backoff.ms` and
//!   `reconnect.backoff.max.ms`), until it answers again.
//! - An answer that still names an unreachable node as a partition's leader (the cluster has
//!   not fenced it yet) leaves the view due for refresh, so the client keeps asking until the
//!   election is visible instead of trusting the dead route until `max_age`.
//! - Metadata is asked of any live known node ([`ClusterMetadata::metadata_nodes`]): the
//!   bootstrap list and every node learned from answers, those not backing off first (Kafka's
//!   "least loaded node").
//! - The whole view is refreshed at least every `max_age` (Kafka's `metadata.max.age.ms`).
//! - A node that an answer listed and a later one no longer lists has left the cluster (the
//!   controller fenced it: it stopped heartbeating, it was killed or stopped, or it shut
//!   down): [`ClusterMetadata::node_left`], until an answer lists it again. A request still
//!   waiting on such a node is not worth waiting for (`Client::request_to_live`). A node
//!   never listed is never said to have left: it may advertise another address than the one
//!   the client reached it at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ledge_protocol::wire::{ErrorCode, MetadataResponse};

/// The first wait before a node that could not be reached is asked for metadata again.
pub(crate) const NODE_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest such wait: the backoff doubles with each failure in a row up to this.
pub(crate) const NODE_BACKOFF_MAX: Duration = Duration::from_secs(1);

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

/// A node that failed to answer, and until when it is not asked for metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unreachable {
    failures: u32,
    until: Instant,
}

/// The cluster as this client last heard it. See the module docs for the rules.
#[derive(Debug)]
pub(crate) struct ClusterMetadata {
    nodes: BTreeMap<NodeId, String>,
    /// Addresses (as the nodes list them) that an earlier answer listed and the latest one
    /// did not: nodes the cluster fenced, until an answer lists them again.
    departed: BTreeSet<String>,
    /// Addresses (as the nodes list them, `ip:port`) that failed and have not answered since.
    unreachable: BTreeMap<String, Unreachable>,
    controller: Option<NodeId>,
    /// By topic, then partition: looked up by `&str` on every send, so no key is allocated.
    partitions: HashMap<String, BTreeMap<u32, Leadership>>,
    /// Each topic's id as the last answer gave it (KIP-516): an answer with another id is
    /// about a topic created again under the same name, whose epochs start over.
    topic_ids: HashMap<String, String>,
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
            departed: BTreeSet::new(),
            unreachable: BTreeMap::new(),
            controller: None,
            partitions: HashMap::new(),
            topic_ids: HashMap::new(),
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
            let nodes: BTreeMap<NodeId, String> = response
                .nodes
                .iter()
                .map(|node| (node.node_id, node.address.clone()))
                .collect();
            for address in self.nodes.values() {
                if !nodes.values().any(|listed| listed == address) {
                    self.departed.insert(address.clone());
                }
            }
            for address in nodes.values() {
                self.departed.remove(address);
            }
            self.nodes = nodes;
        }
        self.controller = response.controller_id;
        let mut stale_answer = false;
        for topic in &response.topics {
            if topic.error == ErrorCode::UnknownTopicOrPartition {
                self.partitions.remove(&topic.name);
                self.topic_ids.remove(&topic.name);
                continue;
            }
            if topic.error != ErrorCode::None {
                continue;
            }
            self.topics.insert(topic.name.clone());
            let mut known = self.partitions.remove(&topic.name).unwrap_or_default();
            if !topic.topic_id.is_empty() {
                let previous = self
                    .topic_ids
                    .insert(topic.name.clone(), topic.topic_id.clone());
                if previous.is_some_and(|previous| previous != topic.topic_id) {
                    // Recreated: the cached epochs are the old topic's, not newer news.
                    known.clear();
                }
            }
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
        // A leader we could not reach is most likely dead and not fenced yet: keep asking.
        let names_unreachable_leader = self
            .partitions
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|leadership| leadership.leader)
            .filter_map(|leader| self.nodes.get(&leader))
            .any(|address| self.unreachable.contains_key(address));
        self.fetched_at = Some(now);
        self.refresh_requested = stale_answer || names_unreachable_leader;
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

    /// Takes in a node at `address` that could not be reached at `now`: a handshake that
    /// failed or timed out, a connection lost, a request unanswered.
    pub(crate) fn handle_node_unreachable(&mut self, address: &str, now: Instant) {
        let failures = self
            .unreachable
            .get(address)
            .map_or(1, |known| known.failures.saturating_add(1));
        let until = now + node_backoff(failures);
        self.unreachable
            .insert(address.to_string(), Unreachable { failures, until });
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

    /// Takes in an answer from the node at `address`: it is reachable again.
    pub(crate) fn handle_node_answered(&mut self, address: &str) {
        self.unreachable.remove(address);
    }

    /// Where to ask for metadata at `now`, best first: `preferred` (the node that answered
    /// last), then the nodes the last answer listed, then `bootstrap`; among them first those
    /// that never failed, then those whose backoff is over, then those still backing off
    /// (soonest over first), and `avoid` (a node a request is stuck on) last of all.
    pub(crate) fn metadata_nodes(
        &self,
        now: Instant,
        preferred: &str,
        bootstrap: &[String],
        avoid: Option<&str>,
    ) -> Vec<String> {
        let mut candidates: Vec<String> = Vec::new();
        let known = std::iter::once(preferred)
            .chain(self.nodes.values().map(String::as_str))
            .chain(bootstrap.iter().map(String::as_str));
        for address in known {
            if !candidates.iter().any(|candidate| candidate == address) {
                candidates.push(address.to_string());
            }
        }
        // A stable sort: the order above breaks ties.
        candidates.sort_by_key(|address| {
            let avoided = avoid == Some(address.as_str());
            let health = match self.unreachable.get(address) {
                None => (0, None),
                Some(failed) if failed.until <= now => (1, None),
                Some(failed) => (2, Some(failed.until)),
            };
            (avoided, health)
        });
        candidates
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

    /// Whether `topic`/`partition`, whose request went to `node` with `leader_epoch` (none
    /// when no leader was known), now has another leader: a newer epoch, or a route to another
    /// node. A request still waiting on the old one is then not worth waiting for. An address
    /// that is a host name (not `ip:port`) is compared by epoch only: resolving it is IO.
    pub(crate) fn leader_moved(
        &self,
        topic: &str,
        partition: u32,
        node: SocketAddr,
        leader_epoch: Option<i32>,
    ) -> bool {
        self.route(topic, partition).is_some_and(|route| {
            leader_epoch.is_some_and(|sent| route.leader_epoch > sent)
                || route
                    .address
                    .parse::<SocketAddr>()
                    .is_ok_and(|address| address != node)
        })
    }

    /// Whether the node at `node` has left the cluster: an earlier answer listed it among the
    /// live nodes and the latest one does not (see the module docs).
    pub(crate) fn node_left(&self, node: SocketAddr) -> bool {
        self.departed
            .iter()
            .any(|address| address.parse::<SocketAddr>() == Ok(node))
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

/// How long a node is skipped after `failures` failures in a row.
fn node_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    NODE_BACKOFF_MIN
        .saturating_mul(1u32 << exponent)
        .min(NODE_BACKOFF_MAX)
}

pub(crate) mod failover;

#[cfg(test)]
mod tests;
