//! The running controller quorum: openraft wired to the durable store, the metadata state
//! machine and a [`ControllerTransport`], with the decisions of [`super::decisions`] proposed
//! through it.
//!
//! The transport is a small trait so tests run 3 or 5 controllers in one process over an
//! in-memory router (partitions, drops), and the node plugs in the peer RPC of
//! `node/src/cluster/`: a peer request carrying a [`RaftMessage`] is answered by
//! [`Controller::handle_raft_message`].
//!
//! Only the active controller (the Raft leader) decides; a request to another voter is
//! answered [`ControllerRequestError::NotController`] with the leader's id, so the caller
//! retries there. Decisions are serialized (one at a time), each made on an image that
//! includes every earlier decision: the leader's image is brought up to its commit point
//! (`ensure_linearizable`) before the first decision of a term.
//!
//! Time: openraft's own timers (heartbeats, election timeouts, RPC TTLs, backoff) run on
//! tokio's clock through `openraft::TokioRuntime`, not through the node's `Clock`. That is the
//! same clock: `SystemClock` and `SimClock` read tokio's `Instant`, and under
//! `#[tokio::test(start_paused = true)]` both openraft's timers and the node's follow the
//! paused clock, which jumps only when every task is idle. So the quorum obeys the one-clock
//! rule in effect; the only exception is that openraft cannot be moved by a `ManualClock`, so
//! tests of the quorum use paused tokio time, and tests of the decisions pass time in.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::decisions::{
    AlterPartitionRequest, ControllerError, ControllerLogic, CreateTopicRequest, DecisionConfig,
    RegisterRequest, ReplicaDamagedRequest,
};
use super::image::MetadataImage;
use super::records::{MetadataRecord, NodeEpoch, NodeId};
use super::state_machine::ControllerStateMachine;
use super::store::{ControllerLogStore, ControllerStoreError};
use super::types::{ControllerRequest, ControllerResponse, ControllerTypes, raft_id};
use crate::clock::{Clock, sleep};
use crate::storage::disk::Disk;

/// Default `controller_snapshot_entries`: entries applied between snapshots of the image.
pub const CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT: u64 = 1_000;
/// Raft heartbeat interval (openraft's default): a follower hears from the leader this often.
pub const CONTROLLER_RAFT_HEARTBEAT_MS_DEFAULT: u64 = 50;
/// Raft election timeout range: a follower that hears nothing for a random time in this range
/// campaigns (openraft's defaults; failover of the controller takes about this long).
pub const CONTROLLER_ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 150;
/// Default `node_heartbeat_interval_ms` (cluster-design.md).
pub const NODE_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 2_000;
/// Upper end of the election timeout range.
pub const CONTROLLER_ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 300;

/// A controller's settings.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// This node.
    pub node_id: NodeId,
    /// The voters (`controller_voters`); each with its peer address.
    pub voters: BTreeMap<NodeId, String>,
    /// `controller_snapshot_entries`.
    pub snapshot_entries: u64,
    /// Raft heartbeat interval.
    pub raft_heartbeat: Duration,
    /// Raft election timeout range.
    pub election_timeout: (Duration, Duration),
    /// `node_heartbeat_interval_ms`: how often nodes heartbeat, and how often the active
    /// controller looks for expired sessions.
    pub node_heartbeat_interval: Duration,
    /// The decisions' settings.
    pub decisions: DecisionConfig,
}

impl ControllerConfig {
    /// Defaults for `node_id` in a quorum of `voters`.
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>) -> Self {
        Self {
            node_id,
            voters,
            snapshot_entries: CONTROLLER_SNAPSHOT_ENTRIES_DEFAULT,
            raft_heartbeat: Duration::from_millis(CONTROLLER_RAFT_HEARTBEAT_MS_DEFAULT),
            election_timeout: (
                Duration::from_millis(CONTROLLER_ELECTION_TIMEOUT_MIN_MS_DEFAULT),
                Duration::from_millis(CONTROLLER_ELECTION_TIMEOUT_MAX_MS_DEFAULT),
            ),
            node_heartbeat_interval: Duration::from_millis(NODE_HEARTBEAT_INTERVAL_MS_DEFAULT),
            decisions: DecisionConfig::default(),
        }
    }
}

/// A Raft message between controllers (serde, for the peer RPC).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftMessage {
    /// Log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<ControllerTypes>),
    /// A candidate asks for a vote.
    Vote(VoteRequest<u64>),
    /// A chunk of a snapshot for a follower too far behind the log.
    InstallSnapshot(InstallSnapshotRequest<ControllerTypes>),
    /// A voter back on an empty store asks another voter for its current vote (the term
    /// survey of [`Controller::handle_raft_message`]). Changes nothing on the voter asked.
    ReadVote,
}

/// The answer to a [`RaftMessage`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To `ReadVote`: the vote the voter's Raft core holds (in memory, so never below the
    /// one it has stored or answered with).
    CurrentVote(Result<openraft::Vote<u64>, RaftError<u64>>),
}

/// Why a controller did not answer a Raft message: the sender should treat it as a message
/// that did not arrive, and retry.
#[derive(Debug, thiserror::Error)]
pub enum RaftRefused {
    /// This voter is back on an empty store and has not yet learnt the current term from
    /// enough other voters; until then it accepts no leader (it may have helped a newer one
    /// before its store was lost, and would otherwise help an older one commit a second
    /// history: simulator seed 5232).
    #[error(
        "this voter restarted on an empty controller store and has not learnt the current term yet: {answered} of the {needed} other voters it must ask answered"
    )]
    TermUnknown {
        /// Other voters that answered the survey.
        answered: usize,
        /// Other voters that must answer.
        needed: usize,
    },
}

/// How many other voters a voter back on an empty store must hear from before it accepts a
/// leader, in a quorum of `voters`: every elected leader's majority holds at least
/// `voters / 2` voters besides this one, so any `voters - voters / 2` others include one of
/// them, and the highest term they answer is at least the term of every leader elected so
/// far. Never more than the other voters there are.
pub fn term_survey_answers_needed(voters: usize) -> usize {
    (voters - voters / 2).min(voters.saturating_sub(1))
}

/// The highest of the votes other voters answered a term survey with (by term; a committed
/// vote wins a tie, as it names the term's elected leader).
pub fn highest_surveyed_vote(
    votes: impl IntoIterator<Item = openraft::Vote<u64>>,
) -> Option<openraft::Vote<u64>> {
    votes
        .into_iter()
        .max_by_key(|vote| (vote.leader_id().term, vote.is_committed()))
}

/// Whether a rejoining voter must refuse a leader whose vote is `leader`, once its survey
/// found `floor`: a leader of an older term than any other voter has seen was deposed, even
/// if it does not know yet.
pub fn leader_older_than_survey(leader: &openraft::Vote<u64>, floor: &openraft::Vote<u64>) -> bool {
    leader.leader_id().term < floor.leader_id().term
}

/// Sends a message to another voter, as the controller's transport does (boxed: the
/// controller is not generic over its transport).
type RaftSender = Arc<
    dyn Fn(
            NodeId,
            RaftMessage,
        ) -> futures_util::future::BoxFuture<'static, Result<RaftReply, TransportError>>
        + Send
        + Sync,
>;

/// A message could not be delivered (the peer is down, partitioned, or the connection broke).
#[derive(Clone, Debug, thiserror::Error)]
#[error("controller {target} unreachable: {reason}")]
pub struct TransportError {
    /// The peer.
    pub target: NodeId,
    /// Why.
    pub reason: String,
}

/// How controllers reach each other: the node's peer RPC, or an in-memory router in tests.
pub trait ControllerTransport: Send + Sync + 'static {
    /// Delivers `message` to controller `target` and returns its answer.
    fn send(
        &self,
        target: NodeId,
        message: RaftMessage,
    ) -> impl Future<Output = Result<RaftReply, TransportError>> + Send;
}

/// Why a controller request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ControllerRequestError {
    /// This node is not the active controller; ask `leader` (unknown during an election).
    #[error("not the controller (the controller is {leader:?})")]
    NotController {
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
    /// The controller refused the request.
    #[error(transparent)]
    Refused(#[from] ControllerError),
    /// The quorum stopped (storage failure or shutdown).
    #[error("controller quorum failed: {0}")]
    Quorum(String),
}

impl ControllerRequestError {
    /// The Kafka error name for the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotController { .. } => "NOT_CONTROLLER",
            Self::Refused(error) => error.code(),
            Self::Quorum(_) => "UNKNOWN_SERVER_ERROR",
        }
    }
}

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerStartError {
    /// The storage could not open (or refused damaged files).
    #[error(transparent)]
    Store(#[from] ControllerStoreError),
    /// openraft refused the settings or failed to start.
    #[error("controller quorum: {0}")]
    Raft(String),
    /// `controller_voters` names other voters than the quorum stored in the data directory.
    #[error(
        "controller_voters {configured:?} disagree with the controller quorum stored in the data directory {stored:?}"
    )]
    VotersDisagree {
        /// The voters the config names.
        configured: Vec<u64>,
        /// The voters the stored log says.
        stored: Vec<u64>,
    },
}

/// One member of the controller quorum: a voter, or a learner (a node not in
/// `controller_voters`) that follows the committed log and holds the image without voting.
pub struct Controller {
    node_id: NodeId,
    /// Not in `controller_voters`: never initializes the quorum, never campaigns.
    learner: bool,
    raft: Raft<ControllerTypes>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// The decision state and the term it belongs to; held across a decision and its
    /// proposal so decisions are serialized.
    logic: Mutex<(u64, ControllerLogic)>,
    decisions: DecisionConfig,
    node_heartbeat_interval: Duration,
    /// `controller_voters` as configured (not the stored membership: a wiped voter has none
    /// yet and must still accept its leader's messages).
    voters: BTreeSet<NodeId>,
    /// Set while the rejoin marker exists (see [`super::bootstrap`]): a voter that started
    /// with an empty store and no bootstrap marker (its store was wiped, or a hand-made
    /// voter never started) grants no vote until it has caught up
    /// ([`caught_up_after_rejoin`]). Before its store was lost it may have voted in the
    /// current term (voting again there could elect a second controller in one term:
    /// simulator seed 274 with 5 nodes) and held committed entries a majority without it
    /// lacks (seeds 622 and 1375).
    votes_withheld: Arc<std::sync::atomic::AtomicBool>,
    /// While `votes_withheld`: the highest vote a survey of other voters found (`None`
    /// until one completes). A leader of an older term is refused: before its store was
    /// lost this voter may have voted for, or appended from, a newer leader, and an empty
    /// store would otherwise accept the deposed one and help it commit a second history
    /// (simulator seed 5232). The lock is held across a survey, so one runs at a time.
    term_floor: Mutex<Option<openraft::Vote<u64>>>,
    /// Reaches the other voters, for the survey.
    send: RaftSender,
    /// The leader whose appends this node last accepted, and when (Raft heartbeats are
    /// appends, every `controller_raft_heartbeat_ms`). Taken by the first term this node
    /// leads: that leader's node session then ends one session timeout after it was last
    /// heard, not one after this node took over (see [`ControllerLogic::with_predecessor`]).
    last_leader_heard: std::sync::Mutex<Option<(NodeId, Instant)>>,
}

impl Controller {
    /// Opens the storage in `<data_dir>/controller/` and starts the voter. A voter with empty
    /// storage initializes the quorum with `config.voters` only if its bootstrap marker is
    /// there (see [`super::bootstrap`]; every voter does it with the same membership, so
    /// whichever starts first forms the same quorum); without it, it waits to be contacted by
    /// the existing quorum, which catches it up. A node not in
    /// `config.voters` starts as a learner: it never initializes and waits for the active
    /// controller to add it ([`Self::add_registered_learners`]).
    pub async fn start<D: Disk, T: ControllerTransport>(
        config: ControllerConfig,
        disk: D,
        data_dir: &Path,
        transport: Arc<T>,
    ) -> Result<Self, ControllerStartError> {
        let store = ControllerLogStore::open(disk.clone(), data_dir).await?;
        let bootstrap_marker = super::bootstrap::marker_exists(&disk, data_dir)
            .await
            .map_err(ControllerStoreError::from)?;
        let marker_disk = disk.clone();
        let machine = ControllerStateMachine::open(disk, data_dir).await?;
        let image = machine.subscribe();
        let raft_config = openraft::Config {
            cluster_name: "ledge-controller".to_owned(),
            heartbeat_interval: millis(config.raft_heartbeat),
            election_timeout_min: millis(config.election_timeout.0),
            election_timeout_max: millis(config.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
            // Keep as many entries after a snapshot as between snapshots: a briefly lagging
            // follower catches up from the log; one further behind gets the snapshot.
            max_in_snapshot_log_to_keep: config.snapshot_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|error| ControllerStartError::Raft(error.to_string()))?;
        let send: RaftSender = {
            let transport = Arc::clone(&transport);
            Arc::new(move |target, message| {
                let transport = Arc::clone(&transport);
                Box::pin(async move { transport.send(target, message).await })
            })
        };
        let network = NetworkFactory { transport };
        let raft = Raft::new(
            raft_id(config.node_id),
            Arc::new(raft_config),
            network,
            store,
            machine,
        )
        .await
        .map_err(|error| ControllerStartError::Raft(error.to_string()))?;
        let members: BTreeMap<u64, BasicNode> = config
            .voters
            .iter()
            .map(|(id, address)| (raft_id(*id), BasicNode::new(address)))
            .collect();
        let stored_voters: BTreeSet<u64> = raft
            .with_raft_state(|state| state.membership_state.effective().voter_ids().collect())
            .await
            .map_err(|error| ControllerStartError::Raft(error.to_string()))?;
        let configured: BTreeSet<u64> = members.keys().copied().collect();
        if !stored_voters.is_empty() && stored_voters != configured {
            // Membership changes are not supported yet: a config that disagrees with the
            // stored quorum is a mistake (a wrong file, another cluster's data directory).
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(%error, "controller shutdown");
            }
            return Err(ControllerStartError::VotersDisagree {
                configured: configured.into_iter().collect(),
                stored: stored_voters.into_iter().collect(),
            });
        }
        let learner = !config.voters.contains_key(&config.node_id);
        if !stored_voters.is_empty() && bootstrap_marker {
            // Stored (read back from disk just now): the marker has done its job.
            if let Err(error) = super::bootstrap::consume_marker(&marker_disk, data_dir).await {
                tracing::warn!(%error, "cannot remove the controller bootstrap marker");
            }
        }
        if stored_voters.is_empty() && !learner {
            if bootstrap_marker {
                // Every voter proposes the same membership; a voter that already learned it
                // from another refuses, which is fine.
                if let Err(error) = raft.initialize(members).await {
                    tracing::debug!(%error, "controller quorum already initialized");
                }
            } else {
                // A wiped voter must not start a history of its own (review finding 2).
                tracing::info!(
                    marker = %super::bootstrap::marker_path(data_dir).display(),
                    "the controller store is empty and there is no bootstrap marker: not initializing the quorum; waiting to be contacted by the existing controller quorum"
                );
            }
        }
        let rejoin_marker = super::bootstrap::rejoin_marker_exists(&marker_disk, data_dir)
            .await
            .map_err(ControllerStoreError::from)?;
        let rejoining =
            !learner && (rejoin_marker || (stored_voters.is_empty() && !bootstrap_marker));
        if rejoining && !rejoin_marker {
            // Durable before any Raft message is answered: a power loss before catching up
            // must find it again.
            super::bootstrap::write_rejoin_marker(&marker_disk, data_dir)
                .await
                .map_err(ControllerStoreError::from)?;
        }
        let votes_withheld = Arc::new(std::sync::atomic::AtomicBool::new(rejoining));
        if rejoining {
            tracing::info!(
                marker = %super::bootstrap::rejoin_marker_path(data_dir).display(),
                "this voter lost its controller store: it grants no vote until it has caught up with the controller quorum"
            );
            tokio::spawn(release_votes_once_caught_up(
                raft.metrics(),
                marker_disk,
                data_dir.to_path_buf(),
                votes_withheld.clone(),
            ));
        }
        Ok(Self {
            node_id: config.node_id,
            learner,
            raft,
            image,
            logic: Mutex::new((0, ControllerLogic::new(config.decisions.clone()))),
            decisions: config.decisions,
            node_heartbeat_interval: config.node_heartbeat_interval,
            voters: config.voters.keys().copied().collect(),
            votes_withheld,
            term_floor: Mutex::new(None),
            send,
            last_leader_heard: std::sync::Mutex::new(None),
        })
    }

    /// This voter's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The configured `controller_voters`.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Whether this node is a learner (not in `controller_voters`).
    pub fn is_learner(&self) -> bool {
        self.learner
    }

    /// The metadata image as this node has applied it (a learner's follows the committed
    /// log as a voter's does).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver of the image, for subscribers (metadata answers, replica managers).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The active controller as this voter knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(|id| NodeId::try_from(id).ok())
    }

    /// openraft's metrics (log, snapshot and purge positions, term, leader).
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// The refusal a voter that lost its store answers a vote request with, while it has
    /// not caught up yet (see `votes_withheld`); `None` once it may vote.
    fn withheld_vote(&self) -> Option<VoteResponse<u64>> {
        if !self
            .votes_withheld
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        let vote = self.raft.metrics().borrow().vote;
        Some(VoteResponse {
            vote,
            vote_granted: false,
            last_log_id: None,
        })
    }

    /// While this voter is rejoining (see `votes_withheld`), the highest vote the other
    /// voters hold: learnt once by asking them all at once ([`RaftMessage::ReadVote`]) and
    /// kept. Refused while fewer than [`term_survey_answers_needed`] answer; the leader
    /// retries, which runs the survey again. `None` once the voter is not rejoining.
    async fn rejoin_term_floor(&self) -> Result<Option<openraft::Vote<u64>>, RaftRefused> {
        if !self
            .votes_withheld
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(None);
        }
        let mut floor = self.term_floor.lock().await;
        if let Some(known) = *floor {
            return Ok(Some(known));
        }
        let others: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|id| *id != self.node_id)
            .collect();
        let needed = term_survey_answers_needed(self.voters.len());
        let answers = futures_util::future::join_all(
            others
                .iter()
                .map(|target| (self.send)(*target, RaftMessage::ReadVote)),
        )
        .await;
        let votes: Vec<openraft::Vote<u64>> = answers
            .into_iter()
            .filter_map(|answer| match answer {
                Ok(RaftReply::CurrentVote(Ok(vote))) => Some(vote),
                _ => None,
            })
            .collect();
        if votes.len() < needed {
            return Err(RaftRefused::TermUnknown {
                answered: votes.len(),
                needed,
            });
        }
        let found = highest_surveyed_vote(votes).unwrap_or_default();
        tracing::info!(vote = %found, "rejoining voter learnt the current term from the other voters: it accepts no leader of an older term");
        *floor = Some(found);
        Ok(Some(found))
    }

    /// Answers a Raft message from another controller, received at `now`, or refuses it as
    /// if it had not arrived (a rejoining voter that cannot learn the current term yet).
    pub async fn handle_raft_message(
        &self,
        now: Instant,
        message: RaftMessage,
    ) -> Result<RaftReply, RaftRefused> {
        Ok(match message {
            RaftMessage::AppendEntries(request) => {
                if let Some(floor) = self.rejoin_term_floor().await?
                    && leader_older_than_survey(&request.vote, &floor)
                {
                    // What a voter that had kept its store would answer: the deposed leader
                    // learns the newer term and steps down.
                    return Ok(RaftReply::AppendEntries(Ok(
                        AppendEntriesResponse::HigherVote(floor),
                    )));
                }
                let leader = request
                    .vote
                    .leader_id()
                    .voted_for()
                    .and_then(|id| NodeId::try_from(id).ok());
                let reply = self.raft.append_entries(request).await;
                if let (Some(leader), Ok(answer)) = (leader, &reply)
                    && !matches!(answer, AppendEntriesResponse::HigherVote(_))
                {
                    // Accepted as the leader (a conflict too is an answer to the leader).
                    *self
                        .last_leader_heard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((leader, now));
                }
                RaftReply::AppendEntries(reply)
            }
            RaftMessage::Vote(request) => {
                if let Some(refusal) = self.withheld_vote() {
                    return Ok(RaftReply::Vote(Ok(refusal)));
                }
                RaftReply::Vote(self.raft.vote(request).await)
            }
            RaftMessage::InstallSnapshot(request) => {
                if let Some(floor) = self.rejoin_term_floor().await?
                    && leader_older_than_survey(&request.vote, &floor)
                {
                    return Ok(RaftReply::InstallSnapshot(Ok(InstallSnapshotResponse {
                        vote: floor,
                    })));
                }
                RaftReply::InstallSnapshot(self.raft.install_snapshot(request).await)
            }
            RaftMessage::ReadVote => RaftReply::CurrentVote(
                self.raft
                    .with_raft_state(|state| *state.vote_ref())
                    .await
                    .map_err(RaftError::Fatal),
            ),
        })
    }

    /// Proposes records as one log entry; returns once they are committed and applied here.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<ControllerResponse, ControllerRequestError> {
        match self.raft.client_write(ControllerRequest { records }).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ControllerRequestError::NotController {
                    leader: forward.leader_id.and_then(|id| NodeId::try_from(id).ok()),
                })
            }
            Err(error) => Err(ControllerRequestError::Quorum(error.to_string())),
        }
    }

    /// A node registers; returns its node epoch.
    pub async fn register(
        &self,
        now: Instant,
        request: RegisterRequest,
    ) -> Result<NodeEpoch, ControllerRequestError> {
        self.decide(|logic, image| logic.handle_register(image, now, &request))
            .await
    }

    /// A node heartbeats.
    pub async fn heartbeat(
        &self,
        now: Instant,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .handle_heartbeat(image, now, node_id, node_epoch)
                .map(|records| (records, ()))
        })
        .await
    }

    /// A node in controlled shutdown asks to have its leaderships moved (also its
    /// heartbeat); returns how many partitions it still leads once the change is committed.
    pub async fn controlled_shutdown(
        &self,
        now: Instant,
        node_id: NodeId,
        node_epoch: NodeEpoch,
    ) -> Result<u32, ControllerRequestError> {
        self.decide(|logic, image| {
            logic.handle_controlled_shutdown(image, now, node_id, node_epoch)
        })
        .await
    }

    /// Fences the nodes whose sessions expired by `now` (the driver calls this on the
    /// active controller every heartbeat interval).
    pub async fn poll_fencing(&self, now: Instant) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| logic.poll_fencing(image, now).map(|records| (records, ())))
            .await
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        request: CreateTopicRequest,
    ) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .create_topic(image, &request)
                .map(|records| (records, ()))
        })
        .await
    }

    /// A leader's ISR change.
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .alter_partition(image, &request)
                .map(|records| (records, ()))
        })
        .await
    }

    /// A replica reports its copy of a partition damaged: it leaves the ISR and ELR.
    pub async fn replica_damaged(
        &self,
        request: ReplicaDamagedRequest,
    ) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .replica_damaged(image, &request)
                .map(|records| (records, ()))
        })
        .await
    }

    /// Hands a block of `count` producer ids to a node; returns the first id.
    pub async fn allocate_producer_ids(
        &self,
        node_id: NodeId,
        node_epoch: NodeEpoch,
        count: u32,
    ) -> Result<i64, ControllerRequestError> {
        self.decide(|logic, image| logic.allocate_producer_ids(image, node_id, node_epoch, count))
            .await
    }

    /// Moves leaders back to preferred replicas that are in their ISR.
    pub async fn elect_preferred_leaders(&self) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .elect_preferred_leaders(image)
                .map(|records| (records, ()))
        })
        .await
    }

    /// The active controller's timer: every `node_heartbeat_interval`, fences the nodes whose
    /// sessions expired (on other voters each tick is a no-op). Runs until dropped.
    pub async fn run_fencing(&self, clock: &dyn Clock) {
        loop {
            sleep(clock, self.node_heartbeat_interval).await;
            match self.poll_fencing(clock.now()).await {
                Ok(()) | Err(ControllerRequestError::NotController { .. }) => {}
                Err(error) => tracing::warn!(%error, "controller fencing tick"),
            }
        }
    }

    /// On the active controller: adds every registered node that is not yet a member of the
    /// quorum as a learner, so it receives the log and holds the image. Not blocking (the
    /// learner catches up in the background); a node already a voter or learner is skipped,
    /// so calling this again is harmless. Elsewhere a no-op. A failed addition (an election,
    /// another membership change in flight) is retried on the next call.
    pub async fn add_registered_learners(&self) {
        let members: BTreeSet<u64> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.current_leader != Some(raft_id(self.node_id)) {
                return;
            }
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        let image = self.image();
        for (node_id, registration) in &image.nodes {
            if members.contains(&raft_id(*node_id)) {
                continue;
            }
            let node = BasicNode::new(&registration.address);
            match self.raft.add_learner(raft_id(*node_id), node, false).await {
                Ok(_) => tracing::info!(node_id, "added to the controller quorum as a learner"),
                Err(error) => {
                    tracing::debug!(node_id, %error, "adding a learner; retried later");
                    return;
                }
            }
        }
    }

    /// On the active controller: removes from the quorum every learner whose node is no
    /// longer registered (decommissioned, `decommission.rs`), so the leader stops sending it
    /// the log. Voters are never removed (changing voters is out of scope). A failed removal
    /// is retried on the next call.
    pub async fn remove_unregistered_learners(&self) {
        let learners: BTreeSet<u64> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.current_leader != Some(raft_id(self.node_id)) {
                return;
            }
            metrics
                .membership_config
                .membership()
                .learner_ids()
                .collect()
        };
        let image = self.image();
        let gone: BTreeSet<u64> = learners
            .into_iter()
            .filter(|id| {
                NodeId::try_from(*id).map_or(true, |node_id| !image.nodes.contains_key(&node_id))
            })
            .collect();
        if gone.is_empty() {
            return;
        }
        match self
            .raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(gone.clone()), false)
            .await
        {
            Ok(_) => tracing::info!(
                ?gone,
                "decommissioned nodes removed from the controller quorum"
            ),
            Err(error) => tracing::debug!(%error, "removing learners; retried later"),
        }
    }

    /// Whether `node_id` votes in the controller quorum (as this member last saw it).
    pub fn is_voter(&self, node_id: NodeId) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == raft_id(node_id))
    }

    /// The active controller's learner driver: on every image change (a registration), and
    /// at least every `node_heartbeat_interval` (a new leader, a failed addition), runs
    /// [`Self::add_registered_learners`] and [`Self::remove_unregistered_learners`]. Runs
    /// until dropped.
    pub async fn run_learners(&self, clock: &dyn Clock) {
        let mut image = self.subscribe();
        loop {
            self.add_registered_learners().await;
            self.remove_unregistered_learners().await;
            match crate::clock::timeout(clock, self.node_heartbeat_interval, image.changed()).await
            {
                Ok(Ok(())) | Err(crate::clock::Elapsed) => {}
                // The state machine is gone: the controller stopped.
                Ok(Err(_)) => return,
            }
        }
    }

    /// Stops this voter.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "controller shutdown");
        }
    }

    /// Runs one decision on the active controller and proposes its records.
    pub(super) async fn decide<T>(
        &self,
        decision: impl FnOnce(
            &mut ControllerLogic,
            &MetadataImage,
        ) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerRequestError> {
        let mut guard = self.logic.lock().await;
        let term = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.current_leader != Some(raft_id(self.node_id)) {
                return Err(ControllerRequestError::NotController {
                    leader: metrics
                        .current_leader
                        .and_then(|id| NodeId::try_from(id).ok()),
                });
            }
            metrics.current_term
        };
        if guard.0 != term {
            // A new term: the image must include everything committed before deciding, and
            // heartbeat sessions start afresh (KRaft does the same on a new active controller),
            // except the previous controller's, which this node heard until it went silent.
            self.raft.ensure_linearizable().await.map_err(|error| {
                ControllerRequestError::NotController {
                    leader: match error {
                        RaftError::APIError(
                            openraft::error::CheckIsLeaderError::ForwardToLeader(forward),
                        ) => forward.leader_id.and_then(|id| NodeId::try_from(id).ok()),
                        _ => None,
                    },
                }
            })?;
            let mut logic = ControllerLogic::new(self.decisions.clone());
            let predecessor = self
                .last_leader_heard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some((leader, heard)) = predecessor
                && leader != self.node_id
            {
                logic = logic.with_predecessor(leader, heard);
            }
            *guard = (term, logic);
        }
        let image = self.image();
        let (records, output) = decision(&mut guard.1, &image)?;
        if records.is_empty() {
            return Ok(output);
        }
        let response = self.propose(records).await?;
        response
            .result
            .map_err(|error| ControllerRequestError::Refused(ControllerError::Refused(error)))?;
        Ok(output)
    }
}

/// Whether a voter that lost its store has caught up, so it may vote again: it has accepted
/// a leader (a committed vote) and applied an entry of that leader's term. A Raft leader's
/// first entry in its term follows every entry committed before the term (the leader holds
/// them all), so the voter's log now holds everything it may have helped commit before its
/// store was lost; entries committed later it stores durably as any voter does.
pub fn caught_up_after_rejoin(
    vote: &openraft::Vote<u64>,
    last_applied: Option<&openraft::LogId<u64>>,
) -> bool {
    vote.is_committed()
        && last_applied.is_some_and(|applied| applied.leader_id.term >= vote.leader_id.term)
}

/// Watches a rejoining voter until [`caught_up_after_rejoin`] holds, then removes its rejoin
/// marker durably and lets it vote. Ends with the controller (its metrics sender dropped).
async fn release_votes_once_caught_up<D: Disk>(
    mut metrics: watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    disk: D,
    data_dir: std::path::PathBuf,
    votes_withheld: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        let caught_up = {
            let metrics = metrics.borrow_and_update();
            caught_up_after_rejoin(&metrics.vote, metrics.last_applied.as_ref())
                .then(|| (metrics.vote, metrics.last_applied))
        };
        if let Some((vote, applied)) = caught_up {
            match super::bootstrap::consume_rejoin_marker(&disk, &data_dir).await {
                Ok(()) => {
                    votes_withheld.store(false, std::sync::atomic::Ordering::Release);
                    tracing::info!(%vote, applied = ?applied, "caught up with the controller quorum after starting with an empty store: granting votes again");
                    return;
                }
                // Keep withholding: the marker would withhold again after a restart anyway.
                Err(error) => {
                    tracing::warn!(%error, "cannot remove the controller rejoin marker; still withholding votes")
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// openraft's network factory over a [`ControllerTransport`].
struct NetworkFactory<T> {
    transport: Arc<T>,
}

struct Connection<T> {
    target: NodeId,
    transport: Arc<T>,
}

impl<T: ControllerTransport> RaftNetworkFactory<ControllerTypes> for NetworkFactory<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        Connection {
            // Ids come from our own membership, built from NodeIds.
            target: NodeId::try_from(target).unwrap_or(NodeId::MAX),
            transport: self.transport.clone(),
        }
    }
}

type RpcError<E = RaftError<u64>> = RPCError<u64, BasicNode, E>;

impl<T: ControllerTransport> Connection<T> {
    async fn call(&self, message: RaftMessage) -> Result<RaftReply, TransportError> {
        self.transport.send(self.target, message).await
    }

    fn unexpected<E: std::error::Error>(&self) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&TransportError {
            target: self.target,
            reason: "answer of another kind".to_owned(),
        }))
    }
}

fn remote<E: std::error::Error>(target: NodeId, error: E) -> RpcError<E> {
    RPCError::RemoteError(RemoteError::new(raft_id(target), error))
}

impl<T: ControllerTransport> RaftNetwork<ControllerTypes> for Connection<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        match self.call(RaftMessage::AppendEntries(rpc)).await {
            Ok(RaftReply::AppendEntries(reply)) => {
                reply.map_err(|error| remote(self.target, error))
            }
            Ok(_) => Err(self.unexpected()),
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcError<RaftError<u64, InstallSnapshotError>>> {
        match self.call(RaftMessage::InstallSnapshot(rpc)).await {
            Ok(RaftReply::InstallSnapshot(reply)) => {
                reply.map_err(|error| remote(self.target, error))
            }
            Ok(_) => Err(self.unexpected()),
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcError> {
        match self.call(RaftMessage::Vote(rpc)).await {
            Ok(RaftReply::Vote(reply)) => reply.map_err(|error| remote(self.target, error)),
            Ok(_) => Err(self.unexpected()),
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }
}

#[cfg(test)]
mod tests;
