//! Apache Kafka's own Java client and command-line tools (Kafka 4.1, pinned in
//! `tests/kafka/java/pom.xml`) against a node's Kafka listener: `kafka-topics`,
//! `kafka-configs`, `kafka-console-producer`/`-consumer`, `kafka-consumer-groups` and
//! `kafka-producer-perf-test`, run as their main classes with `java -cp 'lib/*'`.
//!
//! The jars are copied by `.ci/run` into `target/kafka-java/lib` (Maven's
//! `dependency:copy-dependencies`), which sets `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there missing
//! jars fail the test. Elsewhere they are reported out loud ("skipped: ...") and the test
//! returns. The Java client is the strictest one: it checks version floors, header versions
//! and tagged fields, and fails loudly on error codes it does not expect.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ledge_e2e::NodeProcess;

/// Set by `.ci/run`: the Kafka clients (these jars among them) must be installed.
const REQUIRE_CLIENTS: &str = "LEDGE_REQUIRE_KAFKA_CLIENTS";
/// A tool that has not finished by then is killed and fails the test. The tools' own
/// timeouts (the admin client's 60 s, the console consumer's `--timeout-ms`) come first.
const TOOL_RUN_MAX: Duration = Duration::from_secs(180);
/// The short differential run starts two servers and runs about 25 tools on each.
const DIFFERENTIAL_RUN_MAX: Duration = Duration::from_secs(600);
/// The Kafka version `tests/kafka/java/pom.xml` pins.
const KAFKA_VERSION: &str = "4.1.1";

/// The Kafka jars: `LEDGE_KAFKA_JAVA_LIB`, else where `.ci/run` copies them.
pub(crate) fn kafka_java_lib() -> Option<PathBuf> {
    let lib = std::env::var_os("LEDGE_KAFKA_JAVA_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ has a parent")
                .join("target/kafka-java/lib")
        });
    let has_tools = lib
        .join(format!("kafka-tools-{KAFKA_VERSION}.jar"))
        .is_file();
    let java_runs = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    (has_tools && java_runs).then_some(lib)
}

/// What one tool run printed.
pub(crate) struct ToolRun {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the tool whose main class is `class` with `args` (and `stdin`), in a small JVM (the
/// machine's cores are shared), killing it after [`TOOL_RUN_MAX`].
pub(crate) fn tool(lib: &Path, class: &str, args: &[&str], stdin: &str) -> ToolRun {
    let mut command = Command::new("java");
    command
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-cp")
        .arg(lib.join("*"))
        .arg(class)
        .args(args);
    let run = run_bounded(command, stdin, TOOL_RUN_MAX);
    assert!(
        run.success.is_some(),
        "{class} {args:?} still running after {TOOL_RUN_MAX:?}:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    ToolRun {
        success: run.success == Some(true),
        stdout: run.stdout,
        stderr: run.stderr,
    }
}

/// What a bounded run printed; `success` is `None` if it was stopped at its deadline.
struct BoundedRun {
    success: Option<bool>,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `stdin`; past `run_max` it gets SIGTERM (so a script can stop what
/// it started), then SIGKILL.
fn run_bounded(mut command: Command, stdin: &str, run_max: Duration) -> BoundedRun {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let started = crate::cluster::now();
    let success = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status.success());
        }
        if started.elapsed() > run_max {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let terminated = crate::cluster::now();
            while terminated.elapsed() < Duration::from_secs(30)
                && child.try_wait().ok().flatten().is_none()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    BoundedRun {
        success,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs a tool that must succeed; its stdout.
pub(crate) fn tool_ok(
    node: &NodeProcess,
    lib: &Path,
    class: &str,
    args: &[&str],
    stdin: &str,
) -> String {
    let run = tool(lib, class, args, stdin);
    assert!(
        run.success,
        "{class} {args:?} failed:\n{}\n{}\nnode log:\n{}",
        run.stdout,
        run.stderr,
        node.log()
    );
    run.stdout
}

pub(crate) const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "kafka.admin.ConfigCommand";
pub(crate) const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
pub(crate) const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const PRODUCER_PERF: &str = "org.apache.kafka.tools.ProducerPerformance";
const OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const TRANSACTIONS: &str = "org.apache.kafka.tools.TransactionsCommand";

/// The rows of a `kafka-consumer-groups --describe` table for `topic`, split on whitespace.
fn group_rows(table: &str, topic: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|fields| fields.get(1).is_some_and(|field| field == topic))
        .collect()
}

/// `kafka-topics --create/--describe/--list` with `--config cleanup.policy=compact`, then
/// `kafka-configs --alter --add-config` and `--delete-config`, each read back by
/// `kafka-configs --describe` and `kafka-topics --describe`.
#[test]
fn kafka_java_topics_and_configs() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default")
        .to_string();
    let bootstrap = ["--bootstrap-server", kafka.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> {
        bootstrap
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect()
    };

    let created = tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&[
            "--create",
            "--topic",
            "compacted",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "cleanup.policy=compact",
        ]),
        "",
    );
    assert!(created.contains("Created topic compacted."), "{created}");
    // Creating it again is Kafka's TopicExistsException, reported by the tool.
    let again = tool(
        &lib,
        TOPICS,
        &with(&["--create", "--topic", "compacted", "--partitions", "3"]),
        "",
    );
    assert!(!again.success, "{}", again.stdout);
    assert!(
        again.stdout.contains("already exists") || again.stderr.contains("already exists"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );

    let listed = tool_ok(&node, &lib, TOPICS, &with(&["--list"]), "");
    assert!(listed.lines().any(|line| line == "compacted"), "{listed}");

    let described = tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--describe", "--topic", "compacted"]),
        "",
    );
    let summary = described.lines().next().unwrap_or_default();
    assert!(summary.starts_with("Topic: compacted\t"), "{described}");
    assert!(summary.contains("PartitionCount: 3"), "{described}");
    assert!(summary.contains("ReplicationFactor: 1"), "{described}");
    assert!(summary.contains("cleanup.policy=compact"), "{described}");
    for partition in 0..3 {
        assert!(
            described.contains(&format!(
                "Topic: compacted\tPartition: {partition}\tLeader: 1\tReplicas: 1\tIsr: 1"
            )),
            "partition {partition}: {described}"
        );
    }

    let altered = tool_ok(
        &node,
        &lib,
        CONFIGS,
        &with(&[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "compacted",
            "--add-config",
            "retention.ms=3600000,min.cleanable.dirty.ratio=0.2",
        ]),
        "",
    );
    assert!(
        altered.contains("Completed updating config for topic compacted."),
        "{altered}"
    );
    let describe_configs = with(&[
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        "compacted",
    ]);
    let configs = tool_ok(&node, &lib, CONFIGS, &describe_configs, "");
    for entry in [
        "cleanup.policy=compact",
        "retention.ms=3600000",
        "min.cleanable.dirty.ratio=0.2",
    ] {
        assert!(
            configs
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{entry} "))),
            "{entry}: {configs}"
        );
    }

    // --delete-config takes one key away and keeps the others (IncrementalAlterConfigs).
    tool_ok(
        &node,
        &lib,
        CONFIGS,
        &with(&[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "compacted",
            "--delete-config",
            "retention.ms",
        ]),
        "",
    );
    let configs = tool_ok(&node, &lib, CONFIGS, &describe_configs, "");
    assert!(!configs.contains("retention.ms="), "{configs}");
    assert!(configs.contains("cleanup.policy=compact "), "{configs}");

    // --alter --partitions grows the topic (CreatePartitions).
    tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--alter", "--topic", "compacted", "--partitions", "4"]),
        "",
    );
    let described = tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--describe", "--topic", "compacted"]),
        "",
    );
    assert!(described.contains("PartitionCount: 4"), "{described}");

    tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--delete", "--topic", "compacted"]),
        "",
    );
}

/// `kafka-console-producer` with keys and acks=all, `kafka-console-consumer` in a group,
/// `kafka-consumer-groups --list/--describe/--reset-offsets` (to an offset and to the
/// earliest), a second console consumer resuming from the reset offset, and
/// `kafka-producer-perf-test` (idempotent, acks=all) counted by `kafka-get-offsets`.
#[test]
fn kafka_java_console_groups_and_perf_test() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default")
        .to_string();
    let bootstrap = ["--bootstrap-server", kafka.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> {
        bootstrap
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect()
    };
    tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--create", "--topic", "lines", "--partitions", "1"]),
        "",
    );

    tool_ok(
        &node,
        &lib,
        CONSOLE_PRODUCER,
        &with(&[
            "--topic",
            "lines",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--producer-property",
            "acks=all",
        ]),
        "k1:one\nk2:two\nk3:three\n",
    );
    let consume = |max: &'static str| {
        tool_ok(
            &node,
            &lib,
            CONSOLE_CONSUMER,
            &with(&[
                "--topic",
                "lines",
                "--group",
                "readers",
                "--from-beginning",
                "--max-messages",
                max,
                "--timeout-ms",
                "60000",
                "--property",
                "print.key=true",
                "--property",
                "print.offset=true",
            ]),
            "",
        )
    };
    let consumed = consume("3");
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        [
            "Offset:0\tk1\tone",
            "Offset:1\tk2\ttwo",
            "Offset:2\tk3\tthree"
        ],
        "{consumed}"
    );

    let groups = tool_ok(&node, &lib, CONSUMER_GROUPS, &with(&["--list"]), "");
    assert!(groups.lines().any(|line| line == "readers"), "{groups}");
    let describe = with(&["--describe", "--group", "readers"]);
    let table = tool_ok(&node, &lib, CONSUMER_GROUPS, &describe, "");
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...: committed at the end.
    assert_eq!(
        group_rows(&table, "lines")
            .iter()
            .map(|row| row[..6].join(" "))
            .collect::<Vec<_>>(),
        ["readers lines 0 3 3 0"],
        "{table}"
    );
    let state = tool_ok(
        &node,
        &lib,
        CONSUMER_GROUPS,
        &with(&["--describe", "--group", "readers", "--state"]),
        "",
    );
    assert!(
        state
            .lines()
            .any(|line| line.starts_with("readers ") && line.contains("Empty")),
        "{state}"
    );

    let reset = tool_ok(
        &node,
        &lib,
        CONSUMER_GROUPS,
        &with(&[
            "--reset-offsets",
            "--group",
            "readers",
            "--topic",
            "lines",
            "--to-offset",
            "1",
            "--execute",
        ]),
        "",
    );
    assert!(
        reset
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["readers", "lines", "0", "1"]),
        "{reset}"
    );
    let table = tool_ok(&node, &lib, CONSUMER_GROUPS, &describe, "");
    assert_eq!(
        group_rows(&table, "lines")
            .iter()
            .map(|row| row[..6].join(" "))
            .collect::<Vec<_>>(),
        ["readers lines 0 1 3 2"],
        "{table}"
    );
    // The group resumes from the reset offset (--from-beginning applies only without one).
    let resumed = consume("2");
    assert_eq!(
        resumed.lines().collect::<Vec<_>>(),
        ["Offset:1\tk2\ttwo", "Offset:2\tk3\tthree"],
        "{resumed}"
    );
    // A dry run to the earliest offset shows the plan and changes nothing.
    let plan = tool_ok(
        &node,
        &lib,
        CONSUMER_GROUPS,
        &with(&[
            "--reset-offsets",
            "--group",
            "readers",
            "--all-topics",
            "--to-earliest",
            "--dry-run",
        ]),
        "",
    );
    assert!(
        plan.lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>()
                == ["readers", "lines", "0", "0"]),
        "{plan}"
    );
    let table = tool_ok(&node, &lib, CONSUMER_GROUPS, &describe, "");
    assert_eq!(
        group_rows(&table, "lines")
            .iter()
            .map(|row| row[..6].join(" "))
            .collect::<Vec<_>>(),
        ["readers lines 0 3 3 0"],
        "{table}"
    );

    // The perf test: the Java producer's defaults (idempotence on, acks=all, lz4 off),
    // 2,000 records over two partitions; every one lands.
    tool_ok(
        &node,
        &lib,
        TOPICS,
        &with(&["--create", "--topic", "perf", "--partitions", "2"]),
        "",
    );
    let brokers = format!("bootstrap.servers={kafka}");
    let perf = tool_ok(
        &node,
        &lib,
        PRODUCER_PERF,
        &[
            "--topic",
            "perf",
            "--num-records",
            "2000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &brokers,
            "acks=all",
        ],
        "",
    );
    assert!(perf.contains("2000 records sent"), "{perf}");
    let offsets = tool_ok(
        &node,
        &lib,
        OFFSETS,
        &with(&["--topic", "perf", "--time", "-1"]),
        "",
    );
    let total: i64 = offsets
        .lines()
        .filter_map(|line| line.rsplit(':').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(total, 2000, "{offsets}");

    // `kafka-transactions describe-producers` (DescribeProducers): the perf test's one
    // idempotent producer on each partition, its last sequence the partition's record count
    // less one, a real timestamp, no coordinator epoch and no open transaction.
    let mut written = 0;
    for partition in ["0", "1"] {
        let described = tool_ok(
            &node,
            &lib,
            TRANSACTIONS,
            &with(&[
                "describe-producers",
                "--topic",
                "perf",
                "--partition",
                partition,
            ]),
            "",
        );
        let rows: Vec<Vec<&str>> = described
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect())
            .filter(|fields: &Vec<&str>| !fields.is_empty())
            .collect();
        // The perf tool's sticky partitioner may put all 2,000 records in one partition:
        // then the other has no producer (the sum below still counts every record).
        assert!(rows.len() <= 1, "at most one producer:\n{described}");
        let Some(row) = rows.first() else {
            continue;
        };
        assert_eq!(row.len(), 6, "{described}");
        assert_eq!((row[1], row[2], row[5]), ("0", "-1", "None"), "{described}");
        assert!(
            row[4].parse::<i64>().is_ok_and(|time| time > 0),
            "{described}"
        );
        written += row[3].parse::<i64>().expect("a sequence") + 1;
    }
    assert_eq!(written, 2000);

    // Fetch sessions (KIP-227): the console consumer reads the 2,000 records one batch per
    // partition per fetch (max.partition.fetch.bytes=1), so it fetches several times. Its
    // first fetch opens a session, the later ones are incremental, and on close it sends
    // FINAL; the node logs the session's incremental fetch count when it closes.
    let consumed = tool_ok(
        &node,
        &lib,
        CONSOLE_CONSUMER,
        &with(&[
            "--topic",
            "perf",
            "--group",
            "perf-readers",
            "--from-beginning",
            "--max-messages",
            "2000",
            "--timeout-ms",
            "60000",
            "--consumer-property",
            "max.partition.fetch.bytes=1",
        ]),
        "",
    );
    assert_eq!(consumed.lines().count(), 2000);
    let log = node.log();
    let incremental: Vec<u64> = log
        .lines()
        .filter(|line| line.contains("kafka fetch session closed") && line.contains("reason=Final"))
        .filter_map(|line| {
            let (_, count) = line.split_once("incremental_fetches=")?;
            count.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert!(
        incremental.iter().any(|count| *count >= 2),
        "the Java consumer's session closed after incremental fetches: {incremental:?}\nnode log:\n{log}"
    );
}

/// The short differential run (`tests/kafka/differential.py --short`): kafka-topics,
/// kafka-configs, kafka-producer-perf-test and a producer to a missing topic (created by its
/// Metadata) against this node and against a real Kafka 4.1
/// broker (single-node KRaft on loopback, from the same jars), with every difference either
/// equal after normalizing or one of the script's known differences (docs/KAFKA-COMPAT.md).
#[test]
fn kafka_java_differential_short() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    let mut command = Command::new("python3");
    command
        .arg(workspace.join("tests/kafka/differential.py"))
        .arg("--short")
        .arg("--lib")
        .arg(&lib)
        .arg("--ledge-node")
        .arg(ledge_e2e::binary("ledge-node"));
    let run = run_bounded(command, "", DIFFERENTIAL_RUN_MAX);
    assert!(
        run.success == Some(true) && run.stdout.contains(" same, 0 different"),
        "differential run ({:?}):\n{}\n{}",
        run.success,
        run.stdout,
        run.stderr
    );
}

/// Reports missing jars: a failure where `.ci/run` installed them, else a loud skip.
pub(crate) fn missing(client: &str) {
    if std::env::var_os(REQUIRE_CLIENTS).is_some_and(|value| value == "1") {
        panic!("{client} missing and {REQUIRE_CLIENTS}=1: .ci/run should have installed them");
    }
    eprintln!("skipped: {client} not installed (.ci/run installs them)");
}

/// Longest wait for one line of `Kip848Group.java` (its own steps time out after 60 s).
const KIP848_LINE_MAX: Duration = Duration::from_secs(120);

// Goal (issue 14, KIP-848 over the Kafka wire): Kafka 4.1's Java consumer with
// `group.protocol=consumer` (ConsumerGroupHeartbeat, server-side assignment) joins a group
// alone and reads everything; a second one joins and the partitions split (each owned
// once), which `kafka-consumer-groups --describe` (ConsumerGroupDescribe) shows with offsets,
// members and state; the second leaves and the first takes over; a native QUIC member
// (`ledge consume --group`) joins the same group and takes partitions from the Java member,
// which gets them back once the QUIC member is killed; every record is read, and the
// commits leave no lag. `tests/kafka/java/Kip848Group.java` is compiled here with javac.
#[test]
fn kafka_java_kip848_consumer_group() {
    use std::io::BufRead;
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java client");
        return;
    };
    let node = NodeProcess::start();
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default")
        .to_string();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let classes = lib
        .parent()
        .expect("lib has a parent")
        .join("kip848-classes");
    let compiled = Command::new("javac")
        .arg("-cp")
        .arg(lib.join("*"))
        .arg("-d")
        .arg(&classes)
        .arg(workspace.join("tests/kafka/java/Kip848Group.java"))
        .output()
        .expect("run javac");
    assert!(
        compiled.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let ledge = |args: &[&str]| {
        let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
        full.extend_from_slice(args);
        ledge_e2e::run_cli(&full, None)
    };
    let (created, _, stderr) = ledge(&["topic", "create", "kip848", "--partitions", "4"]);
    assert!(created.success(), "{stderr}");

    let class_path = std::env::join_paths([lib.join("*"), classes.clone()]).expect("class path");
    let mut java = Command::new("java")
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-cp")
        .arg(&class_path)
        .args(["Kip848Group", kafka.as_str(), "kip848", "4", "kip848-group"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Java consumers");
    let mut to_java = java.stdin.take().expect("piped stdin");
    // Java's stdout and stderr lines, in one channel (stderr ones marked), so a failure shows
    // both in order.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(java.stdout.take().expect("piped stdout"));
    let stdout_tx = lines_tx.clone();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if stdout_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::io::BufReader::new(java.stderr.take().expect("piped stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(format!("STDERR {line}")).is_err() {
                break;
            }
        }
    });
    let mut transcript = Vec::new();
    let started = crate::cluster::now();
    // The next line starting with `prefix` (after any PRODUCED lines); on anything else, or
    // silence, the test fails with the transcript, Java's stderr and the node's log.
    let mut next = |prefix: &str, java: &mut std::process::Child| -> String {
        loop {
            let line = lines.recv_timeout(KIP848_LINE_MAX).ok();
            if let Some(line) = &line {
                // With --nocapture: when each step happened.
                eprintln!("{:>7.1} s  {line}", started.elapsed().as_secs_f64());
                transcript.push(line.clone());
                if line.starts_with(prefix) {
                    return line.clone();
                }
                if line.starts_with("PRODUCED") || line.starts_with("STDERR") {
                    continue;
                }
            }
            let _ = java.kill();
            let _ = java.wait();
            panic!(
                "expected {prefix}, got {line:?}; so far {transcript:?}\nnode log:\n{}",
                node.log()
            );
        }
    };
    assert_eq!(next("A_ALL", &mut java), "A_ALL 4 40");
    assert_eq!(next("SPLIT", &mut java), "SPLIT 2 2 WAIT");

    let group = [
        "--bootstrap-server",
        kafka.as_str(),
        "--group",
        "kip848-group",
    ];
    let describe = |extra: &[&str]| {
        let mut args = vec!["--describe"];
        args.extend_from_slice(&group);
        args.extend_from_slice(extra);
        tool_ok(&node, &lib, CONSUMER_GROUPS, &args, "")
    };
    let offsets = describe(&[]);
    let rows = group_rows(&offsets, "kip848");
    assert_eq!(rows.len(), 4, "{offsets}");
    let owners: std::collections::BTreeSet<&str> =
        rows.iter().map(|row| row[row.len() - 1].as_str()).collect();
    assert_eq!(
        owners,
        ["kip848-a", "kip848-b"].into(),
        "each partition listed with its member's client id:\n{offsets}"
    );
    let members = describe(&["--members", "--verbose"]);
    let member_rows: Vec<&str> = members
        .lines()
        .filter(|line| line.starts_with("kip848-group "))
        .collect();
    assert_eq!(member_rows.len(), 2, "{members}");
    assert!(
        member_rows.iter().all(|row| row.contains("kip848:")),
        "each member's assignment is listed:\n{members}"
    );
    let state = describe(&["--state"]);
    assert!(
        state.contains("Stable") && state.contains("cooperative-sticky"),
        "{state}"
    );
    writeln!(to_java, "go").expect("tell Java to go on");

    assert_eq!(next("TAKEOVER", &mut java), "TAKEOVER 4 60");
    assert_eq!(next("QUIC", &mut java), "QUIC WAIT");
    let mut quic_member = Command::new(ledge_e2e::binary("ledge"))
        .args(["--server", &address, "--ca", &ca])
        .args([
            "consume",
            "kip848",
            "--group",
            "kip848-group",
            "--session-timeout-ms",
            "3000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the QUIC member");
    writeln!(to_java, "go").expect("tell Java to go on");
    let shared = next("SHARED", &mut java);
    quic_member.kill().expect("kill the QUIC member");
    let _ = quic_member.wait();
    assert!(
        ["SHARED 1 WAIT", "SHARED 2 WAIT", "SHARED 3 WAIT"].contains(&shared.as_str()),
        "{shared}"
    );
    writeln!(to_java, "go").expect("tell Java to go on");
    assert_eq!(next("ALL_BACK", &mut java), "ALL_BACK 4 80");
    assert_eq!(next("DONE", &mut java), "DONE");
    drop(to_java);
    let status = java.wait().expect("wait for Java");
    assert!(status.success(), "Java exited with {status}");

    // Every partition committed at its end: no lag.
    let offsets = describe(&[]);
    let rows = group_rows(&offsets, "kip848");
    assert_eq!(rows.len(), 4, "{offsets}");
    let committed: i64 = rows
        .iter()
        .map(|row| {
            assert_eq!(row[3], row[4], "committed = log end:\n{offsets}");
            assert_eq!(row[5], "0", "no lag:\n{offsets}");
            row[3].parse::<i64>().expect("an offset")
        })
        .sum();
    assert_eq!(committed, 80, "{offsets}");
}
