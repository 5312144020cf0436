//! The tutorial's consumer group with kafka-python 3, unmodified, against a node's Kafka
//! listener (`tests/kafka/kafka_python_groups.py`): two consumers in one group split the
//! partitions, one leaves and the other takes over from the committed offsets, every record
//! is consumed exactly once, and the commits survive the consumers.
//!
//! kafka-python is installed by `.ci/run` (a venv under `target/`), which sets
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

// Goal (issue 14): kafka-python's group consumers work unchanged against the classic group
// protocol: a split of the partitions, a takeover after one leaves, exactly-once
// consumption with synchronous commits, and committed offsets that a new member and the
// admin client both see. The script bounds every wait (60 s) and exits non-zero on failure.
#[test]
fn kafka_python_consumer_group() {
    let Some(python) = kafka_python() else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("kafka-python is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: kafka-python not installed (.ci/run installs it)");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let output = Command::new(python)
        .arg(workspace().join("tests/kafka/kafka_python_groups.py"))
        .arg(kafka.to_string())
        .output()
        .expect("run the kafka-python group scenario");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "kafka-python group scenario failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
}
