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

fn ledge(node: &NodeProcess, args: &[&str]) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = ledge_e2e::run_cli(&full, None);
    (status.success(), stdout, stderr)
}

// Goal (issue 14: "a QUIC member and a Kafka member can be in one group"): a QUIC consumer
// (`ledge consume --group`) and a kafka-python consumer in one group share the partitions;
// when the QUIC member dies (killed, so only its session timeout removes it), the Kafka
// member is told to rejoin and gets every partition. Every wait is bounded (30 s for the
// QUIC member to join; 60 s per step in the script).
#[test]
fn kafka_python_and_a_quic_consumer_share_a_group() {
    use std::io::BufRead;
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
    let (created, _, stderr) = ledge(&node, &["topic", "create", "mixed-t", "--partitions", "4"]);
    assert!(created, "{stderr}");
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut quic_member = Command::new(ledge_e2e::binary("ledge"))
        .args(["--server", &address, "--ca", &ca])
        .args([
            "consume",
            "mixed-t",
            "--group",
            "mixed",
            "--session-timeout-ms",
            "3000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the QUIC consumer");
    // The QUIC member must be in first: a Kafka member alone would make a classic group.
    // At most 150 looks 200 ms apart (30 s).
    let joined = (0..150).any(|_| {
        let (_, listed, _) = ledge(&node, &["group", "list"]);
        let found = listed.contains("mixed");
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        found
    });
    assert!(joined, "the QUIC member never joined: {}", node.log());
    let mut kafka_member = Command::new(python)
        .arg(workspace().join("tests/kafka/kafka_python_mixed.py"))
        .args([kafka.to_string().as_str(), "mixed-t", "4", "mixed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the kafka-python consumer");
    let mut lines = std::io::BufReader::new(kafka_member.stdout.take().expect("piped")).lines();
    let shared = lines.next().and_then(Result::ok).unwrap_or_default();
    quic_member.kill().expect("kill the QUIC member");
    let _ = quic_member.wait();
    let all = lines.next().and_then(Result::ok).unwrap_or_default();
    let output = kafka_member
        .wait_with_output()
        .expect("wait for kafka-python");
    assert!(
        shared.starts_with("SHARED") && all.starts_with("ALL") && output.status.success(),
        "shared: {shared:?}, all: {all:?}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        node.log()
    );
}
