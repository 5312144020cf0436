//! The node as an operating-system process: its data directory lock, start-up checks that
//! run before the data directory is touched, its log on a non-terminal, damaged dev TLS
//! files, and the open-file limit (issue 11: bugs 1, 2, 6; data items 7, 8).

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use ledge_e2e::{NodeOptions, NodeProcess, binary, limit_open_files};

/// How long a node that must refuse to start may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `ledge-node` with `args` (and an optional open-file limit), expecting it to exit by
/// itself; returns its status, stdout and stderr.
fn run_node_to_exit(args: &[&str], open_files_limit: Option<(u64, u64)>) -> (ExitStatus, String) {
    run_wrapped_node_to_exit(&[], args, open_files_limit)
}

/// As [`run_node_to_exit`], started through `wrapper` (a program and its arguments).
fn run_wrapped_node_to_exit(
    wrapper: &[&str],
    args: &[&str],
    open_files_limit: Option<(u64, u64)>,
) -> (ExitStatus, String) {
    let mut command = match wrapper.split_first() {
        Some((program, arguments)) => {
            let mut command = Command::new(program);
            command.args(arguments).arg(binary("ledge-node"));
            command
        }
        None => Command::new(binary("ledge-node")),
    };
    // The default admin port is one for the whole machine: parallel tests take any port.
    if !args.contains(&"--admin-listen") {
        command.args(["--admin-listen", "127.0.0.1:0"]);
    }
    command
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((soft, hard)) = open_files_limit {
        limit_open_files(&mut command, soft, hard);
    }
    let mut child = command.spawn().unwrap();
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited > EXIT_TIMEOUT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "ledge-node did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(step);
        waited += step;
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The lines of stderr that are the node's final error (`error: ...`).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect()
}

/// Every file under `directory` with its contents, for "nothing changed" checks.
fn snapshot(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_second_node_on_a_data_directory_in_use_is_refused_and_changes_nothing() {
    // Goal (issue 11, bug 1): a second node on the same --data-dir (another port) exits
    // non-zero with one line naming the directory and the first node's pid, and the first
    // node's files are byte for byte as they were; the first node still serves.
    // Before the fix the second node started beside the first and rewrote metadata.json.
    let node = NodeProcess::start();
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        ledge_e2e::create_topic(&client, "kept", 2).await;
        ledge_e2e::produce_numbered(&client, "kept", 0, 10).await;
    });
    let before = snapshot(&node.data_dir);
    let data_dir = node.data_dir.display().to_string();
    let (status, stderr) =
        run_node_to_exit(&["--data-dir", &data_dir, "--listen", "127.0.0.1:0"], None);
    assert!(!status.success(), "the second node started: {stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    let expected = format!(
        "error: data directory {data_dir} is in use by another ledge-node (pid {} on host",
        node.pid()
    );
    assert!(errors[0].starts_with(&expected), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert_eq!(
        snapshot(&node.data_dir),
        before,
        "the second node changed files"
    );
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        let topics = ledge_client::Admin::new(&client)
            .list_topics()
            .await
            .unwrap();
        assert!(
            topics.iter().any(|topic| topic.name == "kept"),
            "{topics:?}"
        );
    });
}

#[test]
fn a_busy_port_is_refused_in_one_line_before_the_data_directory_is_made() {
    // Goal (issue 11, bug 2): the listen port is checked before the data directory is
    // created, and the OS error appears once. Before the fix the directory (with metadata,
    // logs and a dev CA) was made first, and the message repeated "Address in use".
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let (status, stderr) = run_node_to_exit(
        &[
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            &address,
        ],
        None,
    );
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!("error: cannot listen on {address}: ")),
        "{stderr}"
    );
    assert_eq!(errors[0].matches("in use").count(), 1, "{stderr}");
    assert!(!data_dir.exists(), "a data directory was left behind");
}

#[test]
fn bad_tls_flags_are_refused_in_one_line_before_the_data_directory_is_made() {
    // Goal (issue 11, bug 2): a lone --tls-cert, or certificate files that cannot be read,
    // are refused before anything is written, each in one line with the OS error once.
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let data_dir_text = data_dir.display().to_string();
    let missing = root.path().join("missing.pem").display().to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--tls-cert", &missing],
            "error: --tls-cert and --tls-key must be given together",
        ),
        (&["--tls-cert", &missing, "--tls-key", &missing], "error: "),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--data-dir", &data_dir_text, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let (status, stderr) = run_node_to_exit(&args, None);
        assert!(!status.success(), "{stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{flags:?}: {stderr}");
        assert!(errors[0].starts_with(expected), "{flags:?}: {stderr}");
        assert!(errors[0].matches("No such file").count() <= 1, "{stderr}");
        assert!(!data_dir.exists(), "{flags:?} left a data directory behind");
    }
}

#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    // Goal (issue 11, bug 6): a node whose stderr is a pipe writes plain text; before the
    // fix every level and field name carried ANSI escape codes.
    let mut node = NodeProcess::start();
    node.terminate(Duration::from_secs(30));
    let log = node.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}

#[test]
fn a_damaged_dev_certificate_set_is_reported_with_the_way_out() {
    // Goal (issue 11, data item 7): dev TLS files emptied by a crash are reported in one
    // line naming each damaged file and what to do, not as a PEM parse error; the fix the
    // message gives (moving tls/ away) works and keeps the data.
    let mut node = NodeProcess::start();
    node.terminate(Duration::from_secs(30));
    let tls = node.data_dir.join("tls");
    std::fs::write(tls.join("server.pem"), b"").unwrap();
    std::fs::write(tls.join("server.key"), b"not a key").unwrap();
    let data_dir = node.data_dir.display().to_string();
    let (status, stderr) =
        run_node_to_exit(&["--data-dir", &data_dir, "--listen", "127.0.0.1:0"], None);
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    let line = errors[0];
    assert!(
        line.contains(&format!(
            "the development TLS files in {} are damaged",
            tls.display()
        )),
        "{line}"
    );
    assert!(line.contains("server.pem: empty file"), "{line}");
    assert!(line.contains("server.key: no usable private key"), "{line}");
    assert!(!line.contains("ca.pem:"), "ca.pem is intact: {line}");
    assert!(line.contains("move that directory away"), "{line}");
    std::fs::rename(&tls, node.data_dir.join("tls.damaged")).unwrap();
    node.restart();
    assert!(node.ca_file.exists());
}

/// Partitions of the wide topic in the open-file tests.
const WIDE_PARTITIONS: u32 = 100;

/// A Produce request with one small batch (3 records of ~250 bytes) for each partition.
fn produce_everywhere(topic: &str, round: usize) -> ledge_protocol::wire::Request {
    use bytes::Bytes;
    use ledge_protocol::wire::{Acks, ProducePartition, ProduceRequest, ProduceTopic, Request};
    use ledge_protocol::{EncodeOptions, Record, encode_batch};
    let partitions = (0..WIDE_PARTITIONS)
        .map(|partition| {
            let records: Vec<Record> = (0..3)
                .map(|number| Record {
                    timestamp: 1_700_000_000_000,
                    key: None,
                    value: Some(Bytes::from(format!(
                        "{partition}-{round}-{number}-{}",
                        "x".repeat(240)
                    ))),
                    headers: Vec::new(),
                })
                .collect();
            ProducePartition {
                current_leader_epoch: None,
                partition,
                records: encode_batch(&records, &EncodeOptions::default()).unwrap(),
            }
        })
        .collect();
    Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions,
        }],
    })
}

/// Fetches every partition of `topic` from offset 0 and returns (errors, records fetched).
async fn fetch_everything(client: &ledge_e2e::RawClient, topic: &str) -> (Vec<String>, usize) {
    use ledge_protocol::wire::{FetchPartition, FetchRequest, FetchTopic, Request, Response};
    let mut errors = Vec::new();
    let mut records = 0;
    for partition in 0..WIDE_PARTITIONS {
        let mut offset = 0;
        loop {
            let request = Request::Fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 1 << 20,
                topics: vec![FetchTopic {
                    name: topic.into(),
                    partitions: vec![FetchPartition {
                        current_leader_epoch: None,
                        partition,
                        fetch_offset: offset,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
                plugin: None,
            });
            let (_, Some(Response::Fetch(response))) = client.request(&request).await else {
                panic!("no Fetch response")
            };
            let answer = &response.topics[0].partitions[0];
            if answer.error != ledge_protocol::wire::ErrorCode::None {
                errors.push(format!(
                    "{partition}: {:?} {}",
                    answer.error, answer.message
                ));
                break;
            }
            let mut next = offset;
            for item in ledge_protocol::BatchIter::new(&answer.records) {
                let (header, _) = item.unwrap();
                records += usize::try_from(header.record_count).unwrap();
                next = header.last_offset() + 1;
            }
            if next == offset {
                break;
            }
            offset = next;
            if offset >= answer.high_watermark {
                break;
            }
        }
    }
    (errors, records)
}

#[test]
fn many_segments_under_a_low_open_file_limit_stay_online_and_readable() {
    // Goal (issue 11, data item 8): with RLIMIT_NOFILE at 1024 (soft = hard, so raising
    // cannot help) and 100 partitions of ~12 segments each (about 1,200 segment files), the
    // node restarts with every partition online and serves every record: sealed segments
    // are opened when read, through a cache of at most 256 files (the default). Before the fix every segment held
    // a descriptor: opens failed with EMFILE and partitions went offline.
    let mut node = NodeProcess::start_limited(NodeOptions::default(), Some((1024, 1024)));
    let runtime = ledge_e2e::runtime();
    let rounds = 24;
    runtime.block_on(async {
        let client = ledge_e2e::RawClient::connect(&node).await;
        let request = ledge_protocol::wire::Request::CreateTopics(
            ledge_protocol::wire::CreateTopicsRequest {
                topics: vec![ledge_protocol::wire::CreatableTopic {
                    replication_factor: None,
                    name: "wide".into(),
                    partitions: WIDE_PARTITIONS,
                    configs: [("segment.bytes", "2048"), ("max.message.bytes", "1024")]
                        .iter()
                        .map(|(name, value)| ledge_protocol::wire::ConfigEntry {
                            name: name.to_string(),
                            value: value.to_string(),
                        })
                        .collect(),
                }],
                validate_only: false,
            },
        );
        let (_, Some(ledge_protocol::wire::Response::CreateTopics(created))) =
            client.request(&request).await
        else {
            panic!("no CreateTopics response")
        };
        assert_eq!(
            created.topics[0].error,
            ledge_protocol::wire::ErrorCode::None,
            "{}",
            created.topics[0].message
        );
        for round in 0..rounds {
            let (_, Some(ledge_protocol::wire::Response::Produce(produced))) =
                client.request(&produce_everywhere("wide", round)).await
            else {
                panic!("no Produce response")
            };
            for answer in &produced.topics[0].partitions {
                assert_eq!(
                    answer.error,
                    ledge_protocol::wire::ErrorCode::None,
                    "round {round}, partition {}: {}",
                    answer.partition,
                    answer.message
                );
            }
        }
    });
    let segment_files = std::fs::read_dir(node.data_dir.join("logs"))
        .unwrap()
        .flat_map(|partition| std::fs::read_dir(partition.unwrap().path()).unwrap())
        .filter(|file| {
            file.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "log")
        })
        .count();
    assert!(segment_files > 1100, "only {segment_files} segment files");
    node.restart();
    let log = node.log();
    assert!(!log.contains("partition offline"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    runtime.block_on(async {
        let client = ledge_e2e::RawClient::connect(&node).await;
        let (errors, records) = fetch_everything(&client, "wide").await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(records, WIDE_PARTITIONS as usize * rounds * 3);
    });
}

#[test]
fn a_partition_count_the_open_file_limit_cannot_hold_is_refused_clearly() {
    // Goal (issue 11, data item 8): with a hard limit of 400 descriptors (and a sealed-file
    // cache of 16), at most (400 - 256 - 16) / 2 = 64 partitions fit. A config declaring 300
    // is refused at start with one line naming the numbers; on a running node a topic of
    // 100 partitions is refused with the same explanation, and one of 20 is created. Before
    // the fix the opens failed one by one with EMFILE and partitions went offline.
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let config_path = root.path().join("wide.toml");
    std::fs::write(
        &config_path,
        "[log]\nsealed_segment_files_open_max = 16\n\n[[topic]]\nname = \"wide\"\npartitions = 300\n",
    )
    .unwrap();
    let (status, stderr) = run_node_to_exit(
        &[
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config_path.display().to_string(),
        ],
        Some((400, 400)),
    );
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(
            "error: 300 partitions need more open files than the limit allows: at most 64 fit in RLIMIT_NOFILE 400"
        ),
        "{stderr}"
    );
    assert!(!data_dir.join("logs").exists(), "partitions were created");

    let node = NodeProcess::start_limited(
        NodeOptions {
            config: Some("[log]\nsealed_segment_files_open_max = 16\n".into()),
            ..NodeOptions::default()
        },
        Some((400, 400)),
    );
    ledge_e2e::runtime().block_on(async {
        let client = ledge_e2e::connect(&node).await;
        let admin = ledge_client::Admin::new(&client);
        let refused = admin
            .create_topics(vec![ledge_client::NewTopic::new("too-wide", 100)], false)
            .await;
        let text = format!("{refused:?}");
        assert!(
            text.contains("need more open files than the limit allows"),
            "{text}"
        );
        ledge_e2e::create_topic(&client, "fits", 20).await;
        ledge_e2e::produce_numbered(&client, "fits", 0, 40).await;
    });
    assert!(!node.log().contains("partition offline"), "{}", node.log());
}

#[test]
fn a_read_only_data_directory_serves_reads_and_refuses_produce_clearly() {
    // Goal (issue 11, data item 9): a node whose data directory is a real read-only bind
    // mount (a private mount namespace, `unshare -m`; needs root, which this test
    // environment has) starts, serves every record written before, and answers a produce
    // with the filesystem's read-only error; no partition goes offline. Before the fix
    // the node could not start: writing metadata.json failed.
    let mut node = NodeProcess::start();
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        ledge_e2e::create_topic(&client, "kept", 3).await;
        ledge_e2e::produce_numbered(&client, "kept", 0, 30).await;
    });
    assert!(node.terminate(Duration::from_secs(30)).is_some());
    let data_dir = node.data_dir.display().to_string();
    // $0 is the data directory; "$@" is the node's command line.
    let script = r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@""#;
    let read_only = NodeProcess::start_wrapped(
        NodeOptions {
            data_dir: Some(node.data_dir.clone()),
            ..NodeOptions::default()
        },
        &["unshare", "-m", "sh", "-c", script, &data_dir],
    );
    runtime.block_on(async {
        let client = ledge_e2e::RawClient::connect(&read_only).await;
        // Every record is readable.
        let mut records = 0;
        for partition in 0..3 {
            let request =
                ledge_protocol::wire::Request::Fetch(ledge_protocol::wire::FetchRequest {
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 1 << 20,
                    topics: vec![ledge_protocol::wire::FetchTopic {
                        name: "kept".into(),
                        partitions: vec![ledge_protocol::wire::FetchPartition {
                            current_leader_epoch: None,
                            partition,
                            fetch_offset: 0,
                            partition_max_bytes: 1 << 20,
                        }],
                    }],
                    plugin: None,
                });
            let (_, Some(ledge_protocol::wire::Response::Fetch(response))) =
                client.request(&request).await
            else {
                panic!("no Fetch response")
            };
            let answer = &response.topics[0].partitions[0];
            assert_eq!(
                answer.error,
                ledge_protocol::wire::ErrorCode::None,
                "{}",
                answer.message
            );
            for item in ledge_protocol::BatchIter::new(&answer.records) {
                records += item.unwrap().0.record_count;
            }
        }
        assert_eq!(records, 30);
        // A produce is refused, naming the cause.
        let records = ledge_protocol::encode_batch(
            &[ledge_protocol::Record {
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(bytes::Bytes::from_static(b"refused")),
                headers: Vec::new(),
            }],
            &ledge_protocol::EncodeOptions::default(),
        )
        .unwrap();
        let request =
            ledge_protocol::wire::Request::Produce(ledge_protocol::wire::ProduceRequest {
                acks: ledge_protocol::wire::Acks::All,
                timeout_ms: 10_000,
                topics: vec![ledge_protocol::wire::ProduceTopic {
                    name: "kept".into(),
                    partitions: vec![ledge_protocol::wire::ProducePartition {
                        current_leader_epoch: None,
                        partition: 0,
                        records,
                    }],
                }],
            });
        let (_, Some(ledge_protocol::wire::Response::Produce(produced))) =
            client.request(&request).await
        else {
            panic!("no Produce response")
        };
        let answer = &produced.topics[0].partitions[0];
        assert_eq!(answer.error, ledge_protocol::wire::ErrorCode::StorageError);
        assert!(
            answer.message.contains("Read-only file system"),
            "{}",
            answer.message
        );
    });
    let log = read_only.log();
    assert!(!log.contains("partition offline"), "{log}");
    assert!(log.contains("serving reads only"), "{log}");
    // The lock still holds on the read-only filesystem: a second node is refused, and the
    // message says the recorded holder may be an earlier one (it could not be updated).
    let (status, stderr) = run_wrapped_node_to_exit(
        &["unshare", "-m", "sh", "-c", script, &data_dir],
        &["--data-dir", &data_dir, "--listen", "127.0.0.1:0"],
        None,
    );
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!(
            "error: data directory {data_dir} is in use by another ledge-node"
        )),
        "{stderr}"
    );
    assert!(errors[0].contains("possibly an earlier holder"), "{stderr}");
}

#[test]
fn a_missing_module_file_is_refused_before_the_data_directory_is_made() {
    // Goal (issue 11, bug 2): a `[[module]]` whose file does not exist is reported in one
    // line naming the config line and the file, before the data directory is created.
    // Before the fix the node opened (and created) the data directory, its metadata and
    // `__consumer_offsets` first.
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let config_path = root.path().join("modules.toml");
    std::fs::write(
        &config_path,
        "[[module]]\nname = \"gone\"\nkind = \"map\"\npath = \"missing.wasm\"\n",
    )
    .unwrap();
    let (status, stderr) = run_node_to_exit(
        &[
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config_path.display().to_string(),
        ],
        None,
    );
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("module \"gone\": cannot read module file"),
        "{stderr}"
    );
    assert!(errors[0].contains("missing.wasm"), "{stderr}");
    assert_eq!(errors[0].matches("No such file").count(), 1, "{stderr}");
    assert!(!data_dir.exists(), "a data directory was left behind");
}
