//! Which node coordinates a group in a `[cluster]` (issue 13), as pure functions of the
//! controller's metadata image.
//!
//! A group belongs to one partition of `__consumer_offsets`, [`offsets_partition_of`]
//! (Kafka: `abs(groupId.hashCode) % offsets.topic.num.partitions`; here FNV-1a over the
//! group id's UTF-8 bytes, which is stable across builds, platforms and Rust versions, unlike
//! `std`'s hasher). The group's coordinator is the current leader of that partition
//! ([`coordinator_of`]), so the group's state and its committed offsets live where its
//! commits are appended, and move with that partition's leadership.
//!
//! A node without `[cluster]` has one `__consumer_offsets` partition and coordinates every
//! group itself: nothing here is used.

use std::collections::BTreeSet;

use super::offsets::OFFSETS_TOPIC;
use crate::cluster::NodeId;
use crate::controller::MetadataImage;

/// Default partition count of a cluster's `__consumer_offsets`
/// (`cluster.offsets_topic_num_partitions`, Kafka's `offsets.topic.num.partitions`, whose
/// default is 50). An edge cluster has a few nodes and groups: 8 spreads coordination over up
/// to 8 nodes while keeping the per-partition replay, files and fetchers few.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: u32 = 8;

/// Default replication factor of a cluster's `__consumer_offsets`
/// (`cluster.offsets_topic_replication_factor`, Kafka's `offsets.topic.replication.factor`);
/// capped at the live nodes when the topic is created.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT: u16 = 3;

/// The `__consumer_offsets` partition of `group_id` among `partitions` (0 when there are
/// none, which no caller asks: the topic always has at least one).
pub fn offsets_partition_of(group_id: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    // FNV-1a, 32 bits.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions
}

/// Why a group has no coordinator right now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorLookupError {
    /// The image has no `__consumer_offsets` yet (it is created at first need).
    #[error("{OFFSETS_TOPIC} does not exist yet")]
    OffsetsTopicMissing,
    /// The group's offsets partition has no leader (its replicas are down).
    #[error("partition {partition} of {OFFSETS_TOPIC} has no leader")]
    NoLeader {
        /// The partition.
        partition: u32,
    },
}

/// The coordinator of a group: its offsets partition and that partition's leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coordinator {
    /// The group's `__consumer_offsets` partition.
    pub partition: u32,
    /// Its leader: the node that coordinates the group.
    pub node: NodeId,
}

/// The coordinator of `group_id` in `image`.
pub fn coordinator_of(
    image: &MetadataImage,
    group_id: &str,
) -> Result<Coordinator, CoordinatorLookupError> {
    let topic = image
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(CoordinatorLookupError::OffsetsTopicMissing)?;
    let count = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
    if count == 0 {
        return Err(CoordinatorLookupError::OffsetsTopicMissing);
    }
    let partition = offsets_partition_of(group_id, count);
    let state = usize::try_from(partition)
        .ok()
        .and_then(|index| topic.partitions.get(index))
        .ok_or(CoordinatorLookupError::OffsetsTopicMissing)?;
    match state.leader {
        Some(node) => Ok(Coordinator { partition, node }),
        None => Err(CoordinatorLookupError::NoLeader { partition }),
    }
}

/// The `__consumer_offsets` partitions `node` leads in `image`: the groups it coordinates.
pub fn led_offsets_partitions(image: &MetadataImage, node: NodeId) -> BTreeSet<u32> {
    image
        .topics
        .get(OFFSETS_TOPIC)
        .map(|topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, state)| state.leader == Some(node))
                .filter_map(|(index, _)| u32::try_from(index).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The partitions to load (newly led) and to unload (no longer led), given the ones
/// `loaded` now and the ones `led` in the latest image.
pub fn leadership_changes(
    loaded: &BTreeSet<u32>,
    led: &BTreeSet<u32>,
) -> (BTreeSet<u32>, BTreeSet<u32>) {
    (
        led.difference(loaded).copied().collect(),
        loaded.difference(led).copied().collect(),
    )
}

#[cfg(test)]
mod tests;
