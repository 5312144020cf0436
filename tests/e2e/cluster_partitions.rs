//! Issue 13 item 5, added partitions and `ledge transform describe` in a 3-node cluster
//! with the real binaries: a topic grown while an idempotent acks=all workload writes to it
//! loses nothing, its new partitions get leaders and full ISRs of 3, take keyed records by
//! the new count and are read back; a transform over the topic runs on the new partitions'
//! leaders, and `transform describe` shows each partition with the node running it, a
//! stopped node's partitions as unreachable without failing the command.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use ledge_client::partitioner::partition_for_key;
use ledge_client::{
    Admin, Consumer, ConsumerConfig, NewTopic, OffsetReset, PluginKind, Producer, ProducerConfig,
    TopicPartition, TransformSpec,
};
use ledge_e2e::cluster_harness::{
    CONDITION_TIMEOUT, ClusterOptions, FAST_CLUSTER_KEYS, TestCluster, poll_until,
};
use ledge_e2e::history::{ReplicaLog, check};
use ledge_e2e::run_cli;
use ledge_e2e::workload::{Workload, WorkloadOptions};

const TOPIC: &str = "growing";
const OUTPUT: &str = "growing.copy";
const BEFORE: u32 = 2;
const AFTER: u32 = 6;
const KEYED: u32 = 120;

/// `ledge transform describe copy --format json` from the nodes `ids`.
fn describe_transform(cluster: &TestCluster, ids: &[u32]) -> Option<serde_json::Value> {
    serde_json::from_str(
        &cluster.cli_on(ids, &["transform", "describe", "copy", "--format", "json"])?,
    )
    .ok()
}

/// The one error line of a `ledge` command against the cluster that must fail.
fn cli_error(cluster: &TestCluster, args: &[&str]) -> String {
    let server = cluster.bootstrap();
    let ca = cluster.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", server.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, _, stderr) = run_cli(&full, None);
    assert!(!status.success(), "ledge {args:?} should have failed");
    let stderr = stderr.trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr:?}");
    stderr
}

fn partition_entries(described: &serde_json::Value) -> Vec<serde_json::Value> {
    described["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// Goal (issue 13 item 5): CreatePartitions in a cluster. The topic grows from 2 to 6 while
// a workload writes; the new partitions are placed with the topic's RF=3, each led and with
// an ISR of 3; no send fails and the history checker finds every acknowledged record on
// 2+ replicas exactly once; keyed records from a producer started after the growth hash
// over 6 and are all read back; the transform deployed before the growth runs on every
// new partition's leader, and `transform describe` shows, per partition, that node and its
// figures; with one node stopped (SIGSTOP, its session not yet expired) its partitions show
// as unreachable and the command still succeeds.
// Method: 3 real nodes behind the harness's proxies; every wait a bounded poll.
#[test]
fn partitions_added_under_load_are_led_in_sync_and_run_the_transform() {
    // A session long enough that a stopped node is still named leader while it is asked.
    let keys = FAST_CLUSTER_KEYS.replace(
        "node_session_timeout_ms = 2000",
        "node_session_timeout_ms = 30000",
    );
    let mut cluster = TestCluster::start(ClusterOptions {
        cluster_keys: keys,
        ..ClusterOptions::default()
    });
    cluster.wait_for_all_alive();
    let client = cluster.runtime().block_on(cluster.client());
    let admin = Admin::new(&client);
    cluster
        .runtime()
        .block_on(admin.create_topics(
            vec![
                NewTopic::new(TOPIC, BEFORE)
                    .replication_factor(3)
                    .config("min.insync.replicas", "2"),
            ],
            false,
        ))
        .expect("the RF=3 topic is created");
    for partition in 0..BEFORE {
        cluster.wait_for_partition("a full ISR", TOPIC, partition, |state| state.isr.len() == 3);
    }
    let module = Bytes::from(ledge_e2e::wat_to_wasm(crate::wasm::KEEP_UNLESS_BANG));
    let mut spec = TransformSpec::new("copy", PluginKind::Filter, module, TOPIC);
    spec.output = Some(OUTPUT.to_owned());
    cluster
        .runtime()
        .block_on(admin.deploy_transform(spec))
        .expect("the transform is deployed");

    let workload = Workload::start(
        cluster.runtime(),
        &client,
        WorkloadOptions::new(TOPIC, BEFORE),
    );
    workload.wait_for_progress("before the growth", 50);
    let altered = cluster
        .cli(&[
            "topic",
            "alter",
            TOPIC,
            "--partitions",
            &AFTER.to_string(),
            "--format",
            "json",
        ])
        .expect("ledge topic alter --partitions succeeds");
    assert!(altered.contains("\"partitions\":6"), "{altered}");
    let mut leaders = BTreeMap::new();
    for partition in BEFORE..AFTER {
        let state = cluster.wait_for_partition(
            "a new partition led, with an ISR of 3",
            TOPIC,
            partition,
            |state| state.leader.is_some() && state.isr.len() == 3 && state.replicas.len() == 3,
        );
        leaders.insert(partition, state.leader.unwrap());
    }
    let distinct: BTreeSet<u32> = leaders.values().copied().collect();
    assert!(
        distinct.len() > 1,
        "new leaders spread over the nodes: {leaders:?}"
    );
    // Refusals, one line each: by the controller, and (validate_only) by the node asked.
    for (args, expected) in [
        (
            vec!["-p", "4"],
            "cannot shrink growing from 6 to 4 partitions: Kafka and Ledge only add partitions (InvalidPartitions)",
        ),
        (
            vec!["-p", "7", "--replica-assignment", "1:2"],
            "growing/6: 2 replica(s) [1, 2], but the topic's replication factor is 3 (InvalidReplicaAssignment)",
        ),
        (
            vec![
                "-p",
                "7",
                "--replica-assignment",
                "1:1:2",
                "--validate-only",
            ],
            "node 1 is listed twice",
        ),
    ] {
        let error = cli_error(&cluster, &[&["topic", "alter", TOPIC][..], &args].concat());
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    workload.wait_for_progress("after the growth", 50);

    // Keyed records from a producer that sees 6 partitions.
    let keyed: Vec<(String, u32, i64)> = cluster.runtime().block_on(async {
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        let acknowledged =
            crate::add_partitions::send_keyed(&producer, TOPIC, "keyed", KEYED).await;
        producer.close().await;
        acknowledged
    });
    for (key, partition, _) in &keyed {
        assert_eq!(
            *partition,
            partition_for_key(key.as_bytes(), AFTER),
            "{key}"
        );
    }
    let on_new: BTreeSet<String> = keyed
        .iter()
        .filter(|(_, partition, _)| *partition >= BEFORE)
        .map(|(key, _, _)| format!("keyed-{}", &key[4..]))
        .collect();
    assert!(!on_new.is_empty(), "{keyed:?}");

    // Read back from the new partitions; the transform copied them to the output.
    let read_values =
        |topic: &'static str, partitions: std::ops::Range<u32>, wanted: BTreeSet<String>| {
            cluster.runtime().block_on(async {
                let mut config = ConsumerConfig::default();
                config.auto_offset_reset = OffsetReset::Earliest;
                let mut consumer = Consumer::new(&client, config);
                consumer.assign(
                    partitions
                        .map(|partition| TopicPartition::new(topic, partition))
                        .collect(),
                );
                let mut seen = BTreeSet::new();
                let deadline = tokio::time::Instant::now() + CONDITION_TIMEOUT;
                while tokio::time::Instant::now() < deadline && !wanted.is_subset(&seen) {
                    match consumer.poll(Duration::from_millis(300), 10_000).await {
                        Ok(records) => seen.extend(records.into_iter().map(|record| {
                            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                                .into_owned()
                        })),
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                wanted.difference(&seen).cloned().collect::<Vec<_>>()
            })
        };
    let missing = read_values(TOPIC, BEFORE..AFTER, on_new.clone());
    assert!(
        missing.is_empty(),
        "not read from the new partitions: {missing:?}"
    );
    let missing = read_values(OUTPUT, 0..BEFORE, on_new);
    assert!(
        missing.is_empty(),
        "not copied by the transform: {missing:?}\n{}",
        cluster.logs()
    );

    // Each partition shown with its leader, running, and the records it read there.
    let all = cluster.ids();
    let described = poll_until(
        "transform describe shows every partition running on its leader, the new ones having read",
        CONDITION_TIMEOUT,
        || {
            let described = describe_transform(&cluster, &all)?;
            let entries = partition_entries(&described);
            let on_leaders = entries.len() == AFTER as usize
                && entries.iter().all(|entry| {
                    let partition = entry["partition"].as_u64().unwrap_or(99) as u32;
                    entry["status"] == "running"
                        && cluster
                            .partition_state(TOPIC, partition)
                            .and_then(|state| state.leader)
                            .is_some_and(|leader| entry["node"] == leader)
                });
            // The new partitions' tasks have read there. A leadership that moves under load
            // restarts a task on its new leader with fresh counters, so this is waited for
            // (within the bound), not read once.
            let read_on_new: u64 = entries
                .iter()
                .filter(|entry| entry["partition"].as_u64().unwrap_or(0) >= u64::from(BEFORE))
                .map(|entry| entry["records_in"].as_u64().unwrap_or(0))
                .sum();
            (on_leaders && read_on_new > 0).then_some(described)
        },
        || {
            format!(
                "{:?}\n{}",
                describe_transform(&cluster, &all),
                cluster.logs()
            )
        },
    );
    eprintln!("transform describe: {described}");
    let read_on_new: u64 = partition_entries(&described)
        .iter()
        .filter(|entry| entry["partition"].as_u64().unwrap_or(0) >= u64::from(BEFORE))
        .map(|entry| entry["records_in"].as_u64().unwrap_or(0))
        .sum();
    assert!(read_on_new > 0, "{described}");
    let table = cluster
        .cli_on(&all, &["transform", "describe", "copy"])
        .expect("table");
    assert!(
        table.contains("NODE") && table.contains("running"),
        "{table}"
    );

    let history = workload.finish(cluster.runtime());
    let failed: Vec<_> = history
        .sent
        .iter()
        .filter(|sent| sent.acknowledged_offset.is_none())
        .collect();
    assert!(
        failed.is_empty(),
        "{} final send failure(s), first {:?}",
        failed.len(),
        failed.first()
    );

    // A stopped node: its partitions unreachable, the others still shown, no failure.
    let stopped = *leaders.values().next().unwrap();
    let others: Vec<u32> = all.iter().copied().filter(|id| *id != stopped).collect();
    cluster.pause(stopped);
    let described = describe_transform(&cluster, &others).unwrap_or_else(|| {
        panic!(
            "describe fails with node {stopped} stopped\n{}",
            cluster.logs()
        )
    });
    let entries = partition_entries(&described);
    assert_eq!(entries.len(), AFTER as usize, "{described}");
    for entry in &entries {
        if entry["node"] == stopped {
            assert_eq!(entry["status"], "unreachable", "{entry}");
            assert!(
                entry["error"]
                    .as_str()
                    .is_some_and(|error| !error.is_empty()),
                "{entry}"
            );
        } else {
            assert_eq!(entry["status"], "running", "{entry}");
        }
    }
    cluster.resume(stopped);

    cluster.runtime().block_on(client.close());
    let node_logs = cluster.logs();
    cluster.terminate_all();
    let mut replicas = Vec::new();
    for id in cluster.ids() {
        for partition in 0..BEFORE {
            let dump = cluster
                .dump(id, TOPIC, partition)
                .unwrap_or_else(|| panic!("node {id} holds partition {partition}"));
            replicas.push(
                ReplicaLog::from_dump_json(id, partition, &dump)
                    .unwrap_or_else(|error| panic!("node {id}: {error}")),
            );
        }
    }
    match check(&history, &replicas, 2) {
        Ok(summary) => eprintln!("growth under load: checker passed: {summary:?}"),
        Err(violations) => panic!(
            "the checker found {} violation(s):\n{}\n{node_logs}",
            violations.len(),
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
