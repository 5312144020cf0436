//! The `ledge` CLI as a user runs it: topic round trip, produce from stdin, consume as JSON,
//! and the errors a newcomer is likely to hit.

use std::process::{Command, Stdio};

use ledge_client::partitioner::partition_for_key;
use ledge_e2e::{NodeProcess, binary, run_cli};

/// Runs `ledge` against `node` with `args`; returns (success, stdout, stderr).
fn ledge(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, stdin);
    (status.success(), stdout, stderr)
}

/// Runs `ledge` and requires success.
pub(crate) fn ok(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> String {
    let (success, stdout, stderr) = ledge(node, args, stdin);
    assert!(success, "ledge {args:?} failed:\n{stderr}");
    stdout
}

/// Runs `ledge` and requires one readable error line and a non-zero exit.
pub(crate) fn fails(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> String {
    let (success, _, stderr) = ledge(node, args, stdin);
    assert!(!success, "ledge {args:?} should have failed");
    let stderr = stderr.trim().to_string();
    assert!(
        stderr.starts_with("error: "),
        "not an error line: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr:?}");
    stderr
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Goal: every topic command works and says what it did; produce and consume round-trip keys,
/// values and partitions. Method: the commands of the README in order, checking their output.
#[test]
fn topic_produce_consume_round_trip() {
    let node = NodeProcess::start();

    let created = ok(
        &node,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    );
    assert!(
        created.contains("Created topic orders with 2 partitions"),
        "{created}"
    );

    let listed = ok(&node, &["topic", "list"], None);
    assert!(
        listed.contains("TOPIC") && listed.contains("orders"),
        "{listed}"
    );
    let listed = json(&ok(&node, &["topic", "list", "--format", "json"], None));
    let orders = listed
        .as_array()
        .and_then(|topics| topics.iter().find(|topic| topic["topic"] == "orders"))
        .unwrap_or_else(|| panic!("orders not listed: {listed}"));
    assert_eq!(orders["partitions"], 2);

    let altered = ok(
        &node,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "retention.bytes=1048576",
            "--delete-config",
            "retention.ms",
        ],
        None,
    );
    assert!(altered.contains("Updated topic orders"), "{altered}");

    let produced = ledge(
        &node,
        &["produce", "orders", "--key-separator", ":"],
        Some("alice:1\nbob:2\ncarol:3\nalice:4\n"),
    );
    assert!(produced.0, "produce failed: {}", produced.2);
    assert!(
        produced.2.contains("Produced 4 records to orders"),
        "{}",
        produced.2
    );

    let described = ok(&node, &["topic", "describe", "orders"], None);
    assert!(
        described.contains("START OFFSET") && described.contains("retention.bytes"),
        "{described}"
    );
    let described = json(&ok(
        &node,
        &["topic", "describe", "orders", "--format", "json"],
        None,
    ));
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2);
    let records: i64 = partitions
        .iter()
        .map(|partition| {
            partition["end_offset"].as_i64().unwrap() - partition["start_offset"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(records, 4);
    let config = |name: &str| {
        described["configs"]
            .as_array()
            .and_then(|configs| configs.iter().find(|config| config["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("config {name} missing: {described}"))
    };
    assert_eq!(config("retention.bytes")["value"], "1048576");
    assert_eq!(config("retention.bytes")["default"], false);
    assert_eq!(config("retention.ms")["default"], true);

    let consumed = ok(
        &node,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--format",
            "json",
            "--max-messages",
            "4",
        ],
        None,
    );
    let lines: Vec<serde_json::Value> = consumed.lines().map(json).collect();
    assert_eq!(lines.len(), 4, "{consumed}");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in &lines {
        let key = line["key"].as_str().expect("key").to_string();
        let value = line["value"].as_str().expect("value").to_string();
        assert_eq!(line["topic"], "orders");
        assert_eq!(
            line["partition"].as_u64(),
            Some(u64::from(partition_for_key(key.as_bytes(), 2))),
            "{line}"
        );
        assert!(
            line["offset"].is_i64() && line["timestamp"].is_i64(),
            "{line}"
        );
        assert_eq!(line["headers"], serde_json::json!([]));
        pairs.push((key, value));
    }
    pairs.sort();
    let expected: Vec<(String, String)> =
        [("alice", "1"), ("alice", "4"), ("bob", "2"), ("carol", "3")]
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
    assert_eq!(pairs, expected);
    // The same key keeps its order within its partition.
    let alice: Vec<&str> = lines
        .iter()
        .filter(|line| line["key"] == "alice")
        .map(|line| line["value"].as_str().unwrap())
        .collect();
    assert_eq!(alice, vec!["1", "4"]);

    let text = ok(
        &node,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--print-key",
            "--timeout-ms",
            "1000",
        ],
        None,
    );
    let mut text_lines: Vec<&str> = text.lines().collect();
    text_lines.sort();
    assert_eq!(
        text_lines,
        vec!["alice\t1", "alice\t4", "bob\t2", "carol\t3"]
    );

    let from_offset = ok(
        &node,
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--offset",
            "1",
            "--timeout-ms",
            "500",
        ],
        None,
    );
    let partition_zero = partitions[0]["end_offset"].as_i64().unwrap();
    assert_eq!(
        from_offset.lines().count() as i64,
        (partition_zero - 1).max(0)
    );

    let deleted = ok(&node, &["topic", "delete", "orders"], None);
    assert!(deleted.contains("Deleted topic orders"), "{deleted}");
    let listed = ok(&node, &["topic", "list", "--format", "json"], None);
    assert!(!listed.contains("\"orders\""), "{listed}");
}

/// Goal: the mistakes a new user makes get one clear line and a non-zero exit, not a panic or
/// a stack of debug output. Method: run each mistake and read the message.
#[test]
fn errors_are_one_readable_line() {
    let node = NodeProcess::start();
    ok(&node, &["topic", "create", "present"], None);

    let error = fails(
        &node,
        &[
            "consume",
            "absent",
            "--from-beginning",
            "--timeout-ms",
            "100",
        ],
        None,
    );
    assert!(
        error.contains("absent") && error.contains("does not exist"),
        "{error}"
    );
    let error = fails(&node, &["produce", "absent"], Some("x\n"));
    assert!(
        error.contains("absent") && error.contains("does not exist"),
        "{error}"
    );
    let error = fails(&node, &["topic", "describe", "absent"], None);
    assert!(error.contains("does not exist"), "{error}");
    // A refused session timeout is said once, on one line (the SDK also logged it as a
    // warning, so the CLI printed it twice).
    let error = fails(
        &node,
        &[
            "consume",
            "present",
            "--group",
            "g",
            "--session-timeout-ms",
            "1",
            "--timeout-ms",
            "1000",
        ],
        None,
    );
    assert_eq!(error.matches("session timeout").count(), 1, "{error}");
    let error = fails(&node, &["topic", "create", "present"], None);
    assert!(error.contains("already exists"), "{error}");
    let error = fails(&node, &["topic", "create", "bad/name"], None);
    assert!(error.contains("bad/name"), "{error}");
    let error = fails(
        &node,
        &["topic", "create", "t2", "--config", "retention.ms=soon"],
        None,
    );
    assert!(error.contains("retention.ms"), "{error}");
    let error = fails(
        &node,
        &["produce", "present", "--key-separator", ":"],
        Some("no separator\n"),
    );
    assert!(
        error.contains("line 1") && error.contains("\":\""),
        "{error}"
    );
    let error = fails(
        &node,
        &[
            "consume",
            "present",
            "--partition",
            "7",
            "--timeout-ms",
            "100",
        ],
        None,
    );
    assert!(error.contains("partition 7"), "{error}");
    let error = fails(
        &node,
        &[
            "consume",
            "present",
            "--offset",
            "50",
            "--timeout-ms",
            "2000",
        ],
        None,
    );
    assert!(error.contains("out of range"), "{error}");

    // Malformed arguments are clap's usage errors (exit status 2), naming the expected form.
    let (status, _, stderr) = run_cli(&["topic", "create", "t", "--config", "retention.ms"], None);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");

    // No CA anywhere: the error says how to fix it.
    let empty = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(binary("ledge"))
        .args(["--server", &node.addr.to_string(), "topic", "list"])
        .current_dir(empty.path())
        .env_remove("LEDGE_CA")
        .stdin(Stdio::null())
        .output()
        .expect("run ledge");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--ca") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let (status, _, stderr) = run_cli(
        &[
            "--server",
            &node.addr.to_string(),
            "--ca",
            "/nonexistent/ca.pem",
            "topic",
            "list",
        ],
        None,
    );
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");

    // --insecure is the explicit way around verification.
    let (status, stdout, stderr) = run_cli(
        &[
            "--server",
            &node.addr.to_string(),
            "--insecure",
            "topic",
            "list",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("present"), "{stdout}");
}

/// Goal: the README's plug-in walkthrough works from the CLI: deploy a transform, see it in
/// `list` and `describe`, upload a module and consume through it, and get one clear error
/// line for the usual mistakes.
#[test]
fn plugin_commands_deploy_describe_and_filter_on_consume() {
    let node = NodeProcess::start();
    let module = |name: &str| {
        let path =
            std::env::temp_dir().join(format!("ledge-cli-{}-{name}.wasm", std::process::id()));
        std::fs::write(&path, ledge_e2e::filter_module(name)).expect("write module");
        path.to_string_lossy().into_owned()
    };
    let high_value = module("high_value_orders");
    let uppercase = module("uppercase");
    ok(
        &node,
        &["topic", "create", "orders", "--partitions", "1"],
        None,
    );
    let deployed = ok(
        &node,
        &[
            "transform",
            "deploy",
            "high-value",
            "--module",
            &high_value,
            "--kind",
            "filter",
            "--input",
            "orders",
            "--output",
            "orders.high-value",
            "--param",
            "threshold=1000",
        ],
        None,
    );
    assert!(
        deployed.contains("high-value version 1: orders -> orders.high-value"),
        "{deployed}"
    );
    ok(
        &node,
        &["produce", "orders", "--key-separator", ":"],
        Some("a:{\"id\":1,\"amount\":1500}\nb:{\"id\":2,\"amount\":20}\nc:oops\n"),
    );
    let mut described = serde_json::Value::Null;
    for _ in 0..100 {
        described = json(&ok(
            &node,
            &["transform", "describe", "high-value", "--format", "json"],
            None,
        ));
        if described["lag"] == 0 && described["records_in"] == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(described["records_out"], 1, "{described}");
    assert_eq!(described["records_dead"], 1, "{described}");
    let listed = ok(&node, &["transform", "list"], None);
    assert!(
        listed.contains("high-value") && listed.contains("running"),
        "{listed}"
    );
    let text = ok(&node, &["transform", "describe", "high-value"], None);
    assert!(
        text.contains("Last error:") && text.contains("not JSON"),
        "{text}"
    );
    let high = ok(
        &node,
        &[
            "consume",
            "orders.high-value",
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "5000",
        ],
        None,
    );
    assert!(high.contains("1500"), "{high}");

    ok(
        &node,
        &[
            "module", "upload", "upper", "--module", &uppercase, "--kind", "map",
        ],
        None,
    );
    let modules = ok(&node, &["module", "list"], None);
    assert!(
        modules.contains("upper") && modules.contains("map"),
        "{modules}"
    );
    ok(
        &node,
        &["topic", "create", "words", "--partitions", "1"],
        None,
    );
    ok(&node, &["produce", "words"], Some("hello\nedge\n"));
    let shouted = ok(
        &node,
        &[
            "consume",
            "words",
            "--from-beginning",
            "--filter",
            "upper",
            "--max-messages",
            "2",
            "--timeout-ms",
            "5000",
        ],
        None,
    );
    assert_eq!(
        shouted.lines().collect::<Vec<_>>(),
        ["HELLO", "EDGE"],
        "{shouted}"
    );

    let error = fails(
        &node,
        &[
            "consume",
            "words",
            "--filter",
            "nope",
            "--timeout-ms",
            "1000",
        ],
        None,
    );
    assert!(error.contains("no module named \"nope\""), "{error}");
    let error = fails(
        &node,
        &[
            "module",
            "upload",
            "x",
            "--module",
            "/nonexistent.wasm",
            "--kind",
            "map",
        ],
        None,
    );
    assert!(error.contains("/nonexistent.wasm"), "{error}");
    let error = fails(
        &node,
        &[
            "transform",
            "deploy",
            "t",
            "--module",
            &uppercase,
            "--kind",
            "filter",
            "--input",
            "words",
        ],
        None,
    );
    assert!(error.contains("no `ledge_filter` export"), "{error}");
    ok(&node, &["transform", "remove", "high-value"], None);
    assert!(!ok(&node, &["transform", "list"], None).contains("high-value"));
}

/// Goal: `produce` fits its batches and records to the topic's max.message.bytes (issue 11,
/// bugs 5): 900-byte lines to a 60,000-byte topic all land (the producer used to grow batches
/// to 512 KiB and have them refused), a 2 MiB line lands in a topic allowing 4 MiB (the CLI
/// used to stop at the SDK's 1 MiB), and a record too large names what to change in CLI
/// terms. Method: real node and CLI; counts read back with `topic describe --format json`.
#[test]
fn produce_fits_records_and_batches_to_the_topics_size_limit() {
    let node = NodeProcess::start();
    ok(
        &node,
        &[
            "topic",
            "create",
            "small",
            "--config",
            "max.message.bytes=60000",
        ],
        None,
    );
    let lines: String = (0..2000)
        .map(|index| format!("{index:04}-{}\n", "x".repeat(895)))
        .collect();
    ok(&node, &["produce", "small"], Some(&lines));
    let described = json(&ok(
        &node,
        &["topic", "describe", "small", "--format", "json"],
        None,
    ));
    assert_eq!(described["partitions"][0]["records"], 2000, "{described}");
    let error = fails(&node, &["produce", "small"], Some(&"y".repeat(100_000)));
    assert!(
        error.contains("max.message.bytes of topic small (60000 bytes)")
            && error.contains("ledge topic alter small"),
        "{error}"
    );

    ok(
        &node,
        &[
            "topic",
            "create",
            "big",
            "--config",
            "max.message.bytes=4194304",
        ],
        None,
    );
    let large = "z".repeat(2 * 1024 * 1024);
    ok(&node, &["produce", "big"], Some(&large));
    let consumed = ok(
        &node,
        &[
            "consume",
            "big",
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    assert_eq!(consumed.trim_end().len(), large.len());
    let error = fails(
        &node,
        &["produce", "big", "--max-request-size", "1MiB"],
        Some(&large),
    );
    assert!(
        error.contains("--max-request-size (1048576 bytes)")
            && error.contains("allows up to 4194304")
            && !error.contains("max_request_size"),
        "{error}"
    );
    // The size flags reach the producer: a batch size above the topic's limit is harmless.
    ok(
        &node,
        &[
            "produce",
            "small",
            "--batch-size",
            "1MiB",
            "--batch-size-max",
            "4MiB",
            "--linger-ms",
            "50",
        ],
        Some(&lines),
    );
    let described = json(&ok(
        &node,
        &["topic", "describe", "small", "--format", "json"],
        None,
    ));
    assert_eq!(described["partitions"][0]["records"], 4000, "{described}");
}

/// Goal: every command that prints data takes `--format json` (issue 11, bugs 8): `topic
/// create`, `module upload`, `transform deploy`, and `produce`, which prints one object per
/// input line saying where the record went. Method: run each with `--format json` and parse
/// its output; produce's offsets must match what `consume` reads back.
#[test]
fn every_command_that_prints_data_takes_format_json() {
    let node = NodeProcess::start();
    let created = json(&ok(
        &node,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(created["topic"], "orders", "{created}");
    assert_eq!(created["partitions"], 2, "{created}");
    assert_eq!(created["configs"]["retention.ms"], "3600000", "{created}");
    assert_eq!(created["created"], true, "{created}");

    let produced = ok(
        &node,
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--format",
            "json",
        ],
        Some("a:1\nb:2\na:3\n"),
    );
    let produced: Vec<serde_json::Value> = produced.lines().map(json).collect();
    assert_eq!(produced.len(), 3, "{produced:?}");
    for (index, line) in produced.iter().enumerate() {
        assert_eq!(line["line"], index + 1, "{line}");
        assert_eq!(line["topic"], "orders", "{line}");
        assert!(line["timestamp"].is_i64(), "{line}");
    }
    // Same key, same partition, later offset.
    assert_eq!(produced[0]["partition"], produced[2]["partition"]);
    assert!(produced[2]["offset"].as_i64() > produced[0]["offset"].as_i64());
    let consumed = ok(
        &node,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "10000",
            "--format",
            "json",
        ],
        None,
    );
    for record in consumed.lines().map(json) {
        let sent = produced
            .iter()
            .find(|line| {
                line["partition"] == record["partition"] && line["offset"] == record["offset"]
            })
            .unwrap_or_else(|| panic!("{record} is not where produce said a record went"));
        let value = record["value"].as_str().unwrap();
        assert_eq!(sent["line"].as_u64().unwrap().to_string(), value);
    }

    let module_path = std::env::temp_dir().join(format!(
        "ledge-cli-json-{}-uppercase.wasm",
        std::process::id()
    ));
    std::fs::write(&module_path, ledge_e2e::filter_module("uppercase")).expect("write module");
    let module = module_path.to_string_lossy().into_owned();
    let uploaded = json(&ok(
        &node,
        &[
            "module", "upload", "upper", "--module", &module, "--kind", "map", "--format", "json",
        ],
        None,
    ));
    assert_eq!(uploaded["name"], "upper", "{uploaded}");
    assert_eq!(uploaded["kind"], "map", "{uploaded}");
    assert_eq!(uploaded["params"], serde_json::json!({}), "{uploaded}");
    assert_eq!(
        uploaded["hash"].as_str().map(str::len),
        Some(64),
        "{uploaded}"
    );
    assert!(uploaded["size_bytes"].as_u64().unwrap() > 0, "{uploaded}");

    let deployed = json(&ok(
        &node,
        &[
            "transform",
            "deploy",
            "shout",
            "--module",
            &module,
            "--kind",
            "map",
            "--input",
            "orders",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(deployed["name"], "shout", "{deployed}");
    assert_eq!(deployed["version"], 1, "{deployed}");
    assert_eq!(deployed["input"], "orders", "{deployed}");
    assert_eq!(deployed["output"], "orders.shout", "{deployed}");
}

/// Goal: `consume --from-timestamp` starts each partition at the first record at or after a
/// time; `produce -Z` sends a tombstone (null value) for `KEY:`; RECORDS counts the records
/// of a compacted topic (issue 11, bugs 8). Method: records with known timestamps from the
/// SDK, then the CLI against them.
#[test]
fn consume_from_timestamp_tombstones_and_compacted_record_counts() {
    let node = NodeProcess::start();
    ok(
        &node,
        &["topic", "create", "events", "--partitions", "2"],
        None,
    );
    let base = 1_700_000_000_000i64;
    ledge_e2e::runtime().block_on(async {
        let client = ledge_e2e::connect(&node).await;
        let producer =
            ledge_client::Producer::new(&client, ledge_client::ProducerConfig::default())
                .await
                .expect("producer");
        let mut deliveries = Vec::new();
        for index in 0..10i64 {
            let record = ledge_client::ProducerRecord::new("events", index.to_string())
                .partition((index % 2) as u32)
                .timestamp(base + index * 1000);
            deliveries.push(producer.send(record).await.expect("send"));
        }
        for delivery in deliveries {
            delivery.await.expect("written");
        }
        producer.close().await;
        client.close().await;
    });
    let from = (base + 6500).to_string();
    let read = |from: &str| {
        let consumed = ok(
            &node,
            &[
                "consume",
                "events",
                "--from-timestamp",
                from,
                "--timeout-ms",
                "3000",
                "--format",
                "json",
            ],
            None,
        );
        let mut values: Vec<i64> = consumed
            .lines()
            .map(|line| json(line)["value"].as_str().unwrap().parse().unwrap())
            .collect();
        values.sort_unstable();
        values
    };
    assert_eq!(read(&from), vec![7, 8, 9]);
    // The same instant in RFC 3339: 1_700_000_006_500 ms is 2023-11-14T22:13:26.5Z.
    assert_eq!(read("2023-11-14T22:13:26.5Z"), vec![7, 8, 9]);
    // After every record: nothing old is printed.
    assert_eq!(read(&(base + 60_000).to_string()), Vec::<i64>::new());
    let error = fails(
        &node,
        &["consume", "events", "--from-timestamp", "yesterday"],
        None,
    );
    assert!(
        error.contains("RFC 3339") && error.contains("milliseconds"),
        "{error}"
    );

    ok(
        &node,
        &[
            "topic",
            "create",
            "users",
            "--config",
            "cleanup.policy=compact",
        ],
        None,
    );
    ok(
        &node,
        &["produce", "users", "--key-separator", ":", "-Z"],
        Some("u1:alice\nu2:bob\nu1:\n"),
    );
    ok(
        &node,
        &["produce", "users", "--key-separator", ":"],
        Some("u3:\n"),
    );
    let consumed = ok(
        &node,
        &[
            "consume",
            "users",
            "--from-beginning",
            "--max-messages",
            "4",
            "--timeout-ms",
            "10000",
            "--format",
            "json",
        ],
        None,
    );
    let records: Vec<serde_json::Value> = consumed.lines().map(json).collect();
    assert_eq!(records.len(), 4, "{consumed}");
    assert_eq!(records[2]["key"], "u1");
    assert!(
        records[2]["value"].is_null(),
        "-Z sends a tombstone: {}",
        records[2]
    );
    assert_eq!(
        records[3]["value"], "",
        "without -Z an empty value stays empty"
    );

    let listed = ok(&node, &["topic", "list"], None);
    let row = |name: &str| {
        listed
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listed}"))
            .to_string()
    };
    assert!(row("users").trim_end().ends_with(" 4"), "{listed}");
    assert!(row("events").trim_end().ends_with(" 10"), "{listed}");
    assert!(!listed.contains('≤'), "{listed}");
    let listed = json(&ok(&node, &["topic", "list", "--format", "json"], None));
    let users = listed
        .as_array()
        .and_then(|topics| topics.iter().find(|topic| topic["topic"] == "users"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(users["records"], 4, "{users}");
    assert_eq!(users["offsets"], 4, "{users}");
    let described = ok(&node, &["topic", "describe", "users"], None);
    assert!(described.contains("Records: 4\n"), "{described}");
}

/// Consumes all of `topic` from the beginning through the CLI: the records a reader gets.
fn consume_all(node: &NodeProcess, topic: &str) -> Vec<serde_json::Value> {
    ok(
        node,
        &[
            "consume",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "3000",
            "--format",
            "json",
        ],
        None,
    )
    .lines()
    .map(json)
    .collect()
}

/// `topic list --format json`'s entry for `topic`.
fn listed_topic(node: &NodeProcess, topic: &str) -> serde_json::Value {
    let listed = json(&ok(node, &["topic", "list", "--format", "json"], None));
    listed
        .as_array()
        .and_then(|topics| topics.iter().find(|entry| entry["topic"] == topic))
        .cloned()
        .unwrap_or_else(|| panic!("{topic} not listed: {listed}"))
}

/// Goal: RECORDS is the number of records, not of offsets, where compaction removed
/// superseded records and where a produce filter dropped records (issue 11, bugs 8, last
/// clause); it equals what a consumer reads from the beginning. Method: a compacted topic
/// whose small segments roll after every record, written one record per `produce` (so one
/// batch each), compacted by the node; a topic whose produce filter keeps 2 of 4 records.
/// Before the node counted records, the CLI showed offsets (5 and 4) here.
#[test]
fn records_column_counts_records_after_compaction_and_produce_filters() {
    let node = NodeProcess::start();
    ok(
        &node,
        &[
            "topic",
            "create",
            "devices",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=1024",
            "--config",
            "max.message.bytes=1000",
            "--config",
            "min.cleanable.dirty.ratio=0.01",
        ],
        None,
    );
    // About 700 bytes a batch: no two fit one 1024-byte segment, so every record but the
    // last ends up in a sealed segment compaction can rewrite.
    let padding = "x".repeat(600);
    for (key, state) in [
        ("d1", "a"),
        ("d2", "b"),
        ("d1", "c"),
        ("d2", "d"),
        ("d3", "e"),
    ] {
        ok(
            &node,
            &["produce", "devices", "--key-separator", ":"],
            Some(&format!("{key}:{state}{padding}\n")),
        );
    }
    let mut devices = serde_json::Value::Null;
    for _ in 0..100 {
        devices = json(&ok(
            &node,
            &["topic", "describe", "devices", "--format", "json"],
            None,
        ));
        // Compacted since the last record was written: no sealed byte is dirty.
        if devices["partitions"][0]["last_compaction"].is_string()
            && devices["partitions"][0]["dirty_ratio"] == 0.0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        devices["partitions"][0]["dirty_ratio"], 0.0,
        "the node compacted the topic: {devices}"
    );
    // d1@0 and d2@1 were superseded by d1@2 and d2@3; d3@4 is in the active segment.
    let consumed = consume_all(&node, "devices");
    let states: Vec<&str> = consumed
        .iter()
        .map(|record| &record["value"].as_str().unwrap_or_default()[..1])
        .collect();
    assert_eq!(states, ["c", "d", "e"], "{consumed:?}");
    assert_eq!(devices["partitions"][0]["records"], 3, "{devices}");
    assert_eq!(devices["partitions"][0]["offsets"], 5, "{devices}");
    let listed = listed_topic(&node, "devices");
    assert_eq!(listed["records"], 3, "{listed}");
    let table = ok(&node, &["topic", "list"], None);
    let row = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some("devices"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row.split_whitespace().last(), Some("3"), "{table}");
    let described = ok(&node, &["topic", "describe", "devices"], None);
    assert!(described.contains("Records: 3\n"), "{described}");

    let module =
        std::env::temp_dir().join(format!("ledge-cli-{}-records.wasm", std::process::id()));
    std::fs::write(&module, ledge_e2e::filter_module("high_value_orders")).expect("module");
    ok(
        &node,
        &[
            "module",
            "upload",
            "big-orders",
            "--module",
            &module.to_string_lossy(),
            "--kind",
            "filter",
            "--param",
            "threshold=100",
        ],
        None,
    );
    ok(
        &node,
        &[
            "topic",
            "create",
            "big",
            "--config",
            "produce.filter.module=big-orders",
        ],
        None,
    );
    ok(
        &node,
        &["produce", "big"],
        Some("{\"amount\":500}\n{\"amount\":20}\n{\"amount\":300}\n{\"amount\":10}\n"),
    );
    let big = listed_topic(&node, "big");
    assert_eq!(consume_all(&node, "big").len(), 2);
    assert_eq!(big["records"], 2, "{big}");
    assert_eq!(big["offsets"], 4, "{big}");
    let described = ok(&node, &["topic", "describe", "big"], None);
    assert!(described.contains("Records: 2\n"), "{described}");
}
