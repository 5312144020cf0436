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

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A Python that imports `module`: `LEDGE_KAFKA_PYTHON`, else the venv `.ci/run` makes.
fn python_with(module: &str) -> Option<PathBuf> {
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
