//! Issue 13, topics through the controller, with real processes: a 3-node cluster from
//! `cluster-init` where a topic created through a node that is not the controller is placed
//! by the controller, described alike by every node, served by the node each partition
//! lives on, and deleted everywhere; bad creations are refused in one line and change
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ledge_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::{NodeOptions, NodeProcess, run_cli};

use crate::cluster::{cluster_init, free_udp_port_run, node_state, now, until_described};

/// A running 3-node cluster: its directory, CA and nodes (index `i` is node `i + 1`).
pub(crate) struct Cluster {
    dir: PathBuf,
    pub(crate) ca: String,
    pub(crate) nodes: Vec<NodeProcess>,
    _temporary: tempfile::TempDir,
}

impl Cluster {
    /// `cluster-init --nodes 3`, short heartbeats, all nodes started and registered.
    pub(crate) fn start() -> Self {
        Self::start_with_keys(
            "node_heartbeat_interval_ms = 200\nnode_session_timeout_ms = 8000\npeer_request_timeout_ms = 5000\n",
        )
    }

    /// [`Cluster::start`] with `cluster_keys` (TOML lines) added to each node's `[cluster]`.
    pub(crate) fn start_with_keys(cluster_keys: &str) -> Self {
        Self::start_edited(cluster_keys, |config| config)
    }

    /// [`Cluster::start_with_keys`], each node's config text then passed through `edit`.
    pub(crate) fn start_edited(cluster_keys: &str, edit: impl Fn(String) -> String) -> Self {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("cluster");
        let base_port = free_udp_port_run(3);
        let (success, _, stderr) = cluster_init(&[
            "--nodes",
            "3",
            "--dir",
            &dir.to_string_lossy(),
            "--base-port",
            &base_port.to_string(),
        ]);
        assert!(success, "cluster-init failed: {stderr}");
        let ca = dir.join("tls/ca.pem").to_string_lossy().into_owned();
        let nodes: Vec<NodeProcess> = (1..=3u16)
            .map(|id| {
                let path = dir.join(format!("node-{id}.toml"));
                let config = edit(
                    std::fs::read_to_string(&path)
                        .unwrap()
                        .replace("[cluster]\n", &format!("[cluster]\n{cluster_keys}")),
                );
                std::fs::write(&path, config).unwrap();
                NodeProcess::start_with(NodeOptions {
                    data_dir: Some(dir.join(format!("data/node-{id}"))),
                    listen: Some(format!("127.0.0.1:{}", base_port + id).parse().unwrap()),
                    args: vec!["--config".into(), path.to_string_lossy().into_owned()],
                    ..NodeOptions::default()
                })
            })
            .collect();
        let cluster = Self {
            dir,
            ca,
            nodes,
            _temporary: temporary,
        };
        for address in cluster.addresses() {
            until_described(
                "3 alive nodes and a controller",
                &address,
                &cluster.ca,
                |described| {
                    described["controller"].as_u64().is_some()
                        && (1..=3)
                            .all(|id| node_state(described, id).is_some_and(|(alive, _)| alive))
                },
            );
        }
        cluster
    }

    pub(crate) fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.addr.to_string())
            .collect()
    }

    /// `ledge --server <node id's address> args...`: (success, stdout, stderr).
    pub(crate) fn ledge(&self, node_id: u32, args: &[&str]) -> (bool, String, String) {
        let address = self.nodes[node_id as usize - 1].addr.to_string();
        let mut full = vec!["--server", address.as_str(), "--ca", self.ca.as_str()];
        full.extend_from_slice(args);
        let (status, stdout, stderr) = run_cli(&full, None);
        (status.success(), stdout, stderr)
    }

    pub(crate) fn ok(&self, node_id: u32, args: &[&str]) -> String {
        let (success, stdout, stderr) = self.ledge(node_id, args);
        assert!(
            success,
            "ledge {args:?} against node {node_id} failed:\n{stderr}"
        );
        stdout
    }

    /// Requires a non-zero exit with exactly one `error: ` line, and returns it.
    pub(crate) fn fails(&self, node_id: u32, args: &[&str]) -> String {
        let (success, _, stderr) = self.ledge(node_id, args);
        assert!(!success, "ledge {args:?} should have failed");
        let stderr = stderr.trim().to_string();
        assert!(
            stderr.starts_with("error: "),
            "not an error line: {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr:?}");
        stderr
    }

    /// The partition directories of `topic` in node `node_id`'s data directory.
    fn partition_dirs(&self, node_id: u32, topic: &str) -> BTreeSet<u32> {
        let logs = self.dir.join(format!("data/node-{node_id}/logs"));
        list_partitions(&logs, topic)
    }

    /// The placement (partition -> leader, replicas, isr, leader_epoch) node `node_id`
    /// describes for `topic`; `None` while it does not know the topic.
    pub(crate) fn placement(&self, node_id: u32, topic: &str) -> Option<Vec<serde_json::Value>> {
        let (success, stdout, _) =
            self.ledge(node_id, &["topic", "describe", topic, "--format", "json"]);
        if !success {
            return None;
        }
        let described: serde_json::Value = serde_json::from_str(&stdout).ok()?;
        let partitions = described["partitions"].as_array()?;
        Some(
            partitions
                .iter()
                .map(|partition| {
                    serde_json::json!({
                        "partition": partition["partition"],
                        "leader": partition["leader"],
                        "replicas": partition["replicas"],
                        "isr": partition["isr"],
                        "leader_epoch": partition["leader_epoch"],
                    })
                })
                .collect(),
        )
    }

    /// Topic names node `node_id` lists.
    fn topics(&self, node_id: u32) -> BTreeSet<String> {
        let listed: serde_json::Value =
            serde_json::from_str(&self.ok(node_id, &["topic", "list", "--format", "json"]))
                .unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|topic| topic["topic"].as_str().map(str::to_owned))
            .collect()
    }
}

fn list_partitions(logs: &Path, topic: &str) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (prefix, number) = name.rsplit_once('-')?;
            (prefix == topic).then(|| number.parse().ok()).flatten()
        })
        .collect()
}

/// Polls `condition` every 200 ms under a generous deadline.
pub(crate) fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = now() + Duration::from_secs(60);
    while !condition() {
        assert!(now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// Goal (issue 13, items 1-4): in a 3-node cluster a 6-partition RF=1 topic created through a
// node that is not the controller is placed by the controller round-robin (each node leads
// 2), `topic describe` from every node agrees, each node holds exactly the directories of its
// partitions, the SDK (bootstrapped with all nodes, routing by Metadata) writes to every
// partition and reads each record back exactly once, and a delete removes the topic and its
// directories everywhere. Method: the real binaries; every wait a bounded poll.
#[test]
fn a_topic_created_through_any_node_is_placed_served_and_deleted_by_the_controller() {
    let cluster = Cluster::start();
    let described = crate::cluster::describe(&cluster.addresses()[0], &cluster.ca).unwrap();
    let controller = u32::try_from(described["controller"].as_u64().unwrap()).unwrap();
    let through = controller % 3 + 1;
    let created = cluster.ok(
        through,
        &["topic", "create", "spread", "--partitions", "6", "-r", "1"],
    );
    assert!(created.contains("Created topic spread"), "{created}");

    // The node that took the request answers from its image at once.
    let placement = cluster
        .placement(through, "spread")
        .expect("described at once");
    assert_eq!(placement.len(), 6);
    let mut leaders: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for (partition, entry) in placement.iter().enumerate() {
        let leader = entry["leader"].as_u64().expect("a leader");
        assert_eq!(entry["replicas"], serde_json::json!([leader]), "{entry}");
        assert_eq!(entry["isr"], serde_json::json!([leader]), "{entry}");
        assert_eq!(entry["leader_epoch"], 0, "{entry}");
        leaders
            .entry(leader)
            .or_default()
            .insert(u32::try_from(partition).unwrap());
    }
    assert_eq!(
        leaders.values().map(BTreeSet::len).collect::<Vec<_>>(),
        vec![2, 2, 2],
        "round-robin over 3 nodes: {leaders:?}"
    );
    for node_id in 1..=3u32 {
        until("every node to describe the same placement", || {
            cluster.placement(node_id, "spread").as_ref() == Some(&placement)
        });
        let hosted = leaders[&u64::from(node_id)].clone();
        until("each node to hold exactly its partitions", || {
            cluster.partition_dirs(node_id, "spread") == hosted
        });
    }

    // The SDK routes each partition to its leader.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = ClientConfig::new(
            cluster.addresses().join(","),
            Trust::CaFile(PathBuf::from(&cluster.ca)),
        );
        config.request_timeout = Duration::from_secs(10);
        let client = Client::connect(config).await.expect("connect");
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..120u32 {
            let record =
                ProducerRecord::new("spread", format!("value-{index}")).partition(index % 6);
            deliveries.push(producer.send(record).await.expect("send"));
        }
        for delivery in deliveries {
            delivery.await.expect("acknowledged");
        }
        producer.close().await;
        let mut consumer_config = ConsumerConfig::default();
        consumer_config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, consumer_config);
        consumer.assign(
            (0..6)
                .map(|partition| TopicPartition::new("spread", partition))
                .collect(),
        );
        let mut values = Vec::new();
        let mut idle_polls = 0;
        while values.len() < 120 {
            let records = consumer
                .poll(Duration::from_secs(1), 10_000)
                .await
                .expect("poll");
            if records.is_empty() {
                idle_polls += 1;
                assert!(
                    idle_polls < 30,
                    "read {} of 120, then nothing",
                    values.len()
                );
            }
            for record in records {
                assert_eq!(
                    format!("value-{}", record.offset * 6 + i64::from(record.partition)),
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
                    "record at {}/{}",
                    record.partition,
                    record.offset
                );
                values.push(
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                );
            }
        }
        let distinct: BTreeSet<&String> = values.iter().collect();
        assert_eq!(
            (values.len(), distinct.len()),
            (120, 120),
            "every record exactly once"
        );
        client.close().await;
    });

    // Deleted through another node: gone from every image and every data directory.
    let other = through % 3 + 1;
    cluster.ok(other, &["topic", "delete", "spread"]);
    for node_id in 1..=3u32 {
        until("the topic to be gone everywhere", || {
            !cluster.topics(node_id).contains("spread")
                && cluster.partition_dirs(node_id, "spread").is_empty()
        });
    }
}

// Goal (issue 13, bad input): a replication factor above the live nodes, min.insync.replicas
// above the replication factor, and a topic that exists are each refused with one line, and
// nothing changes: the topic list stays as it was on every node and no directory appears.
// Method: the CLI against a node that is not the controller.
#[test]
fn bad_topic_creations_are_refused_in_one_line_and_change_nothing() {
    let cluster = Cluster::start();
    let described = crate::cluster::describe(&cluster.addresses()[0], &cluster.ca).unwrap();
    let controller = u32::try_from(described["controller"].as_u64().unwrap()).unwrap();
    let through = controller % 3 + 1;
    cluster.ok(
        through,
        &["topic", "create", "kept", "--partitions", "3", "-r", "1"],
    );
    let before: Vec<BTreeSet<String>> = (1..=3).map(|id| cluster.topics(id)).collect();

    let refused = cluster.fails(
        through,
        &["topic", "create", "wide", "--partitions", "1", "-r", "4"],
    );
    assert!(refused.contains("replication factor 4"), "{refused}");
    let refused = cluster.fails(
        through,
        &[
            "topic",
            "create",
            "strict",
            "--partitions",
            "1",
            "-r",
            "1",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    assert!(
        refused.contains("min.insync.replicas 2 is above the replication factor 1"),
        "{refused}"
    );
    let refused = cluster.fails(
        through,
        &["topic", "create", "kept", "--partitions", "5", "-r", "1"],
    );
    assert!(refused.contains("already exists"), "{refused}");

    for node_id in 1..=3u32 {
        assert_eq!(cluster.topics(node_id), before[node_id as usize - 1]);
        for topic in ["wide", "strict"] {
            assert!(cluster.partition_dirs(node_id, topic).is_empty());
        }
        let placement = cluster.placement(node_id, "kept");
        assert_eq!(
            placement.map(|placement| placement.len()),
            Some(3),
            "node {node_id}"
        );
    }
}

// Goal (issue 13): `[[topic]]` sections in a `[cluster]` config are refused at start with one
// line saying why, before the data directory is made: a cluster's topics are the
// controller's. Method: a config from `cluster-init` with a declared topic appended.
#[test]
fn declared_topics_are_refused_in_a_cluster_config_in_one_line() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("cluster");
    // Ports of its own: the start must be refused for the topic, never for a busy port.
    let base_port = free_udp_port_run(2).to_string();
    let (success, _, stderr) = cluster_init(&[
        "--nodes",
        "2",
        "--dir",
        &dir.to_string_lossy(),
        "--base-port",
        &base_port,
    ]);
    assert!(success, "{stderr}");
    let path = dir.join("node-1.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str("\n[[topic]]\nname = \"declared\"\npartitions = 1\n");
    std::fs::write(&path, config).unwrap();
    let output = std::process::Command::new(ledge_e2e::binary("ledge-node"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("[[topic]] sections cannot be used with [cluster]"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Nothing beyond what cluster-init wrote (the controller's bootstrap marker).
    let mut written = Vec::new();
    let mut pending = vec![dir.join("data/node-1")];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                written.push(entry.path());
            }
        }
    }
    assert_eq!(
        written,
        vec![dir.join("data/node-1/controller/bootstrap")],
        "the refused start wrote into the data directory"
    );
}
