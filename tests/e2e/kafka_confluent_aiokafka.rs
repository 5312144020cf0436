//! confluent-kafka (librdkafka) and aiokafka against a node's Kafka listener, each running
//! its scenario script from `tests/kafka/`: an idempotent acks=all producer, a consumer
//! group (two members split the partitions, one leaves, the other takes over, every record
//! once, the commits seen by a new member), a manual commit, seeks (librdkafka validates a
//! seek with a leader epoch through OffsetForLeaderEpoch), a retried duplicate deduplicated
//! (aiokafka, through its protocol layer), and DeleteRecords.
//!
//! Both are installed by `.ci/run` into the venv `target/kafka-venv`, which sets
//! `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there a missing client fails the test; elsewhere it is
//! skipped out loud, as in `kafka_clients.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ledge_e2e::NodeProcess;

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A Python that imports `module`: `LEDGE_KAFKA_PYTHON`, else the venv `.ci/run` makes.
pub(crate) fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("LEDGE_KAFKA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/kafka-venv/bin/python"));
    let imports = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    imports.then_some(python)
}

/// Runs `script` against a fresh node with the Python that has `module`; fails with the
/// script's output and the node's log unless it ends with "OK".
fn run_scenarios(module: &str, script: &str) {
    let Some(python) = python_with(module) else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("{module} is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: {module} not installed (.ci/run installs it)");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let output = Command::new(python)
        .arg(workspace().join("tests/kafka").join(script))
        .arg(kafka.to_string())
        .output()
        .unwrap_or_else(|error| panic!("run {script}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "{script} failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
}

// Goal (issue 14, client matrix): confluent-kafka 2.x, whose bundled librdkafka is the
// client of most non-Java ecosystems, runs its producer, group consumer, manual commit,
// seek (with a leader epoch: OffsetForLeaderEpoch) and delete_records unchanged. Every
// wait in the script is bounded (60 s).
#[test]
fn kafka_confluent_kafka_scenarios() {
    run_scenarios("confluent_kafka", "confluent_kafka_scenarios.py");
}

// Goal (issue 14, client matrix): aiokafka 0.14 runs its producer, group consumer, manual
// commit, seeks and delete_records unchanged, and a batch retried with the same producer id,
// epoch and sequence is answered with its original offset and stored once. Every wait in
// the script is bounded (60 s).
#[test]
fn kafka_aiokafka_scenarios() {
    run_scenarios("aiokafka", "aiokafka_scenarios.py");
}

/// Runs one phase of `confluent_kafka_failover.py`; its stdout, after checking it ended
/// with "OK".
fn failover_phase(python: &Path, phase: &str, bootstrap: &str, topic: &str) -> String {
    let output = Command::new(python)
        .arg(workspace().join("tests/kafka/confluent_kafka_failover.py"))
        .args([phase, bootstrap, topic])
        .output()
        .unwrap_or_else(|error| panic!("run the {phase} phase: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "failover phase {phase} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The number after `label` on its line of `output`.
fn printed_epoch(output: &str, label: &str) -> i32 {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{output}"))
}

// Goal (KIP-320, DeleteRecords in a cluster): on 3 nodes, records deleted on the leader stay
// deleted after it dies (its followers followed its log start through their fetches), the
// new leader stamps a newer leader epoch, and a group member resumes at an offset committed
// under the old epoch: librdkafka validates it with OffsetForLeaderEpoch against the new
// leader's epoch history and keeps it (a wrong answer resets it to the earliest offset).
// Every wait is bounded (60 s for the placement and the election; 60 s per step in the
// script).
#[test]
fn kafka_delete_records_and_epochs_survive_a_failover() {
    let Some(python) = python_with("confluent_kafka") else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("confluent_kafka is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: confluent_kafka not installed (.ci/run installs it)");
        return;
    };
    let mut cluster = crate::cluster_topics::Cluster::start();
    let topic = "trimmed";
    cluster.ok(
        1,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
    );
    let leader_with_full_isr = |cluster: &crate::cluster_topics::Cluster, asked: u32| {
        cluster.placement(asked, topic).and_then(|partitions| {
            let partition = partitions.first()?;
            let full = partition["isr"].as_array()?.len() == 3;
            full.then(|| partition["leader"].as_u64()).flatten()
        })
    };
    let deadline = crate::cluster::now() + std::time::Duration::from_secs(60);
    let leader = loop {
        if let Some(leader) = leader_with_full_isr(&cluster, 1) {
            break u32::try_from(leader).expect("a node id");
        }
        assert!(
            crate::cluster::now() < deadline,
            "no leader with a full ISR"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let kafka: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.kafka_addr.expect("Kafka listener").to_string())
        .collect();
    let before = failover_phase(&python, "before", &kafka.join(","), topic);
    let old_epoch = printed_epoch(&before, "epoch before:");

    cluster.nodes[leader as usize - 1].kill9();
    let survivors: Vec<u32> = (1..=3).filter(|id| *id != leader).collect();
    let deadline = crate::cluster::now() + std::time::Duration::from_secs(60);
    loop {
        let elected = cluster
            .placement(survivors[0], topic)
            .is_some_and(|partitions| {
                partitions.first().is_some_and(|partition| {
                    partition["leader"]
                        .as_u64()
                        .is_some_and(|new| new != u64::from(leader))
                })
            });
        if elected {
            break;
        }
        assert!(crate::cluster::now() < deadline, "no new leader elected");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let bootstrap: Vec<&str> = survivors
        .iter()
        .map(|id| kafka[*id as usize - 1].as_str())
        .collect();
    let after = failover_phase(&python, "after", &bootstrap.join(","), topic);
    let new_epoch = printed_epoch(&after, "new leader's epoch:");
    assert!(
        new_epoch > old_epoch,
        "the new leader's epoch {new_epoch} is not newer than {old_epoch}:\n{after}"
    );
}
