//! franz-go's client integration test suite (`github.com/twmb/franz-go/pkg/kgo`, the version
//! pinned in `tests/kafka/franz-go/go.mod`) against a node's Kafka listener, judged by the
//! allow-list `tests/kafka/franz-go-allow.txt` through `tests/kafka/franz_go_suite.py`.
//!
//! `.ci/run` downloads franz-go from the Go module proxy and builds the suite's test binary
//! into `target/franz-go/kgo.test`, and sets `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there a missing
//! binary fails the test; elsewhere it is skipped out loud. CI runs the short version (the
//! allowed tests not marked slow, about 1 min); `LEDGE_FRANZ_GO_FULL=1` runs every test of
//! the package and reports the known failures that now pass (docs/KAFKA-COMPAT.md).

use std::path::PathBuf;
use std::process::Command;

use ledge_e2e::NodeProcess;

use crate::kafka_confluent_aiokafka::workspace;

/// The suite's test binary: `LEDGE_FRANZ_GO_TEST_BINARY`, else where `.ci/run` builds it.
fn suite_binary() -> Option<PathBuf> {
    let binary = std::env::var_os("LEDGE_FRANZ_GO_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/franz-go/kgo.test"));
    binary.is_file().then_some(binary)
}

// Goal (issue 14, client matrix): franz-go's own integration tests pass against Ledge, as
// far as the allow-list says; an allowed test that fails, is skipped or does not report
// fails this test. The short run's tests are bounded by Go's -test.timeout (4 min); they
// take about 1 min.
#[test]
fn kafka_franz_go_suite_allowed_tests_pass() {
    if suite_binary().is_none() {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("the franz-go test binary is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: the franz-go test binary is not built (.ci/run builds it)");
        return;
    }
    let mode = if std::env::var_os("LEDGE_FRANZ_GO_FULL").is_some_and(|value| value == "1") {
        "full"
    } else {
        "short"
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let output = Command::new("python3")
        .arg(workspace().join("tests/kafka/franz_go_suite.py"))
        .arg(kafka.to_string())
        .arg(mode)
        .output()
        .unwrap_or_else(|error| panic!("run franz_go_suite.py: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The verdict for each test, also when it passes (the full run's report).
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "franz_go_suite.py {mode} failed:\n{stdout}\n{stderr}\nnode log:\n{}",
        node.log()
    );
}
