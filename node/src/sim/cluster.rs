//! The whole-node simulator (TigerBeetle's VOPR is the model): from one seed, in one
//! thread, a [`Cluster`] of [`SimNode`]s (the real broker on a `SimDisk`) serves seeded
//! clients over a [`SimNetwork`] with delays, reordering, loss, duplicates and connection
//! resets, while nodes lose power at any point and restart, and their disks fail writes
//! (EIO), fill up (ENOSPC) or turn read-only (EROFS). Checkers
//! ([`crate::sim::checkers`]) judge every answer as it arrives and the whole node after
//! every restart and at the end.
//!
//! Time is simulated: the cluster moves in steps of one millisecond; each node's runtime is
//! paused and runs exactly that far per step, so a run of minutes of simulated time takes
//! a fraction of a second and replays exactly.
//!
//! One node today; the cluster routes by node id and the network can cut links, so the
//! replication work adds nodes and partitions of the network without a new harness.
//!
//! Replay a failure: `LEDGE_SIM_SEED=<seed> cargo test -p ledge-node --lib
//! sim::cluster::tests::seeds -- --nocapture`. A campaign: `LEDGE_SIM_SEED_COUNT=5000
//! cargo test --release -p ledge-node --lib sim::cluster::tests::seeds -- --nocapture`
//! (docs/TESTING.md).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use ledge_protocol::wire::{
    CreatableTopic, CreateTopicsRequest, ErrorCode, OffsetFetchRequest, Request, Response,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::broker::BrokerConfig;
use crate::sim::checkers::{self, Audit, Failure, Ledger};
use crate::sim::net::{Endpoint, NetworkFaults, NetworkStats, NodeId, Packet, Payload, SimNetwork};
use crate::sim::node::SimNode;
use crate::sim::workload::{GROUP, GROUP_TOPIC, GROUP_TOPIC_PARTITIONS, Workload, WorkloadStats};

/// Wall time (ms since the epoch) at which every run starts.
const START_WALL_MS: i64 = 1_790_000_000_000;

/// Simulated milliseconds per step while the group settles: only heartbeats (every 100 ms
/// or more) are left, so coarser steps change no outcome and cost a fifth.
const SETTLE_STEP_MS: u64 = 5;

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Simulated milliseconds of workload with faults.
    pub duration_ms: u64,
    /// Simulated milliseconds, after the faults stop, for the group to settle.
    pub settle_ms: u64,
    /// Whether nodes lose power.
    pub crashes: bool,
    /// Whether a disk write or sync fails now and then (EIO).
    pub disk_errors: bool,
    /// Whether the network delays, drops, duplicates and resets.
    pub network_faults: bool,
    /// Whether disks fill up (ENOSPC past a capacity the seed picks, until space is
    /// freed) and turn read-only (EROFS until a reboot).
    pub storage_faults: bool,
    /// A filter module (WASM) the admin deploys as a topic transform; `None` runs without
    /// transforms (compiling a module costs more than the rest of a short run).
    pub transform_module: Option<bytes::Bytes>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            duration_ms: 6_000,
            // Longer than the members' session timeout: a member whose join answer was
            // lost is a ghost in the group until its session expires.
            settle_ms: u64::from(crate::sim::workload::SESSION_TIMEOUT_MS) + 5_000,
            crashes: true,
            disk_errors: true,
            network_faults: true,
            storage_faults: true,
            transform_module: None,
        }
    }
}

/// What a run did, for the campaign's totals.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Digest of the trace (requests, answers, crashes, restarts) for the replay test.
    pub digest: u64,
    /// Power losses.
    pub crashes: u64,
    /// Power losses scheduled in the middle of a later disk operation.
    pub power_offs: u64,
    /// Disk writes or syncs made to fail.
    pub disk_errors: u64,
    /// Times a disk filled up.
    pub disks_full: u64,
    /// Starts refused while the disk was full (retried once space was freed).
    pub starts_refused_disk_full: u64,
    /// Times a filesystem turned read-only.
    pub read_only_faults: u64,
    /// Reboots that found the filesystem still read-only (the node served reads only).
    pub read_only_starts: u64,
    /// Network counts.
    pub network: NetworkStats,
    /// Workload counts.
    pub workload: WorkloadStats,
    /// Records promised durable at the end.
    pub durable_records: usize,
    /// Topics deleted.
    pub topics_deleted: usize,
    /// Members whose ownership was checked after settling.
    pub members_settled: usize,
    /// Transforms deployed.
    pub transforms_deployed: usize,
    /// Records in the transforms' output topics at the settled audit.
    pub transform_output_records: usize,
}

/// The trace: a running digest plus the last events, printed with a failure.
#[derive(Default)]
struct Trace {
    hasher: DefaultHasher,
    recent: VecDeque<String>,
    /// `LEDGE_SIM_TRACE=1` prints every event as it happens (to read a replayed seed).
    print: bool,
}

/// Events of the trace kept for a failure report.
const TRACE_TAIL_EVENTS: usize = 40;

impl Trace {
    fn record(&mut self, now_ms: u64, event: String) {
        now_ms.hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        if self.recent.len() == TRACE_TAIL_EVENTS {
            self.recent.pop_front();
        }
        if self.print {
            eprintln!("{now_ms:>7} ms {event}");
        }
        self.recent.push_back(format!("{now_ms:>7} ms {event}"));
    }
}

/// Nodes, network, clients, ledger: one simulated world.
pub struct Cluster {
    seed: u64,
    options: RunOptions,
    rng: ChaCha8Rng,
    now_ms: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    restart_at_ms: BTreeMap<NodeId, u64>,
    network: SimNetwork,
    workload: Workload,
    ledger: Ledger,
    trace: Trace,
    summary: Summary,
    /// Network partitions draw from their own stream, so adding them kept the other
    /// choices of every seed (and the pinned seeds) as they were.
    partition_rng: ChaCha8Rng,
    /// Cut links and when they heal: (ms, client, node).
    partitions_until: Vec<(u64, Endpoint, Endpoint)>,
    /// The incarnation the ledger follows (one node today).
    ledger_incarnation: u64,
    /// Nodes on which a disk error was injected since their last start: a partition may be
    /// offline until the next start (a failed fdatasync is not retried).
    faults_struck_since_start: BTreeSet<NodeId>,
    /// Disk-full and read-only faults draw from their own stream, so adding them kept the
    /// other choices of every seed as they were (until such a fault strikes).
    storage_rng: ChaCha8Rng,
    /// Full disks: node -> (capacity in bytes, simulated ms at which space is freed).
    disks_full_until: BTreeMap<NodeId, (u64, u64)>,
    /// Read-only filesystems and when their node reboots.
    read_only: BTreeMap<NodeId, ReadOnlyPhase>,
}

/// Where a node is in a read-only filesystem fault (ext4 with `errors=remount-ro`).
#[derive(Clone, Copy, Debug)]
enum ReadOnlyPhase {
    /// The filesystem turned read-only under the running node, which reboots at
    /// `reboot_at_ms`; `stays_read_only` if that reboot finds it still read-only.
    Running {
        reboot_at_ms: u64,
        stays_read_only: bool,
    },
    /// Rebooted on the still read-only filesystem (serving reads only); rebooted writable
    /// at `reboot_at_ms`.
    RebootedReadOnly { reboot_at_ms: u64 },
}

impl ReadOnlyPhase {
    fn reboot_at_ms(self) -> u64 {
        match self {
            Self::Running { reboot_at_ms, .. } | Self::RebootedReadOnly { reboot_at_ms } => {
                reboot_at_ms
            }
        }
    }
}

impl Cluster {
    /// A world from `seed`: one node (id 1) and seeded clients.
    pub fn new(seed: u64, options: RunOptions) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let faults = if options.network_faults {
            NetworkFaults::random(&mut rng)
        } else {
            NetworkFaults::none()
        };
        let mut network = SimNetwork::new(rng.random(), faults);
        let node_id: NodeId = 1;
        let mut config = BrokerConfig::default();
        // How long acks=1 and acks=0 data may wait for its sync: from "at once" to longer
        // than most gaps between crashes.
        config.log.flush_interval =
            Duration::from_millis(*[0, 5, 50, 1_000].get(rng.random_range(0..4)).unwrap_or(&0));
        let mut nodes = BTreeMap::new();
        nodes.insert(node_id, SimNode::new(node_id, rng.random(), config));
        let mut workload = Workload::new(&mut rng, node_id, options.transform_module.clone());
        workload.connect_all(|| network.connect());
        Self {
            seed,
            options,
            rng,
            now_ms: 0,
            nodes,
            restart_at_ms: BTreeMap::new(),
            network,
            workload,
            ledger: Ledger::default(),
            trace: Trace {
                print: std::env::var_os("LEDGE_SIM_TRACE").is_some_and(|value| value == "1"),
                ..Trace::default()
            },
            summary: Summary {
                seed,
                ..Summary::default()
            },
            partition_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_ca75),
            partitions_until: Vec::new(),
            ledger_incarnation: 0,
            faults_struck_since_start: BTreeSet::new(),
            storage_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0d15_cf00_11ed),
            disks_full_until: BTreeMap::new(),
            read_only: BTreeMap::new(),
        }
    }

    fn failure(&self, checker: &'static str, message: String) -> Failure {
        let tail: Vec<&str> = self.trace.recent.iter().map(String::as_str).collect();
        Failure {
            seed: self.seed,
            step: self.now_ms,
            checker,
            message: format!("{message}\n  last events:\n    {}", tail.join("\n    ")),
        }
    }

    fn wall_ms(&self) -> i64 {
        START_WALL_MS + self.now_ms as i64
    }

    /// Runs the whole story: start, workload with faults, settle, final checks, a last
    /// crash and restart, final checks again.
    pub fn run(mut self) -> Result<Summary, Failure> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            self.start_node(*id)?;
        }
        self.create_group_topic()?;
        for _ in 0..self.options.duration_ms {
            self.step(false)?;
        }
        // Settle: no more faults, every node up, only the group keeps talking.
        self.network.set_faults(NetworkFaults::none());
        self.network.heal();
        self.partitions_until.clear();
        for id in &ids {
            // Space is freed, and a read-only filesystem is fixed by a reboot.
            if self.disks_full_until.remove(id).is_some()
                && let Some(node) = self.nodes.get(id)
            {
                node.disk().set_space_bytes_max(None);
                self.trace
                    .record(self.now_ms, format!("node {id}: disk space freed"));
            }
            if self.read_only.remove(id).is_some() {
                self.reboot_after_read_only(*id);
            }
            // A power-off scheduled but not struck yet is called off.
            if let Some(node) = self.nodes.get(id) {
                node.disk().power_off_after(u64::MAX);
            }
            if let Some(node) = self.nodes.get_mut(id)
                && node.disk().is_powered_off()
            {
                self.crash_node(*id);
            }
            if !self.nodes.get(id).is_some_and(SimNode::is_running) {
                self.start_node(*id)?;
            }
        }
        for _ in 0..self.options.settle_ms / SETTLE_STEP_MS {
            self.step(true)?;
        }
        self.check_group_settled()?;
        for id in &ids {
            self.audit(*id, true)?;
        }
        // A last power loss with everything answered: every promise must hold after it.
        for id in &ids {
            self.crash_node(*id);
            self.start_node(*id)?;
        }
        for id in &ids {
            if let Some(node) = self.nodes.get_mut(id) {
                node.close();
            }
        }
        self.summary.digest = self.trace.hasher.finish();
        self.summary.network = self.network.stats();
        self.summary.workload = self.workload.stats();
        self.summary.durable_records = self.ledger.durable_records();
        self.summary.topics_deleted = self.ledger.deleted_topics().len();
        self.summary.transforms_deployed = self.ledger.transforms_deployed();
        Ok(self.summary)
    }

    fn create_group_topic(&mut self) -> Result<(), Failure> {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                replication_factor: None,
                name: GROUP_TOPIC.into(),
                partitions: GROUP_TOPIC_PARTITIONS,
                configs: Vec::new(),
            }],
            validate_only: false,
        });
        let answer = match self.nodes.get_mut(&1) {
            Some(node) => node.call(request, Duration::from_secs(10)),
            None => None,
        };
        match answer {
            Some(Response::CreateTopics(answer))
                if answer.topics.first().map(|t| t.error) == Some(ErrorCode::None) =>
            {
                self.ledger
                    .topic_created(GROUP_TOPIC, GROUP_TOPIC_PARTITIONS);
                self.workload
                    .add_topic(GROUP_TOPIC, GROUP_TOPIC_PARTITIONS, self.now_ms);
                Ok(())
            }
            other => Err(self.failure("setup", format!("creating {GROUP_TOPIC}: {other:?}"))),
        }
    }

    fn start_node(&mut self, id: NodeId) -> Result<(), Failure> {
        let wall_ms = self.wall_ms();
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if let Err(error) = node.start(wall_ms) {
            // A node may refuse to start on a full disk (recovery writes); it must start
            // once space is freed.
            if let Some(&(_, until)) = self.disks_full_until.get(&id) {
                self.summary.starts_refused_disk_full += 1;
                self.trace.record(
                    self.now_ms,
                    format!("node {id} does not start on a full disk: {error}"),
                );
                self.restart_at_ms.insert(id, until + 1);
                return Ok(());
            }
            let read_only = if node.disk().is_read_only() {
                " on a read-only filesystem"
            } else {
                ""
            };
            return Err(self.failure(
                "node-restarts-after-power-loss",
                format!("node {id} does not open{read_only} after a power loss or a storage fault: {error}"),
            ));
        }
        let incarnation = node.incarnation();
        self.restart_at_ms.remove(&id);
        self.ledger_incarnation = incarnation;
        self.ledger.node_restarted(incarnation);
        self.faults_struck_since_start.remove(&id);
        self.trace.record(
            self.now_ms,
            format!("node {id} started (incarnation {incarnation})"),
        );
        self.audit(id, false)
    }

    fn crash_node(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.crash();
            self.summary.crashes += 1;
            self.trace
                .record(self.now_ms, format!("node {id} lost power"));
            // A power loss fixes a read-only filesystem (the reboot remounts it) but not a
            // full disk.
            self.read_only.remove(&id);
            if let Some(&(capacity, _)) = self.disks_full_until.get(&id) {
                node.disk().set_space_bytes_max(Some(capacity));
            }
        }
    }

    /// The reboot that ends a read-only filesystem fault: nothing unsynced survives (the
    /// kernel could write nothing back), and the node starts on a writable disk.
    fn reboot_after_read_only(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.crash_dropping_unsynced();
            self.summary.crashes += 1;
            self.trace.record(
                self.now_ms,
                format!("node {id} reboots after its filesystem turned read-only; unsynced bytes are lost"),
            );
            if let Some(&(capacity, _)) = self.disks_full_until.get(&id) {
                node.disk().set_space_bytes_max(Some(capacity));
            }
        }
    }

    /// Fills disks, frees their space, turns filesystems read-only and reboots them.
    fn inject_storage_faults(&mut self, ids: &[NodeId]) -> Result<(), Failure> {
        for &id in ids {
            if let Some(&(_, until)) = self.disks_full_until.get(&id)
                && until <= self.now_ms
            {
                self.disks_full_until.remove(&id);
                if let Some(node) = self.nodes.get(&id) {
                    node.disk().set_space_bytes_max(None);
                }
                self.trace
                    .record(self.now_ms, format!("node {id}: disk space freed"));
            }
            if let Some(phase) = self.read_only.get(&id).copied()
                && phase.reboot_at_ms() <= self.now_ms
            {
                self.read_only.remove(&id);
                if let ReadOnlyPhase::Running { .. } = phase {
                    // Before the reboot: every acknowledged record is still served.
                    self.audit(id, false).map_err(|failure| Failure {
                        checker: "reads-served-while-read-only",
                        ..failure
                    })?;
                }
                self.reboot_after_read_only(id);
                match phase {
                    ReadOnlyPhase::Running {
                        stays_read_only: true,
                        ..
                    } => {
                        if let Some(node) = self.nodes.get(&id) {
                            node.disk().set_read_only(true);
                        }
                        self.summary.read_only_starts += 1;
                        self.trace.record(
                            self.now_ms,
                            format!("node {id}: the filesystem is still read-only at the reboot"),
                        );
                        self.start_node(id)?;
                        let reboot_at_ms = self.now_ms + self.storage_rng.random_range(100..1_500);
                        self.read_only
                            .insert(id, ReadOnlyPhase::RebootedReadOnly { reboot_at_ms });
                    }
                    _ => {
                        self.restart_at_ms
                            .insert(id, self.now_ms + self.storage_rng.random_range(1..500));
                    }
                }
                continue;
            }
            let Some(node) = self.nodes.get(&id) else {
                continue;
            };
            if !node.is_running() || node.disk().is_powered_off() {
                continue;
            }
            match self.storage_rng.random_range(0..10_000) {
                0 | 1 if !self.disks_full_until.contains_key(&id) => {
                    let used = node.disk().used_bytes();
                    // The workload writes a few KiB a second: a headroom of up to 4 KiB
                    // fills within the fault most of the time.
                    let capacity = used + self.storage_rng.random_range(0..4 * 1024);
                    let until = self.now_ms + self.storage_rng.random_range(100..3_000);
                    node.disk().set_space_bytes_max(Some(capacity));
                    self.disks_full_until.insert(id, (capacity, until));
                    self.summary.disks_full += 1;
                    self.trace.record(
                        self.now_ms,
                        format!("node {id}: the disk fills at {capacity} bytes ({used} used) until {until} ms"),
                    );
                }
                2 if !self.read_only.contains_key(&id) => {
                    node.disk().set_read_only(true);
                    let reboot_at_ms = self.now_ms + self.storage_rng.random_range(50..1_500);
                    let stays_read_only = self.storage_rng.random_bool(1.0 / 3.0);
                    self.read_only.insert(
                        id,
                        ReadOnlyPhase::Running {
                            reboot_at_ms,
                            stays_read_only,
                        },
                    );
                    self.summary.read_only_faults += 1;
                    self.trace.record(
                        self.now_ms,
                        format!("node {id}: the filesystem turns read-only (reboot at {reboot_at_ms} ms)"),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// One simulated millisecond ([`SETTLE_STEP_MS`] while settling).
    fn step(&mut self, settling: bool) -> Result<(), Failure> {
        let step_ms = if settling { SETTLE_STEP_MS } else { 1 };
        self.now_ms += step_ms;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        if !settling {
            self.inject_faults(&ids);
            if self.options.storage_faults {
                self.inject_storage_faults(&ids)?;
            }
        }
        for id in &ids {
            let due = self
                .restart_at_ms
                .get(id)
                .is_some_and(|&at| at <= self.now_ms);
            if due {
                self.start_node(*id)?;
            }
        }
        for packet in self.network.deliver_due(self.now_ms) {
            self.deliver(packet)?;
        }
        let sends = self
            .workload
            .tick(&mut self.rng, self.now_ms, &mut self.ledger, settling);
        for send in sends {
            self.trace.record(
                self.now_ms,
                format!(
                    "client {} -> node {} #{}: {:?}",
                    send.client, send.node, send.request_id, send.request
                ),
            );
            self.network.send(
                self.now_ms,
                Packet {
                    from: Endpoint::Client(send.client),
                    to: Endpoint::Node(send.node),
                    connection: send.connection,
                    request_id: send.request_id,
                    incarnation: 0,
                    payload: Payload::Request(Box::new(send.request)),
                },
            );
        }
        for id in &ids {
            let Some(node) = self.nodes.get_mut(id) else {
                continue;
            };
            node.advance(Duration::from_millis(step_ms));
            for fault in node.disk().take_struck_faults() {
                self.trace.record(
                    self.now_ms,
                    format!("node {id}: injected error struck: {fault}"),
                );
            }
            let incarnation = node.incarnation();
            if incarnation != self.ledger_incarnation {
                // A disk error struck (or was injected): unsynced data may go as in a crash.
                self.ledger_incarnation = incarnation;
                self.ledger.node_restarted(incarnation);
                self.faults_struck_since_start.insert(*id);
                self.trace.record(
                    self.now_ms,
                    format!(
                        "node {id} incarnation {incarnation} (a disk error injected or struck)"
                    ),
                );
            }
            for answer in node.take_answers() {
                self.trace.record(
                    self.now_ms,
                    format!(
                        "node {id} answers {:?} #{} ({:?})",
                        answer.client,
                        answer.request_id,
                        answer.response.api_key()
                    ),
                );
                self.network.send(
                    self.now_ms,
                    Packet {
                        from: Endpoint::Node(*id),
                        to: answer.client,
                        connection: answer.connection,
                        request_id: answer.request_id,
                        incarnation: answer.incarnation,
                        payload: Payload::Response(answer.response),
                    },
                );
            }
        }
        Ok(())
    }

    fn inject_faults(&mut self, ids: &[NodeId]) {
        for &id in ids {
            let Some(node) = self.nodes.get(&id) else {
                continue;
            };
            if !node.is_running() {
                continue;
            }
            if node.disk().is_powered_off() {
                self.crash_node(id);
                self.restart_at_ms
                    .insert(id, self.now_ms + self.rng.random_range(1..500));
                continue;
            }
            if !self.options.crashes {
                continue;
            }
            match self.rng.random_range(0..4_000) {
                0 => {
                    self.crash_node(id);
                    self.restart_at_ms
                        .insert(id, self.now_ms + self.rng.random_range(1..500));
                }
                1 => {
                    let operations = self.rng.random_range(1..200);
                    if let Some(node) = self.nodes.get(&id) {
                        node.disk().power_off_after(operations);
                    }
                    self.summary.power_offs += 1;
                    self.trace.record(
                        self.now_ms,
                        format!("node {id} loses power in {operations} disk operations"),
                    );
                }
                2 if self.options.disk_errors => {
                    if let Some(node) = self.nodes.get_mut(&id) {
                        node.inject_disk_error(true);
                    }
                    self.summary.disk_errors += 1;
                    self.trace.record(
                        self.now_ms,
                        format!("node {id}: the next write fails (EIO)"),
                    );
                }
                3 if self.options.disk_errors => {
                    if let Some(node) = self.nodes.get_mut(&id) {
                        node.inject_disk_error(false);
                    }
                    self.summary.disk_errors += 1;
                    self.trace
                        .record(self.now_ms, format!("node {id}: the next sync fails (EIO)"));
                }
                _ => {}
            }
        }
        // A network partition: one client cut off from a node both ways for a while.
        if self.options.network_faults && self.partition_rng.random_range(0..3_000) == 0 {
            let client = Endpoint::Client(
                self.partition_rng
                    .random_range(0..self.workload.client_count()) as u32,
            );
            if let Some(&node) = ids.get(self.partition_rng.random_range(0..ids.len())) {
                let node = Endpoint::Node(node);
                self.network.cut(client, node);
                self.network.cut(node, client);
                let until = self.now_ms + self.partition_rng.random_range(100..2_000);
                self.partitions_until.push((until, client, node));
                self.trace.record(
                    self.now_ms,
                    format!("network partition: {client:?} | {node:?}"),
                );
            }
        }
        let now_ms = self.now_ms;
        let (over, on): (Vec<_>, Vec<_>) = self
            .partitions_until
            .drain(..)
            .partition(|(until, _, _)| *until <= now_ms);
        self.partitions_until = on;
        for (_, client, node) in over {
            self.network.restore(client, node);
            self.network.restore(node, client);
            self.trace.record(
                self.now_ms,
                format!("network partition healed: {client:?} | {node:?}"),
            );
        }
        if self.options.network_faults && self.rng.random_range(0..2_000) == 0 {
            let client = self.rng.random_range(0..self.workload.client_count()) as u32;
            if let Some(old) = self.workload.connection_of(client) {
                self.network.reset(old);
                let new = self.network.connect();
                self.workload.connection_reset(client, new);
                self.trace
                    .record(self.now_ms, format!("client {client} connection reset"));
            }
        }
    }

    fn deliver(&mut self, packet: Packet) -> Result<(), Failure> {
        match packet.payload {
            Payload::Request(request) => {
                let (Endpoint::Node(id), client @ Endpoint::Client(_)) = (packet.to, packet.from)
                else {
                    return Ok(());
                };
                if let Some(node) = self.nodes.get_mut(&id) {
                    self.trace.record(
                        self.now_ms,
                        format!(
                            "node {id} {} {client:?} #{}",
                            if node.is_running() {
                                "takes"
                            } else {
                                "is down, loses"
                            },
                            packet.request_id
                        ),
                    );
                    node.deliver(client, packet.connection, packet.request_id, *request);
                }
            }
            Payload::Response(response) => {
                let Endpoint::Client(client) = packet.to else {
                    return Ok(());
                };
                self.trace.record(
                    self.now_ms,
                    format!(
                        "client {client} <- incarnation {} #{}: {:?}",
                        packet.incarnation, packet.request_id, response
                    ),
                );
                let result = self.workload.answer(
                    client,
                    packet.request_id,
                    &response,
                    packet.incarnation,
                    self.now_ms,
                    &mut self.ledger,
                );
                if let Err(message) = result {
                    return Err(self.failure("answers-agree-with-promises", message));
                }
            }
        }
        Ok(())
    }

    /// Every checker of the node's whole state; `settled` after the settling phase.
    fn audit(&mut self, id: NodeId, settled: bool) -> Result<(), Failure> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if !node.is_running() {
            return Ok(());
        }
        let incarnation = node.incarnation();
        let audit = Audit::take(|request| node.call(request, Duration::from_secs(30)));
        let mut audit = match audit {
            Ok(audit) => audit,
            Err(message) => return Err(self.failure("audit", message)),
        };
        if self.faults_struck_since_start.contains(&id) {
            // Offline after a disk error until the next start (checked then): by design.
            audit.forgive_offline_partitions();
        }
        let checks: [(&'static str, Result<(), String>); 7] = [
            (
                "acknowledged-records-present",
                checkers::check_acknowledged_records_present(&self.ledger, &audit),
            ),
            (
                "no-duplicates-under-idempotence",
                checkers::check_no_duplicates_under_idempotence(&audit),
            ),
            ("offsets-dense", checkers::check_offsets_dense(&audit)),
            (
                "metadata-matches-logs",
                checkers::check_metadata_matches_logs(&self.ledger, &audit),
            ),
            (
                "deleted-topics-stay-deleted",
                checkers::check_deleted_topics_stay_deleted(&self.ledger, &audit),
            ),
            (
                "configs-match",
                checkers::check_configs_match(&self.ledger, &audit),
            ),
            (
                "transform-output-matches-input",
                checkers::check_transform_output(&self.ledger, &audit, settled),
            ),
        ];
        for (checker, result) in checks {
            if let Err(message) = result {
                return Err(self.failure(checker, message));
            }
        }
        // What the transforms did goes into the trace too: a replay must repeat the plug-in
        // work (positions, counts, time spent on the node's clock), not only the answers
        // clients saw.
        for transform in &audit.transforms {
            let output_records: usize = audit
                .logs
                .iter()
                .filter(|(key, _)| key.0 == transform.output)
                .map(|(_, log)| log.len())
                .sum();
            self.trace.record(
                self.now_ms,
                format!(
                    "node {id} audit: transform {} v{} {} positions {:?} in {} out {} dead {} busy {} us, lag {}, {output_records} records in {}: {}",
                    transform.name,
                    transform.version,
                    transform.state,
                    transform.positions,
                    transform.records_in,
                    transform.records_out,
                    transform.records_dead,
                    transform.busy_us,
                    transform.lag,
                    transform.output,
                    transform.last_error
                ),
            );
            if settled {
                self.summary.transform_output_records += output_records;
            }
        }
        // Reads of the audit must agree with the reads clients made.
        for (key, log) in &audit.logs {
            for (offset, value) in log {
                if let Err(message) = self.ledger.record_read(key, *offset, value, incarnation) {
                    return Err(self.failure("reads-agree", message));
                }
            }
        }
        let groups = self.ledger.committed_groups();
        for (group, partitions) in groups {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            let answer = node.call(
                Request::OffsetFetch(OffsetFetchRequest {
                    group_id: group.clone(),
                    topics: None,
                }),
                Duration::from_secs(30),
            );
            let Some(Response::OffsetFetch(answer)) = answer else {
                return Err(self.failure("audit", format!("no OffsetFetch answer: {answer:?}")));
            };
            let read: BTreeMap<(String, u32), Option<i64>> = answer
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(|p| ((topic.name.clone(), p.partition), p.offset))
                })
                .collect();
            for (topic, partition) in partitions {
                let offset = read.get(&(topic.clone(), partition)).copied().flatten();
                if let Err(message) = self.ledger.commit_read(
                    (group.clone(), topic, partition),
                    offset,
                    incarnation,
                    self.now_ms,
                    self.now_ms,
                ) {
                    return Err(self.failure("committed-offsets-never-go-backwards", message));
                }
            }
        }
        Ok(())
    }

    fn check_group_settled(&mut self) -> Result<(), Failure> {
        if !self.workload.has_members() {
            return Ok(());
        }
        let assignments = self.workload.group_assignments();
        self.summary.members_settled = assignments.len();
        let partitions: BTreeSet<(String, u32)> = (0..GROUP_TOPIC_PARTITIONS)
            .map(|partition| (GROUP_TOPIC.to_string(), partition))
            .collect();
        checkers::check_one_owner_per_partition(GROUP, &assignments, &partitions)
            .map_err(|message| self.failure("one-owner-per-partition", message))
    }
}

/// Runs one seed with the default options, and `transform_module` deployed in seeds
/// divisible by [`TRANSFORM_SEED_EVERY`].
pub fn run_seed(seed: u64, transform_module: Option<&bytes::Bytes>) -> Result<Summary, Failure> {
    let options = RunOptions {
        transform_module: transform_module
            .filter(|_| seed.is_multiple_of(TRANSFORM_SEED_EVERY))
            .cloned(),
        ..RunOptions::default()
    };
    Cluster::new(seed, options).run()
}

/// One seed in this many deploys a transform (a module compile costs more than a run).
pub const TRANSFORM_SEED_EVERY: u64 = 4;

/// Seeds that find a defect outside the simulator, each pinned by an ignored test below
/// (`cargo test -p ledge-node --lib sim::cluster::tests::bug_ -- --ignored`) until fixed;
/// the CI campaign skips them so it stays a gate for new defects.
pub const KNOWN_BUGS: &[(u64, &str)] = &[
    // Empty: seeds 179, 983, 1005, 1965, 11685 and 12070 found CreateTopics acknowledging a
    // topic whose new partition's first segment write or fdatasync had failed (the
    // partition was offline after a power loss); fixed in `TopicRegistry::create_topic`,
    // they are regression tests below.
];

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A filter that keeps every record: the transform copies its input.
    fn copy_module() -> Bytes {
        Bytes::from(crate::wasm::runtime::tests::Wat::default().module())
    }

    /// The CI-sized campaign; `LEDGE_SIM_SEED_COUNT` makes it longer, `LEDGE_SIM_SEED`
    /// replays one seed.
    #[test]
    fn seeds() {
        let mut failures = Vec::new();
        let mut totals = Summary::default();
        let first = std::env::var("LEDGE_SIM_FIRST_SEED")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let seeds = crate::sim::seeds(first, 200);
        let module = copy_module();
        let replaying = std::env::var_os("LEDGE_SIM_SEED").is_some();
        for &seed in &seeds {
            if !replaying && let Some((_, bug)) = KNOWN_BUGS.iter().find(|(s, _)| *s == seed) {
                eprintln!("seed {seed} skipped: pinned by an ignored test: {bug}");
                continue;
            }
            if seeds.len() > 200 && seed % 100 == 0 {
                eprintln!("campaign: at seed {seed}, {} failed so far", failures.len());
            }
            match run_seed(seed, Some(&module)) {
                Ok(summary) => {
                    if seeds.len() == 1 {
                        eprintln!("{summary:#?}");
                    }
                    totals.crashes += summary.crashes;
                    totals.power_offs += summary.power_offs;
                    totals.disk_errors += summary.disk_errors;
                    totals.disks_full += summary.disks_full;
                    totals.starts_refused_disk_full += summary.starts_refused_disk_full;
                    totals.read_only_faults += summary.read_only_faults;
                    totals.read_only_starts += summary.read_only_starts;
                    totals.durable_records += summary.durable_records;
                    totals.topics_deleted += summary.topics_deleted;
                    totals.members_settled += summary.members_settled;
                    totals.transforms_deployed += summary.transforms_deployed;
                    totals.workload.requests += summary.workload.requests;
                    totals.workload.retries += summary.workload.retries;
                    totals.workload.records_acknowledged += summary.workload.records_acknowledged;
                    totals.workload.records_read += summary.workload.records_read;
                    totals.network.dropped += summary.network.dropped;
                    totals.network.duplicated += summary.network.duplicated;
                }
                Err(failure) => {
                    eprintln!("{failure}");
                    failures.push(failure.seed);
                }
            }
        }
        eprintln!(
            "simulated {} seeds: {} crashes, {} power-offs mid-operation, {} disk errors, {} disks full ({} starts refused on a full disk), {} filesystems turned read-only ({} reboots still read-only), {} requests ({} retries), {} records acknowledged, {} durable at the end, {} read by consumers, {} packets dropped, {} duplicated, {} topics deleted, {} group members checked, {} transforms deployed",
            seeds.len(),
            totals.crashes,
            totals.power_offs,
            totals.disk_errors,
            totals.disks_full,
            totals.starts_refused_disk_full,
            totals.read_only_faults,
            totals.read_only_starts,
            totals.workload.requests,
            totals.workload.retries,
            totals.workload.records_acknowledged,
            totals.durable_records,
            totals.workload.records_read,
            totals.network.dropped,
            totals.network.duplicated,
            totals.topics_deleted,
            totals.members_settled,
            totals.transforms_deployed
        );
        assert!(failures.is_empty(), "failing seeds: {failures:?}");
    }

    /// The same seed replays the same run: the digests of two runs' traces agree.
    #[test]
    fn a_seed_replays_the_same_trace() {
        let module = copy_module();
        // Seed 8 deploys a transform, 11 does not.
        for seed in [8, 11] {
            let first = run_seed(seed, Some(&module)).unwrap_or_else(|failure| panic!("{failure}"));
            let second =
                run_seed(seed, Some(&module)).unwrap_or_else(|failure| panic!("{failure}"));
            assert_eq!(first.transforms_deployed, usize::from(seed == 8));
            assert_eq!(
                first.digest, second.digest,
                "seed {seed}: two runs of the same seed differ"
            );
        }
    }

    /// Seeds with a transform replay exactly, plug-in work included: the simulated node
    /// runs every compile, instantiation and guest call inline on its one thread
    /// (`PluginExecutor::Inline`), and the trace holds what each audit saw of the
    /// transforms (positions, counts, busy time, output records).
    #[test]
    fn seeds_with_transforms_replay_the_same_plug_in_work() {
        let module = copy_module();
        let mut deployed = 0;
        let mut output_records = 0;
        for seed in (0..4).map(|n| n * TRANSFORM_SEED_EVERY) {
            let first = run_seed(seed, Some(&module)).unwrap_or_else(|failure| panic!("{failure}"));
            let second =
                run_seed(seed, Some(&module)).unwrap_or_else(|failure| panic!("{failure}"));
            assert_eq!(
                first.digest, second.digest,
                "seed {seed}: two runs of the same seed differ"
            );
            assert_eq!(
                first.transform_output_records, second.transform_output_records,
                "seed {seed}"
            );
            deployed += first.transforms_deployed;
            output_records += first.transform_output_records;
        }
        assert!(deployed > 0, "no seed deployed a transform");
        assert!(output_records > 0, "no transform wrote output");
    }

    fn create_topic(node: &mut SimNode, name: &str) {
        create_topic_with(node, name, &[]);
    }

    fn create_topic_with(node: &mut SimNode, name: &str, configs: &[(&str, &str)]) {
        let answer = node.call(
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: name.into(),
                    partitions: 1,
                    replication_factor: None,
                    configs: configs
                        .iter()
                        .map(|(name, value)| ledge_protocol::wire::ConfigEntry {
                            name: (*name).into(),
                            value: (*value).into(),
                        })
                        .collect(),
                }],
                validate_only: false,
            }),
            Duration::from_secs(10),
        );
        let Some(Response::CreateTopics(answer)) = answer else {
            panic!("no CreateTopics answer: {answer:?}");
        };
        assert_eq!(answer.topics[0].error, ErrorCode::None, "{answer:?}");
    }

    /// Produces one record of `value` to partition 0 of `topic`; the partition's answer.
    fn produce_one(
        node: &mut SimNode,
        topic: &str,
        value: &Bytes,
        acks: ledge_protocol::wire::Acks,
    ) -> ledge_protocol::wire::ProducePartitionResponse {
        use ledge_protocol::wire::{ProducePartition, ProduceRequest, ProduceTopic};
        let records = ledge_protocol::encode_batch(
            &[ledge_protocol::Record {
                timestamp: START_WALL_MS,
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
            }],
            &ledge_protocol::EncodeOptions::default(),
        )
        .expect("a small batch encodes");
        let answer = node.call(
            Request::Produce(ProduceRequest {
                acks,
                timeout_ms: 10_000,
                topics: vec![ProduceTopic {
                    name: topic.into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        current_leader_epoch: None,
                        records,
                    }],
                }],
            }),
            Duration::from_secs(10),
        );
        let Some(Response::Produce(answer)) = answer else {
            panic!("no Produce answer: {answer:?}");
        };
        answer.topics[0].partitions[0].clone()
    }

    /// The values the node serves from partition 0 of `topic`, read as the audit reads.
    fn values_of(node: &mut SimNode, topic: &str) -> Vec<Bytes> {
        let audit = Audit::take(|request| node.call(request, Duration::from_secs(10)))
            .unwrap_or_else(|message| panic!("audit: {message}"));
        assert!(audit.unreadable.is_empty(), "{:?}", audit.unreadable);
        audit
            .logs
            .get(&(topic.to_string(), 0))
            .map(|log| log.iter().map(|(_, value)| value.clone()).collect())
            .unwrap_or_default()
    }

    fn value(index: usize, bytes: usize) -> Bytes {
        let mut value = format!("value-{index}-").into_bytes();
        value.resize(bytes, b'.');
        Bytes::from(value)
    }

    /// Scenario: the disk fills under an acks=all producer. The node answers `DiskFull`,
    /// keeps serving reads and loses nothing acknowledged. With no byte left, a topic
    /// deletion is refused too (recording it rewrites `metadata.json` through a new file)
    /// and changes nothing; with room for that file, deleting the topic frees its bytes
    /// (files removed, handles closed) and the next produce succeeds; a power loss after
    /// that keeps every acknowledged record.
    #[test]
    fn a_full_disk_answers_disk_full_and_recovers_when_a_topic_is_deleted() {
        use ledge_protocol::wire::{Acks, DeleteTopicsRequest};
        let mut node = SimNode::new(1, 21, BrokerConfig::default());
        node.start(START_WALL_MS).expect("a fresh node starts");
        create_topic(&mut node, "kept");
        create_topic(&mut node, "doomed");
        for index in 0..20 {
            let answer = produce_one(&mut node, "doomed", &value(index, 1_000), Acks::All);
            assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
        }
        let mut acknowledged = Vec::new();
        for index in 0..5 {
            let value = value(index, 100);
            let answer = produce_one(&mut node, "kept", &value, Acks::All);
            assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
            acknowledged.push(value);
        }

        let delete_doomed = |node: &mut SimNode| {
            let deleted = node.call(
                Request::DeleteTopics(DeleteTopicsRequest {
                    names: vec!["doomed".into()],
                }),
                Duration::from_secs(10),
            );
            let Some(Response::DeleteTopics(deleted)) = deleted else {
                panic!("no DeleteTopics answer: {deleted:?}");
            };
            deleted.topics[0].clone()
        };

        node.disk()
            .set_space_bytes_max(Some(node.disk().used_bytes()));
        let refused = produce_one(&mut node, "kept", &value(5, 2_000), Acks::All);
        assert_eq!(refused.error, ErrorCode::DiskFull, "{refused:?}");
        assert!(
            refused.message.contains("No space left"),
            "{}",
            refused.message
        );
        assert_eq!(values_of(&mut node, "kept"), acknowledged, "reads go on");
        let refused = delete_doomed(&mut node);
        assert_eq!(refused.error, ErrorCode::StorageError, "{refused:?}");
        assert!(
            refused.message.contains("No space left"),
            "{}",
            refused.message
        );
        assert_eq!(
            values_of(&mut node, "doomed").len(),
            20,
            "nothing was deleted"
        );

        // Room for the new metadata.json, not for the record.
        node.disk()
            .set_space_bytes_max(Some(node.disk().used_bytes() + 1_024));
        let refused = produce_one(&mut node, "kept", &value(5, 2_000), Acks::All);
        assert_eq!(refused.error, ErrorCode::DiskFull, "{refused:?}");
        let deleted = delete_doomed(&mut node);
        assert_eq!(deleted.error, ErrorCode::None, "{deleted:?}");
        node.advance(Duration::from_millis(100));
        let value = value(5, 2_000);
        let answer = produce_one(&mut node, "kept", &value, Acks::All);
        assert_eq!(
            answer.error,
            ErrorCode::None,
            "the deleted topic's space is free again ({} bytes used of {:?}): {answer:?}",
            node.disk().used_bytes(),
            node.disk().space_bytes_max()
        );
        acknowledged.push(value);

        node.crash();
        node.start(START_WALL_MS)
            .expect("the node starts after the power loss");
        assert_eq!(values_of(&mut node, "kept"), acknowledged);
    }

    /// Scenario: the disk fills with a topic under time retention. Produce is refused with
    /// `DiskFull` (nothing lost, reads go on) until retention removes the expired segments,
    /// with no write needed to do so; then produce succeeds, and a power loss keeps every
    /// acknowledged record that retention did not remove.
    #[test]
    fn a_full_disk_recovers_when_retention_frees_space() {
        use ledge_protocol::wire::Acks;
        let config = BrokerConfig {
            retention_check_interval: Duration::from_secs(1),
            ..BrokerConfig::default()
        };
        let mut node = SimNode::new(1, 23, config);
        node.start(START_WALL_MS).expect("a fresh node starts");
        create_topic_with(
            &mut node,
            "aged",
            &[
                ("segment.bytes", "1024"),
                ("max.message.bytes", "1000"),
                ("retention.ms", "10000"),
            ],
        );
        for index in 0..20 {
            let answer = produce_one(&mut node, "aged", &value(index, 400), Acks::All);
            assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
        }
        node.disk()
            .set_space_bytes_max(Some(node.disk().used_bytes()));
        // The active segment is full too, so the produce needs a roll: a roll refused for
        // space fences the partition (a half-made roll leaves files a retry would trip
        // on; the reopen cleans them up), so the answer is StorageError, naming ENOSPC.
        let refused = produce_one(&mut node, "aged", &value(20, 400), Acks::All);
        assert!(
            matches!(refused.error, ErrorCode::DiskFull | ErrorCode::StorageError),
            "{refused:?}"
        );
        assert!(
            refused.message.contains("No space left"),
            "{}",
            refused.message
        );
        node.advance(Duration::from_millis(100));
        assert_eq!(values_of(&mut node, "aged").len(), 20, "reads go on");

        // Past retention.ms and the retention check interval: the sealed segments go.
        let used = node.disk().used_bytes();
        node.advance(Duration::from_secs(12));
        assert!(
            node.disk().used_bytes() < used,
            "retention freed nothing on the full disk ({used} bytes used)"
        );
        let value = value(20, 400);
        let answer = produce_one(&mut node, "aged", &value, Acks::All);
        assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
        assert_eq!(answer.base_offset, 20);

        node.crash();
        node.start(START_WALL_MS + 12_000)
            .expect("the node starts after the power loss");
        let kept = values_of(&mut node, "aged");
        assert_eq!(kept.last(), Some(&value));
    }

    /// Scenario: the filesystem turns read-only (as ext4 does after an error) while acks=1
    /// data waits for its sync. Produce is refused with `StorageError`, reads go on; the
    /// reboot loses everything unsynced and finds the filesystem still read-only: the node
    /// opens for reads and serves every acks=all record; the next reboot, writable, takes
    /// produce again.
    #[test]
    fn a_read_only_filesystem_refuses_produce_serves_reads_and_recovers_at_a_writable_reboot() {
        use ledge_protocol::wire::Acks;
        let mut config = BrokerConfig::default();
        // acks=1 data stays unsynced until an acks=all produce syncs it.
        config.log.flush_interval = Duration::from_secs(3_600);
        let mut node = SimNode::new(1, 22, config);
        node.start(START_WALL_MS).expect("a fresh node starts");
        create_topic(&mut node, "t");
        let mut synced = Vec::new();
        for index in 0..3 {
            let value = value(index, 100);
            assert_eq!(
                produce_one(&mut node, "t", &value, Acks::All).error,
                ErrorCode::None
            );
            synced.push(value);
        }
        assert_eq!(
            produce_one(&mut node, "t", &value(3, 100), Acks::Leader).error,
            ErrorCode::None
        );

        node.disk().set_read_only(true);
        let refused = produce_one(&mut node, "t", &value(4, 100), Acks::All);
        assert_eq!(refused.error, ErrorCode::StorageError, "{refused:?}");
        assert!(
            refused.message.contains("Read-only file system"),
            "{}",
            refused.message
        );
        // Reads go on, up to the high watermark (the acks=1 record was never synced, so
        // never visible).
        assert_eq!(values_of(&mut node, "t"), synced);

        node.crash_dropping_unsynced();
        node.disk().set_read_only(true);
        node.start(START_WALL_MS)
            .expect("the node opens on a read-only filesystem");
        assert_eq!(values_of(&mut node, "t"), synced);
        let refused = produce_one(&mut node, "t", &value(5, 100), Acks::All);
        assert_eq!(refused.error, ErrorCode::StorageError, "{refused:?}");

        node.crash_dropping_unsynced();
        node.start(START_WALL_MS).expect("the node starts writable");
        let value = value(6, 100);
        assert_eq!(
            produce_one(&mut node, "t", &value, Acks::All).error,
            ErrorCode::None
        );
        synced.push(value);
        assert_eq!(values_of(&mut node, "t"), synced);
    }

    /// The seeds that found acknowledged topics with a partition offline after a power loss
    /// (an EIO had struck the new segment's write or fdatasync during CreateTopics).
    #[test]
    fn seeds_that_found_an_acknowledged_topic_with_a_partition_offline_pass() {
        let failures: Vec<String> = [179, 983, 1005, 1965, 11685, 12070]
            .into_iter()
            .filter_map(|seed| run_seed(seed, Some(&copy_module())).err())
            .map(|failure| failure.to_string())
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The minimal form of seeds 179, 983 and 1005: the write or the fdatasync of a new
    /// partition's first segment fails during CreateTopics. The node must not acknowledge
    /// a topic it could not make durable (the seeds show the consequence: after a power
    /// loss the partition is offline).
    #[test]
    fn a_topic_whose_segment_write_or_sync_failed_is_not_acknowledged() {
        for (write, operation) in [(false, "fdatasync"), (true, "write")] {
            let mut node = SimNode::new(1, 179, BrokerConfig::default());
            node.start(START_WALL_MS).expect("a fresh node starts");
            node.inject_disk_error(write);
            let answer = node.call(
                Request::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        replication_factor: None,
                        name: "created".into(),
                        partitions: 3,
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                }),
                Duration::from_secs(10),
            );
            let struck = node.disk().take_struck_faults();
            assert_eq!(struck.len(), 1, "{struck:?}");
            assert!(
                struck[0].starts_with(&format!("{operation} /data/logs/created-")),
                "the injected error strikes a new segment: {struck:?}"
            );
            let Some(Response::CreateTopics(answer)) = answer else {
                panic!("no CreateTopics answer: {answer:?}");
            };
            let refused = answer.topics.first().expect("one topic answered");
            assert_eq!(
                refused.error,
                ErrorCode::StorageError,
                "CreateTopics acknowledged a topic although {struck:?} failed: {answer:?}"
            );
            assert!(
                refused.message.contains("could not create partition"),
                "{}",
                refused.message
            );
            // Nothing was recorded or left in the way: the retry (no fault now) creates it.
            let retried = node.call(
                Request::CreateTopics(CreateTopicsRequest {
                    topics: vec![CreatableTopic {
                        replication_factor: None,
                        name: "created".into(),
                        partitions: 3,
                        configs: Vec::new(),
                    }],
                    validate_only: false,
                }),
                Duration::from_secs(10),
            );
            let Some(Response::CreateTopics(retried)) = retried else {
                panic!("no CreateTopics answer: {retried:?}");
            };
            assert_eq!(retried.topics[0].error, ErrorCode::None, "{retried:?}");
        }
    }
}
