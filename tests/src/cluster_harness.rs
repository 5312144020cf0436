//! A cluster of real `ledge-node` processes on loopback, each behind its own UDP fault
//! proxy, for the replication process tests (issue 13).
//!
//! [`TestCluster::start`] runs `ledge-node cluster-init` (the binary, as an operator does),
//! starts one [`FaultProxy`] per node, and rewrites each generated config so that the
//! node's address in `cluster.peers` (and `node.advertised_address`) is its proxy's: peers
//! and clients dial proxies, and the node listens on a port of its own (`--listen`, port 0
//! on the first start, the same port on restarts). Every datagram between two nodes thus
//! crosses the receiver's proxy, and nodes dial peers from the socket they listen on, so
//! [`TestCluster::cut_one_way`] can drop, delay or block what one node sends another
//! whichever of them opened the connection ([`block_one_way`]).
//!
//! The configs carry short heartbeat, session and request timeouts (a dead node is fenced
//! within about two seconds), so a scenario takes seconds. Operations: kill -9, SIGSTOP and
//! SIGCONT, restart, restart with a wiped data directory, a bit flip in a stopped replica's
//! segment, all nodes killed at once and restarted; who leads a partition and who is the
//! controller, asked with the `ledge` CLI of the surviving nodes; `ledge-repair dump` of a
//! stopped node's partition. Every wait is a poll under a deadline ([`poll_until`]).
//!
//! The proxies run on the cluster's tokio runtime ([`TestCluster::runtime`]); tests run
//! their SDK work there too, and drive faults from the test thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::fault_proxy::{FaultProxy, LinkFaults, ProxiedNode, block_one_way};
use crate::{NodeOptions, NodeProcess, binary, run_cli};

/// A node id, as `cluster-init` numbers them (1..=N).
pub type NodeId = u32;

/// Longest a scenario waits for a condition that must come about (an election, a node
/// fenced or back): generous, for a debug build on a loaded 2-core machine.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(90);

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// `[cluster]` keys added to every generated config: a dead node is fenced within about
/// two seconds, and peer requests give up soon enough for the next heartbeat to try again.
/// A SIGTERM'd node waits at most 5 s for its controlled shutdown: with a live controller it
/// takes well under a second, and the last node of [`TestCluster::terminate_all`] has no
/// controller and would otherwise wait the default 30 s.
pub const FAST_CLUSTER_KEYS: &str = "node_heartbeat_interval_ms = 200\n\
node_session_timeout_ms = 2000\n\
peer_request_timeout_ms = 1000\n\
replica_lag_time_max_ms = 3000\n\
replica_fetch_wait_max_ms = 200\n\
controlled_shutdown_timeout_ms = 5000\n";

#[expect(
    clippy::disallowed_methods,
    reason = "test deadlines, not logic under test"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some`, for at most `timeout`;
/// panics naming `what` and the last thing `describe_last` says otherwise.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    describe_last: impl Fn() -> String,
) -> T {
    let deadline = now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {}",
            describe_last()
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Options for [`TestCluster::start`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: u32,
    /// Lines added to every node's `[cluster]` section.
    pub cluster_keys: String,
    /// Seed of the proxies' drop and jitter generators (node N's proxy uses seed + N).
    pub seed: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            cluster_keys: FAST_CLUSTER_KEYS.to_string(),
            seed: 1,
        }
    }
}

/// One node of a [`TestCluster`].
pub struct ClusterNode {
    /// Its id.
    pub id: NodeId,
    /// The process (kept across restarts).
    pub process: NodeProcess,
    /// The proxy in front of it; its address is the node's address in `cluster.peers`.
    pub proxy: FaultProxy,
    /// Whether the process is stopped with SIGSTOP.
    paused: bool,
    /// Whether the process is down (killed or terminated, not restarted yet).
    down: bool,
}

impl ClusterNode {
    /// The address peers and clients dial (its proxy's).
    pub fn address(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// Whether it runs and is not paused.
    pub fn serving(&self) -> bool {
        !self.paused && !self.down
    }
}

/// A running cluster; see the module documentation. Dropping it kills every node.
pub struct TestCluster {
    /// Nodes, by id - 1. Declared first so nodes die before the runtime their proxies use.
    nodes: Vec<ClusterNode>,
    /// The directory `cluster-init` wrote (configs, `tls/`, `data/node-<id>`).
    pub dir: PathBuf,
    /// The cluster CA clients trust.
    pub ca_file: PathBuf,
    runtime: tokio::runtime::Runtime,
    _temporary: tempfile::TempDir,
}

impl TestCluster {
    /// Writes a cluster with `cluster-init`, starts a proxy per node and every node, and
    /// waits until every node is ready (its listener is up; the controller quorum forms in
    /// the background: see [`TestCluster::wait_for_all_alive`]).
    pub fn start(options: ClusterOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let temporary = tempfile::tempdir().expect("temporary directory");
        let dir = temporary.path().join("cluster");
        let base_port: u16 = 9100;
        let output = Command::new(binary("ledge-node"))
            .arg("cluster-init")
            .arg("--nodes")
            .arg(options.nodes.to_string())
            .arg("--dir")
            .arg(&dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .output()
            .expect("run ledge-node cluster-init");
        assert!(
            output.status.success(),
            "cluster-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let proxies: Vec<FaultProxy> = (1..=options.nodes)
            .map(|id| {
                runtime
                    .block_on(FaultProxy::start_before_node(
                        options.seed.wrapping_add(u64::from(id)),
                    ))
                    .expect("start a fault proxy")
            })
            .collect();
        // Every address cluster-init chose becomes that node's proxy's (quoted, so 9101
        // never matches inside 91011), and each node advertises its proxy.
        let addresses: Vec<SocketAddr> = proxies.iter().map(FaultProxy::addr).collect();
        for (id, own) in (1..=options.nodes).zip(&addresses) {
            let path = dir.join(format!("node-{id}.toml"));
            let mut config = std::fs::read_to_string(&path).expect("read a generated config");
            for (index, address) in addresses.iter().enumerate() {
                let port = base_port + u16::try_from(index + 1).expect("node count fits u16");
                config =
                    config.replace(&format!("\"127.0.0.1:{port}\""), &format!("\"{address}\""));
            }
            config = config.replacen(
                "[node]\n",
                &format!("[node]\nadvertised_address = \"{own}\"\n"),
                1,
            );
            config = config.replacen(
                "[cluster]\n",
                &format!("[cluster]\n{}", options.cluster_keys),
                1,
            );
            std::fs::write(&path, config).expect("write a config");
        }
        let ca_file = dir.join("tls/ca.pem");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            ca_file,
            runtime,
            _temporary: temporary,
        };
        for (id, proxy) in (1..=options.nodes).zip(proxies) {
            let process = NodeProcess::start_with(cluster.node_options(id));
            proxy.set_upstream(process.addr);
            cluster.nodes.push(ClusterNode {
                id,
                process,
                proxy,
                paused: false,
                down: false,
            });
        }
        cluster
    }

    fn node_options(&self, id: NodeId) -> NodeOptions {
        NodeOptions {
            data_dir: Some(self.data_dir(id)),
            // Port 0 on the first start; NodeProcess keeps the bound port for restarts.
            listen: None,
            args: vec![
                "--config".into(),
                self.dir
                    .join(format!("node-{id}.toml"))
                    .to_string_lossy()
                    .into_owned(),
            ],
            ..NodeOptions::default()
        }
    }

    /// The runtime the proxies run on; run SDK work here (`runtime().block_on`, `spawn`).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> &ClusterNode {
        self.nodes
            .get(usize::try_from(id).expect("id fits usize") - 1)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: NodeId) -> &mut ClusterNode {
        self.nodes
            .get_mut(usize::try_from(id).expect("id fits usize") - 1)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.join("data").join(format!("node-{id}"))
    }

    /// The proxies' addresses, comma-separated (a bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.bootstrap_of(&self.ids())
    }

    /// The bootstrap list of the nodes `ids`.
    pub fn bootstrap_of(&self, ids: &[NodeId]) -> String {
        ids.iter()
            .map(|id| self.node(*id).address().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ids of the nodes running and not paused.
    pub fn serving(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.serving())
            .map(|node| node.id)
            .collect()
    }

    /// An SDK client bootstrapped from every node (through the proxies), with short
    /// timeouts so a lost node is noticed within seconds.
    pub async fn client(&self) -> ledge_client::Client {
        let mut config = ledge_client::ClientConfig::new(
            self.bootstrap(),
            ledge_client::Trust::CaFile(self.ca_file.clone()),
        );
        config.idle_timeout = Duration::from_secs(2);
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(5);
        ledge_client::Client::connect(config)
            .await
            .expect("connect to the cluster")
    }

    /// Runs the `ledge` CLI against the serving nodes; `None` if it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        self.cli_on(&self.serving(), args)
    }

    /// Runs the `ledge` CLI with the nodes `ids` as its bootstrap list; `None` if it
    /// failed.
    pub fn cli_on(&self, ids: &[NodeId], args: &[&str]) -> Option<String> {
        if ids.is_empty() {
            return None;
        }
        let server = self.bootstrap_of(ids);
        let ca = self.ca_file.to_string_lossy().into_owned();
        let mut full = vec!["--server", server.as_str(), "--ca", ca.as_str()];
        full.extend_from_slice(args);
        let (status, stdout, _) = run_cli(&full, None);
        status.success().then_some(stdout)
    }

    /// `ledge cluster describe --format json` from the serving nodes.
    pub fn describe_cluster(&self) -> Option<serde_json::Value> {
        self.describe_cluster_on(&self.serving())
    }

    /// `ledge cluster describe --format json` from the nodes `ids`.
    pub fn describe_cluster_on(&self, ids: &[NodeId]) -> Option<serde_json::Value> {
        serde_json::from_str(&self.cli_on(ids, &["cluster", "describe", "--format", "json"])?).ok()
    }

    /// `ledge topic describe TOPIC --format json` from the serving nodes.
    pub fn describe_topic(&self, topic: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.cli(&["topic", "describe", topic, "--format", "json"])?).ok()
    }

    /// The state of `topic`'s `partition` as the serving nodes describe it.
    pub fn partition_state(&self, topic: &str, partition: u32) -> Option<PartitionState> {
        Self::partition_state_from(self.describe_topic(topic)?, partition)
    }

    /// Waits until every serving node, each asked alone, describes `topic`'s `partition`
    /// in a state that meets `condition`; answers the first node's. Unlike
    /// [`Self::wait_for_partition`] (any one node's answer), a node just restarted cannot
    /// satisfy it from the image it had before it stopped: the others must agree.
    pub fn wait_for_partition_everywhere(
        &self,
        what: &str,
        topic: &str,
        partition: u32,
        condition: impl Fn(&PartitionState) -> bool,
    ) -> PartitionState {
        let states = || -> Vec<Option<PartitionState>> {
            self.serving()
                .into_iter()
                .map(|id| {
                    let described = serde_json::from_str(
                        &self.cli_on(&[id], &["topic", "describe", topic, "--format", "json"])?,
                    )
                    .ok()?;
                    Self::partition_state_from(described, partition)
                })
                .collect()
        };
        poll_until(
            what,
            CONDITION_TIMEOUT,
            || {
                let states = states();
                if states.is_empty()
                    || !states
                        .iter()
                        .all(|state| state.as_ref().is_some_and(&condition))
                {
                    return None;
                }
                states.into_iter().next().flatten()
            },
            || format!("{:?}\n{}", states(), self.logs()),
        )
    }

    fn partition_state_from(
        described: serde_json::Value,
        partition: u32,
    ) -> Option<PartitionState> {
        let entry = described["partitions"]
            .as_array()?
            .iter()
            .find(|entry| entry["partition"].as_u64() == Some(u64::from(partition)))?;
        let ids = |field: &str| -> Vec<NodeId> {
            entry[field]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(PartitionState {
            leader: entry["leader"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok()),
            leader_epoch: entry["leader_epoch"].as_i64().unwrap_or(-1),
            replicas: ids("replicas"),
            isr: ids("isr"),
        })
    }

    /// The active controller, as the serving nodes describe it.
    pub fn controller(&self) -> Option<NodeId> {
        self.describe_cluster()?["controller"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
    }

    /// Waits until `ledge cluster describe` from the nodes `asked` satisfies `condition`;
    /// returns that answer.
    pub fn wait_for_cluster(
        &self,
        what: &str,
        asked: &[NodeId],
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_until(
            what,
            CONDITION_TIMEOUT,
            || {
                self.describe_cluster_on(asked)
                    .filter(|cluster| condition(cluster))
            },
            || format!("{:?}\n{}", self.describe_cluster_on(asked), self.logs()),
        )
    }

    /// Waits until the serving nodes show a controller and every node in `ids` alive.
    pub fn wait_for_alive(&self, ids: &[NodeId]) -> serde_json::Value {
        self.wait_for_cluster(
            &format!("a controller and nodes {ids:?} alive"),
            &self.serving(),
            |cluster| {
                cluster["controller"].as_u64().is_some() && ids.iter().all(|id| alive(cluster, *id))
            },
        )
    }

    /// Waits until every node is alive and there is a controller.
    pub fn wait_for_all_alive(&self) -> serde_json::Value {
        self.wait_for_alive(&self.ids())
    }

    /// Waits until `partition` of `topic` satisfies `condition`; returns that state.
    pub fn wait_for_partition(
        &self,
        what: &str,
        topic: &str,
        partition: u32,
        condition: impl Fn(&PartitionState) -> bool,
    ) -> PartitionState {
        poll_until(
            what,
            CONDITION_TIMEOUT,
            || {
                self.partition_state(topic, partition)
                    .filter(|state| condition(state))
            },
            || {
                format!(
                    "{:?}\n{}",
                    self.partition_state(topic, partition),
                    self.logs()
                )
            },
        )
    }

    /// kill -9 of node `id`.
    pub fn kill9(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        node.process.kill9();
        node.down = true;
        node.paused = false;
    }

    /// SIGTERM to node `id` (a clean shutdown), waiting for it to exit.
    pub fn terminate(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        if !node.down {
            if node.paused {
                node.resume();
            }
            node.process.terminate(Duration::from_secs(60));
            node.down = true;
        }
    }

    /// SIGSTOP to node `id`: the process stops where it is, its sockets open.
    pub fn pause(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        signal(node.process.pid(), libc::SIGSTOP);
        node.paused = true;
    }

    /// SIGCONT to node `id`.
    pub fn resume(&mut self, id: NodeId) {
        self.node_mut(id).resume();
    }

    /// Starts node `id` again (kill -9 first if it runs) on its data directory and port.
    pub fn restart(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        node.process.restart();
        node.down = false;
        node.paused = false;
    }

    /// kill -9 of node `id`, its data directory removed, then started again: a node that
    /// lost its disk.
    pub fn restart_wiped(&mut self, id: NodeId) {
        self.kill9(id);
        let data_dir = self.data_dir(id);
        std::fs::remove_dir_all(&data_dir)
            .unwrap_or_else(|error| panic!("remove {}: {error}", data_dir.display()));
        self.restart(id);
    }

    /// kill -9 of every node at once (a coordinated power loss, as far as processes go).
    pub fn kill_all(&mut self) {
        // Signals first, waits after: the nodes die within microseconds of each other.
        for node in &self.nodes {
            if !node.down {
                signal(node.process.pid(), libc::SIGKILL);
            }
        }
        for id in self.ids() {
            self.kill9(id);
        }
    }

    /// Starts every node that is down.
    pub fn restart_all(&mut self) {
        for id in self.ids() {
            if self.node(id).down {
                self.restart(id);
            }
        }
    }

    /// Undoes every fault: heals the proxies, continues paused nodes, starts nodes that are
    /// down.
    pub fn recover_all(&mut self) {
        self.heal();
        for id in self.ids() {
            self.resume(id);
        }
        self.restart_all();
    }

    /// Stops every node cleanly (for dumps).
    pub fn terminate_all(&mut self) {
        for id in self.ids() {
            self.terminate(id);
        }
    }

    /// Sets what happens to everything node `from` sends to node `to` (see
    /// [`block_one_way`]); `LinkFaults::block()` cuts that direction.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId, faults: LinkFaults) {
        block_one_way(self.proxied(from), self.proxied(to), faults);
    }

    /// Sets `faults` on both directions between every pair of nodes (peer traffic only;
    /// clients pass untouched).
    pub fn set_peer_faults(&self, faults: LinkFaults) {
        for from in self.ids() {
            for to in self.ids() {
                if from != to {
                    self.cut_one_way(from, to, faults);
                }
            }
        }
    }

    /// Lets everything pass again on every proxy.
    pub fn heal(&self) {
        for node in &self.nodes {
            node.proxy.heal();
        }
    }

    fn proxied(&self, id: NodeId) -> ProxiedNode<'_> {
        let node = self.node(id);
        ProxiedNode {
            proxy: &node.proxy,
            source: node.process.addr,
        }
    }

    /// The segment files of `topic`'s `partition` on node `id`, oldest first.
    pub fn segments(&self, id: NodeId, topic: &str, partition: u32) -> Vec<PathBuf> {
        let directory = self
            .data_dir(id)
            .join("logs")
            .join(format!("{topic}-{partition}"));
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&directory)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
                    .collect()
            })
            .unwrap_or_default();
        segments.sort();
        segments
    }

    /// `ledge-repair dump --format json` of `topic`'s `partition` on node `id`, which must
    /// be down; `None` if the node holds no such partition.
    pub fn dump(&self, id: NodeId, topic: &str, partition: u32) -> Option<serde_json::Value> {
        assert!(self.node(id).down, "dump a stopped node (node {id} runs)");
        let output = Command::new(binary("ledge-repair"))
            .arg("dump")
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--topic", topic, "--partition", &partition.to_string()])
            .args(["--format", "json"])
            .output()
            .expect("run ledge-repair dump");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("no partition") {
            return None;
        }
        // Exit status 2 is a dump that met damage; its JSON names it.
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "ledge-repair dump of node {id} failed: {stderr}"
        );
        Some(serde_json::from_slice(&output.stdout).expect("dump JSON"))
    }

    /// Flips one bit inside the middle batch of the newest segment of `topic`'s `partition`
    /// on node `id`, which must be down; returns the offset that batch starts at.
    pub fn flip_bit(&self, id: NodeId, topic: &str, partition: u32) -> i64 {
        let dump = self
            .dump(id, topic, partition)
            .unwrap_or_else(|| panic!("node {id} holds no {topic}-{partition}"));
        let batches = dump["batches"].as_array().expect("batches");
        let newest = batches
            .last()
            .and_then(|batch| batch["segment"].as_str())
            .expect("at least one batch")
            .to_string();
        let in_newest: Vec<&serde_json::Value> = batches
            .iter()
            .filter(|batch| batch["segment"].as_str() == Some(newest.as_str()))
            .collect();
        let target = in_newest[in_newest.len() / 2];
        let path = self
            .data_dir(id)
            .join("logs")
            .join(format!("{topic}-{partition}"))
            .join(&newest);
        let mut bytes = std::fs::read(&path).expect("read the segment");
        // 70 bytes in: past the 61-byte batch header, inside the CRC-covered records.
        let position = usize::try_from(target["position"].as_u64().expect("position"))
            .expect("fits usize")
            + 70;
        assert!(position < bytes.len(), "batch too short to flip inside");
        bytes[position] ^= 0x10;
        std::fs::write(&path, bytes).expect("write the segment");
        target["base_offset"].as_i64().expect("base offset")
    }

    /// Each node's log, so a failing test can say what the nodes said.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                format!(
                    "----- node {} -----\n{}",
                    node.id,
                    tail(&node.process.log())
                )
            })
            .collect()
    }
}

impl ClusterNode {
    fn resume(&mut self) {
        if self.paused {
            signal(self.process.pid(), libc::SIGCONT);
            self.paused = false;
        }
    }
}

/// Whether `cluster` (a `ledge cluster describe` answer) shows node `id` alive.
pub fn alive(cluster: &serde_json::Value, id: NodeId) -> bool {
    node_epoch(cluster, id).is_some_and(|(alive, _)| alive)
}

/// Node `id`'s (alive, node epoch) in `cluster` (a `ledge cluster describe` answer).
pub fn node_epoch(cluster: &serde_json::Value, id: NodeId) -> Option<(bool, u64)> {
    cluster["nodes"]
        .as_array()?
        .iter()
        .find(|node| node["id"].as_u64() == Some(u64::from(id)))
        .and_then(|node| Some((node["alive"].as_bool()?, node["node_epoch"].as_u64()?)))
}

/// The last 60 lines of `log`.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n") + "\n"
}

fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) on a child process this harness started; no memory is involved.
    unsafe { libc::kill(pid, signal) };
}

/// A partition as `ledge topic describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Its leader, if it has one.
    pub leader: Option<NodeId>,
    /// The leader's epoch.
    pub leader_epoch: i64,
    /// Its replicas.
    pub replicas: Vec<NodeId>,
    /// Its in-sync replicas.
    pub isr: Vec<NodeId>,
}
