//! The leader's side of one partition: follower positions, the high watermark, acks=all
//! waiters and ISR change proposals. Pure: no IO, time passed in.
//!
//! Owns the rules of Kafka's `Partition`/`ReplicaManager` leader state, with Ledge's
//! fdatasync-before-ack kept on every replica:
//! - a follower's position is the fetch offset of its latest fetch, which the follower
//!   sends as its **synced** log end: "in the ISR" means "on disk" (issue 13 item 2);
//! - the high watermark (HW) is the lowest synced log end over the ISR, the leader's own
//!   included, and moves only while the ISR holds at least `min.insync.replicas` members
//!   (so an acks=1 record is not shown to consumers while too few replicas hold it); it never
//!   moves back. While an ISR change is waiting for the controller, the HW counts the members
//!   of both the current and the proposed ISR (Kafka's "maximal ISR"), so it is right
//!   whichever way the controller decides;
//! - a follower is caught up when it fetched at or past the leader's synced end; one in the
//!   ISR that was not caught up for `replica_lag_time_max` is proposed for removal, and so is
//!   one that came back with a new node epoch (a restart, maybe with an empty disk: KIP-903);
//!   one outside the ISR whose synced end reached the HW and the start of this leader epoch
//!   is proposed for addition (Kafka's rule: caught up *in the current leader epoch*);
//! - acks=all: refused before the append with `NotEnoughReplicas` when the ISR is already
//!   below `min.insync.replicas`; after it, answered once the HW passes the batch, or failed
//!   with `NotEnoughReplicasAfterAppend` if the ISR falls below the minimum first, with
//!   `NotLeaderOrFollower` if this node stops leading, or `RequestTimedOut` at its deadline;
//! - DeleteRecords (Kafka's `DelayedDeleteRecords`): the low watermark is the lowest log start
//!   over the leader and every follower whose node is live (registered and not fenced: Kafka's
//!   `Partition.lowWatermarkIfLeader` counts the alive brokers, in the ISR or not); a
//!   follower's log start is the one its latest fetch carried, unknown (which holds the low
//!   watermark back, as Kafka's `UnknownOffset` -1 does) until it fetches in this leader
//!   epoch. A wait is answered with the low watermark once it reaches the wait's offset,
//!   failed with `NotLeaderOrFollower` if this node stops leading, or `RequestTimedOut` at its
//!   deadline.
//!
//! Proposals are outputs ([`PartitionLeader::poll_isr_proposal`]); the controller applies
//! them with a compare-and-set on the partition epoch, and the new state comes back through
//! [`PartitionLeader::handle_partition_state`]. One proposal is in flight at a time.
//!
//! Who calls it: the node's replication driver, one per led partition: on every follower
//! fetch the leader answered with records, on every local sync, on metadata changes, on
//! produce requests with acks=all and DeleteRecords, and at [`PartitionLeader::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{LeaderEpoch, NodeEpoch, NodeId, PartitionEpoch, PartitionState};

/// The settings the leader state uses (cluster defaults, topic overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Kafka's `min.insync.replicas`: the fewest ISR members for acks=all and for the HW
    /// to move.
    pub min_insync_replicas: usize,
    /// Kafka's `replica.lag.time.max.ms`: how long an ISR member may go without catching up
    /// before it is proposed for removal.
    pub replica_lag_time_max: Duration,
}

/// An ISR member as the controller's compare-and-set wants it: with its node epoch, so a
/// member that restarted since is not taken for the one that held the data (KIP-903).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsrMember {
    /// The node.
    pub node: NodeId,
    /// Its node epoch when the leader last heard from it.
    pub node_epoch: NodeEpoch,
}

/// A proposed ISR change for the controller (Kafka's AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrProposal {
    /// The leader epoch it is made in; the controller refuses it from an older one.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch it is based on: the compare-and-set token.
    pub partition_epoch: PartitionEpoch,
    /// The whole proposed ISR, sorted by node.
    pub isr: Vec<IsrMember>,
}

/// Why an acks=all produce was not acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcksAllError {
    /// Refused before the append: the ISR is smaller than `min.insync.replicas`.
    #[error("not enough in-sync replicas: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// The minimum.
        min: usize,
    },
    /// Appended on the leader, but the ISR fell below `min.insync.replicas` before the HW
    /// passed it: the record may or may not survive; retry (idempotence deduplicates).
    #[error("appended, but the in-sync replicas fell to {isr}, below min.insync.replicas {min}")]
    NotEnoughReplicasAfterAppend {
        /// ISR size.
        isr: usize,
        /// The minimum.
        min: usize,
    },
    /// This node no longer leads the partition: refresh metadata and retry at the leader.
    #[error("this node no longer leads the partition")]
    NotLeaderOrFollower,
    /// The request's deadline passed before the HW reached it.
    #[error("the in-sync replicas did not confirm the append before the request timed out")]
    RequestTimedOut,
}

/// Why a DeleteRecords wait for the low watermark was not answered with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LowWatermarkError {
    /// This node no longer leads the partition: refresh metadata and retry at the leader
    /// (the leader's log start already moved; the new leader's followed it if it fetched).
    #[error("this node no longer leads the partition")]
    NotLeaderOrFollower,
    /// The request's deadline passed before every live replica moved its log start there.
    #[error("the live replicas did not move their log start before the request timed out")]
    RequestTimedOut,
}

/// Why a follower's fetch does not count as its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchPositionError {
    /// The node is not a replica of this partition.
    #[error("node {0} is not a replica of this partition")]
    NotAReplica(NodeId),
    /// The fetch comes from an older incarnation of the node than one already seen.
    #[error("node epoch {received} is older than {current}, already seen for this node")]
    StaleNodeEpoch {
        /// The node epoch already seen.
        current: NodeEpoch,
        /// The node epoch of the fetch.
        received: NodeEpoch,
    },
    /// The fetch offset is past what the leader has synced (a diverging log must be
    /// truncated first; the fetch planner answers it so).
    #[error("fetch offset {fetch_offset} is past the leader's synced end {synced_end}")]
    PastLogEnd {
        /// The follower's fetch offset.
        fetch_offset: i64,
        /// The leader's synced end.
        synced_end: i64,
    },
}

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug)]
struct FollowerProgress {
    /// Its synced log end as of its latest fetch; `None` until it fetches in this leader
    /// epoch (a new leader knows nothing of its followers, and must not guess).
    synced_end: Option<i64>,
    /// Its log start as of its latest fetch; `None` until it fetches in this leader epoch.
    log_start_offset: Option<i64>,
    /// Its node epoch as of its latest fetch, if it fetched.
    node_epoch: Option<NodeEpoch>,
    /// The last time it was caught up (Kafka's `lastCaughtUpTimeMs`).
    last_caught_up: Instant,
    /// The leader's synced end and the time at its previous fetch: a fetch at or past that
    /// end means it was caught up then (Kafka's rule, which forgives a follower for the
    /// appends made during its own round trip).
    previous_fetch: Option<(i64, Instant)>,
    /// Its node epoch changed while it was in the ISR: propose its removal.
    restarted: bool,
}

struct Waiter<T> {
    token: T,
    end_offset: i64,
    deadline: Instant,
}

/// A DeleteRecords wait: answered once the low watermark reaches `offset`.
struct LowWatermarkWaiter<T> {
    token: T,
    offset: i64,
    deadline: Instant,
}

/// The leader state of one partition. `T` identifies an acks=all produce to the driver.
pub struct PartitionLeader<T> {
    local: NodeId,
    local_node_epoch: NodeEpoch,
    config: LeaderConfig,
    state: PartitionState,
    followers: BTreeMap<NodeId, FollowerProgress>,
    /// The leader's own synced log end.
    synced_end: i64,
    /// The log end when this leader epoch began: a follower joins the ISR only once it
    /// reached it (it then holds every batch of earlier epochs this leader kept).
    leader_epoch_start_offset: i64,
    high_watermark: i64,
    /// The proposal handed to the controller and not yet answered.
    in_flight: Option<IsrProposal>,
    waiters: Vec<Waiter<T>>,
    released: VecDeque<(T, Result<(), AcksAllError>)>,
    /// The leader's own log start, as last told (it only moves up).
    log_start_offset: i64,
    /// Followers whose node the controller fenced or does not know (Kafka's brokers that
    /// are not alive): their log start does not hold the low watermark back.
    fenced: BTreeSet<NodeId>,
    low_watermark_waiters: Vec<LowWatermarkWaiter<T>>,
    low_watermark_released: VecDeque<(T, Result<i64, LowWatermarkError>)>,
    /// This node stopped leading (a newer leader epoch or another leader).
    deposed: bool,
}

impl<T> PartitionLeader<T> {
    /// A leader for `state` (whose leader must be `local`, registered with
    /// `local_node_epoch`), whose log ends at `synced_end`
    /// (all synced: a new leader's log is opened and synced) and whose HW was
    /// `high_watermark` (its last known, maybe behind; it only moves up from here).
    pub fn new(
        local: NodeId,
        local_node_epoch: NodeEpoch,
        state: PartitionState,
        config: LeaderConfig,
        synced_end: i64,
        high_watermark: i64,
        now: Instant,
    ) -> Self {
        debug_assert_eq!(state.leader, Some(local));
        let followers = state
            .replicas
            .iter()
            .filter(|node| **node != local)
            .map(|node| (*node, FollowerProgress::unknown(now)))
            .collect();
        let mut leader = Self {
            local,
            local_node_epoch,
            config,
            deposed: state.leader != Some(local),
            state,
            followers,
            synced_end,
            leader_epoch_start_offset: synced_end,
            high_watermark: high_watermark.min(synced_end),
            in_flight: None,
            waiters: Vec::new(),
            released: VecDeque::new(),
            log_start_offset: 0,
            fenced: BTreeSet::new(),
            low_watermark_waiters: Vec::new(),
            low_watermark_released: VecDeque::new(),
        };
        leader.update_high_watermark();
        leader
    }

    /// The high watermark: consumers (acks=1 data too) read only below it.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The leader epoch this state leads in.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.state.leader_epoch
    }

    /// The ISR as the controller last published it.
    pub fn isr(&self) -> &[NodeId] {
        &self.state.isr
    }

    /// Whether this node stopped leading; it then acknowledges nothing more.
    pub fn is_deposed(&self) -> bool {
        self.deposed
    }

    /// The first offset of this leader epoch.
    pub fn leader_epoch_start_offset(&self) -> i64 {
        self.leader_epoch_start_offset
    }

    /// A follower's synced end as of its latest fetch in this leader epoch.
    pub fn follower_synced_end(&self, node: NodeId) -> Option<i64> {
        self.followers
            .get(&node)
            .and_then(|follower| follower.synced_end)
    }

    /// The low watermark (Kafka's `lowWatermarkIfLeader`): the lowest log start over the
    /// leader and every follower not fenced; `None` while one of those has not fetched in
    /// this leader epoch.
    pub fn low_watermark(&self) -> Option<i64> {
        let mut low = self.log_start_offset;
        for (node, follower) in &self.followers {
            if self.fenced.contains(node) {
                continue;
            }
            low = low.min(follower.log_start_offset?);
        }
        Some(low)
    }

    /// Checks an acks=all produce before its append: refused while the ISR is below
    /// `min.insync.replicas` (nothing is appended then) or when this node does not lead.
    pub fn check_acks_all(&self) -> Result<(), AcksAllError> {
        if self.deposed {
            return Err(AcksAllError::NotLeaderOrFollower);
        }
        let isr = self.state.isr.len();
        if isr < self.config.min_insync_replicas {
            return Err(AcksAllError::NotEnoughReplicas {
                isr,
                min: self.config.min_insync_replicas,
            });
        }
        Ok(())
    }

    /// Registers an appended acks=all produce whose last offset is `end_offset - 1`: it is
    /// released (see [`Self::poll_released`]) once the HW reaches `end_offset`, or failed.
    pub fn handle_acks_all_append(&mut self, token: T, end_offset: i64, deadline: Instant) {
        self.waiters.push(Waiter {
            token,
            end_offset,
            deadline,
        });
        self.release_waiters();
    }

    /// Registers a DeleteRecords wait: the leader's log start moved to (or past) `offset`; it
    /// is answered (see [`Self::poll_low_watermark_released`]) with the low watermark once
    /// that reaches `offset`, or failed.
    pub fn handle_delete_records(&mut self, token: T, offset: i64, deadline: Instant) {
        self.low_watermark_waiters.push(LowWatermarkWaiter {
            token,
            offset,
            deadline,
        });
        self.release_low_watermark_waiters();
    }

    /// The leader's own log start moved to `log_start_offset` (DeleteRecords, retention).
    pub fn handle_local_log_start(&mut self, log_start_offset: i64) {
        self.log_start_offset = self.log_start_offset.max(log_start_offset);
        self.release_low_watermark_waiters();
    }

    /// The nodes the controller fenced or does not know (they are not alive): a follower
    /// among them no longer holds the low watermark back until it is live again.
    pub fn handle_fenced_nodes(&mut self, fenced: BTreeSet<NodeId>) {
        self.fenced = fenced;
        self.release_low_watermark_waiters();
    }

    /// A follower's log start as its fetch carried it (the same fetch
    /// [`Self::handle_fetch`] took as its position; Kafka's `updateFollowerFetchState`
    /// takes both): it moves the low watermark, which may answer DeleteRecords waits.
    pub fn handle_follower_log_start(&mut self, node: NodeId, log_start_offset: i64) {
        if let Some(follower) = self.followers.get_mut(&node) {
            follower.log_start_offset = Some(log_start_offset);
            self.release_low_watermark_waiters();
        }
    }

    /// The leader's own log synced up to `synced_end` (a group commit finished).
    pub fn handle_local_synced(&mut self, synced_end: i64) {
        self.synced_end = self.synced_end.max(synced_end);
        self.update_high_watermark();
    }

    /// A follower's fetch that the leader answered with records (not a diverging answer,
    /// not refused): its fetch offset is its synced log end. Updates its position, whether
    /// it is caught up, and the HW.
    pub fn handle_fetch(
        &mut self,
        now: Instant,
        node: NodeId,
        node_epoch: NodeEpoch,
        fetch_offset: i64,
    ) -> Result<(), FetchPositionError> {
        if fetch_offset > self.synced_end {
            return Err(FetchPositionError::PastLogEnd {
                fetch_offset,
                synced_end: self.synced_end,
            });
        }
        let in_isr = self.state.isr.contains(&node);
        let synced_end = self.synced_end;
        let follower = self
            .followers
            .get_mut(&node)
            .ok_or(FetchPositionError::NotAReplica(node))?;
        match follower.node_epoch {
            Some(current) if node_epoch < current => {
                return Err(FetchPositionError::StaleNodeEpoch {
                    current,
                    received: node_epoch,
                });
            }
            // A new incarnation: what the old one held may be gone (an empty disk). Its
            // position starts from this fetch, and an ISR member is proposed for removal;
            // it rejoins once caught up, under its new node epoch (KIP-903).
            Some(current) if node_epoch > current => {
                follower.restarted = in_isr;
                follower.previous_fetch = None;
            }
            // The same incarnation fetching below what it had synced: its log moved back
            // (it cut a damaged segment and refetches). It no longer holds what the ISR
            // promises, so an ISR member is proposed for removal as a restart is; it
            // rejoins once caught up.
            _ if follower
                .synced_end
                .is_some_and(|previous| fetch_offset < previous) =>
            {
                follower.restarted = in_isr;
                follower.previous_fetch = None;
            }
            _ => {}
        }
        follower.node_epoch = Some(node_epoch);
        follower.synced_end = Some(fetch_offset);
        if fetch_offset >= synced_end {
            follower.last_caught_up = now;
        } else if let Some((previous_end, previous_time)) = follower.previous_fetch
            && fetch_offset >= previous_end
        {
            follower.last_caught_up = follower.last_caught_up.max(previous_time);
        }
        follower.previous_fetch = Some((synced_end, now));
        self.update_high_watermark();
        Ok(())
    }

    /// The controller published a new state for the partition. A newer leader epoch or
    /// another leader deposes this one: every waiter fails with `NotLeaderOrFollower` and
    /// nothing is acknowledged after. Otherwise the ISR and partition epoch are taken, and a
    /// proposal in flight is settled (the new partition epoch answers it, whichever way).
    pub fn handle_partition_state(&mut self, state: PartitionState, now: Instant) {
        if state.partition_epoch < self.state.partition_epoch {
            // Metadata arrives in order, but a late copy of an older state changes nothing.
            return;
        }
        if state.leader != Some(self.local) || state.leader_epoch != self.state.leader_epoch {
            self.deposed = true;
            self.state = state;
            self.fail_all(AcksAllError::NotLeaderOrFollower);
            return;
        }
        if state.partition_epoch > self.state.partition_epoch {
            self.in_flight = None;
        }
        // Replicas added by a reassignment start unknown; removed ones are forgotten.
        self.followers
            .retain(|node, _| state.replicas.contains(node));
        for node in &state.replicas {
            if *node != self.local {
                self.followers
                    .entry(*node)
                    .or_insert_with(|| FollowerProgress::unknown(now));
            }
        }
        for (node, follower) in &mut self.followers {
            if !state.isr.contains(node) {
                follower.restarted = false;
                if self.state.isr.contains(node) {
                    // It left the ISR (fenced, or it reported its log damaged): what it
                    // fetched before may be gone, so it rejoins only on a fetch after this.
                    follower.synced_end = None;
                    follower.previous_fetch = None;
                }
            } else if !self.state.isr.contains(node) {
                // Just added: its lag is measured from now on.
                follower.last_caught_up = follower.last_caught_up.max(now);
            }
        }
        self.state = state;
        self.update_high_watermark();
        // A replica removed by a reassignment no longer holds the low watermark back.
        self.release_low_watermark_waiters();
    }

    /// The controller refused the proposal in flight (a stale partition epoch, a member's
    /// node epoch no longer current): the next poll proposes again from current knowledge.
    pub fn handle_proposal_refused(&mut self) {
        self.in_flight = None;
    }

    /// The ISR change to propose now, if any and none is in flight: ISR members lagging for
    /// `replica_lag_time_max` or restarted are removed; caught-up replicas outside it added.
    /// The leader always stays in.
    pub fn poll_isr_proposal(&mut self, now: Instant) -> Option<IsrProposal> {
        if self.deposed || self.in_flight.is_some() {
            return None;
        }
        let lag_max = self.config.replica_lag_time_max;
        let mut isr = Vec::with_capacity(self.state.replicas.len());
        let mut changed = false;
        for node in &self.state.replicas {
            if *node == self.local {
                isr.push(IsrMember {
                    node: *node,
                    node_epoch: self.local_node_epoch,
                });
                continue;
            }
            let Some(follower) = self.followers.get(node) else {
                continue;
            };
            let in_isr = self.state.isr.contains(node);
            let keep = if in_isr {
                let lagging = now.saturating_duration_since(follower.last_caught_up) > lag_max;
                !lagging && !follower.restarted
            } else {
                // Caught up recently too, not only once: a follower that stopped fetching
                // keeps its last position, which may still be at the HW (the HW does not
                // move while the ISR is below min.insync.replicas), and would be proposed
                // back in at once after its removal, again and again.
                let recent = now.saturating_duration_since(follower.last_caught_up) <= lag_max;
                recent
                    && follower.synced_end.is_some_and(|end| {
                        end >= self.high_watermark && end >= self.leader_epoch_start_offset
                    })
            };
            changed |= keep != in_isr;
            if keep {
                isr.push(IsrMember {
                    node: *node,
                    // A member kept without having fetched in this epoch keeps the epoch
                    // the controller knows (0: no claim).
                    node_epoch: follower.node_epoch.unwrap_or(0),
                });
            }
        }
        if !changed {
            return None;
        }
        isr.sort();
        let proposal = IsrProposal {
            leader_epoch: self.state.leader_epoch,
            partition_epoch: self.state.partition_epoch,
            isr,
        };
        self.in_flight = Some(proposal.clone());
        // The HW now counts the proposed members too, until the controller answers.
        self.update_high_watermark();
        Some(proposal)
    }

    /// The next acks=all produce answered or failed.
    pub fn poll_released(&mut self) -> Option<(T, Result<(), AcksAllError>)> {
        self.released.pop_front()
    }

    /// The next DeleteRecords wait answered (with the low watermark) or failed.
    pub fn poll_low_watermark_released(&mut self) -> Option<(T, Result<i64, LowWatermarkError>)> {
        self.low_watermark_released.pop_front()
    }

    /// When [`Self::handle_timeout`] must next run: the earliest waiter deadline (acks=all
    /// or DeleteRecords), or the moment an ISR member's lag exceeds the limit.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = self.waiters.iter().map(|waiter| waiter.deadline).chain(
            self.low_watermark_waiters
                .iter()
                .map(|waiter| waiter.deadline),
        );
        let lags = self
            .followers
            .iter()
            .filter(|(node, _)| self.state.isr.contains(node))
            .filter_map(|(_, follower)| {
                follower
                    .last_caught_up
                    .checked_add(self.config.replica_lag_time_max)
            })
            // Strictly past the limit: the proposal poll compares with `>`.
            .filter_map(|instant| instant.checked_add(Duration::from_millis(1)));
        deadlines.chain(lags).min()
    }

    /// Fails the waiters whose deadline passed. (ISR proposals are taken by
    /// [`Self::poll_isr_proposal`], which the driver polls after this.)
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.waiters.len() {
            if self
                .waiters
                .get(index)
                .is_some_and(|waiter| waiter.deadline <= now)
            {
                let waiter = self.waiters.swap_remove(index);
                self.released
                    .push_back((waiter.token, Err(AcksAllError::RequestTimedOut)));
            } else {
                index += 1;
            }
        }
        let mut index = 0;
        while index < self.low_watermark_waiters.len() {
            if self
                .low_watermark_waiters
                .get(index)
                .is_some_and(|waiter| waiter.deadline <= now)
            {
                let waiter = self.low_watermark_waiters.swap_remove(index);
                self.low_watermark_released
                    .push_back((waiter.token, Err(LowWatermarkError::RequestTimedOut)));
            } else {
                index += 1;
            }
        }
    }

    /// Recomputes the HW and releases or fails waiters.
    fn update_high_watermark(&mut self) {
        if !self.deposed
            && self.state.isr.len() >= self.config.min_insync_replicas
            && let Some(low) = self.lowest_synced_end_over_maximal_isr()
        {
            // Never back: a consumer may have read below it already.
            self.high_watermark = self.high_watermark.max(low);
        }
        self.release_waiters();
    }

    /// The lowest synced end over the current ISR and the proposed one; `None` while a
    /// follower among them has not fetched in this leader epoch.
    fn lowest_synced_end_over_maximal_isr(&self) -> Option<i64> {
        let proposed = self
            .in_flight
            .iter()
            .flat_map(|proposal| proposal.isr.iter().map(|member| member.node));
        let mut low = self.synced_end;
        for node in self.state.isr.iter().copied().chain(proposed) {
            if node == self.local {
                continue;
            }
            let end = self.followers.get(&node)?.synced_end?;
            low = low.min(end);
        }
        Some(low)
    }

    fn release_waiters(&mut self) {
        if self.deposed {
            self.fail_all(AcksAllError::NotLeaderOrFollower);
            return;
        }
        let isr = self.state.isr.len();
        let min = self.config.min_insync_replicas;
        let high_watermark = self.high_watermark;
        let mut index = 0;
        while index < self.waiters.len() {
            let outcome = match self.waiters.get(index) {
                Some(waiter) if waiter.end_offset <= high_watermark => Some(Ok(())),
                Some(_) if isr < min => {
                    Some(Err(AcksAllError::NotEnoughReplicasAfterAppend { isr, min }))
                }
                _ => None,
            };
            match outcome {
                Some(outcome) => {
                    let waiter = self.waiters.remove(index);
                    self.released.push_back((waiter.token, outcome));
                }
                None => index += 1,
            }
        }
    }

    fn fail_all(&mut self, error: AcksAllError) {
        for waiter in self.waiters.drain(..) {
            self.released.push_back((waiter.token, Err(error)));
        }
        // Deposed: the next leader's followers are not this one's to count.
        for waiter in self.low_watermark_waiters.drain(..) {
            self.low_watermark_released
                .push_back((waiter.token, Err(LowWatermarkError::NotLeaderOrFollower)));
        }
    }

    fn release_low_watermark_waiters(&mut self) {
        if self.deposed {
            self.fail_all(AcksAllError::NotLeaderOrFollower);
            return;
        }
        let Some(low_watermark) = self.low_watermark() else {
            return;
        };
        let mut index = 0;
        while index < self.low_watermark_waiters.len() {
            if self
                .low_watermark_waiters
                .get(index)
                .is_some_and(|waiter| waiter.offset <= low_watermark)
            {
                let waiter = self.low_watermark_waiters.remove(index);
                self.low_watermark_released
                    .push_back((waiter.token, Ok(low_watermark)));
            } else {
                index += 1;
            }
        }
    }
}

impl FollowerProgress {
    fn unknown(now: Instant) -> Self {
        Self {
            synced_end: None,
            log_start_offset: None,
            node_epoch: None,
            // A new leader gives every ISR member a full lag period to fetch (Kafka does the
            // same), rather than shrinking the ISR at once.
            last_caught_up: now,
            previous_fetch: None,
            restarted: false,
        }
    }
}

#[cfg(test)]
mod tests;
