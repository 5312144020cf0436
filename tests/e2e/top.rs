//! `ledge top` against a real node: what it shows matches what was produced and consumed,
//! rates appear from the second frame, the tables line up, and bad flags are one line.

use ledge_e2e::NodeProcess;

fn ledge(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = ledge_e2e::run_cli(&full, stdin);
    (status.success(), stdout, stderr)
}

fn ok(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> String {
    let (success, stdout, stderr) = ledge(node, args, stdin);
    assert!(success, "ledge {args:?} failed: {stderr}");
    stdout
}

/// A node with `orders` (2 partitions), 300 records in partition 0 and 50 in partition 1,
/// and group `billing` that consumed all and was shifted back by 100: lag 100 in
/// partition 0, 50 in partition 1 (clamped at its start).
fn node_with_a_lagging_group() -> NodeProcess {
    let node = NodeProcess::start();
    ok(
        &node,
        &["topic", "create", "orders", "--partitions", "2"],
        None,
    );
    let lines: String = (0..300).map(|i| format!("r{i}\n")).collect();
    ok(
        &node,
        &["produce", "orders", "--partition", "0"],
        Some(&lines),
    );
    let lines: String = (0..50).map(|i| format!("s{i}\n")).collect();
    ok(
        &node,
        &["produce", "orders", "--partition", "1"],
        Some(&lines),
    );
    ok(
        &node,
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--max-messages",
            "350",
        ],
        None,
    );
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--shift-by",
            "-100",
        ],
        None,
    );
    node
}

// Goal (issue 16: "`ledge top` gives the same live view in the terminal"): one JSON frame
// names the topic's offsets and sizes and the group's lag per partition, as produced and
// consumed; the table frame shows the same figures in aligned columns.
#[test]
fn top_shows_offsets_sizes_and_lag_as_produced_and_consumed() {
    let node = node_with_a_lagging_group();
    let stdout = ok(&node, &["top", "--once", "--format", "json"], None);
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(frames.len(), 1, "{stdout}");
    let frame = &frames[0];
    assert_eq!(frame["nodes"][0]["alive"], true, "{frame}");
    assert_eq!(frame["offline"], serde_json::json!([]), "{frame}");
    let orders = frame["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["topic"] == "orders")
        .unwrap();
    assert_eq!(orders["partitions"][0]["end_offset"], 300, "{orders}");
    assert_eq!(orders["partitions"][1]["end_offset"], 50, "{orders}");
    assert!(orders["size_bytes"].as_u64().unwrap() > 350, "{orders}");
    // The first frame has nothing to compare with.
    assert!(orders["records_per_second"].is_null(), "{orders}");
    let billing = &frame["groups"][0];
    assert_eq!(billing["group"], "billing", "{frame}");
    assert_eq!(billing["lag"], 150, "{billing}");
    let lag: Vec<(i64, i64)> = billing["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap(), p["lag"].as_i64().unwrap()))
        .collect();
    assert_eq!(lag, [(0, 100), (1, 50)], "{billing}");

    let text = ok(&node, &["top", "--once"], None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("nodes 1 alive of 1"), "{text}");
    // Columns line up: each group row's LAG figure ends where the header's LAG ends.
    let header = lines
        .iter()
        .find(|line| line.trim_start().starts_with("GROUP"))
        .unwrap();
    let lag_end = header.find(" LAG ").unwrap() + " LAG".len();
    let rows: Vec<&&str> = lines
        .iter()
        .skip_while(|line| !line.trim_start().starts_with("GROUP"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let figures: Vec<&str> = rows
        .iter()
        .map(|row| row[..lag_end].split_whitespace().last().unwrap())
        .collect();
    assert_eq!(figures, ["100", "50"], "{text}");
    assert!(text.contains("No transforms."), "{text}");
}

// Goal: rates are measured between frames: records produced between the two frames show as
// a positive rate on the second, and the group's lag grows with them.
#[test]
fn top_measures_rates_between_frames() {
    let node = node_with_a_lagging_group();
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let top = std::process::Command::new(ledge_e2e::binary("ledge"))
        .args([
            "--server",
            &address,
            "--ca",
            &ca,
            "top",
            "--iterations",
            "2",
            "--interval-ms",
            "3000",
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Produce while top waits between its frames: the first frame is taken at once, this
    // produce takes well under the 3 s interval.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let lines: String = (0..500).map(|i| format!("t{i}\n")).collect();
    ok(
        &node,
        &["produce", "orders", "--partition", "0"],
        Some(&lines),
    );
    let output = top.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(frames.len(), 2, "{stdout}");
    let orders = |frame: &serde_json::Value| {
        frame["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|topic| topic["topic"] == "orders")
            .unwrap()
            .clone()
    };
    let (first, second) = (orders(&frames[0]), orders(&frames[1]));
    assert_eq!(first["partitions"][0]["end_offset"], 300, "{first}");
    assert_eq!(second["partitions"][0]["end_offset"], 800, "{second}");
    let rate = second["records_per_second"].as_f64().unwrap();
    assert!(rate > 0.0, "{second}");
    assert_eq!(frames[1]["groups"][0]["lag"], 650, "{}", frames[1]);
}

#[test]
fn top_refuses_bad_flags_in_one_line() {
    let node = NodeProcess::start();
    for args in [
        &["top", "--interval-ms", "10"][..],
        &["top", "--iterations", "0"][..],
        &["top", "--once", "--iterations", "3"][..],
    ] {
        let (success, stdout, stderr) = ledge(&node, args, None);
        assert!(!success, "{args:?} succeeded: {stdout}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
}
