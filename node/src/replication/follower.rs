//! The follower's side of one partition: what to fetch next, and what to do with the
//! leader's answer. Pure: no IO, time passed in; the driver carries out the returned
//! [`FollowerAction`]s on the `PartitionLog` and then builds the next fetch from the log's
//! new state.
//!
//! Rules (Kafka's fetcher, KIP-101/279/320):
//! - a fetch carries the leader epoch the follower believes current, its **synced** log end
//!   as the fetch offset (so the leader counts only what is on the follower's disk), the
//!   epoch of its last batch and its log start; the driver groups the partitions with the
//!   same leader into one [`ReplicaFetchRequest`] with the node epoch;
//! - a diverging-epoch answer is handled before anything is appended: the follower truncates
//!   to the lower of the leader's end of that epoch and its own end of it. If the follower
//!   does not have that epoch, it truncates to its own end of the largest epoch below it and
//!   asks again (the conversation converges on the last offset both logs agree on). This is
//!   the fix for the "fast double failover" loss (wave2-anchors B.5, bug 2): truncating to the
//!   high watermark alone can keep a batch the new leader never had;
//! - `OffsetOutOfRange`: a follower ahead of the leader truncates to the leader's end; one
//!   below the leader's log start (or with an epoch the leader cannot place) drops its log
//!   and starts over at the leader's log start. Never below the follower's high watermark
//!   (the leader's HW it last heard, capped at its synced end): a leader whose log ends
//!   below what was committed has lost acknowledged records (an empty disk elected, the
//!   KAFKA-14139 path), and following it would spread the loss. The follower stops fetching
//!   the partition instead ([`PartitionFollower::halted`]) until a new leader epoch;
//! - `FencedLeaderEpoch` / `NotLeaderOrFollower`: the metadata is stale; wait for the next
//!   partition state, do not retry against the same leader epoch;
//! - other errors (a transport failure, `UnknownLeaderEpoch`, a storage error on either
//!   side): back off, doubling from `backoff_initial` up to `backoff_max`; a served fetch
//!   resets the back-off.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_protocol::wire::replica::{
    ReplicaFetchError, ReplicaFetchPartition, ReplicaFetchPartitionResponse, ReplicaFetchRequest,
};

use super::{LeaderEpoch, NodeEpoch, NodeId, PartitionState};
use crate::storage::leader_epoch::{EpochEnd, LeaderEpochCache};

/// Fetch settings (the `[cluster]` section's `replica_fetch_*` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerConfig {
    /// How long the leader may hold a fetch that finds nothing new
    /// (`replica_fetch_wait_max_ms`).
    pub fetch_wait_max: Duration,
    /// Most bytes of records in one fetch response.
    pub fetch_bytes_max: u32,
    /// Most bytes of records per partition in one fetch.
    pub partition_fetch_bytes_max: u32,
    /// The first back-off after an error.
    pub backoff_initial: Duration,
    /// The longest back-off.
    pub backoff_max: Duration,
}

/// What the follower knows of its own log when it fetches or handles an answer.
#[derive(Clone, Copy, Debug)]
pub struct FollowerLogView<'a> {
    /// The first offset of the log.
    pub log_start_offset: i64,
    /// One past the last synced offset (what the leader may count).
    pub synced_end: i64,
    /// The leader-epoch checkpoint of the follower's log.
    pub epochs: &'a LeaderEpochCache,
}

/// What the driver must do to the log after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// Nothing: wait (metadata, back-off) or fetch again.
    None,
    /// Append these batches as they are on the leader (its offsets and epochs), then fetch
    /// again from the new synced end.
    Append {
        /// Whole batches starting at the fetch offset.
        records: Bytes,
    },
    /// Truncate the log to `offset` (durably), then fetch again.
    Truncate {
        /// The new log end.
        offset: i64,
    },
    /// Drop the whole log and start it empty at `offset` (the leader's log start).
    TruncateFullyAndStartAt {
        /// The new log start and end.
        offset: i64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A fetch may be sent.
    Ready,
    /// A fetch is out; wait for its answer.
    InFlight,
    /// Fenced or not the leader: wait for a newer partition state.
    AwaitingMetadata,
    /// An error: fetch again at the instant.
    BackingOff(Instant),
    /// The leader's log ends below this follower's high watermark: no fetch until a new
    /// leader epoch (see [`LeaderBelowHighWatermark`]).
    Halted,
}

/// Why a follower stopped fetching a partition: the leader answered `OffsetOutOfRange` with
/// a log that would make the follower truncate below its high watermark, i.e. drop records
/// that were committed (acknowledged to acks=all producers). The driver reports it; the
/// follower keeps its log as it is and fetches again only once the controller names a new
/// leader epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderBelowHighWatermark {
    /// The leader that answered.
    pub leader: NodeId,
    /// Its leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// The leader's log start, as answered.
    pub leader_log_start_offset: i64,
    /// The leader's log end, as answered.
    pub leader_log_end_offset: i64,
    /// The follower's high watermark the truncation would have gone below.
    pub high_watermark: i64,
}

/// One partition replicated on this node from its leader.
#[derive(Clone, Debug)]
pub struct PartitionFollower {
    topic: String,
    partition: u32,
    local: NodeId,
    leader: Option<NodeId>,
    leader_epoch: LeaderEpoch,
    phase: Phase,
    backoff: Duration,
    leader_high_watermark: i64,
    halted: Option<LeaderBelowHighWatermark>,
    config: FollowerConfig,
}

impl PartitionFollower {
    /// A follower of `topic`/`partition` on node `local`, for the partition `state`.
    pub fn new(
        topic: String,
        partition: u32,
        local: NodeId,
        state: &PartitionState,
        config: FollowerConfig,
    ) -> Self {
        let mut follower = Self {
            topic,
            partition,
            local,
            leader: None,
            leader_epoch: state.leader_epoch,
            phase: Phase::AwaitingMetadata,
            backoff: config.backoff_initial,
            leader_high_watermark: 0,
            halted: None,
            config,
        };
        follower.take_state(state);
        follower
    }

    /// The leader to fetch from, if this node follows one now.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The leader epoch this follower fetches in.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// A high watermark this node knew before this follower state existed (the
    /// checkpoint's, after a restart): committed records, so the follower treats it as one a
    /// leader reported (never truncates below it; see [`Self::halted`]).
    pub fn handle_known_high_watermark(&mut self, high_watermark: i64) {
        self.leader_high_watermark = self.leader_high_watermark.max(high_watermark);
    }

    /// The HW as the leader last reported it, capped at the follower's synced end.
    pub fn high_watermark(&self, view: &FollowerLogView<'_>) -> i64 {
        self.leader_high_watermark.min(view.synced_end)
    }

    /// Whether the follower is waiting for newer metadata.
    pub fn is_awaiting_metadata(&self) -> bool {
        self.phase == Phase::AwaitingMetadata
    }

    /// Why the follower stopped fetching, if it did: the leader's log ends below this
    /// follower's high watermark. Cleared by a new leader epoch.
    pub fn halted(&self) -> Option<&LeaderBelowHighWatermark> {
        self.halted.as_ref()
    }

    /// A newer partition state from the controller: follow its leader in its epoch.
    pub fn handle_partition_state(&mut self, state: &PartitionState) {
        if state.leader_epoch < self.leader_epoch {
            return;
        }
        self.take_state(state);
    }

    fn take_state(&mut self, state: &PartitionState) {
        let changed = state.leader_epoch != self.leader_epoch || state.leader != self.leader;
        self.leader_epoch = state.leader_epoch;
        self.leader = state.leader.filter(|leader| *leader != self.local);
        let following = self.leader.is_some() && state.replicas.contains(&self.local);
        if changed {
            // Another leader or epoch may hold the committed records the halted one lacked.
            self.halted = None;
        }
        if !following {
            self.phase = Phase::AwaitingMetadata;
        } else if self.phase == Phase::Halted && !changed {
            // Still the leader that lacks committed records: keep waiting.
        } else if changed || self.phase == Phase::AwaitingMetadata {
            // A new leader or epoch: whatever was in flight answers for the old one and is
            // dropped by `handle_answer`'s epoch check.
            self.phase = Phase::Ready;
            self.backoff = self.config.backoff_initial;
        }
    }

    /// This partition's part of the next fetch, if it is due (and marks it in flight).
    pub fn poll_fetch(
        &mut self,
        now: Instant,
        view: &FollowerLogView<'_>,
    ) -> Option<ReplicaFetchPartition> {
        if let Phase::BackingOff(until) = self.phase
            && now >= until
        {
            self.phase = Phase::Ready;
        }
        if self.phase != Phase::Ready || self.leader.is_none() {
            return None;
        }
        self.phase = Phase::InFlight;
        Some(ReplicaFetchPartition {
            topic: self.topic.clone(),
            partition: self.partition,
            current_leader_epoch: self.leader_epoch,
            fetch_offset: view.synced_end,
            // The follower's epochs are assigned only by appended batches, except the one a
            // former leader assigned when it was elected (it then may hold no batch, and
            // the leader's answer for it still places the follower's end correctly).
            last_fetched_epoch: view.epochs.latest_epoch(),
            log_start_offset: view.log_start_offset,
            partition_max_bytes: self.config.partition_fetch_bytes_max,
        })
    }

    /// When the back-off ends, if the follower is backing off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::BackingOff(until) => Some(until),
            _ => None,
        }
    }

    /// The fetch carrying this partition failed as a whole (transport error, stale node
    /// epoch): back off.
    pub fn handle_fetch_failed(&mut self, now: Instant) {
        if self.phase == Phase::InFlight {
            self.back_off(now);
        }
    }

    /// The driver could not carry out the last action (the append failed its checks, the
    /// truncate failed): back off, then fetch again from the log as it is.
    pub fn handle_action_failed(&mut self, now: Instant) {
        self.back_off(now);
    }

    /// The leader's answer for this partition to a fetch sent in `fetch_epoch` (the leader
    /// epoch the fetch carried). Returns what to do to the log; the phase becomes ready to
    /// fetch again unless it is waiting for metadata or backing off.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        fetch_epoch: LeaderEpoch,
        answer: &ReplicaFetchPartitionResponse,
        view: &FollowerLogView<'_>,
    ) -> FollowerAction {
        if fetch_epoch != self.leader_epoch || self.phase != Phase::InFlight {
            // An answer for an older leader epoch: the leader it came from may have been
            // deposed since; appending it could copy a batch the new leader never had.
            return FollowerAction::None;
        }
        match answer.error {
            ReplicaFetchError::None => {}
            ReplicaFetchError::FencedLeaderEpoch | ReplicaFetchError::NotLeaderOrFollower => {
                self.phase = Phase::AwaitingMetadata;
                return FollowerAction::None;
            }
            ReplicaFetchError::OffsetOutOfRange => {
                let action = out_of_range(answer, view);
                let high_watermark = self.high_watermark(view);
                let new_end = match action {
                    FollowerAction::Truncate { offset }
                    | FollowerAction::TruncateFullyAndStartAt { offset } => offset,
                    FollowerAction::None | FollowerAction::Append { .. } => view.synced_end,
                };
                if new_end < high_watermark {
                    return self.halt(answer, high_watermark);
                }
                self.phase = Phase::Ready;
                return action;
            }
            ReplicaFetchError::UnknownLeaderEpoch
            | ReplicaFetchError::UnknownTopicOrPartition
            | ReplicaFetchError::StaleNodeEpoch
            | ReplicaFetchError::StorageError
            | ReplicaFetchError::Unknown => {
                self.back_off(now);
                return FollowerAction::None;
            }
        }
        self.phase = Phase::Ready;
        self.backoff = self.config.backoff_initial;
        self.leader_high_watermark = self.leader_high_watermark.max(answer.high_watermark);
        if let Some(diverging) = &answer.diverging_epoch {
            return FollowerAction::Truncate {
                offset: truncation_offset(diverging.epoch, diverging.end_offset, view),
            };
        }
        if answer.records.is_empty() {
            return FollowerAction::None;
        }
        FollowerAction::Append {
            records: answer.records.clone(),
        }
    }

    /// The follower's own log failed its checks from `offset` on (a verified read or the
    /// background verifier met a bad batch, issue 13 item 4): truncate to the last good
    /// batch and fetch the rest from the leader again. Nothing past `offset` is ever served
    /// or counted: the next fetch offset is the new synced end.
    pub fn handle_local_damage(
        &mut self,
        offset: i64,
        view: &FollowerLogView<'_>,
    ) -> FollowerAction {
        if self.phase != Phase::AwaitingMetadata && self.phase != Phase::Halted {
            self.phase = Phase::Ready;
        }
        FollowerAction::Truncate {
            offset: offset.clamp(view.log_start_offset, view.synced_end),
        }
    }

    fn halt(
        &mut self,
        answer: &ReplicaFetchPartitionResponse,
        high_watermark: i64,
    ) -> FollowerAction {
        let halted = LeaderBelowHighWatermark {
            leader: self.leader.unwrap_or(self.local),
            leader_epoch: self.leader_epoch,
            leader_log_start_offset: answer.log_start_offset,
            leader_log_end_offset: answer.log_end_offset,
            high_watermark,
        };
        tracing::error!(
            topic = %self.topic,
            partition = self.partition,
            leader = halted.leader,
            leader_epoch = halted.leader_epoch,
            leader_log_start_offset = halted.leader_log_start_offset,
            leader_log_end_offset = halted.leader_log_end_offset,
            high_watermark,
            "the leader's log ends below this replica's high watermark (it lost committed records): not truncating, not fetching this partition until a new leader epoch"
        );
        self.halted = Some(halted);
        self.phase = Phase::Halted;
        FollowerAction::None
    }

    fn back_off(&mut self, now: Instant) {
        self.phase = Phase::BackingOff(crate::clock::deadline_after(now, self.backoff));
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
    }
}

/// Where to truncate on a diverging answer `(leader_epoch, leader_end)` (Kafka's
/// `getOffsetTruncationState`). Never above the follower's own synced end.
pub fn truncation_offset(leader_epoch: i32, leader_end: i64, view: &FollowerLogView<'_>) -> i64 {
    let offset = match view
        .epochs
        .end_offset_for_epoch(leader_epoch, view.synced_end)
    {
        // Both have the epoch: keep what both have of it.
        EpochEnd::Known { epoch, end_offset } if epoch == leader_epoch => {
            end_offset.min(leader_end)
        }
        // The follower does not have the leader's epoch: cut to its own end of the largest
        // epoch below, and ask again with that one.
        EpochEnd::Known { end_offset, .. } => end_offset,
        // Nothing of the follower's is at or below the leader's epoch: everything from its
        // first epoch on diverges.
        EpochEnd::Undefined => view
            .epochs
            .entries()
            .first()
            .map_or(leader_end, |first| first.start_offset.min(leader_end)),
    };
    offset.min(view.synced_end).max(view.log_start_offset)
}

fn out_of_range(
    answer: &ReplicaFetchPartitionResponse,
    view: &FollowerLogView<'_>,
) -> FollowerAction {
    if view.synced_end > answer.log_end_offset && answer.log_end_offset >= view.log_start_offset {
        // Ahead of the leader: cut to its end; the next fetch checks the epochs again.
        return FollowerAction::Truncate {
            offset: answer.log_end_offset,
        };
    }
    FollowerAction::TruncateFullyAndStartAt {
        offset: answer.log_start_offset,
    }
}

/// One fetch to `leader` carrying `partitions`, from node `local` at `node_epoch`.
pub fn fetch_request(
    local: NodeId,
    node_epoch: NodeEpoch,
    config: &FollowerConfig,
    partitions: Vec<ReplicaFetchPartition>,
) -> ReplicaFetchRequest {
    ReplicaFetchRequest {
        replica_id: local,
        node_epoch,
        max_wait_ms: u32::try_from(config.fetch_wait_max.as_millis()).unwrap_or(u32::MAX),
        min_bytes: 1,
        max_bytes: config.fetch_bytes_max,
        partitions,
    }
}

#[cfg(test)]
mod tests;
