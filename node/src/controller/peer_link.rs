//! The controller on the node's peer RPC (`cluster/peer/`): Raft messages between voters,
//! and node registration and heartbeats from every node to the active controller.
//!
//! - [`PeerTransport`]: a [`ControllerTransport`] sending each [`RaftMessage`] as a peer
//!   request of its kind (`RaftVote`, `RaftAppendEntries`, `RaftInstallSnapshot`).
//! - [`register_controller_handlers`]: the accepting side, one handler per kind, each
//!   answering through the local [`Controller`]. A body that does not decode, or decodes to
//!   another kind than the frame says, is answered `HandlerFailed` with the reason: a peer's
//!   bytes never panic the node.
//! - [`NodeSession`]: the driver on every node (voter or not) that registers with the active
//!   controller, follows `NotController { leader }` redirects and heartbeats every
//!   `node_heartbeat_interval_ms` on the node's clock; during a controlled shutdown
//!   (`shutdown.rs`) its heartbeats ask the controller to move the node's leaderships away.
//!
//! Bodies are JSON (serde_json, already a dependency): the controller's messages are small
//! and rare (Raft heartbeats every 50 ms, node heartbeats every 2 s), and JSON keeps them
//! readable in a capture. A node's id in a registration or heartbeat is the one its
//! certificate names (the peer layer's `from`), never one the body claims. A Raft message's
//! claimed sender (the candidate of a vote, the leader of an append or snapshot) must be the
//! certificate's node and one of `controller_voters` ([`check_raft_sender`]); otherwise it is
//! refused with a WARN line before openraft sees it, so a learner or a compromised node
//! cannot campaign or lead in another voter's name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::decisions::{ControllerError, RegisterRequest};
use super::quorum::{Controller, ControllerRequestError, RaftMessage, TransportError};
use super::records::{KafkaListeners, NodeEpoch, NodeId, StorageId};
use super::{ControllerTransport, RaftReply};
use crate::clock::Clock;
use crate::cluster::peer::{
    PeerClient, PeerHandlerError, PeerHandlers, PeerRequest, PeerRequestKind,
};

/// The peer request kind that carries `message`.
pub fn raft_kind(message: &RaftMessage) -> PeerRequestKind {
    match message {
        RaftMessage::AppendEntries(_) => PeerRequestKind::RaftAppendEntries,
        // A survey of votes is about elections: it travels as one.
        RaftMessage::Vote(_) | RaftMessage::ReadVote => PeerRequestKind::RaftVote,
        RaftMessage::InstallSnapshot(_) => PeerRequestKind::RaftInstallSnapshot,
    }
}

/// Raft messages over the peer RPC: a client per other voter.
pub struct PeerTransport {
    clients: BTreeMap<NodeId, Arc<PeerClient>>,
}

impl PeerTransport {
    /// A transport over `clients` (the node's clients of the other nodes).
    pub fn new(clients: BTreeMap<NodeId, Arc<PeerClient>>) -> Self {
        Self { clients }
    }
}

impl ControllerTransport for PeerTransport {
    async fn send(
        &self,
        target: NodeId,
        message: RaftMessage,
    ) -> Result<RaftReply, TransportError> {
        let failed = |reason: String| TransportError { target, reason };
        let client = self
            .clients
            .get(&target)
            .ok_or_else(|| failed("not a peer of this node".to_owned()))?;
        let kind = raft_kind(&message);
        let body =
            serde_json::to_vec(&message).map_err(|error| failed(format!("encode: {error}")))?;
        let answer = client
            .request(kind, &body)
            .await
            .map_err(|error| failed(error.to_string()))?;
        serde_json::from_slice(&answer).map_err(|error| failed(format!("invalid answer: {error}")))
    }
}

/// Checks that a Raft message from node `from` (its certificate's id) claims `from` as its
/// candidate or leader, and that `from` is a voter. The reason, if not.
pub fn check_raft_sender(
    message: &RaftMessage,
    from: NodeId,
    voters: &std::collections::BTreeSet<NodeId>,
) -> Result<(), String> {
    let claim = match message {
        RaftMessage::Vote(request) => Some(("candidate", &request.vote)),
        RaftMessage::AppendEntries(request) => Some(("leader", &request.vote)),
        RaftMessage::InstallSnapshot(request) => Some(("leader", &request.vote)),
        // Claims nobody; only a voter may ask.
        RaftMessage::ReadVote => None,
    };
    if let Some((role, vote)) = claim {
        let claimed = vote.leader_id().voted_for();
        if claimed != Some(super::types::raft_id(from)) {
            return Err(format!(
                "a {:?} from node {from} names {role} {claimed:?}, not the sender",
                raft_kind(message)
            ));
        }
    }
    if !voters.contains(&from) {
        return Err(format!(
            "a {:?} from node {from}, which is not one of controller_voters {voters:?}",
            raft_kind(message)
        ));
    }
    Ok(())
}

/// A node's request to the controller (the node id is the sender's certificate's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionRequest {
    /// Register this incarnation (drawn at the node's start).
    Register {
        /// The incarnation.
        incarnation_id: u64,
        /// The node's data directory's id (absent from a node built before storage ids).
        #[serde(default)]
        storage_id: Option<StorageId>,
        /// Where the node listens for Kafka clients (absent from a node built before it
        /// said so).
        #[serde(default)]
        kafka_listeners: Option<KafkaListeners>,
    },
    /// Heartbeat at `node_epoch`.
    Heartbeat {
        /// The epoch registration gave.
        node_epoch: NodeEpoch,
    },
    /// The node is stopping: move its leaderships away (also a heartbeat at `node_epoch`).
    /// Answered `ShutdownProgress`. A new variant, so an older peer's messages still decode.
    ControlledShutdown {
        /// The epoch registration gave.
        node_epoch: NodeEpoch,
    },
}

impl SessionRequest {
    /// The peer request kind that carries it (a controlled shutdown is a heartbeat).
    pub fn kind(&self) -> PeerRequestKind {
        match self {
            Self::Register { .. } => PeerRequestKind::NodeRegistration,
            Self::Heartbeat { .. } | Self::ControlledShutdown { .. } => {
                PeerRequestKind::NodeHeartbeat
            }
        }
    }
}

/// The controller's answer to a [`SessionRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionReply {
    /// Registered: the node's epoch.
    Registered {
        /// The epoch.
        node_epoch: NodeEpoch,
    },
    /// The heartbeat extended the session.
    HeartbeatAccepted,
    /// A controlled shutdown was accepted (and extended the session): partitions the node
    /// still leads in the committed image (0: it may stop).
    ShutdownProgress {
        /// Partitions still led.
        leaderships_left: u32,
    },
    /// Ask `leader` instead (unknown during an election).
    NotController {
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
    /// The node is unknown or its epoch stale: register again.
    RegisterAgain {
        /// Why.
        reason: String,
    },
    /// Refused or failed for another reason.
    Failed {
        /// The Kafka error name.
        code: String,
        /// Why.
        message: String,
    },
}

fn reply_of(error: ControllerRequestError) -> SessionReply {
    match error {
        ControllerRequestError::NotController { leader } => SessionReply::NotController { leader },
        ControllerRequestError::Refused(
            error @ (ControllerError::UnknownNode { .. } | ControllerError::StaleNodeEpoch { .. }),
        ) => SessionReply::RegisterAgain {
            reason: error.to_string(),
        },
        error => SessionReply::Failed {
            code: error.code().to_owned(),
            message: error.to_string(),
        },
    }
}

/// Answers `request` from node `from` on the local controller. `addresses` are the peer
/// addresses of `[cluster]` (what the image records for a node).
pub async fn answer_session(
    controller: &Controller,
    clock: &dyn Clock,
    addresses: &BTreeMap<NodeId, SocketAddr>,
    from: NodeId,
    request: SessionRequest,
) -> SessionReply {
    match request {
        SessionRequest::Register {
            incarnation_id,
            storage_id,
            kafka_listeners,
        } => {
            let Some(address) = addresses.get(&from) else {
                return SessionReply::Failed {
                    code: "UNKNOWN_SERVER_ERROR".to_owned(),
                    message: format!("node {from} is not in cluster.peers"),
                };
            };
            let request = RegisterRequest {
                node_id: from,
                address: address.to_string(),
                incarnation_id,
                storage_id,
                kafka_listeners,
            };
            match controller.register(clock.now(), request).await {
                Ok(node_epoch) => SessionReply::Registered { node_epoch },
                Err(error) => reply_of(error),
            }
        }
        SessionRequest::Heartbeat { node_epoch } => {
            match controller.heartbeat(clock.now(), from, node_epoch).await {
                Ok(()) => SessionReply::HeartbeatAccepted,
                Err(error) => reply_of(error),
            }
        }
        SessionRequest::ControlledShutdown { node_epoch } => {
            match controller
                .controlled_shutdown(clock.now(), from, node_epoch)
                .await
            {
                Ok(leaderships_left) => SessionReply::ShutdownProgress { leaderships_left },
                Err(error) => reply_of(error),
            }
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(request: &PeerRequest) -> Result<T, PeerHandlerError> {
    serde_json::from_slice(&request.body).map_err(|error| {
        PeerHandlerError(format!(
            "invalid {:?} body from node {}: {error}",
            request.kind, request.from
        ))
    })
}

fn encode<T: Serialize>(answer: &T) -> Result<Bytes, PeerHandlerError> {
    serde_json::to_vec(answer)
        .map(Bytes::from)
        .map_err(|error| PeerHandlerError(format!("encode answer: {error}")))
}

/// Registers the handlers of the Raft kinds and of registration and heartbeats, answering
/// through `controller`.
pub fn register_controller_handlers(
    handlers: &PeerHandlers,
    controller: Arc<Controller>,
    clock: Arc<dyn Clock>,
    addresses: BTreeMap<NodeId, SocketAddr>,
) -> Result<(), crate::cluster::peer::service::AlreadyRegistered> {
    for kind in [
        PeerRequestKind::RaftVote,
        PeerRequestKind::RaftAppendEntries,
        PeerRequestKind::RaftInstallSnapshot,
    ] {
        let controller = Arc::clone(&controller);
        let clock = Arc::clone(&clock);
        handlers.register(kind, move |request: PeerRequest| {
            let controller = Arc::clone(&controller);
            let clock = Arc::clone(&clock);
            async move {
                let message: RaftMessage = decode(&request)?;
                if raft_kind(&message) != request.kind {
                    return Err(PeerHandlerError(format!(
                        "a {:?} request carried a {:?} message",
                        request.kind,
                        raft_kind(&message)
                    )));
                }
                if let Err(reason) = check_raft_sender(&message, request.from, controller.voters())
                {
                    tracing::warn!(from = request.from, %reason, "raft message refused");
                    return Err(PeerHandlerError(reason));
                }
                match controller.handle_raft_message(clock.now(), message).await {
                    Ok(reply) => encode(&reply),
                    // The sender sees a failed request and retries, as after a lost one.
                    Err(refused) => Err(PeerHandlerError(refused.to_string())),
                }
            }
        })?;
    }
    let addresses = Arc::new(addresses);
    for kind in [
        PeerRequestKind::NodeRegistration,
        PeerRequestKind::NodeHeartbeat,
    ] {
        let controller = Arc::clone(&controller);
        let clock = Arc::clone(&clock);
        let addresses = Arc::clone(&addresses);
        handlers.register(kind, move |request: PeerRequest| {
            let controller = Arc::clone(&controller);
            let clock = Arc::clone(&clock);
            let addresses = Arc::clone(&addresses);
            async move {
                let session: SessionRequest = decode(&request)?;
                let expected = session.kind();
                if expected != request.kind {
                    return Err(PeerHandlerError(format!(
                        "a {:?} request carried a {expected:?} body",
                        request.kind
                    )));
                }
                let reply =
                    answer_session(&controller, &*clock, &addresses, request.from, session).await;
                encode(&reply)
            }
        })?;
    }
    Ok(())
}

/// The node's session with the active controller: registration, then heartbeats.
pub struct NodeSession {
    /// This node.
    pub node_id: NodeId,
    /// Drawn at the node's start: a restart is a new incarnation and gets a new node epoch.
    pub incarnation_id: u64,
    /// The data directory's id (`<data_dir>/storage-id`): another one than at the last
    /// registration tells the controller this node's replicas are empty.
    pub storage_id: StorageId,
    /// Where this node listens for Kafka clients, registered with the controller.
    pub kafka_listeners: Option<KafkaListeners>,
    /// The controller voters, in the order to try them.
    pub voters: Vec<NodeId>,
    /// This node's controller (asked directly when it is the target, not over the network;
    /// a learner's also tells which voter leads).
    pub local: Option<Arc<Controller>>,
    /// Clients of the other nodes.
    pub clients: BTreeMap<NodeId, Arc<PeerClient>>,
    /// `[cluster]` peer addresses (for the local controller's registration answer).
    pub addresses: BTreeMap<NodeId, SocketAddr>,
    /// `node_heartbeat_interval_ms`: between heartbeats, and between attempts when no
    /// controller answers.
    pub heartbeat_interval: Duration,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
}

/// Redirects followed at once before waiting a heartbeat interval (a redirect names the
/// leader, so one is usually enough; more means an election is moving it).
pub const SESSION_REDIRECTS_MAX: u32 = 3;

impl NodeSession {
    async fn ask(&self, target: NodeId, request: &SessionRequest) -> SessionReply {
        if target == self.node_id
            && let Some(controller) = &self.local
        {
            return answer_session(
                controller,
                &*self.clock,
                &self.addresses,
                self.node_id,
                request.clone(),
            )
            .await;
        }
        let Some(client) = self.clients.get(&target) else {
            return SessionReply::NotController { leader: None };
        };
        let kind = request.kind();
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(error) => {
                return SessionReply::Failed {
                    code: "UNKNOWN_SERVER_ERROR".to_owned(),
                    message: error.to_string(),
                };
            }
        };
        // Bounded by the heartbeat interval, not only by `peer_request_timeout_ms` (below the
        // session timeout, but several heartbeats long): a heartbeat stuck on a dead
        // controller would otherwise hold up the heartbeats this node owes the new one.
        let answer = crate::clock::timeout(
            &*self.clock,
            self.heartbeat_interval,
            client.request(kind, &body),
        )
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(crate::clock::Elapsed) => {
                return SessionReply::Failed {
                    code: "REQUEST_TIMED_OUT".to_owned(),
                    message: format!(
                        "node {target} did not answer within node_heartbeat_interval_ms"
                    ),
                };
            }
        };
        match answer {
            Ok(answer) => {
                serde_json::from_slice(&answer).unwrap_or_else(|error| SessionReply::Failed {
                    code: "UNKNOWN_SERVER_ERROR".to_owned(),
                    message: format!("invalid answer from node {target}: {error}"),
                })
            }
            Err(error) => SessionReply::Failed {
                code: "UNREACHABLE".to_owned(),
                message: error.to_string(),
            },
        }
    }

    /// Registers and heartbeats until dropped; publishes the node epoch on `epoch`.
    pub async fn run(self, epoch: watch::Sender<Option<NodeEpoch>>) {
        let (_never, link) = super::shutdown::shutdown_channel();
        self.run_with_shutdown(epoch, link).await;
    }

    /// [`Self::run`], and once `shutdown.requested` turns true, every heartbeat asks for a
    /// controlled shutdown instead (the first at once), publishing each answer on
    /// `shutdown.progress`.
    pub async fn run_with_shutdown(
        self,
        epoch: watch::Sender<Option<NodeEpoch>>,
        mut shutdown: super::shutdown::ShutdownLink,
    ) {
        let mut target_index = 0usize;
        let mut target = self.voters.first().copied().unwrap_or(self.node_id);
        let mut node_epoch: Option<NodeEpoch> = None;
        let mut redirects = 0u32;
        loop {
            let request = match node_epoch {
                None => SessionRequest::Register {
                    incarnation_id: self.incarnation_id,
                    storage_id: Some(self.storage_id),
                    kafka_listeners: self.kafka_listeners.clone(),
                },
                Some(node_epoch) if *shutdown.requested.borrow_and_update() => {
                    SessionRequest::ControlledShutdown { node_epoch }
                }
                Some(node_epoch) => SessionRequest::Heartbeat { node_epoch },
            };
            match self.ask(target, &request).await {
                SessionReply::Registered { node_epoch: given } => {
                    tracing::info!(node_epoch = given, controller = target, "registered");
                    node_epoch = Some(given);
                    epoch.send_replace(Some(given));
                    redirects = 0;
                    // Heartbeat at once: the first heartbeat unfences the node.
                    continue;
                }
                SessionReply::HeartbeatAccepted => redirects = 0,
                SessionReply::ShutdownProgress { leaderships_left } => {
                    redirects = 0;
                    shutdown.progress.send_replace(Some(leaderships_left));
                }
                SessionReply::NotController {
                    leader: Some(leader),
                } if leader != target && redirects < SESSION_REDIRECTS_MAX => {
                    target = leader;
                    redirects += 1;
                    continue;
                }
                SessionReply::RegisterAgain { reason } => {
                    tracing::warn!(%reason, "registering again");
                    node_epoch = None;
                    epoch.send_replace(None);
                    // Registering again comes after a pause, so a controller that keeps
                    // refusing is not asked in a tight loop.
                }
                SessionReply::NotController { .. } | SessionReply::Failed { .. } => {
                    // No controller here: the one this node's own voter knows, else the next
                    // voter, after a pause.
                    redirects = 0;
                    let known = self
                        .local
                        .as_ref()
                        .and_then(|controller| controller.leader())
                        .filter(|leader| *leader != target);
                    if let Some(leader) = known {
                        // At once: the heartbeat that failed already waited.
                        target = leader;
                        continue;
                    } else if !self.voters.is_empty() {
                        target_index = (target_index + 1) % self.voters.len();
                        target = self.voters[target_index];
                    }
                }
            }
            // A controlled shutdown asked for meanwhile goes out at once, not a heartbeat
            // interval later.
            let requested = async {
                if shutdown.requested.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let _ = crate::clock::timeout(&*self.clock, self.heartbeat_interval, requested).await;
        }
    }
}

/// Why a node's cluster wiring could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    /// The node's certificate could not make peer clients.
    #[error(transparent)]
    Identity(#[from] crate::cluster::identity::IdentityError),
    /// The controller could not start.
    #[error(transparent)]
    Controller(#[from] super::quorum::ControllerStartError),
    /// The data directory's storage id is damaged or could not be stored.
    #[error(transparent)]
    StorageId(#[from] crate::storage::storage_id::StorageIdError),
    /// Another controller's handlers are registered on this node already.
    #[error(transparent)]
    Handlers(#[from] crate::cluster::peer::service::AlreadyRegistered),
}

/// A node's running cluster wiring: its controller (a voter or a learner) and its session.
pub struct NodeCluster {
    /// This node's controller: a voter, or a learner on a node not in `controller_voters`
    /// (always set; an `Option` so shutdown can take it).
    pub controller: Option<Arc<Controller>>,
    /// The node epoch the controller gave this incarnation, once registered.
    pub node_epoch: watch::Receiver<Option<NodeEpoch>>,
    /// This node's clients of the other nodes (one connection per peer: other subsystems,
    /// such as replication, share them rather than dialing again).
    pub clients: BTreeMap<NodeId, Arc<PeerClient>>,
    /// Topic admin requests to the active controller (see `admin.rs`).
    pub admin: Arc<super::admin::AdminClient>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    node_id: NodeId,
    clock: Arc<dyn Clock>,
    /// `cluster.controlled_shutdown_enable`.
    controlled_shutdown_enable: bool,
    /// `cluster.controlled_shutdown_timeout_ms`.
    controlled_shutdown_timeout: Duration,
    shutdown: super::shutdown::ShutdownHandle,
}

impl NodeCluster {
    /// Before the node stops: asks the active controller to move this node's leaderships
    /// away and waits until they have moved, at most `controlled_shutdown_timeout_ms` (see
    /// `shutdown.rs`); `None` when `controlled_shutdown_enable` is false.
    pub async fn controlled_shutdown(&self) -> Option<super::shutdown::ShutdownOutcome> {
        if !self.controlled_shutdown_enable {
            tracing::info!("controlled shutdown is disabled (cluster.controlled_shutdown_enable)");
            return None;
        }
        let controller = self.controller.as_ref()?;
        Some(
            self.shutdown
                .run(
                    self.node_id,
                    controller.subscribe(),
                    &*self.clock,
                    self.controlled_shutdown_timeout,
                )
                .await,
        )
    }

    /// Stops the session and the fencing timer, then the controller.
    pub async fn shutdown(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(controller) = self.controller.take() {
            controller.shutdown().await;
        }
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The controller settings of a `[cluster]` section.
pub fn controller_config(
    cluster: &crate::cluster::config::ClusterConfig,
) -> super::ControllerConfig {
    let voters = cluster
        .peers
        .iter()
        .filter(|peer| cluster.controller_voters.contains(&peer.id))
        .map(|peer| (peer.id, peer.address.to_string()))
        .collect();
    let mut config = super::ControllerConfig::new(cluster.node_id, voters);
    config.node_heartbeat_interval = cluster.node_heartbeat_interval;
    config.raft_heartbeat = cluster.controller_heartbeat_interval;
    config.election_timeout = cluster.controller_election_timeout;
    config.decisions = super::DecisionConfig {
        default_replication_factor: u16::try_from(cluster.default_replication_factor)
            .unwrap_or(u16::MAX),
        min_insync_replicas: u16::try_from(cluster.min_insync_replicas).unwrap_or(u16::MAX),
        unclean_leader_election_enable: cluster.unclean_leader_election_enable,
        node_session_timeout: cluster.node_session_timeout,
    };
    config
}

/// What [`start_node_cluster`] needs from the node.
pub struct NodeClusterParts<'a, D> {
    /// The `[cluster]` section.
    pub cluster: &'a crate::cluster::config::ClusterConfig,
    /// Its loaded certificates.
    pub tls: &'a crate::cluster::identity::ClusterTls,
    /// The node's endpoint (peers are dialed from it).
    pub endpoint: &'a quinn::Endpoint,
    /// The peer handler registry the endpoint serves.
    pub handlers: &'a PeerHandlers,
    /// The node's disk (the controller's store lives in `<data_dir>/controller/`).
    pub disk: D,
    /// The data directory.
    pub data_dir: &'a std::path::Path,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
    /// Drawn at the node's start (see [`NodeSession::incarnation_id`]).
    pub incarnation_id: u64,
    /// What this node's controller checks of topic admin requests itself.
    pub admin_limits: super::admin::AdminLimits,
}

/// Starts a `[cluster]` node's controller wiring on its endpoint: loads (or draws) the
/// data directory's storage id, makes the QUIC peer clients, then
/// [`start_node_cluster_over`] them. Returns at once: forming the quorum and registering
/// happen in the background (a node whose peers are down still serves).
pub async fn start_node_cluster<D: crate::storage::disk::Disk>(
    parts: NodeClusterParts<'_, D>,
) -> Result<NodeCluster, ClusterStartError> {
    let NodeClusterParts {
        cluster,
        tls,
        endpoint,
        handlers,
        disk,
        data_dir,
        clock,
        incarnation_id,
        admin_limits,
    } = parts;
    // Before anything else is stored for the cluster: the id vouches for this directory.
    let storage_id = crate::storage::storage_id::load_or_create(&disk, data_dir).await?;
    let clients = crate::cluster::peer::peer_clients(cluster, tls, endpoint, &clock)?;
    let links = NodeClusterLinks {
        cluster,
        clients,
        storage_id,
        handlers,
        clock,
        incarnation_id,
        admin_limits,
        election_timeout: None,
        kafka_listeners: None,
    };
    start_node_cluster_over(links, disk, data_dir).await
}

/// What [`start_node_cluster_over`] needs: the peer clients made (over QUIC by
/// [`start_node_cluster`], over the simulated network by `sim/multi.rs`) and the storage
/// id loaded.
pub struct NodeClusterLinks<'a> {
    /// The `[cluster]` section.
    pub cluster: &'a crate::cluster::config::ClusterConfig,
    /// A client of each other node.
    pub clients: BTreeMap<NodeId, Arc<PeerClient>>,
    /// The data directory's storage id.
    pub storage_id: StorageId,
    /// The peer handler registry the node serves.
    pub handlers: &'a PeerHandlers,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
    /// Drawn at the node's start (see [`NodeSession::incarnation_id`]).
    pub incarnation_id: u64,
    /// What this node's controller checks of topic admin requests itself.
    pub admin_limits: super::admin::AdminLimits,
    /// openraft's election timeout range (`None`: [`super::ControllerConfig`]'s). The
    /// simulator gives each node its own from the seed.
    pub election_timeout: Option<(Duration, Duration)>,
    /// Where this node listens for Kafka clients (`None`: it does not say, as the
    /// simulator's nodes).
    pub kafka_listeners: Option<KafkaListeners>,
}

/// The controller (a voter, or a learner on a non-voter) over the peer clients with its
/// handlers in `links.handlers`, the active controller's timers (fencing, learners,
/// reassignments, leader rebalance), and the node's registration and heartbeats.
pub async fn start_node_cluster_over<D: crate::storage::disk::Disk>(
    links: NodeClusterLinks<'_>,
    disk: D,
    data_dir: &std::path::Path,
) -> Result<NodeCluster, ClusterStartError> {
    let NodeClusterLinks {
        cluster,
        clients,
        storage_id,
        handlers,
        clock,
        incarnation_id,
        admin_limits,
        election_timeout,
        kafka_listeners,
    } = links;
    let addresses: BTreeMap<NodeId, SocketAddr> = cluster
        .peers
        .iter()
        .map(|peer| (peer.id, peer.address))
        .collect();
    let mut tasks = Vec::new();
    // Every node runs a controller: a voter, or (not in `controller_voters`) a learner the
    // active controller adds once it registers, so every node holds the metadata image.
    let transport = Arc::new(PeerTransport::new(clients.clone()));
    let mut config = controller_config(cluster);
    if let Some(election_timeout) = election_timeout {
        config.election_timeout = election_timeout;
    }
    let controller = Arc::new(Controller::start(config, disk, data_dir, transport).await?);
    if let Err(error) = register_controller_handlers(
        handlers,
        Arc::clone(&controller),
        Arc::clone(&clock),
        addresses.clone(),
    ) {
        controller.shutdown().await;
        return Err(error.into());
    }
    if let Err(error) =
        super::admin::register_admin_handler(handlers, Arc::clone(&controller), admin_limits)
    {
        controller.shutdown().await;
        return Err(error.into());
    }
    let admin = Arc::new(super::admin::AdminClient::new(
        cluster.node_id,
        cluster.controller_voters.clone(),
        Arc::clone(&controller),
        clients.clone(),
        Arc::clone(&clock),
        cluster.peer_request_timeout,
        admin_limits,
    ));
    if !controller.is_learner() {
        let fencing = Arc::clone(&controller);
        let fencing_clock = Arc::clone(&clock);
        tasks.push(tokio::spawn(async move {
            fencing.run_fencing(&*fencing_clock).await;
        }));
        let learners = Arc::clone(&controller);
        let learners_clock = Arc::clone(&clock);
        tasks.push(tokio::spawn(async move {
            learners.run_learners(&*learners_clock).await;
        }));
        let moves = Arc::clone(&controller);
        let moves_clock = Arc::clone(&clock);
        let moves_interval = cluster.node_heartbeat_interval;
        tasks.push(tokio::spawn(async move {
            moves.run_reassignments(&*moves_clock, moves_interval).await;
        }));
        if cluster.auto_leader_rebalance_enable {
            let rebalance = Arc::clone(&controller);
            let rebalance_clock = Arc::clone(&clock);
            let interval = cluster.leader_imbalance_check_interval;
            tasks.push(tokio::spawn(async move {
                rebalance
                    .run_leader_rebalance(&*rebalance_clock, interval)
                    .await;
            }));
        }
    }
    let controller = Some(controller);
    let session = NodeSession {
        node_id: cluster.node_id,
        incarnation_id,
        storage_id,
        kafka_listeners,
        voters: cluster.controller_voters.clone(),
        local: controller.clone(),
        clients: clients.clone(),
        addresses,
        heartbeat_interval: cluster.node_heartbeat_interval,
        clock: Arc::clone(&clock),
    };
    let (epoch, node_epoch) = watch::channel(None);
    let (shutdown, shutdown_link) = super::shutdown::shutdown_channel();
    tasks.push(tokio::spawn(
        session.run_with_shutdown(epoch, shutdown_link),
    ));
    Ok(NodeCluster {
        controller,
        node_epoch,
        clients,
        admin,
        tasks,
        node_id: cluster.node_id,
        clock,
        controlled_shutdown_enable: cluster.controlled_shutdown_enable,
        controlled_shutdown_timeout: cluster.controlled_shutdown_timeout,
        shutdown,
    })
}

#[cfg(test)]
mod tests;
