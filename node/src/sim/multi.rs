//! The multi-node simulator (issue 13): from one seed, in one thread, 3 to 5 real nodes,
//! each a broker, a controller (a voter, or a learner when 5 nodes have 3 voters), the
//! node's registration and heartbeats, and the replication driver, all on its own
//! [`SimDisk`], talking over a [`PeerNet`] that delays, drops, duplicates and partitions
//! (symmetric and one-way) every peer request, and heals. Nodes lose power (the disk keeps
//! only what was synced) one at a time or all at once, and one may come back with a wiped
//! disk (a new storage id). Clients create an RF=3, `min.insync.replicas=2` topic through
//! any node, produce with acks=all as idempotent producers to the leader the metadata
//! names (retrying on `NotLeaderOrFollower`, `NotEnoughReplicas` and timeouts) and
//! consume from the leader.
//!
//! Checkers:
//! - two acks=all acknowledgements never name the same offset with different records (a
//!   deposed leader acknowledging over a newer epoch's record);
//! - no two nodes' images ever name different leaders for one partition and leader epoch;
//! - after the faults stop and the network heals: every replica's log is the same, the ISR
//!   is every replica, each acknowledged record is at its offset on every replica, exactly
//!   once, and every record a consumer read is still at the offset it read it at.
//!
//! Nodes are built by [`crate::assembly`], the sequence `main.rs` runs (producer-id
//! share, the broker's drivers, the controller and the node's session, the materializer,
//! the offsets loader, replication), from a config text parsed and validated as the
//! binary's is; only the peer clients (simulated links), the disk, the clock and the
//! random draws (storage and incarnation ids, from the seed) differ.
//!
//! Time: each node runs on its own paused current-thread runtime, moved forward one
//! simulated millisecond per step, in node order; the network moves with them. Everything
//! the simulator decides comes from the seed: the node count, the fault schedule, every
//! delay, drop and duplicate, the clients' choices, Raft's election timeouts (openraft
//! draws its own timeout in a range; each node here gets a range one millisecond wide),
//! the storage and incarnation ids, and tokio's own choices inside each node
//! ([`crate::sim::node_runtime`] seeds them). A seed replays exactly, in one process or
//! another: the same bytes on the wire at the same milliseconds
//! (`one_seed_replays_exactly`). Replay: `LEDGE_SIM_SEED=<seed> cargo test -p ledge-node --lib
//! sim::multi::tests::seeds -- --nocapture` (`LEDGE_SIM_TRACE=1` prints every event; `LEDGE_SIM_TRACE=wire` every peer message too).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{
    Acks, ConfigEntry, CreatableTopic, CreateTopicsRequest, ErrorCode, FetchPartition,
    FetchRequest, FetchTopic, InitProducerIdRequest, MetadataRequest, ProducePartition,
    ProduceRequest, ProduceTopic, Request, Response,
};
use ledge_protocol::{EncodeOptions, Record, encode_batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::assembly;
use crate::broker::Broker;
use crate::clock::{self, Clock, SimClock};
use crate::cluster::NodeId;
use crate::cluster::peer::{
    PeerClient, PeerHandlers, PeerLimits, PeerRequest, PeerRequestError, PeerStatus,
};
use crate::config::NodeConfig;
use crate::controller::admin::AdminLimits;
use crate::controller::bootstrap;
use crate::controller::image::MetadataImage;
use crate::controller::peer_link::{NodeCluster, NodeClusterLinks};
use crate::controller::quorum::Controller;
use crate::sim::SimDisk;
use crate::sim::checkers::decode_records;
use crate::sim::peer_net::{Leg, PeerNet, PeerNetStats};
use crate::wasm::PluginExecutor;

/// The data directory on every node's disk.
const DATA_DIR: &str = "/data";
/// The cluster's id.
const CLUSTER_ID: &str = "sim";
/// Wall time (ms since the epoch) at which every run starts.
const START_WALL_MS: i64 = 1_790_000_000_000;
/// The replicated topic.
const TOPIC: &str = "orders";
/// Its partitions.
const PARTITIONS: u32 = 2;
/// Its replication factor.
const REPLICATION_FACTOR: u16 = 3;
/// Its `min.insync.replicas`.
const MIN_INSYNC: u16 = 2;
/// `node_heartbeat_interval_ms` of the simulated nodes.
const NODE_HEARTBEAT_MS: u64 = 500;
/// `node_session_timeout_ms`.
const NODE_SESSION_TIMEOUT_MS: u64 = 3_000;
/// `peer_request_timeout_ms` (below the session timeout, as the config requires).
const PEER_REQUEST_TIMEOUT_MS: u64 = 1_000;
/// `replica_lag_time_max_ms`.
const REPLICA_LAG_MS: u64 = 2_000;
/// `replica_fetch_wait_max_ms`.
const REPLICA_FETCH_WAIT_MS: u64 = 200;
/// How long a client waits for an answer before retrying.
const CLIENT_TIMEOUT_MS: u64 = 3_000;
/// A produce request's `timeout_ms` (acks=all waits this long for the ISR).
const PRODUCE_TIMEOUT_MS: u32 = 2_000;
/// Between a refused request and its retry.
const RETRY_BACKOFF_MS: u64 = 50;
/// How often the leader-per-epoch checker samples the nodes' images.
const IMAGE_SAMPLE_MS: u64 = 20;
/// Events of the trace kept for a failure report.
const TRACE_TAIL_EVENTS: usize = 60;

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct MultiOptions {
    /// Simulated milliseconds of workload with faults.
    pub duration_ms: u64,
    /// Simulated milliseconds after the last fault (network healed, every node up) for
    /// the replicas to converge.
    pub settle_ms: u64,
    /// Whether the network drops, duplicates and delays at random (partitions and crashes
    /// are scheduled regardless of this).
    pub network_faults: bool,
    /// Whether partitions of the network (and heals) are scheduled.
    pub faults: bool,
    /// Whether nodes lose power too: one node, every node at once, and a node back on a
    /// wiped disk. Off in `seeds` (network faults and partitions), on in
    /// `seeds_with_power_loss`.
    pub power_loss: bool,
    /// Whether producers get their ids from `InitProducerId` (true), or draw distinct ids
    /// themselves (false). False by default until the finding below is fixed: in a cluster,
    /// each node hands out producer ids from its own local counter (`broker/dispatch.rs`
    /// `init_producer_id` → `registry.allocate_producer_id`), not from the controller's
    /// `AllocateProducerIds` blocks, so two nodes give two producers the same id, and the
    /// partition leader takes the second producer's first batch for a retry of the
    /// first's: it acknowledges it at the first's offset without writing it (seed 7 of
    /// `fault_free_run_acknowledges_and_converges` with this on).
    pub init_producer_id: bool,
    /// The number of nodes (3 to 5); `None`: the seed picks. The tests read
    /// `LEDGE_SIM_NODES` ([`MultiOptions::from_env`]).
    pub nodes: Option<NodeId>,
}

/// Fewest nodes a run has (an RF=3 topic needs three).
const NODES_MIN: NodeId = 3;
/// Most nodes a run has (five: three voters and two learners).
const NODES_MAX: NodeId = 5;

impl MultiOptions {
    /// These options with the node count of `LEDGE_SIM_NODES` if set (3 to 5).
    pub fn from_env(self) -> Self {
        match std::env::var("LEDGE_SIM_NODES") {
            Ok(text) => match text.trim().parse::<NodeId>() {
                Ok(nodes) if (NODES_MIN..=NODES_MAX).contains(&nodes) => Self {
                    nodes: Some(nodes),
                    ..self
                },
                _ => panic!("LEDGE_SIM_NODES must be {NODES_MIN} to {NODES_MAX}, got {text:?}"),
            },
            Err(_) => self,
        }
    }
}

impl Default for MultiOptions {
    fn default() -> Self {
        Self {
            duration_ms: 12_000,
            settle_ms: 12_000,
            network_faults: true,
            faults: true,
            power_loss: false,
            init_producer_id: false,
            nodes: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct MultiSummary {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Controller voters.
    pub voters: usize,
    /// Digest of the trace.
    pub digest: u64,
    /// Single-node power losses.
    pub crashes: u64,
    /// Whole-cluster power losses.
    pub cluster_crashes: u64,
    /// Nodes restarted on a wiped disk.
    pub wipes: u64,
    /// Partitions of the network made.
    pub partitions: u64,
    /// Records acknowledged with acks=all.
    pub acknowledged: usize,
    /// Records read by the consumer.
    pub consumed: usize,
    /// Produce answers that were errors (retried).
    pub produce_refusals: u64,
    /// Client requests that timed out (retried).
    pub client_timeouts: u64,
    /// Distinct leader epochs seen across both partitions.
    pub leader_epochs: usize,
    /// Peer network counts.
    pub network: PeerNetStats,
}

/// A failed check: what, and the trace's tail.
#[derive(Debug)]
pub struct MultiFailure {
    /// The seed.
    pub seed: u64,
    /// What the checker saw.
    pub message: String,
    /// The last events.
    pub trace: Vec<String>,
}

impl std::fmt::Display for MultiFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(formatter, "seed {}: {}", self.seed, self.message)?;
        writeln!(
            formatter,
            "replay: LEDGE_SIM_SEED={} cargo test -p ledge-node --lib sim::multi::tests::seeds -- --nocapture",
            self.seed
        )?;
        for line in &self.trace {
            writeln!(formatter, "  {line}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Trace {
    hasher: DefaultHasher,
    recent: VecDeque<String>,
    print: bool,
}

impl Trace {
    fn record(&mut self, now_ms: u64, event: String) {
        now_ms.hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        if self.print {
            eprintln!("{now_ms:>7} ms {event}");
        }
        if self.recent.len() == TRACE_TAIL_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("{now_ms:>7} ms {event}"));
    }
}

/// A client's answer from a node.
struct ClientAnswer {
    token: u64,
    response: Response,
}

struct Running {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker<SimDisk>>,
    handlers: Arc<PeerHandlers>,
    controller: Arc<Controller>,
    /// The controller wiring's tasks (aborted when dropped).
    cluster: NodeCluster,
}

/// One node of the run.
struct Node {
    id: NodeId,
    disk: SimDisk,
    /// The bootstrap marker is written before the first start of a voter's first disk.
    first_start: bool,
    running: Option<Running>,
    answers: Arc<Mutex<Vec<ClientAnswer>>>,
}

fn address(node: NodeId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, node as u8], 9_000))
}

/// Node `id`'s config, as an operator writes it (and validated as the binary validates
/// it): the `[cluster]` section `cluster-init` writes, with the run's shorter timings.
fn node_config(id: NodeId, nodes: &[NodeId], voters: &[NodeId]) -> Result<NodeConfig, String> {
    let peers: Vec<String> = nodes
        .iter()
        .map(|node| format!("{{ id = {node}, address = \"{}\" }}", address(*node)))
        .collect();
    let voters: Vec<String> = voters.iter().map(ToString::to_string).collect();
    let text = format!(
        "[node]
data_dir = \"{DATA_DIR}\"
listen = \"{listen}\"

[cluster]
node_id = {id}
cluster_id = \"{CLUSTER_ID}\"
peers = [{peers}]
controller_voters = [{voters}]
ca_file = \"tls/ca.pem\"
cert_file = \"tls/node-{id}.pem\"
key_file = \"tls/node-{id}.key\"
default_replication_factor = {REPLICATION_FACTOR}
min_insync_replicas = {MIN_INSYNC}
node_heartbeat_interval_ms = {NODE_HEARTBEAT_MS}
node_session_timeout_ms = {NODE_SESSION_TIMEOUT_MS}
peer_request_timeout_ms = {PEER_REQUEST_TIMEOUT_MS}
replica_lag_time_max_ms = {REPLICA_LAG_MS}
replica_fetch_wait_max_ms = {REPLICA_FETCH_WAIT_MS}
peer_reconnect_backoff_min_ms = 50
peer_reconnect_backoff_max_ms = 1000
",
        listen = address(id),
        peers = peers.join(", "),
        voters = voters.join(", "),
    );
    NodeConfig::from_toml(&text, &format!("node {id}'s config")).map_err(|error| error.to_string())
}

/// What a node start needs from the run.
struct StartParts<'a> {
    nodes: &'a [NodeId],
    voters: &'a [NodeId],
    net: &'a PeerNet,
    /// The node's election timeout (openraft draws in `[ms, ms + 1)`).
    election_timeout_ms: u64,
    incarnation_id: u64,
    /// The storage id a new disk gets.
    storage_id_draw: [u8; 16],
    /// Seeds tokio's choices inside the node ([`crate::sim::node_runtime`]).
    runtime_seed: u64,
}

impl Node {
    fn start(&mut self, parts: StartParts<'_>) -> Result<(), String> {
        if self.running.is_some() {
            return Ok(());
        }
        let runtime = crate::sim::node_runtime(parts.runtime_seed)
            .map_err(|error| format!("cannot build the node's runtime: {error}"))?;
        let id = self.id;
        let disk = self.disk.clone();
        let write_marker = self.first_start && parts.voters.contains(&id);
        let node_config = node_config(id, parts.nodes, parts.voters)?;
        let net = parts.net.clone();
        let peers: Vec<NodeId> = parts
            .nodes
            .iter()
            .copied()
            .filter(|node| *node != id)
            .collect();
        let election_timeout_ms = parts.election_timeout_ms;
        let incarnation_id = parts.incarnation_id;
        let storage_id_draw = parts.storage_id_draw;
        let started = runtime.block_on(async move {
            let Some(cluster) = node_config.cluster.as_ref() else {
                return Err("the node's config has no [cluster]".to_owned());
            };
            let data_dir = node_config.data_dir.as_path();
            let clock: Arc<dyn Clock> = Arc::new(SimClock::new(START_WALL_MS));
            if write_marker {
                // What `ledge-node cluster-init` leaves in a voter's data directory.
                bootstrap::write_marker(
                    &disk,
                    data_dir,
                    &bootstrap::marker_text(&cluster.cluster_id, &cluster.controller_voters),
                )
                .await
                .map_err(|error| format!("bootstrap marker: {error}"))?;
            }
            let mut broker_config = node_config.broker.clone();
            // Plug-in work on the node's one thread (the binary uses the blocking pool).
            broker_config.plugin_executor = PluginExecutor::Inline;
            let broker = Broker::open(disk.clone(), data_dir, broker_config, Arc::clone(&clock))
                .await
                .map_err(|error| format!("broker open: {error}"))?;
            // From here on, what `main.rs` does (`crate::assembly`), over simulated links.
            let broker = Arc::new(broker);
            assembly::start_broker_drivers(&broker, false, true).await;
            // Drawn from the seed (a node's first start on a disk keeps it).
            let storage_id =
                crate::storage::storage_id::load_or_create_with(&disk, data_dir, || {
                    Some(storage_id_draw)
                })
                .await
                .map_err(|error| format!("storage id: {error}"))?;
            let clients: BTreeMap<NodeId, Arc<PeerClient>> = peers
                .iter()
                .map(|peer| {
                    let client = PeerClient::simulated(
                        *peer,
                        address(*peer),
                        net.link(id, *peer),
                        PeerLimits::from_config(cluster),
                        Arc::clone(&clock),
                    );
                    (*peer, Arc::new(client))
                })
                .collect();
            let handlers = Arc::new(PeerHandlers::default());
            let links = NodeClusterLinks {
                cluster,
                clients,
                storage_id,
                handlers: &handlers,
                clock,
                incarnation_id,
                admin_limits: AdminLimits {
                    topic_partitions_max: node_config.broker.topic_partitions_max,
                },
                election_timeout: Some((
                    Duration::from_millis(election_timeout_ms),
                    Duration::from_millis(election_timeout_ms + 1),
                )),
                kafka_listeners: None,
            };
            let node_cluster =
                assembly::start_cluster_services(&broker, links, disk.clone(), data_dir, true)
                    .await
                    .map_err(|error| error.to_string())?;
            Ok::<_, String>((broker, handlers, node_cluster))
        });
        let (broker, handlers, cluster) = match started {
            Ok(parts) => parts,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        let Some(controller) = cluster.controller.clone() else {
            runtime.shutdown_background();
            return Err("the node started without a controller".to_owned());
        };
        self.first_start = false;
        self.running = Some(Running {
            runtime,
            broker,
            handlers,
            controller,
            cluster,
        });
        Ok(())
    }

    /// Power loss: the disk keeps what was synced, every task ends at once.
    fn crash(&mut self) {
        self.disk.crash();
        if let Some(running) = self.running.take() {
            drop(running.cluster);
            drop(running.broker);
            drop(running.controller);
            drop(running.handlers);
            running.runtime.shutdown_background();
        }
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn advance(&mut self, duration: Duration) {
        if let Some(running) = &self.running {
            running
                .runtime
                .block_on(async { clock::sleep(&SimClock::new(0), duration).await });
        }
    }

    fn image(&self) -> Option<Arc<MetadataImage>> {
        self.running
            .as_ref()
            .map(|running| running.controller.image())
    }

    fn controller_leader(&self) -> Option<NodeId> {
        self.running
            .as_ref()
            .and_then(|running| running.controller.leader())
    }

    /// Hands a client request to the broker; the answer shows in `answers`.
    fn deliver(&self, token: u64, request: Request) {
        let Some(running) = &self.running else {
            return;
        };
        let broker = Arc::clone(&running.broker);
        let answers = Arc::clone(&self.answers);
        running.runtime.spawn(async move {
            let response = broker.handle(request).await;
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ClientAnswer { token, response });
        });
    }

    /// Hands a peer request that arrived to the node's handlers; the answer goes back on
    /// `net`.
    fn deliver_peer(&self, net: &PeerNet, from: NodeId, sequence: u64, leg: Leg) {
        let Some(running) = &self.running else {
            net.lost_at_down_node(leg);
            return;
        };
        match leg {
            Leg::Request { kind, body, reply } => {
                let handlers = Arc::clone(&running.handlers);
                let net = net.clone();
                let node = self.id;
                running.runtime.spawn(async move {
                    let request = PeerRequest {
                        from,
                        kind,
                        request_id: sequence,
                        body,
                    };
                    let result = match handlers.answer(request) {
                        None => Err(PeerRequestError::Remote {
                            node,
                            status: PeerStatus::UnknownKind,
                            message: format!("node {node} has no handler for {kind:?}"),
                        }),
                        Some(answer) => answer.await.map_err(|error| PeerRequestError::Remote {
                            node,
                            status: PeerStatus::HandlerFailed,
                            message: error.to_string(),
                        }),
                    };
                    if let Some(reply) = reply {
                        net.answer(node, from, result, reply);
                    }
                });
            }
            Leg::Answer { result, reply } => {
                // The requester may have crashed since: then nobody listens.
                let _ = reply.send(result);
            }
        }
    }

    /// Every record of the local log of `partition` (offset, value), or `None` if the
    /// node is down or does not host it.
    fn read_log(&self, partition: u32) -> Option<Vec<(i64, Bytes)>> {
        let running = self.running.as_ref()?;
        let log = running.broker.hosted_partition_log(TOPIC, partition)?;
        running.runtime.block_on(async move {
            let mut records = Vec::new();
            let mut offset = log.log_start_offset();
            loop {
                let Ok(read) = log.read(offset, 1 << 20).await else {
                    break;
                };
                if read.bytes.is_empty() {
                    break;
                }
                let Ok(batch) = decode_records(&read.bytes) else {
                    break;
                };
                let Some(last) = batch.last().map(|(offset, _)| *offset) else {
                    break;
                };
                records.extend(batch.into_iter().filter(|(at, _)| *at >= offset));
                offset = last + 1;
            }
            Some(records)
        })
    }

    fn close(&mut self) {
        if let Some(running) = self.running.take() {
            let broker = running.broker;
            let cluster = running.cluster;
            drop(running.controller);
            running.runtime.block_on(async move {
                cluster.shutdown().await;
                broker.close().await;
            });
            running.runtime.shutdown_background();
        }
    }
}

/// What a client waits for.
#[derive(Clone, Debug)]
enum Purpose {
    Create,
    Metadata,
    InitProducer,
    Produce { partition: u32, values: Vec<Bytes> },
    Fetch { partition: u32 },
}

#[derive(Clone)]
struct Outstanding {
    token: u64,
    purpose: Purpose,
    deadline_ms: u64,
}

#[derive(Default)]
struct Client {
    id: u64,
    consumer: bool,
    producer: Option<(i64, i16)>,
    sequences: BTreeMap<u32, i32>,
    /// The batch being produced, kept for retries (same bytes, same sequence).
    batch: Option<(u32, Request, Vec<Bytes>)>,
    batches: u64,
    positions: BTreeMap<u32, i64>,
    outstanding: Option<Outstanding>,
    /// No new request before this.
    idle_until_ms: u64,
}

/// The run: nodes, network, clients, checkers.
struct Run {
    seed: u64,
    /// The clients' choices and the nodes' start parameters.
    rng: ChaCha8Rng,
    /// The fault schedule: its own stream, so a client's timing does not move it.
    fault_rng: ChaCha8Rng,
    now_ms: u64,
    ids: Vec<NodeId>,
    voters: Vec<NodeId>,
    nodes: Vec<Node>,
    net: PeerNet,
    trace: Trace,
    summary: MultiSummary,
    clients: Vec<Client>,
    next_token: u64,
    topic_created: bool,
    leaders: BTreeMap<u32, NodeId>,
    /// acks=all acknowledgements: (partition, offset) → record.
    acknowledged: BTreeMap<(u32, i64), Bytes>,
    /// What the consumer read: (partition, offset) → record.
    consumed: BTreeMap<(u32, i64), Bytes>,
    /// Leader of each (partition, leader epoch) any node's image named.
    epoch_leaders: BTreeMap<(u32, i32), NodeId>,
    /// Partition epochs already traced, per partition: each new one is one trace event
    /// (leader, ISR, ELR), so a failure's trace shows how the controller moved the partition.
    traced_partition_epochs: BTreeSet<(NodeId, u32, i32)>,
    restarts: Vec<(u64, NodeId)>,
    wiped: bool,
    next_disk_seed: u64,
    init_producer_id: bool,
    /// The next producer id a client draws itself (when not `init_producer_id`).
    next_producer_id: i64,
}

impl Run {
    fn fail(&self, message: String) -> MultiFailure {
        MultiFailure {
            seed: self.seed,
            message,
            trace: self.trace.recent.iter().cloned().collect(),
        }
    }

    fn index(&self, node: NodeId) -> usize {
        self.ids.iter().position(|id| *id == node).unwrap_or(0)
    }

    fn start_node(&mut self, node: NodeId) -> Result<(), MultiFailure> {
        let index = self.index(node);
        let election_timeout_ms = self.rng.random_range(150..400);
        let incarnation_id = self.rng.random();
        let storage_id_draw = self.rng.random();
        let runtime_seed = self.rng.random();
        let parts = StartParts {
            nodes: &self.ids,
            voters: &self.voters,
            net: &self.net,
            election_timeout_ms,
            incarnation_id,
            storage_id_draw,
            runtime_seed,
        };
        let started = self.nodes[index].start(parts);
        match started {
            Ok(()) => {
                self.trace
                    .record(self.now_ms, format!("node {node} started"));
                Ok(())
            }
            Err(error) => Err(self.fail(format!("node {node} cannot start: {error}"))),
        }
    }

    fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.running.is_some())
            .map(|node| node.id)
            .collect()
    }

    /// One simulated millisecond: the network delivers what is due, every node runs.
    fn step(&mut self) {
        self.now_ms += 1;
        self.net.set_now(self.now_ms);
        for message in self.net.due() {
            let index = self.index(message.to);
            self.nodes[index].deliver_peer(&self.net, message.from, message.sequence, message.leg);
        }
        for node in &mut self.nodes {
            node.advance(Duration::from_millis(1));
        }
    }

    /// The leader the first running node's image names, per partition.
    fn image_leaders(&self) -> BTreeMap<u32, NodeId> {
        for node in &self.nodes {
            if let Some(image) = node.image()
                && let Some(topic) = image.topics.get(TOPIC)
            {
                return topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter_map(|(index, state)| Some((index as u32, state.leader?)))
                    .collect();
            }
        }
        BTreeMap::new()
    }

    fn check_epoch_leaders(&mut self) -> Result<(), MultiFailure> {
        for node in &self.nodes {
            let Some(image) = node.image() else { continue };
            let Some(topic) = image.topics.get(TOPIC) else {
                continue;
            };
            for (partition, state) in topic.partitions.iter().enumerate() {
                if self.traced_partition_epochs.insert((
                    node.id,
                    partition as u32,
                    state.partition_epoch,
                )) {
                    self.trace.record(
                        self.now_ms,
                        format!(
                            "partition {partition} epoch {} (node {}'s image): leader {:?} leader epoch {} isr {:?} elr {:?}",
                            state.partition_epoch,
                            node.id,
                            state.leader,
                            state.leader_epoch,
                            state.isr,
                            state.elr
                        ),
                    );
                }
                let Some(leader) = state.leader else { continue };
                let key = (partition as u32, state.leader_epoch);
                match self.epoch_leaders.get(&key) {
                    Some(known) if *known != leader => {
                        return Err(self.fail(format!(
                            "partition {partition} leader epoch {}: node {}'s image names leader {leader}, another image named {known}",
                            state.leader_epoch, node.id
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.epoch_leaders.insert(key, leader);
                    }
                }
            }
        }
        Ok(())
    }

    fn schedule_fault(&mut self, power_loss: bool) {
        let running = self.running();
        let choice = self
            .fault_rng
            .random_range(0..if power_loss { 10 } else { 6 });
        match choice {
            0 | 1 => {
                // Isolate a partition's leader (symmetric).
                let partition = self.fault_rng.random_range(0..PARTITIONS);
                if let Some(leader) = self.image_leaders().get(&partition).copied() {
                    self.isolate(leader, true, true);
                    self.trace.record(
                        self.now_ms,
                        format!("isolate leader {leader} of partition {partition}"),
                    );
                }
            }
            2 => {
                // Isolate the active controller.
                let leader = self.nodes.iter().find_map(Node::controller_leader);
                if let Some(leader) = leader {
                    self.isolate(leader, true, true);
                    self.trace
                        .record(self.now_ms, format!("isolate controller {leader}"));
                }
            }
            3 => {
                // One-way: a node hears nothing, or cannot be heard.
                let node = self.ids[self.fault_rng.random_range(0..self.ids.len())];
                let outbound = self.fault_rng.random_bool(0.5);
                self.isolate(node, outbound, !outbound);
                self.trace.record(
                    self.now_ms,
                    format!(
                        "one-way cut: node {node} {}",
                        if outbound {
                            "cannot send"
                        } else {
                            "cannot receive"
                        }
                    ),
                );
            }
            4 | 5 => {
                self.net.heal();
                self.trace.record(self.now_ms, "heal".to_owned());
            }
            6 | 7 => {
                // Power loss of one node (only while all are up: a majority stays).
                if running.len() == self.ids.len() {
                    let node = self.ids[self.fault_rng.random_range(0..self.ids.len())];
                    let index = self.index(node);
                    self.nodes[index].crash();
                    self.summary.crashes += 1;
                    let back = self.now_ms + self.fault_rng.random_range(200..3_000);
                    self.restarts.push((back, node));
                    self.trace
                        .record(self.now_ms, format!("power loss node {node}"));
                }
            }
            8 => {
                if running.len() == self.ids.len() && self.fault_rng.random_ratio(1, 3) {
                    for node in &mut self.nodes {
                        node.crash();
                    }
                    self.summary.cluster_crashes += 1;
                    for index in 0..self.ids.len() {
                        let back = self.now_ms + self.fault_rng.random_range(50..1_500);
                        self.restarts.push((back, self.ids[index]));
                    }
                    self.trace
                        .record(self.now_ms, "power loss of every node".to_owned());
                }
            }
            _ => {
                // A node comes back on a new, empty disk (once per run).
                if running.len() == self.ids.len() && !self.wiped {
                    self.wiped = true;
                    let node = self.ids[self.fault_rng.random_range(0..self.ids.len())];
                    let index = self.index(node);
                    self.nodes[index].crash();
                    self.next_disk_seed += 1;
                    self.nodes[index].disk = SimDisk::new(self.next_disk_seed);
                    self.summary.wipes += 1;
                    let back = self.now_ms + self.fault_rng.random_range(200..2_000);
                    self.restarts.push((back, node));
                    self.trace
                        .record(self.now_ms, format!("node {node} wiped (new disk)"));
                }
            }
        }
    }

    fn isolate(&mut self, node: NodeId, outbound: bool, inbound: bool) {
        self.net.heal();
        self.summary.partitions += 1;
        for other in &self.ids {
            if *other == node {
                continue;
            }
            if outbound {
                self.net.cut(node, *other);
            }
            if inbound {
                self.net.cut(*other, node);
            }
        }
    }

    fn restart_due(&mut self) -> Result<(), MultiFailure> {
        let now = self.now_ms;
        let (due, rest): (Vec<_>, Vec<_>) = self.restarts.drain(..).partition(|(at, _)| *at <= now);
        self.restarts = rest;
        for (_, node) in due {
            self.start_node(node)?;
        }
        Ok(())
    }

    fn send(&mut self, client: usize, node: NodeId, request: Request, purpose: Purpose) {
        self.next_token += 1;
        let token = self.next_token;
        self.trace.record(
            self.now_ms,
            format!("client {client} → node {node}: {purpose:?}"),
        );
        let index = self.index(node);
        self.nodes[index].deliver(token, request);
        self.clients[client].outstanding = Some(Outstanding {
            token,
            purpose,
            deadline_ms: self.now_ms + CLIENT_TIMEOUT_MS,
        });
    }

    fn any_node(&mut self) -> NodeId {
        let running = self.running();
        if running.is_empty() {
            return self.ids[0];
        }
        running[self.rng.random_range(0..running.len())]
    }

    /// Each idle client sends its next request.
    fn drive_clients(&mut self) {
        for index in 0..self.clients.len() {
            if self.clients[index].outstanding.is_some()
                || self.clients[index].idle_until_ms > self.now_ms
            {
                continue;
            }
            if !self.topic_created {
                if index == 0 {
                    let node = self.any_node();
                    let request = Request::CreateTopics(CreateTopicsRequest {
                        topics: vec![CreatableTopic {
                            name: TOPIC.to_owned(),
                            partitions: PARTITIONS,
                            replication_factor: Some(REPLICATION_FACTOR),
                            configs: vec![ConfigEntry {
                                name: "min.insync.replicas".into(),
                                value: MIN_INSYNC.to_string(),
                            }],
                        }],
                        validate_only: false,
                    });
                    self.send(index, node, request, Purpose::Create);
                }
                continue;
            }
            if self.leaders.len() < PARTITIONS as usize {
                let node = self.any_node();
                let request = Request::Metadata(MetadataRequest {
                    topics: Some(vec![TOPIC.to_owned()]),
                });
                self.send(index, node, request, Purpose::Metadata);
                continue;
            }
            if self.clients[index].consumer {
                let partition = self.rng.random_range(0..PARTITIONS);
                let position = *self.clients[index].positions.get(&partition).unwrap_or(&0);
                let node = self.leaders[&partition];
                let request = Request::Fetch(FetchRequest {
                    max_wait_ms: 100,
                    min_bytes: 1,
                    max_bytes: 64 * 1024,
                    topics: vec![FetchTopic {
                        name: TOPIC.to_owned(),
                        partitions: vec![FetchPartition {
                            current_leader_epoch: None,
                            partition,
                            fetch_offset: position,
                            partition_max_bytes: 64 * 1024,
                        }],
                    }],
                    plugin: None,
                });
                self.send(index, node, request, Purpose::Fetch { partition });
                continue;
            }
            if self.clients[index].producer.is_none() && !self.init_producer_id {
                let state = &mut self.clients[index];
                state.producer = Some((self.next_producer_id, 0));
                state.sequences.clear();
                state.batch = None;
                self.next_producer_id += 1;
            }
            if self.clients[index].producer.is_none() {
                let node = self.any_node();
                let request = Request::InitProducerId(InitProducerIdRequest::default());
                self.send(index, node, request, Purpose::InitProducer);
                continue;
            }
            let (partition, request, values) = match self.clients[index].batch.clone() {
                Some(batch) => batch,
                None => {
                    let Some(batch) = self.next_batch(index) else {
                        continue;
                    };
                    self.clients[index].batch = Some(batch.clone());
                    batch
                }
            };
            let node = self.leaders[&partition];
            self.send(index, node, request, Purpose::Produce { partition, values });
        }
    }

    fn next_batch(&mut self, index: usize) -> Option<(u32, Request, Vec<Bytes>)> {
        let partition = self.rng.random_range(0..PARTITIONS);
        let count = self.rng.random_range(1..=3);
        let client = &mut self.clients[index];
        let (producer_id, producer_epoch) = client.producer?;
        client.batches += 1;
        let values: Vec<Bytes> = (0..count)
            .map(|record| {
                Bytes::from(format!(
                    "c{}-p{producer_id}-b{}-r{record}",
                    client.id, client.batches
                ))
            })
            .collect();
        let records: Vec<Record> = values
            .iter()
            .map(|value| Record {
                timestamp: START_WALL_MS,
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
            })
            .collect();
        let sequence = client.sequences.entry(partition).or_insert(0);
        let options = EncodeOptions {
            producer_id,
            producer_epoch,
            base_sequence: *sequence,
            ..EncodeOptions::default()
        };
        *sequence += count;
        let batch = encode_batch(&records, &options).ok()?;
        let request = Request::Produce(ProduceRequest {
            acks: Acks::All,
            timeout_ms: PRODUCE_TIMEOUT_MS,
            topics: vec![ProduceTopic {
                name: TOPIC.to_owned(),
                partitions: vec![ProducePartition {
                    current_leader_epoch: None,
                    partition,
                    records: batch,
                }],
            }],
        });
        Some((partition, request, values))
    }

    /// Collects answers and timeouts.
    fn collect_answers(&mut self) -> Result<(), MultiFailure> {
        let mut answers = Vec::new();
        for node in &self.nodes {
            answers.extend(
                std::mem::take(&mut *node.answers.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_iter()
                    .map(|answer| (node.id, answer)),
            );
        }
        // In the order the clients sent them, not the order a node finished them within
        // the millisecond (acks=all waiters complete in a hash map's order).
        answers.sort_by_key(|(_, answer)| answer.token);
        for (node, answer) in answers {
            let Some(client) = self.clients.iter().position(|client| {
                client
                    .outstanding
                    .as_ref()
                    .is_some_and(|outstanding| outstanding.token == answer.token)
            }) else {
                continue;
            };
            let Some(outstanding) = self.clients[client].outstanding.take() else {
                continue;
            };
            self.handle_answer(client, node, outstanding, answer.response)?;
        }
        for index in 0..self.clients.len() {
            let expired = self.clients[index]
                .outstanding
                .as_ref()
                .is_some_and(|outstanding| outstanding.deadline_ms <= self.now_ms);
            if expired {
                self.clients[index].outstanding = None;
                self.summary.client_timeouts += 1;
                self.leaders.clear();
                self.trace
                    .record(self.now_ms, format!("client {index} timed out"));
            }
        }
        Ok(())
    }

    fn handle_answer(
        &mut self,
        client: usize,
        node: NodeId,
        outstanding: Outstanding,
        response: Response,
    ) -> Result<(), MultiFailure> {
        let retry_later = |run: &mut Self| {
            run.clients[client].idle_until_ms = run.now_ms + RETRY_BACKOFF_MS;
            run.leaders.clear();
        };
        match (outstanding.purpose, response) {
            (Purpose::Create, Response::CreateTopics(answer)) => {
                let error = answer.topics.first().map(|topic| topic.error);
                self.trace
                    .record(self.now_ms, format!("create at node {node}: {error:?}"));
                match error {
                    Some(ErrorCode::None | ErrorCode::TopicAlreadyExists) => {
                        self.topic_created = true;
                    }
                    _ => retry_later(self),
                }
            }
            (Purpose::Metadata, Response::Metadata(answer)) => {
                if let Some(topic) = answer.topics.iter().find(|topic| topic.name == TOPIC) {
                    for partition in &topic.partitions {
                        if let Some(leader) = partition.leader {
                            self.leaders.insert(partition.partition, leader);
                        }
                    }
                }
                if self.leaders.len() < PARTITIONS as usize {
                    retry_later(self);
                }
            }
            (Purpose::InitProducer, Response::InitProducerId(answer)) => {
                if answer.error == ErrorCode::None {
                    let state = &mut self.clients[client];
                    state.producer = Some((answer.producer_id, answer.producer_epoch));
                    state.sequences.clear();
                    state.batch = None;
                } else {
                    retry_later(self);
                }
            }
            (Purpose::Produce { partition, values }, Response::Produce(answer)) => {
                let Some(result) = answer
                    .topics
                    .first()
                    .and_then(|topic| topic.partitions.first())
                else {
                    return Err(self.fail("a produce answer without its partition".to_owned()));
                };
                self.trace.record(
                    self.now_ms,
                    format!(
                        "produce p{partition} at node {node}: {:?} base {}",
                        result.error, result.base_offset
                    ),
                );
                match result.error {
                    ErrorCode::None => {
                        for (index, value) in values.iter().enumerate() {
                            let offset = result.base_offset + index as i64;
                            if let Some(known) = self.acknowledged.get(&(partition, offset))
                                && known != value
                            {
                                return Err(self.fail(format!(
                                    "partition {partition} offset {offset} acknowledged twice: {:?} earlier, {:?} now (by node {node})",
                                    String::from_utf8_lossy(known),
                                    String::from_utf8_lossy(value)
                                )));
                            }
                            self.acknowledged.insert((partition, offset), value.clone());
                        }
                        self.clients[client].batch = None;
                    }
                    ErrorCode::OutOfOrderSequenceNumber
                    | ErrorCode::UnknownProducerId
                    | ErrorCode::InvalidProducerEpoch => {
                        // The batch may or may not be in the log; it was not acknowledged,
                        // and a real client starts over with a new producer id.
                        self.summary.produce_refusals += 1;
                        let state = &mut self.clients[client];
                        state.producer = None;
                        state.batch = None;
                    }
                    _ => {
                        self.summary.produce_refusals += 1;
                        retry_later(self);
                    }
                }
            }
            (Purpose::Fetch { partition }, Response::Fetch(answer)) => {
                let Some(result) = answer
                    .topics
                    .first()
                    .and_then(|topic| topic.partitions.first())
                else {
                    return Ok(());
                };
                match result.error {
                    ErrorCode::None => {
                        let records = decode_records(&result.records)
                            .map_err(|error| self.fail(format!("fetch: {error}")))?;
                        let position = self.clients[client].positions.entry(partition).or_insert(0);
                        let mut read = Vec::new();
                        for (offset, value) in records {
                            if offset < *position {
                                continue;
                            }
                            *position = offset + 1;
                            read.push((offset, value));
                        }
                        for (offset, value) in read {
                            if let Some(known) = self.consumed.get(&(partition, offset))
                                && *known != value
                            {
                                return Err(self.fail(format!(
                                    "partition {partition} offset {offset} read as {:?}, earlier as {:?} (node {node})",
                                    String::from_utf8_lossy(&value),
                                    String::from_utf8_lossy(known)
                                )));
                            }
                            self.consumed.insert((partition, offset), value);
                        }
                    }
                    ErrorCode::OffsetOutOfRange => {
                        self.clients[client]
                            .positions
                            .insert(partition, result.log_start_offset.max(0));
                    }
                    _ => retry_later(self),
                }
            }
            (_, _) => retry_later(self),
        }
        Ok(())
    }

    /// After the heal: every replica agrees with every acknowledgement and read.
    fn audit(&mut self) -> Result<(), MultiFailure> {
        let Some(image) = self.nodes.iter().find_map(Node::image) else {
            return Err(self.fail("no node is running at the audit".to_owned()));
        };
        let Some(topic) = image.topics.get(TOPIC).cloned() else {
            if self.acknowledged.is_empty() {
                return Ok(());
            }
            return Err(self.fail("records were acknowledged but the topic is gone".to_owned()));
        };
        for (index, state) in topic.partitions.iter().enumerate() {
            let partition = index as u32;
            let mut isr = state.isr.clone();
            isr.sort_unstable();
            let mut replicas = state.replicas.clone();
            replicas.sort_unstable();
            if isr != replicas {
                return Err(self.fail(format!(
                    "partition {partition}: after the heal the ISR is {isr:?}, the replicas {replicas:?}"
                )));
            }
            let mut logs = BTreeMap::new();
            for replica in &state.replicas {
                let index = self.index(*replica);
                let Some(records) = self.nodes[index].read_log(partition) else {
                    return Err(self.fail(format!(
                        "partition {partition}: replica {replica} has no log after the heal"
                    )));
                };
                logs.insert(*replica, records);
            }
            let Some((first_node, first)) = logs.iter().next() else {
                continue;
            };
            for (node, records) in &logs {
                if records != first {
                    return Err(self.fail(format!(
                        "partition {partition}: replica {node} has {} records, replica {first_node} {} (they differ after the heal)",
                        records.len(),
                        first.len()
                    )));
                }
            }
            let by_offset: BTreeMap<i64, &Bytes> = first
                .iter()
                .map(|(offset, value)| (*offset, value))
                .collect();
            let mut counts: BTreeMap<&Bytes, usize> = BTreeMap::new();
            for (_, value) in first {
                *counts.entry(value).or_default() += 1;
            }
            for ((at_partition, offset), value) in &self.acknowledged {
                if *at_partition != partition {
                    continue;
                }
                match by_offset.get(offset) {
                    Some(found) if *found == value => {}
                    found => {
                        return Err(self.fail(format!(
                            "partition {partition} offset {offset}: acknowledged {:?}, the replicas hold {:?}",
                            String::from_utf8_lossy(value),
                            found.map(|found| String::from_utf8_lossy(found).into_owned())
                        )));
                    }
                }
                if counts.get(value).copied().unwrap_or(0) != 1 {
                    return Err(self.fail(format!(
                        "partition {partition}: acknowledged record {:?} is in the log {} times",
                        String::from_utf8_lossy(value),
                        counts.get(value).copied().unwrap_or(0)
                    )));
                }
            }
            for ((at_partition, offset), value) in &self.consumed {
                if *at_partition != partition {
                    continue;
                }
                if by_offset.get(offset).copied() != Some(value) {
                    return Err(self.fail(format!(
                        "partition {partition} offset {offset}: a consumer read {:?}, the log now holds {:?} (a read record was lost)",
                        String::from_utf8_lossy(value),
                        by_offset
                            .get(offset)
                            .map(|found| String::from_utf8_lossy(found).into_owned())
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Runs seed `seed`.
pub fn run(seed: u64, options: &MultiOptions) -> Result<MultiSummary, MultiFailure> {
    crate::sim::init_log();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Drawn even when the count is given, so the rest of the seed's choices stay the same.
    let drawn: NodeId = rng.random_range(NODES_MIN..=NODES_MAX);
    let count = options.nodes.unwrap_or(drawn);
    let ids: Vec<NodeId> = (1..=count).collect();
    // Five nodes: three voters and two learners; otherwise every node votes.
    let voters: Vec<NodeId> = if count == 5 {
        ids[..3].to_vec()
    } else {
        ids.clone()
    };
    let net = PeerNet::new(seed, options.network_faults);
    let nodes = ids
        .iter()
        .map(|id| Node {
            id: *id,
            disk: SimDisk::new(seed.wrapping_mul(31).wrapping_add(u64::from(*id))),
            first_start: true,
            running: None,
            answers: Arc::new(Mutex::new(Vec::new())),
        })
        .collect();
    let clients = (0..3)
        .map(|id| Client {
            id,
            consumer: id == 2,
            ..Client::default()
        })
        .collect();
    let mut run = Run {
        seed,
        rng,
        fault_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c_7473),
        now_ms: 0,
        ids: ids.clone(),
        voters: voters.clone(),
        nodes,
        net,
        trace: Trace {
            print: std::env::var_os("LEDGE_SIM_TRACE").is_some(),
            ..Trace::default()
        },
        summary: MultiSummary {
            seed,
            nodes: ids.len(),
            voters: voters.len(),
            ..MultiSummary::default()
        },
        clients,
        next_token: 0,
        topic_created: false,
        leaders: BTreeMap::new(),
        acknowledged: BTreeMap::new(),
        consumed: BTreeMap::new(),
        epoch_leaders: BTreeMap::new(),
        traced_partition_epochs: BTreeSet::new(),
        restarts: Vec::new(),
        wiped: false,
        next_disk_seed: seed.wrapping_mul(31).wrapping_add(1_000),
        init_producer_id: options.init_producer_id,
        // Far above what the nodes hand out (they start at 1000).
        next_producer_id: 1 << 40,
    };
    let result = drive(&mut run, options);
    for node in &mut run.nodes {
        node.close();
    }
    result?;
    run.net.wire_digest().hash(&mut run.trace.hasher);
    run.summary.digest = run.trace.hasher.finish();
    run.summary.acknowledged = run.acknowledged.len();
    run.summary.consumed = run.consumed.len();
    run.summary.leader_epochs = run.epoch_leaders.len();
    run.summary.network = run.net.stats();
    Ok(run.summary.clone())
}

fn drive(run: &mut Run, options: &MultiOptions) -> Result<(), MultiFailure> {
    for node in run.ids.clone() {
        run.start_node(node)?;
    }
    let faults_from_ms = 3_000;
    let mut next_fault_ms = faults_from_ms + run.fault_rng.random_range(500..2_000);
    let end_ms = options.duration_ms;
    while run.now_ms < end_ms {
        run.step();
        run.restart_due()?;
        run.collect_answers()?;
        run.drive_clients();
        if run.now_ms.is_multiple_of(IMAGE_SAMPLE_MS) {
            run.check_epoch_leaders()?;
        }
        if options.faults && run.now_ms >= next_fault_ms {
            run.schedule_fault(options.power_loss);
            next_fault_ms = run.now_ms + run.fault_rng.random_range(800..3_000);
        }
    }
    // The final heal: every link, every node up, no random loss; the clients keep going
    // for the first half of the settle, then stop so the replicas can converge.
    run.net.heal();
    run.net.set_faults(false);
    for (_, node) in std::mem::take(&mut run.restarts) {
        run.start_node(node)?;
    }
    for node in run.ids.clone() {
        run.start_node(node)?;
    }
    run.trace.record(run.now_ms, "final heal".to_owned());
    let settle_end = run.now_ms + options.settle_ms;
    let clients_stop = run.now_ms + options.settle_ms / 2;
    while run.now_ms < settle_end {
        run.step();
        run.collect_answers()?;
        if run.now_ms < clients_stop {
            run.drive_clients();
        }
        if run.now_ms.is_multiple_of(IMAGE_SAMPLE_MS) {
            run.check_epoch_leaders()?;
        }
    }
    run.check_epoch_leaders()?;
    run.audit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The swarm: a few seeds in CI (`LEDGE_SIM_SEED_COUNT` for a campaign,
    /// `LEDGE_SIM_SEED` to replay one).
    #[test]
    fn seeds() {
        let options = MultiOptions::default().from_env();
        let mut failures = Vec::new();
        for seed in crate::sim::seeds(1, 3) {
            match run(seed, &options) {
                Ok(summary) => eprintln!("{summary:?}"),
                Err(failure) => {
                    eprintln!("{failure}");
                    failures.push(failure.seed);
                }
            }
        }
        assert!(failures.is_empty(), "failing seeds: {failures:?}");
    }

    /// The swarm with power losses as well (one node, all at once, a wiped disk): a few
    /// seeds in CI, as [`seeds`].
    #[test]
    fn seeds_with_power_loss() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        }
        .from_env();
        let mut failures = Vec::new();
        for seed in crate::sim::seeds(1, 3) {
            match run(seed, &options) {
                Ok(summary) => eprintln!("{summary:?}"),
                Err(failure) => {
                    eprintln!("{failure}");
                    failures.push(failure.seed);
                }
            }
        }
        assert!(failures.is_empty(), "failing seeds: {failures:?}");
    }

    /// The finding of seeds 13 and 180 (docs/TESTING.md, "The multi-node simulator"),
    /// fixed by h5/fence's rule that a node leads only from an image holding its own
    /// registration. Seed 13: node 3 of 3, the leader of partition 1, is isolated, then
    /// comes back on a wiped disk. While its controller replayed the metadata log from the
    /// others, its replication driver followed the replayed (stale) image, led partition 1
    /// at leader epoch 1 on its empty log (stamping epoch 1 at offset 0), then followed the
    /// real leader (epoch 2) and its log refused every batch (`its leader epoch 0 is below
    /// the log's latest 1`): it never rejoined the ISR. Seed 180: the same start (node 1
    /// led partition 0 at the stale epoch 0 on its empty log and appended a record nobody
    /// acknowledged), then a power loss: back as a follower it fetched from its high
    /// watermark (0) while its log takes batches only at its end (1), and refused every
    /// one.
    #[test]
    fn wiped_node_does_not_lead_on_a_stale_image_and_rejoins_the_isr() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        };
        assert_seeds_pass(&[13, 180], &options);
    }

    /// The finding of seed 274 with 5 nodes: node 2, a controller voter, came back on a
    /// wiped disk (no store, no bootstrap marker) and granted votes with no memory of the
    /// ones it had granted before; openraft then failed its own assertion
    /// (`log_state_reader.rs`: a log id above the committed one) and acks=all acknowledged
    /// two different records at partition 0 offset 117. A voter that starts with an empty
    /// store and no marker now grants no vote until it has accepted a leader
    /// (`Controller::withheld_vote`). Without that rule this seed fails on every run.
    #[test]
    fn a_wiped_voter_grants_no_vote_before_it_accepts_a_leader() {
        let options = MultiOptions {
            power_loss: true,
            nodes: Some(5),
            ..MultiOptions::default()
        };
        if let Err(failure) = run(274, &options) {
            panic!("{failure}");
        }
    }

    /// The findings of the first 10,000-seed campaign (sixth session, release build): a
    /// voter came back on a wiped disk, accepted a leader, and (seed 622) lost power before it
    /// had caught up, or (seed 1375, 5 nodes) had not caught up yet when a vote came; with an
    /// empty log it granted its vote to a lagging voter, which won without entries the wiped
    /// voter and one other had committed (openraft's commit index went backwards: a panic in
    /// the log reader at seed 622, acks=all acknowledging two records at one offset at 1375;
    /// seeds 972, 1917 and 6258 were the same finding). A
    /// voter that lost its store now withholds its vote, across restarts (the rejoin
    /// marker), until it has applied an entry of its leader's term
    /// (`quorum::caught_up_after_rejoin`).
    #[test]
    fn a_wiped_voter_grants_no_vote_until_it_has_caught_up() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        };
        assert_seeds_pass(&[622, 1375], &options);
    }

    /// Findings of the first 10,000-seed campaign (seventh session): a follower cut off from
    /// its leader was shrunk out of the ISR by that leader, leaving the leader alone in it, and
    /// a member the leader shrank out did not join the ELR (only fenced ones did). The leader
    /// then came back on a wiped disk and left the ISR (a new storage id): the ISR was empty,
    /// the ELR too, and the partition stayed offline after the final heal although the
    /// follower held every committed record (seed 1283: partition 1, leader 3, follower 1
    /// shrunk out by a one-way cut; seed 7707, 4 nodes: partition 0, leader 1, follower 3
    /// shrunk out while it was down after a power loss). As in Kafka (KIP-966), a member
    /// shrunk out of an ISR that drops below `min.insync.replicas` now joins the ELR
    /// (`ControllerLogic::alter_partition`), and is elected when the leader comes back empty.
    #[test]
    fn a_follower_shrunk_out_below_min_insync_leads_after_the_leader_is_wiped() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        };
        assert_seeds_pass(&[1283, 7707], &options);
    }

    /// The finding of seed 5232 (first 10,000-seed campaign): a voter that led the
    /// controller in term 1 was isolated while the others elected a term-2 controller and
    /// committed entries; one of those two was wiped, and when the isolation healed the old
    /// term-1 leader's appends were accepted by the wiped voter (an empty store knows no
    /// term), so a second history was committed (two nodes' images disagreed on partition
    /// epoch 2) and two records were acknowledged at one offset. A rejoining voter now first
    /// learns the current term from enough other voters and refuses older leaders
    /// (`Controller::rejoin_term_floor`). Seed 4491 acknowledged twice the same way.
    #[test]
    fn a_wiped_voter_helps_no_deposed_controller_commit() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        };
        assert_seeds_pass(&[5232, 4491], &options);
    }

    /// Every failing seed of the first 10,000-seed campaign that the fixes since left
    /// (docs/TESTING.md, "The multi-node simulator"), each with a node back on a wiped disk
    /// next to another fault: the controller's second history (`rejoin_term_floor`) and the
    /// ELR rule for members a leader shrinks out (`alter_partition`). Too slow for every CI
    /// run (about 30 s of CPU in debug); the ones that pin a cause run in CI above.
    #[test]
    #[ignore = "replays the 20 seeds of the 10,000-seed campaign's wiped-disk findings (about 30 s in debug)"]
    fn wiped_disk_campaign_findings() {
        let options = MultiOptions {
            power_loss: true,
            ..MultiOptions::default()
        };
        assert_seeds_pass(
            &[
                1099, 1109, 1283, 2610, 2893, 3634, 4491, 5232, 5425, 5453, 5626, 6688, 7707, 7934,
                8419, 8615, 9035, 9321, 9620, 9662,
            ],
            &options,
        );
    }

    /// Runs `seeds` and fails with every failing seed's report.
    fn assert_seeds_pass(seeds: &[u64], options: &MultiOptions) {
        let failures: Vec<String> = seeds
            .iter()
            .filter_map(|seed| run(*seed, options).err())
            .map(|failure| failure.to_string())
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A seed replays exactly: two runs of one seed (network faults, partitions and power
    /// losses on) send the same bytes at the same simulated milliseconds and see the same
    /// client events (the digest covers both), so a failing seed can be replayed alone.
    #[test]
    #[cfg_attr(
        not(tokio_unstable),
        ignore = "needs tokio_unstable (.cargo/config.toml) to seed tokio's choices"
    )]
    fn one_seed_replays_exactly() {
        let options = MultiOptions {
            duration_ms: 9_000,
            settle_ms: 6_000,
            power_loss: true,
            ..MultiOptions::default()
        };
        let seed = 3;
        let first = run(seed, &options).unwrap_or_else(|failure| panic!("{failure}"));
        let second = run(seed, &options).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(first.acknowledged > 0, "{first:?}");
        assert_eq!(
            format!("{first:?}"),
            format!("{second:?}"),
            "two runs of seed {seed} differ"
        );
    }

    /// Without faults the topic is created, records are acknowledged and read, and the
    /// replicas agree: the checkers are fed (a run that acknowledged nothing would pass
    /// them vacuously).
    #[test]
    fn fault_free_run_acknowledges_and_converges() {
        let options = MultiOptions {
            duration_ms: 8_000,
            settle_ms: 6_000,
            network_faults: false,
            faults: false,
            power_loss: false,
            init_producer_id: false,
            nodes: None,
        };
        let summary = run(7, &options).unwrap_or_else(|failure| panic!("{failure}"));
        assert!(summary.acknowledged > 0, "{summary:?}");
        assert!(summary.consumed > 0, "{summary:?}");
    }

    /// The finding of [`MultiOptions::init_producer_id`]: two producers given ids by two
    /// nodes collided, and an acknowledged record was not in the log. Each node now hands
    /// out ids of its own share (as `main.rs` sets it up), so they never collide.
    #[test]
    fn producer_ids_from_init_producer_id_do_not_collide() {
        let options = MultiOptions {
            duration_ms: 8_000,
            settle_ms: 6_000,
            network_faults: false,
            faults: false,
            power_loss: false,
            init_producer_id: true,
            nodes: None,
        };
        run(7, &options).unwrap_or_else(|failure| panic!("{failure}"));
    }
}
