//! Partition replication, Kafka style: followers pull from the leader (issue 13 item 2).
//!
//! Pure state machines, no IO and no clock (time is passed in as `Instant`), in quinn's
//! `handle_*`/`poll_*` shape, so the node's driver (fetcher tasks over the peer RPC, the
//! produce path waiting for the high watermark) stays thin and the simulator is a loop:
//! - [`leader::PartitionLeader`]: the leader's view of one partition: follower positions
//!   from their fetches, the high watermark (HW) over the in-sync replicas (ISR), acks=all
//!   waiters, ISR shrink/expand proposals for the controller;
//! - [`follower::PartitionFollower`]: one partition on a follower: what to fetch next and
//!   what to do with the answer (truncate on a diverging epoch first, then append, or wait
//!   for new metadata), with back-off;
//! - [`fetch`]: the leader's answer to one partition of a replica fetch (fencing by node
//!   epoch and leader epoch, the diverging-epoch check against the leader-epoch checkpoint,
//!   where to read from).
//!
//! The storage they drive is `storage::log::PartitionLog` (`truncate_to`,
//! `append_as_follower`) and `storage::leader_epoch` (the epoch -> start offset checkpoint);
//! the messages are `ledge_protocol::wire::replica`. See docs/ARCHITECTURE.md,
//! "Replication".

pub mod checkpoint;
pub mod fetch;
pub mod follower;
pub mod leader;
pub mod manager;
pub mod peer_link;
pub mod repair;

#[cfg(test)]
mod simulation;

// The cluster's id types have one definition, in `cluster/`.
pub use crate::cluster::{LeaderEpoch, NodeEpoch, NodeId, PartitionEpoch};

/// A partition's replication state as the controller publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Every replica, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas (the leader among them).
    pub isr: Vec<NodeId>,
    /// The leader, if one is elected.
    pub leader: Option<NodeId>,
    /// The current leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The current partition epoch.
    pub partition_epoch: PartitionEpoch,
}
