//! Faust (faust-streaming, Python stream processing) against a node's Kafka listener: the
//! tutorial's app (`tests/kafka/faust_app.py`, an agent forwarding high-value orders and a
//! Table counting orders per customer) run as a worker by `tests/kafka/faust_scenarios.py`,
//! stopped and started again.
//!
//! Faust is installed by `.ci/run` into `target/kafka-venv` beside aiokafka, the client it
//! drives; there (`LEDGE_REQUIRE_KAFKA_CLIENTS=1`) a missing Faust fails the test, elsewhere
//! it is skipped out loud.

use std::process::Command;

use ledge_e2e::NodeProcess;

use crate::kafka_confluent_aiokafka::{python_with, workspace};

/// Runs `tests/kafka/faust_scenarios.py` against a fresh node, with `extra` arguments.
fn run_faust_scenarios(extra: &[&str]) {
    let Some(python) = python_with("faust, kafka") else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("faust-streaming is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: faust-streaming not installed (.ci/run installs it)");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let work_dir = tempfile::tempdir().expect("a directory for the Faust worker");
    let output = Command::new(python)
        .arg(workspace().join("tests/kafka/faust_scenarios.py"))
        .arg(kafka.to_string())
        .arg(work_dir.path())
        .args(extra)
        .output()
        .unwrap_or_else(|error| panic!("run faust_scenarios.py: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "faust_scenarios.py failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
}

// Goal (issue 14, client matrix): the tutorial's Faust app runs unchanged (but for its broker
// address) against Ledge: Faust creates its changelog, repartition and assignor topics
// through the admin API, the agent forwards exactly the orders above 1000, and the Table's
// changelog holds the per-customer counts. Every wait in the script is bounded (60 s); the
// run takes about 15 s.
#[test]
fn kafka_faust_tutorial_app_forwards_and_counts() {
    run_faust_scenarios(&[]);
}

// Goal: then the worker is stopped and started again: it recovers the table from the
// changelog (nothing counted again), and the orders sent once it is ready are counted on top
// of the recovered counts; every order forwarded and counted once, each in the repartition
// topic once. The orders are sent after the restart, not while the worker is stopped: a
// worker that restarts with a backlog races its own recovery (processes some orders twice
// or never) on Kafka's broker as on Ledge (docs/KAFKA-COMPAT.md, "Faust";
// `tests/kafka/faust_restart_race.py` tallies it on both). About 25 s.
#[test]
fn kafka_faust_restart_recovers_the_table_and_counts_once() {
    run_faust_scenarios(&["restart"]);
}
