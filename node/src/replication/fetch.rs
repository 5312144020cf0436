//! The leader's answer to one partition of a replica fetch, as a plan (no IO): refuse it,
//! tell the follower where its log diverges, or read records from a range of the log.
//!
//! The checks, in Kafka's order (KIP-320 fencing, KIP-279/320 divergence):
//! 1. this node leads the partition and the fetcher is one of its replicas, else
//!    `NotLeaderOrFollower`;
//! 2. the follower's current leader epoch equals the leader's: older is
//!    `FencedLeaderEpoch` (the follower must refresh metadata), newer is
//!    `UnknownLeaderEpoch` (this node has not seen the new metadata yet; the follower
//!    backs off);
//! 3. the follower's last fetched epoch is checked against the leader-epoch checkpoint: if
//!    the leader's end of that epoch is below the fetch offset, or the largest epoch the
//!    leader has at or below it is a different one, the follower's log diverges and the
//!    answer is that epoch and end offset (the follower truncates before it appends
//!    anything, so a batch the leader never had is never counted as replicated);
//!    an epoch the leader cannot place at all (before its first, after its latest) is
//!    answered `OffsetOutOfRange`, and the follower starts over at the leader's log start;
//! 4. a fetch offset below the leader's log start or past its synced end is
//!    `OffsetOutOfRange`;
//! 5. otherwise, records from the fetch offset up to the leader's **synced** end (a
//!    follower never copies bytes the leader could still lose in a power cut).
//!
//! Fencing by node epoch is the caller's job for the whole request (one check per fetch,
//! against the controller's registrations), before the partitions are planned.

use ledge_protocol::wire::replica::{
    DivergingEpoch, ReplicaFetchError, ReplicaFetchPartition, ReplicaFetchPartitionResponse,
};

use super::{NodeId, PartitionState};
use crate::storage::leader_epoch::{EpochEnd, LeaderEpochCache};

/// What the leader knows of its own copy of the partition when it answers.
#[derive(Clone, Copy, Debug)]
pub struct LeaderLogView<'a> {
    /// The first offset of the log.
    pub log_start_offset: i64,
    /// One past the last synced offset: the most a follower may copy.
    pub synced_end: i64,
    /// The replicated high watermark.
    pub high_watermark: i64,
    /// The leader-epoch checkpoint, with the current leader epoch assigned.
    pub epochs: &'a LeaderEpochCache,
}

/// What to answer for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchPlan {
    /// Answer this error and nothing else.
    Refuse(ReplicaFetchError),
    /// The follower's log diverges: answer where its last fetched epoch ends here.
    Diverging(DivergingEpoch),
    /// Read whole batches from `from` (a batch boundary the follower already agrees on),
    /// below `to`, up to `max_bytes` (at least one batch, as Kafka does, so one large batch
    /// cannot stall replication).
    Read {
        /// The fetch offset.
        from: i64,
        /// The leader's synced end.
        to: i64,
        /// The partition's byte budget.
        max_bytes: u32,
    },
}

/// Plans the answer to `request` from `follower` on leader `local`, whose view of the
/// partition is `state` and of its log `log`.
pub fn plan_fetch(
    local: NodeId,
    state: &PartitionState,
    follower: NodeId,
    request: &ReplicaFetchPartition,
    log: &LeaderLogView<'_>,
) -> FetchPlan {
    if state.leader != Some(local) || follower == local || !state.replicas.contains(&follower) {
        return FetchPlan::Refuse(ReplicaFetchError::NotLeaderOrFollower);
    }
    if request.current_leader_epoch < state.leader_epoch {
        return FetchPlan::Refuse(ReplicaFetchError::FencedLeaderEpoch);
    }
    if request.current_leader_epoch > state.leader_epoch {
        return FetchPlan::Refuse(ReplicaFetchError::UnknownLeaderEpoch);
    }
    if let Some(last_fetched_epoch) = request.last_fetched_epoch {
        match log
            .epochs
            .end_offset_for_epoch(last_fetched_epoch, log.synced_end)
        {
            EpochEnd::Known { epoch, end_offset } => {
                if end_offset < request.fetch_offset || epoch != last_fetched_epoch {
                    return FetchPlan::Diverging(DivergingEpoch { epoch, end_offset });
                }
            }
            EpochEnd::Undefined => {
                return FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange);
            }
        }
    }
    if request.fetch_offset < log.log_start_offset || request.fetch_offset > log.synced_end {
        return FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange);
    }
    FetchPlan::Read {
        from: request.fetch_offset,
        to: log.synced_end,
        max_bytes: request.partition_max_bytes,
    }
}

/// The answer for one partition: `plan`'s error or divergence, or `records` read for it.
pub fn answer(
    request: &ReplicaFetchPartition,
    plan: &FetchPlan,
    log: &LeaderLogView<'_>,
    records: bytes::Bytes,
) -> ReplicaFetchPartitionResponse {
    let (error, diverging_epoch, records) = match plan {
        FetchPlan::Refuse(error) => (*error, None, bytes::Bytes::new()),
        FetchPlan::Diverging(diverging) => (
            ReplicaFetchError::None,
            Some(diverging.clone()),
            bytes::Bytes::new(),
        ),
        FetchPlan::Read { .. } => (ReplicaFetchError::None, None, records),
    };
    ReplicaFetchPartitionResponse {
        topic: request.topic.clone(),
        partition: request.partition,
        error,
        high_watermark: log.high_watermark,
        log_start_offset: log.log_start_offset,
        log_end_offset: log.synced_end,
        diverging_epoch,
        records,
    }
}

#[cfg(test)]
mod tests;
