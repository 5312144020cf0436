//! `ledge-node cluster-init` as an operator runs it: the files it writes, its refusal to
//! overwrite a cluster, and a node started from one of its configs serving the `ledge` CLI,
//! which verifies the node with the cluster CA.

use std::path::Path;
use std::process::Command;

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

/// Runs `ledge-node cluster-init` with `args`; returns (success, stdout, stderr).
pub(crate) fn cluster_init(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("ledge-node"))
        .arg("cluster-init")
        .args(args)
        .output()
        .expect("run ledge-node cluster-init");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Goal: `cluster-init --nodes 3` writes a config, certificate and key per node and a cluster
/// CA; refuses to run again over them; and `ledge-node --config DIR/node-1.toml` starts a node
/// that the `ledge` CLI reaches with `--ca DIR/tls/ca.pem`. Method: the real binaries, with
/// the base port picked so node 1 lands on a port the kernel just reported free.
#[test]
fn cluster_init_writes_a_cluster_whose_node_serves_the_cli() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("cluster");
    // Topics are the controller's, so the quorum must form: all 3 nodes run.
    let port = free_udp_port_run(3) + 1;
    let base_port = (port - 1).to_string();
    let dir_text = dir.to_string_lossy().into_owned();
    let (success, stdout, stderr) = cluster_init(&[
        "--nodes",
        "3",
        "--dir",
        &dir_text,
        "--base-port",
        &base_port,
    ]);
    assert!(success, "cluster-init failed: {stderr}");
    for id in 1..=3 {
        let config = dir.join(format!("node-{id}.toml"));
        assert!(config.is_file(), "{}", config.display());
        assert!(
            stdout.contains(&format!("ledge-node --config {}", config.display())),
            "{stdout}"
        );
        assert!(dir.join(format!("tls/node-{id}.pem")).is_file());
        assert!(dir.join(format!("tls/node-{id}.key")).is_file());
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("tls/ca.key")), 0o600);
    assert_eq!(mode(&dir.join("tls/node-1.key")), 0o600);
    let ca = dir.join("tls/ca.pem");
    assert!(ca.is_file());
    let node_1 = std::fs::read_to_string(dir.join("node-1.toml")).unwrap();
    assert!(
        node_1.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{node_1}"
    );
    assert!(node_1.contains("[cluster]"), "{node_1}");

    // A second run would replace the CA that nodes and clients trust: refused, one line.
    let ca_before = std::fs::read(&ca).unwrap();
    let (success, _, stderr) = cluster_init(&["--nodes", "3", "--dir", &dir_text]);
    assert!(!success);
    let stderr = stderr.trim();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("already holds a cluster"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);

    // Node 1 from its config, as the printed command starts it.
    let address = format!("127.0.0.1:{port}");
    let node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(dir.join("data/node-1")),
        listen: Some(address.parse().unwrap()),
        args: vec![
            "--config".into(),
            dir.join("node-1.toml").to_string_lossy().into_owned(),
        ],
        ..NodeOptions::default()
    });
    assert_eq!(node.addr.to_string(), address);
    assert!(node.log().contains("node_id=1"), "{}", node.log());
    // The controller log holds SCRAM credentials: node user only (cluster-init made the
    // directory for the bootstrap marker; the node narrows it at start).
    assert_eq!(mode(&dir.join("data/node-1/controller")), 0o700);
    let _others: Vec<NodeProcess> = (2..=3u16)
        .map(|id| {
            NodeProcess::start_with(NodeOptions {
                data_dir: Some(dir.join(format!("data/node-{id}"))),
                listen: Some(format!("127.0.0.1:{}", port - 1 + id).parse().unwrap()),
                args: vec![
                    "--config".into(),
                    dir.join(format!("node-{id}.toml"))
                        .to_string_lossy()
                        .into_owned(),
                ],
                ..NodeOptions::default()
            })
        })
        .collect();
    let ca_text = ca.to_string_lossy().into_owned();
    let ledge = |args: &[&str], stdin: Option<&str>| {
        let mut full = vec!["--server", address.as_str(), "--ca", ca_text.as_str()];
        full.extend_from_slice(args);
        let (status, stdout, stderr) = run_cli(&full, stdin);
        assert!(status.success(), "ledge {args:?} failed: {stderr}");
        (stdout, stderr)
    };
    // The controller places the topic on live nodes: wait until all 3 registered.
    until_described(
        "3 alive nodes and a controller",
        &address,
        &ca_text,
        |cluster| {
            cluster["controller"].as_u64().is_some()
                && (1..=3).all(|id| node_state(cluster, id).is_some_and(|(alive, _)| alive))
        },
    );
    ledge(&["topic", "create", "events", "--partitions", "1"], None);
    let (_, stderr) = ledge(&["produce", "events"], Some("one\ntwo\n"));
    assert!(stderr.contains("Produced 2 records to events"), "{stderr}");
    let (stdout, _) = ledge(
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
        None,
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["one", "two"],
        "{stdout}"
    );
    // The node's own dev CA is not made in a cluster: the cluster CA is the one to trust.
    assert!(!dir.join("data/node-1/tls/ca.pem").exists());
}

/// Goal (issue 13, bad input): a node given another cluster's certificate, or another node's,
/// does not start, says why in one line, and leaves no data directory behind. Method: two
/// clusters from `cluster-init`; node 1 of the first with certificate files of the second,
/// then with node 2's files of its own cluster.
#[test]
fn a_node_with_a_foreign_certificate_refuses_to_start_with_one_line() {
    let temporary = tempfile::tempdir().unwrap();
    let (a, b) = (temporary.path().join("a"), temporary.path().join("b"));
    for dir in [&a, &b] {
        // Ports of their own: a refused start must fail on the certificate, never on a port
        // another test's node holds.
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
    }
    let original = std::fs::read_to_string(a.join("node-1.toml")).unwrap();
    for (cert, key, expected) in [
        (
            b.join("tls/node-1.pem"),
            b.join("tls/node-1.key"),
            "UnknownIssuer",
        ),
        (
            a.join("tls/node-2.pem"),
            a.join("tls/node-2.key"),
            "does not name node 1 of cluster",
        ),
    ] {
        let config = original
            .replace(
                "cert_file = \"tls/node-1.pem\"",
                &format!("cert_file = {:?}", cert.to_string_lossy()),
            )
            .replace(
                "key_file = \"tls/node-1.key\"",
                &format!("key_file = {:?}", key.to_string_lossy()),
            );
        let path = a.join("node-1-wrong.toml");
        std::fs::write(&path, config).unwrap();
        let output = Command::new(binary("ledge-node"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        // The data directory holds only what cluster-init wrote (the controller bootstrap
        // marker): the refused start touched nothing.
        let entries = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(entries(&a.join("data/node-1")), vec!["controller"]);
        assert_eq!(
            entries(&a.join("data/node-1/controller")),
            vec!["bootstrap"]
        );
    }
}

/// `count` consecutive ports, `base + 1 ..= base + count`, free over UDP and TCP now and
/// outside the kernel's ephemeral range (see `ledge_e2e::ports`); returns `base` (what
/// `cluster-init --base-port` takes).
pub(crate) fn free_udp_port_run(count: u16) -> u16 {
    ledge_e2e::ports::reserve_run(count) - 1
}

/// `ledge cluster describe --format json` against `address`, parsed; `None` while the node
/// does not answer.
pub(crate) fn describe(address: &str, ca: &str) -> Option<serde_json::Value> {
    let (status, stdout, _) = run_cli(
        &[
            "--server", address, "--ca", ca, "cluster", "describe", "--format", "json",
        ],
        None,
    );
    if !status.success() {
        return None;
    }
    serde_json::from_str(&stdout).ok()
}

/// A node's entry in a describe answer: (alive, node epoch).
pub(crate) fn node_state(cluster: &serde_json::Value, id: u64) -> Option<(bool, u64)> {
    cluster["nodes"]
        .as_array()?
        .iter()
        .find(|node| node["id"].as_u64() == Some(id))
        .and_then(|node| Some((node["alive"].as_bool()?, node["node_epoch"].as_u64()?)))
}

#[expect(
    clippy::disallowed_methods,
    reason = "test deadlines, not logic under test"
)]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Polls `describe` against `address` until `condition` holds; fails after a generous
/// deadline with the last answer.
pub(crate) fn until_described(
    what: &str,
    address: &str,
    ca: &str,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = now() + std::time::Duration::from_secs(120);
    let mut last = None;
    loop {
        if let Some(cluster) = describe(address, ca) {
            if condition(&cluster) {
                return cluster;
            }
            last = Some(cluster);
        }
        assert!(
            now() < deadline,
            "timed out waiting for {what}; last answer from {address}: {last:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Goal (issue 13, the controller between real processes): the 3 nodes of `cluster-init
/// --nodes 3` form a controller quorum; `ledge cluster describe` against any node shows the
/// 3 nodes alive with node epochs and one controller; after kill -9 of the controller's
/// process another controller is elected and the killed node is shown not alive once its
/// session timed out; restarted, it is alive again with a larger node epoch. Method: the
/// real binaries, short heartbeat and session timeouts in the configs, every wait a poll
/// under a generous deadline.
#[test]
fn three_nodes_elect_a_controller_and_fence_and_readmit_a_killed_one() {
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
    let mut nodes: Vec<NodeProcess> = (1..=3u16)
        .map(|id| {
            let path = dir.join(format!("node-{id}.toml"));
            let config = std::fs::read_to_string(&path).unwrap().replace(
                "[cluster]\n",
                "[cluster]\nnode_heartbeat_interval_ms = 200\nnode_session_timeout_ms = 2000\npeer_request_timeout_ms = 1500\n",
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
    let addresses: Vec<String> = nodes.iter().map(|node| node.addr.to_string()).collect();
    let all_alive = |cluster: &serde_json::Value| {
        cluster["controller"].as_u64().is_some()
            && (1..=3).all(|id| node_state(cluster, id).is_some_and(|(alive, _)| alive))
    };
    let mut first_epochs = Vec::new();
    let mut controller = None;
    for address in &addresses {
        let cluster = until_described("3 alive nodes and a controller", address, &ca, all_alive);
        let epochs: Vec<u64> = (1..=3)
            .map(|id| node_state(&cluster, id).unwrap().1)
            .collect();
        assert!(epochs.iter().all(|epoch| *epoch > 0), "{cluster}");
        if first_epochs.is_empty() {
            first_epochs = epochs;
            controller = cluster["controller"].as_u64();
        }
    }
    let controller = controller.unwrap();
    let mut distinct = first_epochs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "each registration has its own epoch: {first_epochs:?}"
    );

    // kill -9 of the controller: another is elected, and the killed node is fenced.
    let killed = usize::try_from(controller).unwrap() - 1;
    nodes[killed].kill9();
    let witness = &addresses[(killed + 1) % 3];
    until_described(
        "a new controller and the killed node fenced",
        witness,
        &ca,
        // The survivors are polled for too, not read once: a survivor's heartbeat to the
        // dead controller may hang until its request timeout, so it can be fenced for a
        // moment before it re-registers with the new one.
        |cluster| {
            cluster["controller"]
                .as_u64()
                .is_some_and(|new| new != controller)
                && node_state(cluster, controller).is_some_and(|(alive, _)| !alive)
                && (1..=3)
                    .filter(|id| *id != controller)
                    .all(|id| node_state(cluster, id).is_some_and(|(alive, _)| alive))
        },
    );

    // Restarted: a new incarnation, alive again at a larger node epoch, seen from every node.
    nodes[killed].restart();
    let old_epoch = first_epochs[killed];
    for address in &addresses {
        let cluster = until_described(
            "the restarted node alive at a new epoch",
            address,
            &ca,
            |cluster| {
                all_alive(cluster)
                    && node_state(cluster, controller).is_some_and(|(_, epoch)| epoch > old_epoch)
            },
        );
        assert!(
            cluster["cluster_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{cluster}"
        );
    }
}

/// Goal (issue 13): a node outside `controller_voters` holds the metadata image as a Raft
/// learner, so `ledge cluster describe` against it shows every node alive and the
/// controller, as against a voter. Method: `cluster-init --nodes 3` with
/// `controller_voters = [1, 2]` in every config, the real binaries, polled under a
/// generous deadline.
#[test]
fn a_non_voter_describes_the_whole_cluster() {
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
            let config = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|line| {
                    if line.starts_with("controller_voters") {
                        "controller_voters = [1, 2]".to_owned()
                    } else {
                        line.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert!(config.contains("controller_voters = [1, 2]"), "{config}");
            std::fs::write(&path, config).unwrap();
            NodeProcess::start_with(NodeOptions {
                data_dir: Some(dir.join(format!("data/node-{id}"))),
                listen: Some(format!("127.0.0.1:{}", base_port + id).parse().unwrap()),
                args: vec!["--config".into(), path.to_string_lossy().into_owned()],
                ..NodeOptions::default()
            })
        })
        .collect();
    let non_voter = nodes[2].addr.to_string();
    let cluster = until_described(
        "the non-voter shows 3 alive nodes and a voter as controller",
        &non_voter,
        &ca,
        |cluster| {
            cluster["controller"]
                .as_u64()
                .is_some_and(|controller| controller == 1 || controller == 2)
                && (1..=3).all(|id| node_state(cluster, id).is_some_and(|(alive, _)| alive))
        },
    );
    assert!(
        (1..=3).all(|id| node_state(&cluster, id).is_some_and(|(_, epoch)| epoch > 0)),
        "{cluster}"
    );
}
