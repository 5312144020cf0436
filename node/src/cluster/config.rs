//! The `[cluster]` config section: who the nodes are, the controller voters, the certificate
//! files, replication defaults and the peer RPC limits, validated with one clear line per
//! error (each names the key or keys involved).
//!
//! Parsing and validation here are pure; the certificate files are read and checked
//! against the config by [`ClusterConfig::load_tls`], which the node calls at start before
//! it touches its data directory. A node with no `[cluster]` section has no
//! [`ClusterConfig`] and runs as node 1 of a one-node cluster, exactly as before.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::NodeId;
use super::identity::{ClusterTls, IdentityError};
use crate::config::{ConfigError, DURATION_MS_MAX};

/// Default `replica_lag_time_max_ms` (Kafka's `replica.lag.time.max.ms`).
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 30_000;
/// Default `replica_fetch_wait_max_ms` (Kafka's `replica.fetch.wait.max.ms`).
pub const REPLICA_FETCH_WAIT_MAX_MS_DEFAULT: u64 = 500;
/// Default `node_heartbeat_interval_ms` (KRaft's `broker.heartbeat.interval.ms`, 2 s there):
/// six heartbeats per session, so a node is fenced only after six in a row went missing. The
/// active controller also looks for expired sessions this often, so a dead node is fenced
/// between `session - heartbeat` and `session + heartbeat` after it died.
pub const NODE_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 200;
/// Default `node_session_timeout_ms` (KRaft's `broker.session.timeout.ms`, 9 s there). It
/// bounds failover: a dead leader is replaced about this long after its last heartbeat, and
/// issue 13 asks for the first acknowledged produce on the new leader within 2 s of the kill.
/// Shorter fences healthy nodes that stall (a debug build on a loaded 2-core machine stalls
/// for hundreds of milliseconds); see docs/OPERATIONS.md, "Failover time".
pub const NODE_SESSION_TIMEOUT_MS_DEFAULT: u64 = 1_200;
/// Default `peer_frame_bytes_max`: the largest peer request or response frame. Replica
/// fetches carry record batches, so it is larger than a client request needs.
pub const PEER_FRAME_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;
/// Default `peer_in_flight_bytes_per_connection_max`: request bytes one peer connection may
/// hold in the node at once (frames being read and handled).
pub const PEER_IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest `peer_frame_bytes_max` accepted: room for a frame header and small requests.
pub const PEER_FRAME_BYTES_MIN: u32 = 4 * 1024;
/// Default `peer_request_timeout_ms`: how long a peer request waits for its answer. Below
/// the session timeout (checked), and twice the longest a replica fetch is held at the leader.
pub const PEER_REQUEST_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// Default `peer_reconnect_backoff_min_ms`: the first wait after a failed dial.
pub const PEER_RECONNECT_BACKOFF_MIN_MS_DEFAULT: u64 = 100;
/// Default `peer_reconnect_backoff_max_ms`: the longest wait between dials (doubling).
pub const PEER_RECONNECT_BACKOFF_MAX_MS_DEFAULT: u64 = 5_000;
/// Most nodes a cluster may list in `peers`.
pub const CLUSTER_NODES_MAX: usize = 256;
/// Longest `cluster_id` (it is one DNS label in node certificates).
pub const CLUSTER_ID_BYTES_MAX: usize = 63;

// The heartbeat must fit several times in the session, or one lost heartbeat fences a node.
const _: () = assert!(NODE_HEARTBEAT_INTERVAL_MS_DEFAULT * 2 <= NODE_SESSION_TIMEOUT_MS_DEFAULT);
// A peer request (a registration, an ISR change, a replica fetch) must give up before a
// session expires, or a request stuck on a dead peer outlives the session it was made for.
const _: () = assert!(PEER_REQUEST_TIMEOUT_MS_DEFAULT < NODE_SESSION_TIMEOUT_MS_DEFAULT);
// A follower's fetch must return well within the lag limit, or idle followers leave the ISR.
const _: () = assert!(REPLICA_FETCH_WAIT_MAX_MS_DEFAULT < REPLICA_LAG_TIME_MAX_MS_DEFAULT);
// A follower's fetch held at the leader must come back before its peer request times out.
const _: () = assert!(REPLICA_FETCH_WAIT_MAX_MS_DEFAULT < PEER_REQUEST_TIMEOUT_MS_DEFAULT);
const _: () = assert!(PEER_FRAME_BYTES_MIN <= PEER_FRAME_BYTES_MAX_DEFAULT);
// One largest frame must fit in a connection's budget, or it could never be read.
const _: () =
    assert!(PEER_FRAME_BYTES_MAX_DEFAULT as u64 <= PEER_IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT);
const _: () =
    assert!(PEER_RECONNECT_BACKOFF_MIN_MS_DEFAULT <= PEER_RECONNECT_BACKOFF_MAX_MS_DEFAULT);
// A replica fetch answer's records take at most half a peer frame: the rest is room for its
// per-partition headers and a first batch larger than the budget (always sent).
const _: () = assert!(
    crate::replication::manager::REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT
        <= PEER_FRAME_BYTES_MAX_DEFAULT / 2
);
const _: () = assert!(
    crate::controller::quorum::CONTROLLER_RAFT_HEARTBEAT_MS_DEFAULT
        < crate::controller::quorum::CONTROLLER_ELECTION_TIMEOUT_MIN_MS_DEFAULT
        && crate::controller::quorum::CONTROLLER_ELECTION_TIMEOUT_MIN_MS_DEFAULT
            < crate::controller::quorum::CONTROLLER_ELECTION_TIMEOUT_MAX_MS_DEFAULT
);
const _: () = assert!(
    crate::replication::manager::REPLICA_FETCH_PARTITION_BYTES_MAX_DEFAULT
        <= crate::replication::manager::REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT
);

/// One node of the cluster as every node's config lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its id.
    pub id: NodeId,
    /// The UDP address of its QUIC endpoint (clients and peers alike).
    pub address: SocketAddr,
}

/// The `[cluster]` section, validated.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id; one of `peers`.
    pub node_id: NodeId,
    /// The cluster's id, written by `cluster-init`; node certificates carry it.
    pub cluster_id: String,
    /// Every node of the cluster, this one included, sorted by id.
    pub peers: Vec<Peer>,
    /// The nodes that vote in the controller quorum (default: every peer), sorted.
    pub controller_voters: Vec<NodeId>,
    /// The cluster CA (PEM); relative paths are relative to the config file.
    pub ca_file: PathBuf,
    /// This node's certificate (PEM), signed by the cluster CA.
    pub cert_file: PathBuf,
    /// This node's private key (PEM).
    pub key_file: PathBuf,
    /// Replication factor of topics created without one (Kafka's
    /// `default.replication.factor`); default min(3, nodes).
    pub default_replication_factor: u32,
    /// `min.insync.replicas` of topics that do not set it; default
    /// min(2, `default_replication_factor`).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable` of topics that do not set it.
    pub unclean_leader_election_enable: bool,
    /// A follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// Longest a follower's fetch waits at the leader for new data.
    pub replica_fetch_wait_max: Duration,
    /// How often a node heartbeats to the controller.
    pub node_heartbeat_interval: Duration,
    /// A node with no heartbeat for this long is fenced.
    pub node_session_timeout: Duration,
    /// Largest peer request or response frame.
    pub peer_frame_bytes_max: u32,
    /// Request bytes one peer connection may hold in the node at once.
    pub peer_in_flight_bytes_per_connection_max: u64,
    /// How long a peer request waits for its answer.
    pub peer_request_timeout: Duration,
    /// Kafka's `auto.leader.rebalance.enable`: the active controller moves leadership back
    /// to preferred replicas every `leader_imbalance_check_interval`.
    pub auto_leader_rebalance_enable: bool,
    /// How often the active controller looks for partitions not led by their preferred
    /// replica (Kafka's `leader.imbalance.check.interval.seconds`).
    pub leader_imbalance_check_interval: Duration,
    /// First wait after a failed dial of a peer.
    pub peer_reconnect_backoff_min: Duration,
    /// Longest wait between dials of a peer.
    pub peer_reconnect_backoff_max: Duration,
    /// Kafka's `controlled.shutdown.enable`: on SIGTERM the node first asks the controller
    /// to move its leaderships away.
    pub controlled_shutdown_enable: bool,
    /// Longest a stopping node waits for its leaderships to move.
    pub controlled_shutdown_timeout: Duration,
    /// Most bytes of records per partition in one replica fetch (Kafka's
    /// `replica.fetch.max.bytes`).
    pub replica_fetch_partition_bytes_max: u32,
    /// Most bytes of records in one replica fetch answer (Kafka's
    /// `replica.fetch.response.max.bytes`).
    pub replica_fetch_response_bytes_max: u32,
    /// How often the replicated high watermarks are written to the data directory's
    /// checkpoint, at most (Kafka's `replica.high.watermark.checkpoint.interval.ms`).
    pub high_watermark_checkpoint_interval: Duration,
    /// How long the cut bytes of a repaired replica (`.damaged` files) are kept once the
    /// replica is healthy again, before the node deletes them.
    pub damaged_retention: Duration,
    /// How often the active controller's Raft leader heartbeats the other voters.
    pub controller_heartbeat_interval: Duration,
    /// A voter that hears no leader for a random time in this range campaigns (openraft's
    /// election timeout; KRaft's `controller.quorum.election.timeout.ms`).
    pub controller_election_timeout: (Duration, Duration),
}

/// The TOML form of `[cluster]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterSection {
    node_id: Option<NodeId>,
    cluster_id: Option<String>,
    #[serde(default)]
    peers: Vec<PeerSection>,
    controller_voters: Option<Vec<NodeId>>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    default_replication_factor: Option<u32>,
    min_insync_replicas: Option<u32>,
    unclean_leader_election_enable: Option<bool>,
    replica_lag_time_max_ms: Option<u64>,
    replica_fetch_wait_max_ms: Option<u64>,
    node_heartbeat_interval_ms: Option<u64>,
    node_session_timeout_ms: Option<u64>,
    peer_frame_bytes_max: Option<u32>,
    peer_in_flight_bytes_per_connection_max: Option<u64>,
    peer_request_timeout_ms: Option<u64>,
    peer_reconnect_backoff_min_ms: Option<u64>,
    peer_reconnect_backoff_max_ms: Option<u64>,
    auto_leader_rebalance_enable: Option<bool>,
    leader_imbalance_check_interval_ms: Option<u64>,
    controlled_shutdown_enable: Option<bool>,
    controlled_shutdown_timeout_ms: Option<u64>,
    replica_fetch_partition_bytes_max: Option<u32>,
    high_watermark_checkpoint_interval_ms: Option<u64>,
    damaged_retention_ms: Option<u64>,
    replica_fetch_response_bytes_max: Option<u32>,
    controller_heartbeat_interval_ms: Option<u64>,
    controller_election_timeout_min_ms: Option<u64>,
    controller_election_timeout_max_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    id: NodeId,
    address: String,
}

impl ClusterConfig {
    /// Validates a parsed `[cluster]` section; `origin` names the file in errors.
    pub(crate) fn from_section(section: ClusterSection, origin: &str) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError(format!("{origin}: {message}"));
        let node_id = section
            .node_id
            .ok_or_else(|| error("cluster.node_id is missing".into()))?;
        let cluster_id = section.cluster_id.ok_or_else(|| {
            error("cluster.cluster_id is missing (cluster-init writes it)".into())
        })?;
        validate_cluster_id(&cluster_id)
            .map_err(|problem| error(format!("cluster.cluster_id {cluster_id:?}: {problem}")))?;
        if section.peers.is_empty() {
            return Err(error(
                "cluster.peers is empty: list every node of the cluster, this one included".into(),
            ));
        }
        if section.peers.len() > CLUSTER_NODES_MAX {
            return Err(error(format!(
                "cluster.peers lists {} nodes; at most {CLUSTER_NODES_MAX} are supported",
                section.peers.len()
            )));
        }
        let mut peers = Vec::with_capacity(section.peers.len());
        for peer in section.peers {
            if peer.id == 0 {
                return Err(error(
                    "cluster.peers: node id 0 is not allowed (ids start at 1)".into(),
                ));
            }
            let address: SocketAddr = peer.address.parse().map_err(|_| {
                error(format!(
                    "cluster.peers: node {}: address {:?} is not an address like 127.0.0.1:9101",
                    peer.id, peer.address
                ))
            })?;
            if let Some(same) = peers.iter().find(|known: &&Peer| known.id == peer.id) {
                return Err(error(format!(
                    "cluster.peers: duplicate node id {} ({} and {address})",
                    peer.id, same.address
                )));
            }
            if let Some(same) = peers.iter().find(|known: &&Peer| known.address == address) {
                return Err(error(format!(
                    "cluster.peers: nodes {} and {} share the address {address}",
                    same.id, peer.id
                )));
            }
            peers.push(Peer {
                id: peer.id,
                address,
            });
        }
        peers.sort_by_key(|peer| peer.id);
        if !peers.iter().any(|peer| peer.id == node_id) {
            return Err(error(format!(
                "cluster.node_id {node_id} is not in cluster.peers (ids {})",
                ids(peers.iter().map(|peer| peer.id))
            )));
        }
        let known: BTreeSet<NodeId> = peers.iter().map(|peer| peer.id).collect();
        let controller_voters = match section.controller_voters {
            None => known.iter().copied().collect(),
            Some(voters) => {
                if voters.is_empty() {
                    return Err(error("cluster.controller_voters is empty: the controller quorum needs at least one voter (leave the key out to make every peer a voter)".into()));
                }
                let mut unique = BTreeSet::new();
                for voter in &voters {
                    if !known.contains(voter) {
                        return Err(error(format!(
                            "cluster.controller_voters names node {voter}, which is not in cluster.peers (ids {})",
                            ids(known.iter().copied())
                        )));
                    }
                    if !unique.insert(*voter) {
                        return Err(error(format!(
                            "cluster.controller_voters lists node {voter} twice"
                        )));
                    }
                }
                unique.into_iter().collect()
            }
        };
        let nodes = u32::try_from(peers.len()).expect("at most CLUSTER_NODES_MAX peers");
        let default_replication_factor = section
            .default_replication_factor
            .unwrap_or_else(|| nodes.min(3));
        if default_replication_factor == 0 {
            return Err(error(
                "cluster.default_replication_factor must be at least 1".into(),
            ));
        }
        if default_replication_factor > nodes {
            return Err(error(format!(
                "cluster.default_replication_factor ({default_replication_factor}) is above the number of nodes in cluster.peers ({nodes}): a topic could never place its replicas"
            )));
        }
        let min_insync_replicas = section
            .min_insync_replicas
            .unwrap_or_else(|| default_replication_factor.min(2));
        if min_insync_replicas == 0 {
            return Err(error(
                "cluster.min_insync_replicas must be at least 1".into(),
            ));
        }
        if min_insync_replicas > default_replication_factor {
            return Err(error(format!(
                "cluster.min_insync_replicas ({min_insync_replicas}) is above cluster.default_replication_factor ({default_replication_factor}): acks=all produce to such a topic would always fail with NotEnoughReplicas"
            )));
        }
        let millis =
            |key: &str, value: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
                let value = value.unwrap_or(default);
                if value == 0 {
                    return Err(error(format!("cluster.{key} must be positive")));
                }
                if value > DURATION_MS_MAX {
                    return Err(error(format!(
                        "cluster.{key} ({value}) exceeds the maximum {DURATION_MS_MAX} (one year)"
                    )));
                }
                Ok(Duration::from_millis(value))
            };
        let replica_lag_time_max = millis(
            "replica_lag_time_max_ms",
            section.replica_lag_time_max_ms,
            REPLICA_LAG_TIME_MAX_MS_DEFAULT,
        )?;
        let replica_fetch_wait_max = millis(
            "replica_fetch_wait_max_ms",
            section.replica_fetch_wait_max_ms,
            REPLICA_FETCH_WAIT_MAX_MS_DEFAULT,
        )?;
        if replica_fetch_wait_max >= replica_lag_time_max {
            return Err(error(format!(
                "cluster.replica_fetch_wait_max_ms ({}) must be below cluster.replica_lag_time_max_ms ({}): an idle follower waiting on its fetch would be dropped from the ISR",
                replica_fetch_wait_max.as_millis(),
                replica_lag_time_max.as_millis()
            )));
        }
        let node_heartbeat_interval = millis(
            "node_heartbeat_interval_ms",
            section.node_heartbeat_interval_ms,
            NODE_HEARTBEAT_INTERVAL_MS_DEFAULT,
        )?;
        let node_session_timeout = millis(
            "node_session_timeout_ms",
            section.node_session_timeout_ms,
            NODE_SESSION_TIMEOUT_MS_DEFAULT,
        )?;
        if node_heartbeat_interval >= node_session_timeout {
            return Err(error(format!(
                "cluster.node_heartbeat_interval_ms ({}) must be below cluster.node_session_timeout_ms ({}): every node would be fenced between heartbeats",
                node_heartbeat_interval.as_millis(),
                node_session_timeout.as_millis()
            )));
        }
        let peer_frame_bytes_max = section
            .peer_frame_bytes_max
            .unwrap_or(PEER_FRAME_BYTES_MAX_DEFAULT);
        if peer_frame_bytes_max < PEER_FRAME_BYTES_MIN {
            return Err(error(format!(
                "cluster.peer_frame_bytes_max ({peer_frame_bytes_max}) is below the minimum {PEER_FRAME_BYTES_MIN}"
            )));
        }
        let peer_in_flight_bytes_per_connection_max = section
            .peer_in_flight_bytes_per_connection_max
            .unwrap_or(PEER_IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT);
        if peer_in_flight_bytes_per_connection_max < u64::from(peer_frame_bytes_max)
            || peer_in_flight_bytes_per_connection_max
                > crate::transport::budget::IN_FLIGHT_BYTES_LIMIT
        {
            return Err(error(format!(
                "cluster.peer_in_flight_bytes_per_connection_max ({peer_in_flight_bytes_per_connection_max}) must be between cluster.peer_frame_bytes_max ({peer_frame_bytes_max}) and {}: one largest frame must fit",
                crate::transport::budget::IN_FLIGHT_BYTES_LIMIT
            )));
        }
        let peer_request_timeout = millis(
            "peer_request_timeout_ms",
            section.peer_request_timeout_ms,
            PEER_REQUEST_TIMEOUT_MS_DEFAULT,
        )?;
        if peer_request_timeout >= node_session_timeout {
            return Err(error(format!(
                "cluster.peer_request_timeout_ms ({}) must be below cluster.node_session_timeout_ms ({}): a request stuck on a dead peer would outlive the node's session",
                peer_request_timeout.as_millis(),
                node_session_timeout.as_millis()
            )));
        }
        if replica_fetch_wait_max >= peer_request_timeout {
            return Err(error(format!(
                "cluster.replica_fetch_wait_max_ms ({}) must be below cluster.peer_request_timeout_ms ({}): a follower's fetch held that long at the leader would time out",
                replica_fetch_wait_max.as_millis(),
                peer_request_timeout.as_millis()
            )));
        }
        let peer_reconnect_backoff_min = millis(
            "peer_reconnect_backoff_min_ms",
            section.peer_reconnect_backoff_min_ms,
            PEER_RECONNECT_BACKOFF_MIN_MS_DEFAULT,
        )?;
        let peer_reconnect_backoff_max = millis(
            "peer_reconnect_backoff_max_ms",
            section.peer_reconnect_backoff_max_ms,
            PEER_RECONNECT_BACKOFF_MAX_MS_DEFAULT,
        )?;
        if peer_reconnect_backoff_min > peer_reconnect_backoff_max {
            return Err(error(format!(
                "cluster.peer_reconnect_backoff_min_ms ({}) must not exceed cluster.peer_reconnect_backoff_max_ms ({})",
                peer_reconnect_backoff_min.as_millis(),
                peer_reconnect_backoff_max.as_millis()
            )));
        }
        let leader_imbalance_check_interval = millis(
            "leader_imbalance_check_interval_ms",
            section.leader_imbalance_check_interval_ms,
            crate::controller::rebalance::LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
        )?;
        let controlled_shutdown_timeout = millis(
            "controlled_shutdown_timeout_ms",
            section.controlled_shutdown_timeout_ms,
            crate::controller::shutdown::CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT,
        )?;
        let high_watermark_checkpoint_interval = millis(
            "high_watermark_checkpoint_interval_ms",
            section.high_watermark_checkpoint_interval_ms,
            crate::replication::checkpoint::HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS_DEFAULT,
        )?;
        let damaged_retention = millis(
            "damaged_retention_ms",
            section.damaged_retention_ms,
            crate::replication::checkpoint::DAMAGED_RETENTION_MS_DEFAULT,
        )?;
        let replica_fetch_partition_bytes_max = section
            .replica_fetch_partition_bytes_max
            .unwrap_or(crate::replication::manager::REPLICA_FETCH_PARTITION_BYTES_MAX_DEFAULT);
        let replica_fetch_response_bytes_max = section
            .replica_fetch_response_bytes_max
            .unwrap_or(crate::replication::manager::REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT);
        if replica_fetch_partition_bytes_max == 0 {
            return Err(error(
                "cluster.replica_fetch_partition_bytes_max must be positive".into(),
            ));
        }
        if replica_fetch_response_bytes_max < replica_fetch_partition_bytes_max
            || replica_fetch_response_bytes_max > peer_frame_bytes_max / 2
        {
            return Err(error(format!(
                "cluster.replica_fetch_response_bytes_max ({replica_fetch_response_bytes_max}) must be between cluster.replica_fetch_partition_bytes_max ({replica_fetch_partition_bytes_max}) and half of cluster.peer_frame_bytes_max ({}): the answer's headers and a first batch above the budget need the other half",
                peer_frame_bytes_max / 2
            )));
        }
        let controller_heartbeat_interval = millis(
            "controller_heartbeat_interval_ms",
            section.controller_heartbeat_interval_ms,
            crate::controller::quorum::CONTROLLER_RAFT_HEARTBEAT_MS_DEFAULT,
        )?;
        let controller_election_timeout_min = millis(
            "controller_election_timeout_min_ms",
            section.controller_election_timeout_min_ms,
            crate::controller::quorum::CONTROLLER_ELECTION_TIMEOUT_MIN_MS_DEFAULT,
        )?;
        let controller_election_timeout_max = millis(
            "controller_election_timeout_max_ms",
            section.controller_election_timeout_max_ms,
            crate::controller::quorum::CONTROLLER_ELECTION_TIMEOUT_MAX_MS_DEFAULT,
        )?;
        if controller_heartbeat_interval >= controller_election_timeout_min
            || controller_election_timeout_min >= controller_election_timeout_max
        {
            return Err(error(format!(
                "cluster.controller_heartbeat_interval_ms ({}) < cluster.controller_election_timeout_min_ms ({}) < cluster.controller_election_timeout_max_ms ({}) does not hold: voters would campaign while the controller is alive, or all at the same moment",
                controller_heartbeat_interval.as_millis(),
                controller_election_timeout_min.as_millis(),
                controller_election_timeout_max.as_millis()
            )));
        }
        let file = |key: &str, value: Option<PathBuf>| {
            value
                .filter(|path| !path.as_os_str().is_empty())
                .ok_or_else(|| error(format!("cluster.{key} is missing: mTLS between nodes is always on (cluster-init writes it)")))
        };
        Ok(Self {
            node_id,
            cluster_id,
            peers,
            controller_voters,
            ca_file: file("ca_file", section.ca_file)?,
            cert_file: file("cert_file", section.cert_file)?,
            key_file: file("key_file", section.key_file)?,
            default_replication_factor,
            min_insync_replicas,
            unclean_leader_election_enable: section.unclean_leader_election_enable.unwrap_or(false),
            replica_lag_time_max,
            replica_fetch_wait_max,
            node_heartbeat_interval,
            node_session_timeout,
            peer_frame_bytes_max,
            peer_in_flight_bytes_per_connection_max,
            peer_request_timeout,
            peer_reconnect_backoff_min,
            peer_reconnect_backoff_max,
            auto_leader_rebalance_enable: section
                .auto_leader_rebalance_enable
                .unwrap_or(crate::controller::rebalance::AUTO_LEADER_REBALANCE_ENABLE_DEFAULT),
            leader_imbalance_check_interval,
            controlled_shutdown_enable: section
                .controlled_shutdown_enable
                .unwrap_or(crate::controller::shutdown::CONTROLLED_SHUTDOWN_ENABLE_DEFAULT),
            controlled_shutdown_timeout,
            replica_fetch_partition_bytes_max,
            replica_fetch_response_bytes_max,
            high_watermark_checkpoint_interval,
            damaged_retention,
            controller_heartbeat_interval,
            controller_election_timeout: (
                controller_election_timeout_min,
                controller_election_timeout_max,
            ),
        })
    }

    /// Settings that are allowed but probably not what the operator wants, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let voters = self.controller_voters.len();
        if voters.is_multiple_of(2) {
            // Raft needs a majority: 2f+1 voters survive f failures, and so do 2f+2.
            let tolerated = (voters - 1) / 2;
            warnings.push(format!(
                "cluster.controller_voters has {voters} voters (an even number): a majority is {}, so the controller survives {tolerated} failure(s), no more than with {} voters, and there is one more node whose loss counts; use an odd number",
                voters / 2 + 1,
                voters - 1
            ));
        }
        warnings
    }

    /// The peer with `id`.
    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|peer| peer.id == id)
    }

    /// This node's entry in `peers`.
    pub fn own_address(&self) -> SocketAddr {
        self.peer(self.node_id)
            .expect("validation keeps node_id in peers")
            .address
    }

    /// Makes relative certificate paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Reads the CA, certificate and key files and checks that the certificate is signed by
    /// the CA and names this node of this cluster (at wall time `now_ms`).
    pub fn load_tls(&self, now_ms: i64) -> Result<ClusterTls, IdentityError> {
        let now = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_millis(
            u64::try_from(now_ms).unwrap_or(0),
        ));
        ClusterTls::load(
            &self.ca_file,
            &self.cert_file,
            &self.key_file,
            &self.cluster_id,
            self.node_id,
            now,
        )
    }
}

/// A cluster id is one DNS label (lowercase letters, digits, `-`; not at either end), as it
/// appears in node certificates' names.
pub fn validate_cluster_id(cluster_id: &str) -> Result<(), String> {
    if cluster_id.is_empty() || cluster_id.len() > CLUSTER_ID_BYTES_MAX {
        return Err(format!("must be 1..={CLUSTER_ID_BYTES_MAX} characters"));
    }
    if !cluster_id
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    {
        return Err("may hold only lowercase letters, digits and '-'".into());
    }
    if cluster_id.starts_with('-') || cluster_id.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    Ok(())
}

fn ids(ids: impl Iterator<Item = NodeId>) -> String {
    ids.map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tuning_tests;
