//! Real Kafka clients against a node's Kafka listener: kcat (librdkafka) listing, producing
//! and consuming, and kafka-python 3 running the producer, consumer (no group) and admin
//! scenarios of `tests/kafka/kafka_python_scenarios.py`; plus the listener's start-up
//! errors.
//!
//! The clients are installed by `.ci/run` (kcat from apt, kafka-python in a venv under
//! `target/`), which sets `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there a missing client fails the
//! test. Elsewhere a missing client is reported out loud ("skipped: ...") and the test
//! returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

/// Set by `.ci/run`: the Kafka clients must be installed.
const REQUIRE_CLIENTS: &str = "LEDGE_REQUIRE_KAFKA_CLIENTS";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Reports a missing client: a failure where `.ci/run` installed them, else a loud skip.
pub(crate) fn missing(client: &str) {
    if std::env::var_os(REQUIRE_CLIENTS).is_some_and(|value| value == "1") {
        panic!("{client} is missing and {REQUIRE_CLIENTS}=1: .ci/run should have installed it");
    }
    eprintln!("skipped: {client} not installed (.ci/run installs it)");
}

/// `kcat` on the PATH.
pub(crate) fn kcat() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join("kcat"))
        .find(|candidate| candidate.is_file())
}

/// A Python with kafka-python: `LEDGE_KAFKA_PYTHON`, else the venv `.ci/run` makes.
fn kafka_python() -> Option<PathBuf> {
    let python = std::env::var_os("LEDGE_KAFKA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/kafka-venv/bin/python"));
    let imports = Command::new(&python)
        .args(["-c", "import kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    imports.then_some(python)
}

fn ledge(node: &NodeProcess, args: &[&str]) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, _, stderr) = run_cli(&full, None);
    assert!(status.success(), "ledge {args:?}: {stderr}");
}

/// Runs kcat with `args` (and `stdin`); its stdout, after checking it succeeded.
pub(crate) fn run_kcat(kcat: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write kcat's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for kcat");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kcat {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kafka_kcat_lists_produces_and_consumes() {
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let broker = kafka.to_string();
    ledge(&node, &["topic", "create", "lines", "--partitions", "2"]);

    // -L: this node, its port, the topic with its partitions led by this node.
    let listing = run_kcat(&kcat, &["-b", &broker, "-L", "-J"], "");
    let metadata: serde_json::Value = serde_json::from_str(&listing).expect("kcat -J is JSON");
    let brokers = metadata["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{listing}");
    assert_eq!(brokers[0]["name"], format!("{broker}"), "{listing}");
    let topic = metadata["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|topic| topic["topic"] == "lines")
        .expect("topic listed");
    assert_eq!(topic["partitions"].as_array().expect("partitions").len(), 2);

    // -P: idempotent, acks=all, into partition 0.
    let lines: Vec<String> = (0..50).map(|number| format!("line-{number}")).collect();
    let input = lines.join("\n") + "\n";
    let producer = [
        "-b",
        &broker,
        "-P",
        "-t",
        "lines",
        "-p",
        "0",
        "-X",
        "enable.idempotence=true",
        "-X",
        "acks=all",
    ];
    run_kcat(&kcat, &producer, &input);

    // -C from the beginning to the end of the partition.
    let consumed = run_kcat(
        &kcat,
        &[
            "-b",
            &broker,
            "-C",
            "-t",
            "lines",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        "",
    );
    assert_eq!(consumed.lines().collect::<Vec<_>>(), lines, "kcat -C");
    // From an offset inside the batch the producer sent: the records from there on.
    let from_ten = run_kcat(
        &kcat,
        &[
            "-b", &broker, "-C", "-t", "lines", "-p", "0", "-o", "10", "-e", "-q",
        ],
        "",
    );
    assert_eq!(
        from_ten.lines().collect::<Vec<_>>(),
        lines[10..],
        "kcat -C -o 10"
    );
}

#[test]
fn kafka_python_scenarios() {
    let Some(python) = kafka_python() else {
        missing("kafka-python");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let script = workspace().join("tests/kafka/kafka_python_scenarios.py");
    let output = Command::new(python)
        .arg(script)
        .arg(kafka.to_string())
        .output()
        .expect("run kafka-python scenarios");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all scenarios passed"),
        "kafka-python scenarios failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
}

#[test]
fn kafka_busy_port_is_one_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = taken.local_addr().expect("its address").to_string();
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir = directory.path().join("data");
    let output = Command::new(binary("ledge-node"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", &address])
        .args(["--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run ledge-node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started on a busy port: {stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen for Kafka clients on {address} (TCP)"
        )),
        "{stderr}"
    );
    // Refused before the data directory was touched.
    assert!(!data_dir.exists(), "data directory created");
}

#[test]
fn kafka_listener_can_be_turned_off() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[kafka]\nenabled = false\n".to_owned()),
        ..NodeOptions::default()
    });
    assert_eq!(node.kafka_addr, None);
    assert!(!node.log().contains("kafka listener up"));
}

/// A 3-node cluster from `cluster-init`: each node's Kafka listener on its own port, and
/// kcat's metadata from any node names every node's Kafka address and the leaders and ISRs
/// the controller placed; records produced through kcat (to each partition's leader, as
/// librdkafka routes them) are read back through another node's bootstrap.
#[test]
fn kafka_cluster_metadata_and_produce_through_the_leaders() {
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let cluster = crate::cluster_topics::Cluster::start();
    let kafka: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| {
            node.kafka_addr
                .expect("each node listens for Kafka")
                .to_string()
        })
        .collect();
    // cluster-init gives each node its QUIC port number on TCP.
    for (node, kafka) in cluster.nodes.iter().zip(&kafka) {
        assert_eq!(kafka, &node.addr.to_string());
    }
    cluster.ok(
        1,
        &[
            "topic",
            "create",
            "spread",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    let deadline = crate::cluster::now() + std::time::Duration::from_secs(60);
    let placement = loop {
        let placement = cluster.placement(2, "spread");
        let ready = placement.as_ref().is_some_and(|partitions| {
            partitions.len() == 3
                && partitions.iter().all(|partition| {
                    partition["leader"].as_u64().is_some()
                        && partition["isr"]
                            .as_array()
                            .is_some_and(|isr| isr.len() == 3)
                })
        });
        if ready {
            break placement.expect("checked");
        }
        assert!(crate::cluster::now() < deadline, "placement: {placement:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let listing = run_kcat(&kcat, &["-b", &kafka[1], "-L", "-J", "-t", "spread"], "");
    let metadata: serde_json::Value = serde_json::from_str(&listing).expect("kcat -J is JSON");
    let mut brokers: Vec<String> = metadata["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .map(|broker| broker["name"].as_str().expect("name").to_owned())
        .collect();
    brokers.sort();
    let mut expected = kafka.clone();
    expected.sort();
    assert_eq!(brokers, expected, "{listing}");
    let partitions = metadata["topics"][0]["partitions"]
        .as_array()
        .expect("partitions");
    assert_eq!(partitions.len(), 3, "{listing}");
    for partition in partitions {
        let index = partition["partition"].as_u64().expect("partition");
        let placed = placement
            .iter()
            .find(|placed| placed["partition"].as_u64() == Some(index))
            .expect("placed");
        assert_eq!(partition["leader"], placed["leader"], "{listing}");
        let mut isr: Vec<u64> = partition["isrs"]
            .as_array()
            .expect("isrs")
            .iter()
            .filter_map(|entry| entry["id"].as_u64())
            .collect();
        isr.sort_unstable();
        assert_eq!(isr, vec![1, 2, 3], "{listing}");
    }
    for partition in 0..3 {
        let lines: Vec<String> = (0..20).map(|n| format!("p{partition}-{n}")).collect();
        let part = partition.to_string();
        run_kcat(
            &kcat,
            &[
                "-b",
                &kafka[0],
                "-P",
                "-t",
                "spread",
                "-p",
                &part,
                "-X",
                "acks=all",
                "-X",
                "enable.idempotence=true",
            ],
            &(lines.join("\n") + "\n"),
        );
        let consumed = run_kcat(
            &kcat,
            &[
                "-b",
                &kafka[2],
                "-C",
                "-t",
                "spread",
                "-p",
                &part,
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            "",
        );
        assert_eq!(
            consumed.lines().collect::<Vec<_>>(),
            lines,
            "partition {partition}"
        );
    }
}
