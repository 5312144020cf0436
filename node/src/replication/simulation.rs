//! A deterministic replication simulation: one partition on three nodes in one process, with
//! real `PartitionLog`s on `SimDisk`s, the pure leader and follower state machines, the
//! replica-fetch messages passed (through the wire codec) by the test in a seeded order, a
//! minimal controller (ISR compare-and-set on the partition epoch, clean elections from the
//! ISR, node epochs), and time passed in. Faults: follower and leader power loss, messages
//! lost or delayed and reordered, leader changes with epoch bumps, two of them back to back
//! while fetches are in flight, and a follower restarted with a bit flipped in a synced
//! batch (issue 13 item 4): the controller drops it from the ISR, it is cut at its last good
//! batch with the node's own repair (`storage::repair::truncate_at_damage`) and refetches.
//!
//! Checks (safety): every batch below the high watermark is identical at the same offset on
//! every live ISR member; what was once below the high watermark never changes (no
//! committed record lost or rewritten); every acks=all acknowledgement is within it. Then
//! (liveness) the faults stop, every node restarts, and all replicas must converge on the
//! leader's log within a bounded number of rounds.
//!
//! A failing seed replays alone with `LEDGE_SIM_SEED=<seed> cargo test -p ledge-node --lib
//! replication::simulation`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_protocol::wire::replica::{
    ReplicaFetchError, ReplicaFetchLimits, ReplicaFetchPartitionResponse, ReplicaFetchRequest,
    ReplicaFetchResponse,
};
use ledge_protocol::{BATCH_HEADER_BYTES, BatchIter, EncodeOptions, Record, encode_batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fetch::{self, FetchPlan, LeaderLogView};
use super::follower::{FollowerAction, FollowerConfig, FollowerLogView, PartitionFollower};
use super::leader::{IsrProposal, LeaderConfig, PartitionLeader};
use super::{NodeEpoch, NodeId, PartitionState};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::sim::SimDisk;
use crate::storage::repair::{DamageHint, truncate_at_damage};
use crate::storage::segment::SEGMENT_HEADER_BYTES;
use crate::storage::{AppendDurability, LogConfig, OpenError, PartitionLog};

const NODES: [NodeId; 3] = [1, 2, 3];
const TOPIC: &str = "orders";
const STEPS: usize = 400;
/// Seeds run by default (`LEDGE_SIM_SEEDS` runs more: `LEDGE_SIM_SEEDS=500`).
const SEEDS: u64 = 12;
const CONVERGE_ROUNDS_MAX: usize = 200;
const TICK: Duration = Duration::from_millis(200);

enum Role {
    Leader(PartitionLeader<u64>),
    Follower(PartitionFollower),
}

struct Node {
    id: NodeId,
    disk: SimDisk,
    node_epoch: NodeEpoch,
    log: Option<PartitionLog<SimDisk>>,
    role: Option<Role>,
}

enum Message {
    Fetch {
        from: NodeId,
        to: NodeId,
        fetch_epoch: i32,
        frame: Bytes,
    },
    Answer {
        to: NodeId,
        fetch_epoch: i32,
        frame: Bytes,
    },
}

struct Cluster {
    rng: ChaCha8Rng,
    start: Instant,
    tick: u32,
    nodes: BTreeMap<NodeId, Node>,
    state: PartitionState,
    registered: BTreeMap<NodeId, NodeEpoch>,
    in_flight: VecDeque<Message>,
    next_node_epoch: NodeEpoch,
    /// Every batch ever below a high watermark, by base offset: never to change.
    committed: BTreeMap<i64, Bytes>,
    committed_end: i64,
    /// acks=all produces answered Ok: (token, base offset, bytes).
    acked: Vec<(u64, i64, Bytes)>,
    appended: BTreeMap<u64, (i64, Bytes)>,
    next_token: u64,
    stats: Stats,
}

/// What a run went through, to show the faults were exercised.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    crashes: usize,
    leader_changes: usize,
    truncations: usize,
    repairs: usize,
    acked: usize,
    committed_end: i64,
}

fn directory(id: NodeId) -> PathBuf {
    PathBuf::from(format!("/node-{id}/orders-0"))
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        batch_bytes_max: 1024,
        commit_bytes_max: 4096,
        recovery_read_bytes: 1024,
        ..LogConfig::default()
    }
}

fn leader_config() -> LeaderConfig {
    LeaderConfig {
        min_insync_replicas: 2,
        replica_lag_time_max: Duration::from_secs(4),
    }
}

fn follower_config() -> FollowerConfig {
    FollowerConfig {
        fetch_wait_max: Duration::from_millis(500),
        fetch_bytes_max: 1 << 20,
        partition_fetch_bytes_max: 4096,
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

fn record_batch(token: u64) -> Bytes {
    let records: Vec<Record> = (0..2)
        .map(|number| Record {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("record-{token}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// Batches of `bytes` with their base offsets, with the leader-stamped fields (base offset,
/// leader epoch) included: the whole stored batch is compared.
fn split(bytes: &Bytes) -> Vec<(i64, Bytes)> {
    BatchIter::new(bytes)
        .map(|item| {
            let (header, batch) = item.unwrap();
            (header.base_offset, bytes.slice_ref(batch))
        })
        .collect()
}

async fn read_log(log: &PartitionLog<SimDisk>, below: i64) -> Vec<(i64, Bytes)> {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    let end = below.min(log.high_watermark());
    while offset < end {
        let read = log.read(offset, 1 << 16).await.unwrap();
        if read.bytes.is_empty() {
            break;
        }
        for (base, batch) in split(&read.bytes) {
            let header = ledge_protocol::BatchHeader::parse(&batch).unwrap();
            offset = header.last_offset() + 1;
            if base < end {
                batches.push((base, batch));
            }
        }
    }
    batches
}

impl Cluster {
    async fn new(seed: u64) -> Self {
        let mut nodes = BTreeMap::new();
        let mut registered = BTreeMap::new();
        let state = PartitionState {
            replicas: NODES.to_vec(),
            isr: NODES.to_vec(),
            leader: Some(1),
            leader_epoch: 1,
            partition_epoch: 1,
        };
        let start = SystemClock.now();
        for id in NODES {
            let disk = SimDisk::new(seed.wrapping_mul(31).wrapping_add(u64::from(id)));
            nodes.insert(
                id,
                Node {
                    id,
                    disk,
                    node_epoch: u64::from(id),
                    log: None,
                    role: None,
                },
            );
            registered.insert(id, u64::from(id));
        }
        let mut cluster = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            start,
            tick: 0,
            nodes,
            state,
            registered,
            in_flight: VecDeque::new(),
            next_node_epoch: 10,
            committed: BTreeMap::new(),
            committed_end: 0,
            acked: Vec::new(),
            appended: BTreeMap::new(),
            next_token: 0,
            stats: Stats::default(),
        };
        for id in NODES {
            cluster.start_node(id).await;
        }
        cluster
    }

    fn now(&self) -> Instant {
        self.start + TICK * self.tick
    }

    /// Opens a node's log and gives it its role under the current state.
    async fn start_node(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let log = PartitionLog::open(node.disk.clone(), &directory(id), log_config(), clock())
            .await
            .unwrap();
        node.log = Some(log);
        self.assign_role(id).await;
    }

    async fn assign_role(&mut self, id: NodeId) {
        let now = self.now();
        let state = self.state.clone();
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(log) = node.log.as_ref() else {
            return;
        };
        if state.leader == Some(id) {
            // Kafka's rule: the new epoch starts at the log end before anything is served.
            log.set_leader_epoch(state.leader_epoch).await.unwrap();
            let high_watermark = match &node.role {
                Some(Role::Follower(follower)) => {
                    let epochs = log.leader_epochs();
                    follower.high_watermark(&FollowerLogView {
                        log_start_offset: log.log_start_offset(),
                        synced_end: log.high_watermark(),
                        epochs: &epochs,
                    })
                }
                _ => 0,
            };
            node.role = Some(Role::Leader(PartitionLeader::new(
                id,
                node.node_epoch,
                state,
                leader_config(),
                log.high_watermark(),
                high_watermark,
                now,
            )));
        } else {
            node.role = Some(Role::Follower(PartitionFollower::new(
                TOPIC.into(),
                0,
                id,
                &state,
                follower_config(),
            )));
        }
    }

    /// Publishes the controller's state to every live node (as metadata would).
    async fn publish(&mut self) {
        let now = self.now();
        let state = self.state.clone();
        for id in NODES {
            let node = self.nodes.get_mut(&id).unwrap();
            if node.log.is_none() {
                continue;
            }
            let becomes_leader = state.leader == Some(id)
                && !matches!(&node.role, Some(Role::Leader(leader)) if leader.leader_epoch() == state.leader_epoch);
            let stops_leading =
                state.leader != Some(id) && matches!(node.role, Some(Role::Leader(_)));
            if becomes_leader || stops_leading {
                if let Some(Role::Leader(leader)) = &mut node.role {
                    leader.handle_partition_state(state.clone(), now);
                    drain_released(leader, &mut self.appended, &mut self.acked);
                }
                self.assign_role(id).await;
                continue;
            }
            match &mut node.role {
                Some(Role::Leader(leader)) => {
                    leader.handle_partition_state(state.clone(), now);
                    drain_released(leader, &mut self.appended, &mut self.acked);
                }
                Some(Role::Follower(follower)) => follower.handle_partition_state(&state),
                None => {}
            }
        }
    }

    /// A clean election: the next live ISR member after the current leader.
    async fn change_leader(&mut self) {
        let current = self.state.leader;
        let candidates: Vec<NodeId> = self
            .state
            .isr
            .iter()
            .copied()
            .filter(|id| Some(*id) != current && self.nodes[id].log.is_some())
            .collect();
        if candidates.is_empty() {
            return;
        }
        let leader = candidates[self.rng.random_range(0..candidates.len())];
        self.stats.leader_changes += 1;
        self.state.leader = Some(leader);
        self.state.leader_epoch += 1;
        self.state.partition_epoch += 1;
        self.publish().await;
    }

    /// The controller applies an ISR change with a compare-and-set on the partition epoch
    /// and the leader epoch, and each added member's node epoch (KIP-903).
    async fn apply_proposal(&mut self, proposal: IsrProposal) -> bool {
        let fresh = proposal.partition_epoch == self.state.partition_epoch
            && proposal.leader_epoch == self.state.leader_epoch;
        let members_current = proposal.isr.iter().all(|member| {
            self.state.isr.contains(&member.node)
                || self.registered.get(&member.node) == Some(&member.node_epoch)
        });
        if !fresh || !members_current {
            return false;
        }
        self.state.isr = proposal.isr.iter().map(|member| member.node).collect();
        self.state.partition_epoch += 1;
        self.publish().await;
        true
    }

    async fn crash(&mut self, id: NodeId) {
        self.stats.crashes += 1;
        let node = self.nodes.get_mut(&id).unwrap();
        node.disk.crash();
        node.log = None;
        node.role = None;
        let was_leader = self.state.leader == Some(id);
        if was_leader {
            self.change_leader().await;
            if self.state.leader == Some(id) {
                // No live ISR member to take over: the partition is offline.
                self.state.leader = None;
                self.state.leader_epoch += 1;
                self.state.partition_epoch += 1;
                self.publish().await;
            }
        }
    }

    async fn restart(&mut self, id: NodeId) {
        self.next_node_epoch += 1;
        let epoch = self.next_node_epoch;
        self.registered.insert(id, epoch);
        self.nodes.get_mut(&id).unwrap().node_epoch = epoch;
        if self.state.leader.is_none() && self.state.isr.contains(&id) {
            self.state.leader = Some(id);
            self.state.leader_epoch += 1;
            self.state.partition_epoch += 1;
        }
        self.start_node(id).await;
        self.publish().await;
    }

    /// Whether an ISR member other than `id` is up (so `id` is not the only copy).
    fn another_live_isr_member(&self, id: NodeId) -> bool {
        self.state
            .isr
            .iter()
            .any(|member| *member != id && self.nodes[member].log.is_some())
    }

    /// Restarts a stopped node with a bit flipped in a synced batch of its active segment,
    /// as the node handles it: the controller drops the damaged replica from the ISR (its
    /// report; a real restart's registration already does), then the open's damage report
    /// drives the repair, and the node follows the leader from its last good batch.
    async fn restart_damaged(&mut self, id: NodeId) {
        let disk = self.nodes[&id].disk.clone();
        if !flip_a_synced_bit(&disk, id, &mut self.rng).await {
            self.restart(id).await;
            return;
        }
        if self.state.isr.contains(&id) {
            self.state.isr.retain(|member| *member != id);
            self.state.partition_epoch += 1;
            self.publish().await;
        }
        self.next_node_epoch += 1;
        let epoch = self.next_node_epoch;
        self.registered.insert(id, epoch);
        self.nodes.get_mut(&id).unwrap().node_epoch = epoch;
        let log =
            match PartitionLog::open(disk.clone(), &directory(id), log_config(), clock()).await {
                // A flip can look like a torn write above the recovery point; it was cut.
                Ok(log) => log,
                Err(OpenError::Corrupt { path, position, .. }) => {
                    let hint = DamageHint::At {
                        segment: path,
                        position,
                    };
                    truncate_at_damage(&disk, &directory(id), Some(&hint), &log_config())
                        .await
                        .unwrap();
                    self.stats.repairs += 1;
                    PartitionLog::open(disk, &directory(id), log_config(), clock())
                        .await
                        .unwrap()
                }
                Err(error) => panic!("node {id}: {error}"),
            };
        self.nodes.get_mut(&id).unwrap().log = Some(log);
        self.assign_role(id).await;
        self.publish().await;
    }

    async fn produce(&mut self) {
        let Some(leader_id) = self.state.leader else {
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        let deadline = self.now() + Duration::from_secs(10);
        let node = self.nodes.get_mut(&leader_id).unwrap();
        let (Some(log), Some(Role::Leader(leader))) = (node.log.as_ref(), node.role.as_mut())
        else {
            return;
        };
        if leader.check_acks_all().is_err() {
            return;
        }
        let Ok(outcome) = log
            .append(record_batch(token), AppendDurability::Synced)
            .await
        else {
            return;
        };
        let stored = read_log(log, outcome.last_offset + 1).await;
        let (_, bytes) = stored
            .into_iter()
            .find(|(base, _)| *base == outcome.base_offset)
            .unwrap();
        self.appended.insert(token, (outcome.base_offset, bytes));
        leader.handle_local_synced(log.high_watermark());
        leader.handle_acks_all_append(token, outcome.last_offset + 1, deadline);
        drain_released(leader, &mut self.appended, &mut self.acked);
    }

    fn poll_fetches(&mut self) {
        let now = self.now();
        for node in self.nodes.values_mut() {
            let (Some(log), Some(Role::Follower(follower))) =
                (node.log.as_ref(), node.role.as_mut())
            else {
                continue;
            };
            let epochs = log.leader_epochs();
            let view = FollowerLogView {
                log_start_offset: log.log_start_offset(),
                synced_end: log.high_watermark(),
                epochs: &epochs,
            };
            let Some(leader) = follower.leader() else {
                continue;
            };
            let Some(partition) = follower.poll_fetch(now, &view) else {
                continue;
            };
            let request = super::follower::fetch_request(
                node.id,
                node.node_epoch,
                &follower_config(),
                vec![partition],
            );
            self.in_flight.push_back(Message::Fetch {
                from: node.id,
                to: leader,
                fetch_epoch: follower.leader_epoch(),
                frame: request.encode_frame().into_bytes(),
            });
        }
    }

    /// Delivers (or loses) one message picked at random: messages overtake each other.
    async fn deliver_one(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let index = self.rng.random_range(0..self.in_flight.len());
        let message = self.in_flight.remove(index).unwrap();
        let lost = self.rng.random_bool(0.05);
        match message {
            Message::Fetch {
                from,
                to,
                fetch_epoch,
                frame,
            } => {
                let answer = if lost || self.nodes[&to].log.is_none() {
                    None
                } else {
                    self.answer_fetch(to, frame).await
                };
                match answer {
                    Some(frame) => self.in_flight.push_back(Message::Answer {
                        to: from,
                        fetch_epoch,
                        frame,
                    }),
                    None => self.fetch_failed(from),
                }
            }
            Message::Answer {
                to,
                fetch_epoch,
                frame,
            } => {
                if lost {
                    self.fetch_failed(to);
                } else {
                    self.handle_answer(to, fetch_epoch, frame).await;
                }
            }
        }
    }

    fn fetch_failed(&mut self, id: NodeId) {
        let now = self.now();
        if let Some(Role::Follower(follower)) = &mut self.nodes.get_mut(&id).unwrap().role {
            follower.handle_fetch_failed(now);
        }
    }

    /// The leader side: node `id` answers a fetch frame.
    async fn answer_fetch(&mut self, id: NodeId, frame: Bytes) -> Option<Bytes> {
        let now = self.now();
        let request =
            ReplicaFetchRequest::decode_bounded(frame, &ReplicaFetchLimits::default()).unwrap();
        if self.registered.get(&request.replica_id) != Some(&request.node_epoch) {
            let response = ReplicaFetchResponse {
                error: ReplicaFetchError::StaleNodeEpoch,
                partitions: Vec::new(),
            };
            return Some(response.encode_frame().into_bytes());
        }
        let node = self.nodes.get_mut(&id).unwrap();
        let log = node.log.as_ref()?;
        let epochs = log.leader_epochs();
        let mut partitions = Vec::new();
        for partition in &request.partitions {
            let (state, high_watermark) = match &node.role {
                Some(Role::Leader(leader)) if !leader.is_deposed() => {
                    (self.state.clone(), leader.high_watermark())
                }
                // Not leading (or not yet knowing it leads): every fetch is refused.
                _ => (
                    PartitionState {
                        leader: None,
                        ..self.state.clone()
                    },
                    0,
                ),
            };
            let view = LeaderLogView {
                log_start_offset: log.log_start_offset(),
                synced_end: log.high_watermark(),
                high_watermark,
                epochs: &epochs,
            };
            let plan = fetch::plan_fetch(id, &state, request.replica_id, partition, &view);
            let records = match &plan {
                FetchPlan::Read {
                    from, max_bytes, ..
                } => {
                    let read = log.read_verified(*from, *max_bytes as usize).await.unwrap();
                    assert_eq!(read.damage, None);
                    read.bytes
                }
                _ => Bytes::new(),
            };
            if let (FetchPlan::Read { .. }, Some(Role::Leader(leader))) = (&plan, &mut node.role) {
                leader
                    .handle_fetch(
                        now,
                        request.replica_id,
                        request.node_epoch,
                        partition.fetch_offset,
                    )
                    .unwrap();
                drain_released(leader, &mut self.appended, &mut self.acked);
            }
            let view = LeaderLogView {
                high_watermark: match &node.role {
                    Some(Role::Leader(leader)) => leader.high_watermark(),
                    _ => 0,
                },
                ..view
            };
            partitions.push(fetch::answer(partition, &plan, &view, records));
        }
        let response = ReplicaFetchResponse {
            error: ReplicaFetchError::None,
            partitions,
        };
        Some(response.encode_frame().into_bytes())
    }

    /// The follower side: node `id` handles an answer and carries out the action.
    async fn handle_answer(&mut self, id: NodeId, fetch_epoch: i32, frame: Bytes) {
        let now = self.now();
        let response =
            ReplicaFetchResponse::decode_bounded(frame, &ReplicaFetchLimits::default()).unwrap();
        let node = self.nodes.get_mut(&id).unwrap();
        let disk = node.disk.clone();
        let (Some(log), Some(Role::Follower(follower))) = (node.log.as_mut(), node.role.as_mut())
        else {
            return;
        };
        if response.error != ReplicaFetchError::None {
            follower.handle_fetch_failed(now);
            return;
        }
        let answer: &ReplicaFetchPartitionResponse = response.partitions.first().unwrap();
        let epochs = log.leader_epochs();
        let view = FollowerLogView {
            log_start_offset: log.log_start_offset(),
            synced_end: log.high_watermark(),
            epochs: &epochs,
        };
        match follower.handle_answer(now, fetch_epoch, answer, &view) {
            FollowerAction::None => {}
            FollowerAction::Append { records } => {
                if log.append_as_follower(records).await.is_err() {
                    follower.handle_action_failed(now);
                }
            }
            FollowerAction::Truncate { offset } => {
                if offset < log.log_end_offset() {
                    self.stats.truncations += 1;
                }
                *log = log.truncate_to(offset, disk, clock()).await.unwrap();
            }
            FollowerAction::TruncateFullyAndStartAt { offset } => {
                // Without retention the leader's log start is 0, so starting over is a
                // truncation to the follower's own log start (also 0). A leader whose log
                // start passed the follower's end needs a "start the log empty at" primitive
                // this simulation never reaches.
                assert!(
                    offset <= log.log_start_offset(),
                    "start over at {offset}, past the log start {}",
                    log.log_start_offset()
                );
                let start = log.log_start_offset();
                *log = log.truncate_to(start, disk, clock()).await.unwrap();
            }
        }
    }

    async fn poll_leader(&mut self) {
        let now = self.now();
        let Some(id) = self.state.leader else {
            return;
        };
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(Role::Leader(leader)) = &mut node.role else {
            return;
        };
        leader.handle_timeout(now);
        drain_released(leader, &mut self.appended, &mut self.acked);
        if let Some(proposal) = leader.poll_isr_proposal(now)
            && !self.apply_proposal(proposal).await
            && let Some(Role::Leader(leader)) = &mut self.nodes.get_mut(&id).unwrap().role
        {
            leader.handle_proposal_refused();
        }
    }

    /// The safety checks, after every step.
    async fn check(&mut self, seed: u64, step: usize) {
        let Some(leader_id) = self.state.leader else {
            return;
        };
        let high_watermark = match &self.nodes[&leader_id].role {
            Some(Role::Leader(leader)) => leader.high_watermark(),
            _ => return,
        };
        let leader_log = self.nodes[&leader_id].log.as_ref().unwrap();
        // A new leader starts from the HW it knew as a follower, maybe below the old
        // leader's; but it holds every committed batch (a clean election).
        assert!(
            leader_log.high_watermark() >= self.committed_end,
            "seed {seed} step {step}: leader {leader_id} ends at {}, below the committed end {}",
            leader_log.high_watermark(),
            self.committed_end
        );
        for (base, batch) in read_log(leader_log, high_watermark.max(self.committed_end)).await {
            match self.committed.get(&base) {
                Some(known) => assert_eq!(
                    known, &batch,
                    "seed {seed} step {step}: committed batch at {base} changed on leader {leader_id}"
                ),
                None if base < high_watermark => {
                    self.committed.insert(base, batch);
                }
                None => panic!(
                    "seed {seed} step {step}: leader {leader_id} has an unknown batch at {base} below the committed end"
                ),
            }
        }
        self.committed_end = self.committed_end.max(high_watermark);
        for id in self.state.isr.clone() {
            let Some(log) = self.nodes[&id].log.as_ref() else {
                continue;
            };
            for (base, batch) in read_log(log, self.committed_end).await {
                assert_eq!(
                    self.committed.get(&base),
                    Some(&batch),
                    "seed {seed} step {step}: ISR member {id} differs at offset {base}"
                );
            }
        }
        for (token, base, batch) in &self.acked {
            assert_eq!(
                self.committed.get(base),
                Some(batch),
                "seed {seed} step {step}: acked produce {token} at {base} is not committed"
            );
        }
    }
}

/// Flips one bit inside the records of a batch of node `id`'s active segment (past the
/// batch header, so the CRC covers it); false if that segment holds no batch.
async fn flip_a_synced_bit(disk: &SimDisk, id: NodeId, rng: &mut ChaCha8Rng) -> bool {
    use crate::storage::Disk;
    let names = disk.list_dir(&directory(id)).await.unwrap();
    let Some(active) = names
        .iter()
        .filter(|name| name.ends_with(".log"))
        .max()
        .map(|name| directory(id).join(name))
    else {
        return false;
    };
    let Some(bytes) = disk.contents(&active) else {
        return false;
    };
    let mut batches = Vec::new();
    let mut position = SEGMENT_HEADER_BYTES as usize;
    for item in BatchIter::new(bytes.get(position..).unwrap_or_default()) {
        let Ok((_, batch)) = item else {
            break;
        };
        batches.push((position, batch.len()));
        position += batch.len();
    }
    if batches.is_empty() {
        return false;
    }
    let (start, length) = batches[rng.random_range(0..batches.len())];
    let byte = start + BATCH_HEADER_BYTES + rng.random_range(0..length - BATCH_HEADER_BYTES);
    disk.corrupt_bit(&active, byte, rng.random_range(0..8u8))
}

fn drain_released(
    leader: &mut PartitionLeader<u64>,
    appended: &mut BTreeMap<u64, (i64, Bytes)>,
    acked: &mut Vec<(u64, i64, Bytes)>,
) {
    while let Some((token, outcome)) = leader.poll_released() {
        if let (Ok(()), Some((base, bytes))) = (outcome, appended.remove(&token)) {
            acked.push((token, base, bytes));
        }
    }
}

async fn run(seed: u64) -> Stats {
    let mut cluster = Cluster::new(seed).await;
    for step in 0..STEPS {
        cluster.tick += 1;
        let roll = cluster.rng.random_range(0..100u32);
        match roll {
            0..=29 => cluster.produce().await,
            30..=34 => {
                let id = NODES[cluster.rng.random_range(0..NODES.len())];
                if cluster.nodes[&id].log.is_some() {
                    cluster.crash(id).await;
                }
            }
            35..=44 => {
                let down: Vec<NodeId> = NODES
                    .iter()
                    .copied()
                    .filter(|id| cluster.nodes[id].log.is_none())
                    .collect();
                if !down.is_empty() {
                    let id = down[cluster.rng.random_range(0..down.len())];
                    if roll <= 37 && cluster.another_live_isr_member(id) {
                        cluster.restart_damaged(id).await;
                    } else {
                        cluster.restart(id).await;
                    }
                }
            }
            45..=47 => cluster.change_leader().await,
            // Two leader changes within one fetch round trip.
            48 => {
                cluster.poll_fetches();
                cluster.change_leader().await;
                cluster.change_leader().await;
            }
            _ => {
                cluster.poll_fetches();
                for _ in 0..3 {
                    cluster.deliver_one().await;
                }
            }
        }
        cluster.poll_leader().await;
        cluster.check(seed, step).await;
    }
    // Liveness: heal everything and require convergence.
    for id in NODES {
        if cluster.nodes[&id].log.is_none() {
            cluster.restart(id).await;
        }
    }
    let mut converged = false;
    for round in 0..CONVERGE_ROUNDS_MAX {
        cluster.tick += 1;
        cluster.poll_fetches();
        while !cluster.in_flight.is_empty() {
            cluster.deliver_one_reliably().await;
        }
        cluster.poll_leader().await;
        cluster.check(seed, STEPS + round).await;
        if cluster.converged().await {
            converged = true;
            break;
        }
    }
    if !converged {
        let mut report = format!("state {:?}\n", cluster.state);
        for (id, node) in &cluster.nodes {
            let log = node.log.as_ref().unwrap();
            let role = match &node.role {
                Some(Role::Leader(leader)) => format!(
                    "leader hw {} deposed {} followers {:?}",
                    leader.high_watermark(),
                    leader.is_deposed(),
                    NODES.map(|n| leader.follower_synced_end(n))
                ),
                Some(Role::Follower(follower)) => format!(
                    "follower of {:?} epoch {} awaiting {} timeout {:?}",
                    follower.leader(),
                    follower.leader_epoch(),
                    follower.is_awaiting_metadata(),
                    follower
                        .poll_timeout()
                        .map(|t| t.saturating_duration_since(cluster.start))
                ),
                None => "none".into(),
            };
            report += &format!(
                "node {id}: end {} epochs {:?} {role}\n",
                log.high_watermark(),
                log.leader_epochs().entries()
            );
        }
        panic!("seed {seed}: replicas did not converge after healing\n{report}");
    }
    Stats {
        acked: cluster.acked.len(),
        committed_end: cluster.committed_end,
        ..cluster.stats
    }
}

impl Cluster {
    async fn deliver_one_reliably(&mut self) {
        let Some(message) = self.in_flight.pop_front() else {
            return;
        };
        match message {
            Message::Fetch {
                from,
                to,
                fetch_epoch,
                frame,
            } => match self.answer_fetch(to, frame).await {
                Some(frame) => self.in_flight.push_back(Message::Answer {
                    to: from,
                    fetch_epoch,
                    frame,
                }),
                None => self.fetch_failed(from),
            },
            Message::Answer {
                to,
                fetch_epoch,
                frame,
            } => self.handle_answer(to, fetch_epoch, frame).await,
        }
    }

    /// Every replica holds the leader's whole log, all are in the ISR, and the HW is the end.
    async fn converged(&self) -> bool {
        let Some(leader_id) = self.state.leader else {
            return false;
        };
        let Some(Role::Leader(leader)) = &self.nodes[&leader_id].role else {
            return false;
        };
        let leader_log = self.nodes[&leader_id].log.as_ref().unwrap();
        let end = leader_log.high_watermark();
        if leader.high_watermark() != end || self.state.isr.len() != NODES.len() {
            return false;
        }
        let expected = read_log(leader_log, end).await;
        for id in NODES {
            let log = self.nodes[&id].log.as_ref().unwrap();
            if log.high_watermark() != end || read_log(log, end).await != expected {
                return false;
            }
        }
        true
    }
}

#[tokio::test]
async fn replicas_agree_below_the_high_watermark_through_crashes_and_leader_changes() {
    // Goal: the replication state machines and log primitives together keep every batch
    // below the HW identical on every ISR member, lose no acks=all acknowledgement and no
    // committed batch, through power loss of followers and leaders, lost and reordered
    // fetches and leader changes (two within one round trip); then converge once healed.
    let seeds: Vec<u64> = match std::env::var("LEDGE_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("LEDGE_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("LEDGE_SIM_SEEDS")
                .ok()
                .and_then(|count| count.parse().ok())
                .unwrap_or(SEEDS);
            (0..count).collect()
        }
    };
    let mut total = Stats::default();
    for seed in seeds {
        let stats = run(seed).await;
        assert!(
            stats.committed_end > 0,
            "seed {seed}: nothing was ever committed"
        );
        total.acked += stats.acked;
        total.crashes += stats.crashes;
        total.leader_changes += stats.leader_changes;
        total.truncations += stats.truncations;
        total.repairs += stats.repairs;
    }
    eprintln!("replication simulation: {total:?}");
    assert!(total.acked > 0, "no produce was ever acknowledged");
    // The default seeds exercise the damaged restart (a run of one chosen seed may not).
    if std::env::var("LEDGE_SIM_SEED").is_err() {
        assert!(total.repairs > 0, "no damaged replica was ever repaired");
    }
}
