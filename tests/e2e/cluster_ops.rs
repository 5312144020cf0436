//! Issue 13, operations with real processes: a partition reassigned while a producer writes
//! (KIP-455: new replica copies, old one dropped, leader elected from the target), every
//! acknowledged record then read from the new replicas alone; decommission refusals and a
//! voter refused; bad reassignments refused in one line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledge_client::{
    Acks, Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, Trust,
};

use crate::cluster_topics::{Cluster, until};

/// The 3-node cluster of `cluster_topics`, with sessions short enough that a killed node is
/// fenced within seconds.
fn start_cluster() -> Cluster {
    Cluster::start_with_keys(
        "node_heartbeat_interval_ms = 200\nnode_session_timeout_ms = 3000\npeer_request_timeout_ms = 2500\n",
    )
}

/// Partition 0 of `topic` as node `node_id` describes it (replicas, isr, leader).
fn partition(cluster: &Cluster, node_id: u32, topic: &str) -> serde_json::Value {
    let described: serde_json::Value = serde_json::from_str(
        &cluster.ok(node_id, &["topic", "describe", topic, "--format", "json"]),
    )
    .unwrap();
    let partition = &described["partitions"][0];
    serde_json::json!({
        "replicas": partition["replicas"],
        "isr": partition["isr"],
        "leader": partition["leader"],
    })
}

// Goal (issue 13 item 3, KIP-455): an RF=2 partition on {1,2} moved to {2,3} while an
// acks=all producer writes: the move completes (replicas {2,3}, node 1 dropped, the leader
// elected from the target), the producer rides through the leader change, and every
// acknowledged record is then read, in order and once, from node 3 leading after node 2
// was killed (node 2 restarted catches up from node 3).
// Method: the real binaries; a producer thread; every wait a bounded poll.
#[test]
fn a_partition_moved_while_producing_keeps_every_acknowledged_record() {
    let mut cluster = start_cluster();
    cluster.ok(
        1,
        &["topic", "create", "moving", "--partitions", "1", "-r", "2"],
    );
    until("the partition placed on {1,2} with both in sync", || {
        partition(&cluster, 1, "moving")
            == serde_json::json!({"replicas": [1, 2], "isr": [1, 2], "leader": 1})
    });

    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let mut config = ClientConfig::new(
        cluster.addresses().join(","),
        Trust::CaFile(PathBuf::from(&cluster.ca)),
    );
    config.request_timeout = Duration::from_secs(20);
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let runtime = Arc::clone(&runtime);
        let stop = Arc::clone(&stop);
        let config = config.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let client = Client::connect(config).await.expect("connect");
                let producer_config = ProducerConfig::default();
                assert_eq!(producer_config.acks, Acks::All);
                let producer = Producer::new(&client, producer_config)
                    .await
                    .expect("producer");
                let mut acked = Vec::new();
                let mut index = 0u32;
                // At least 200 records, and on until told to stop.
                while index < 200 || !stop.load(Ordering::SeqCst) {
                    let value = format!("value-{index}");
                    let delivery = producer
                        .send(ProducerRecord::new("moving", value.clone()).partition(0))
                        .await
                        .expect("send");
                    let metadata = delivery.await.expect("acknowledged");
                    acked.push((metadata.offset.expect("acks=all answers the offset"), value));
                    index += 1;
                    assert!(index < 1_000_000, "the producer never stopped");
                }
                producer.close().await;
                client.close().await;
                acked
            })
        })
    };

    until("some records acknowledged before the move", || {
        partition(&cluster, 1, "moving")["leader"] == 1
            && serde_json::from_str::<serde_json::Value>(
                &cluster.ok(1, &["topic", "describe", "moving", "--format", "json"]),
            )
            .unwrap()["partitions"][0]["end_offset"]
                .as_i64()
                .unwrap_or(0)
                > 50
    });
    let started = cluster.ok(
        3,
        &[
            "topic",
            "reassign",
            "moving",
            "--partition",
            "0",
            "--replicas",
            "2,3",
        ],
    );
    assert!(started.contains("Reassigning moving/0 to 2,3"), "{started}");
    until("the move to complete", || {
        partition(&cluster, 2, "moving")
            == serde_json::json!({"replicas": [2, 3], "isr": [2, 3], "leader": 2})
            && cluster
                .ok(2, &["topic", "reassign", "--status"])
                .contains("No reassignment in progress")
    });
    stop.store(true, Ordering::SeqCst);
    let acked = producing.join().expect("the producer thread");
    assert!(acked.len() >= 200, "{} acknowledged", acked.len());

    // Node 2 dies: node 3, the other new replica, leads and must hold every acknowledged
    // record. (Alone in the ISR, below min.insync.replicas = 2, it does not move its high
    // watermark, so the last records it learnt were committed are readable only once node 2,
    // restarted, catches up from it and rejoins the ISR; node 3 stays the leader and serves
    // every read below.)
    cluster.nodes[1].kill9();
    until("node 3 to lead", || {
        partition(&cluster, 3, "moving")["leader"] == 3
    });
    cluster.nodes[1].restart();
    until("node 2 back in the ISR, node 3 leading", || {
        let partition = partition(&cluster, 3, "moving");
        partition["leader"] == 3
            && partition["isr"]
                .as_array()
                .is_some_and(|isr| isr.len() == 2)
    });
    let read = runtime.block_on(async {
        let mut config = ClientConfig::new(
            cluster.nodes[2].addr.to_string(),
            Trust::CaFile(PathBuf::from(&cluster.ca)),
        );
        config.request_timeout = Duration::from_secs(10);
        let client = Client::connect(config).await.expect("connect to node 3");
        let mut consumer_config = ConsumerConfig::default();
        consumer_config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, consumer_config);
        consumer.assign(vec![TopicPartition::new("moving", 0)]);
        let mut read = Vec::new();
        let mut idle_polls = 0;
        while read.len() < acked.len() {
            let records = consumer
                .poll(Duration::from_secs(1), 10_000)
                .await
                .expect("poll");
            if records.is_empty() {
                idle_polls += 1;
                assert!(
                    idle_polls < 30,
                    "read {} of {}, then nothing",
                    read.len(),
                    acked.len()
                );
            }
            for record in records {
                read.push((
                    record.offset,
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                ));
            }
        }
        client.close().await;
        read
    });
    assert_eq!(
        read.get(..acked.len()),
        Some(&acked[..]),
        "node 3 holds every acknowledged record, at its offset"
    );
}

// Goal (issue 13 items 3 and 6, bad input): each refusal is one line and changes nothing:
// a node listed twice, an unknown node, a partition that does not exist, a cancel with no
// move, decommission of a voter and of an unknown node, preferred election of an unknown
// topic. (A second move of a moving partition and decommission of an alive or still-used
// learner are covered by the pure and controller tests: in a healthy 3-voter cluster a move
// completes within milliseconds.)
#[test]
fn bad_operations_are_refused_in_one_line_and_change_nothing() {
    let cluster = start_cluster();
    cluster.ok(
        1,
        &["topic", "create", "fixed", "--partitions", "1", "-r", "2"],
    );
    until("placed", || {
        partition(&cluster, 1, "fixed")["replicas"] == serde_json::json!([1, 2])
    });
    let before = partition(&cluster, 1, "fixed");
    let reassign = |replicas: &str| {
        cluster.fails(
            2,
            &[
                "topic",
                "reassign",
                "fixed",
                "--partition",
                "0",
                "--replicas",
                replicas,
            ],
        )
    };
    assert_eq!(
        reassign("2,2"),
        "error: cannot reassign fixed/0: fixed/0: node 2 is listed twice in the target [2, 2] (InvalidReplicaAssignment)"
    );
    assert_eq!(
        reassign("2,9"),
        "error: cannot reassign fixed/0: fixed/0: node 9 is not registered in the cluster (InvalidReplicaAssignment)"
    );
    let error = cluster.fails(
        2,
        &[
            "topic",
            "reassign",
            "fixed",
            "--partition",
            "5",
            "--replicas",
            "2,3",
        ],
    );
    assert!(error.contains("UnknownTopicOrPartition"), "{error}");
    assert_eq!(
        cluster.fails(
            2,
            &["topic", "reassign", "fixed", "--partition", "0", "--cancel"]
        ),
        "error: cannot cancel the reassignment of fixed/0: fixed/0 is not being reassigned (NoReassignmentInProgress)"
    );
    assert_eq!(
        cluster.fails(3, &["cluster", "decommission", "--node", "1"]),
        "error: cannot decommission node 1: node 1 is a voter of the controller quorum (controller_voters); changing the voters is not supported, so it cannot be decommissioned (NodeInUse)"
    );
    let error = cluster.fails(3, &["cluster", "decommission", "--node", "7"]);
    assert!(error.contains("not registered"), "{error}");
    assert_eq!(
        cluster.fails(3, &["cluster", "elect-leaders", "--topic", "nope"]),
        "error: cannot elect preferred leaders: unknown topic or partition \"nope\" (UnknownTopicOrPartition)"
    );
    assert_eq!(partition(&cluster, 1, "fixed"), before);
    let elected = cluster.ok(2, &["cluster", "elect-leaders", "--format", "json"]);
    let elected: serde_json::Value = serde_json::from_str(&elected).unwrap();
    assert_eq!(elected["moved"], serde_json::json!([]), "{elected}");
    assert_eq!(elected["not_preferred"], serde_json::json!([]), "{elected}");
}

/// The rolling restart's topic: 6 partitions, RF=3, min.insync.replicas=2.
const ROLLING_TOPIC: &str = "rolling";
const ROLLING_PARTITIONS: u32 = 6;
/// Acknowledgements every partition must gain at each step of the rolling restart.
const ROLLING_PROGRESS: u64 = 30;

/// `[cluster]` keys of the rolling restart: a session far longer than a controlled shutdown
/// takes (so a partition whose leader stopped without moving it would show that leader for
/// seconds), fast heartbeats and a short preferred-leader interval so leaders move back
/// soon after each restart, and a controlled-shutdown bound that a live controller never
/// needs (the last node of the final stop has no controller and waits it out).
const ROLLING_KEYS: &str = "node_heartbeat_interval_ms = 300\n\
node_session_timeout_ms = 15000\n\
peer_request_timeout_ms = 2000\n\
replica_lag_time_max_ms = 3000\n\
replica_fetch_wait_max_ms = 200\n\
leader_imbalance_check_interval_ms = 1000\n\
controlled_shutdown_timeout_ms = 10000\n";

/// Every partition of `topic` as the serving nodes describe it (one CLI call).
fn partition_states(
    cluster: &ledge_e2e::cluster_harness::TestCluster,
    topic: &str,
) -> Option<Vec<ledge_e2e::cluster_harness::PartitionState>> {
    let described = cluster.describe_topic(topic)?;
    let ids = |entry: &serde_json::Value, field: &str| -> Vec<u32> {
        entry[field]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_u64().and_then(|id| u32::try_from(id).ok()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut states: Vec<(u64, ledge_e2e::cluster_harness::PartitionState)> =
        described["partitions"]
            .as_array()?
            .iter()
            .map(|entry| {
                (
                    entry["partition"].as_u64().unwrap_or(u64::MAX),
                    ledge_e2e::cluster_harness::PartitionState {
                        leader: entry["leader"]
                            .as_u64()
                            .and_then(|id| u32::try_from(id).ok()),
                        leader_epoch: entry["leader_epoch"].as_i64().unwrap_or(-1),
                        replicas: ids(entry, "replicas"),
                        isr: ids(entry, "isr"),
                    },
                )
            })
            .collect();
    states.sort_by_key(|(partition, _)| *partition);
    let states: Vec<_> = states.into_iter().map(|(_, state)| state).collect();
    (states.len() == usize::try_from(ROLLING_PARTITIONS).unwrap()).then_some(states)
}

/// Lines of `log` that end a controlled shutdown: (moved, timed out).
fn controlled_shutdown_lines(log: &str) -> (Vec<String>, usize) {
    let moved = log
        .lines()
        .filter(|line| line.contains("controlled shutdown: moved"))
        .map(str::to_owned)
        .collect();
    let timed_out = log
        .lines()
        .filter(|line| line.contains("controlled shutdown: timed out"))
        .count();
    (moved, timed_out)
}

// Goal (issue 13 item 6): a rolling restart with SIGTERM costs no unavailability beyond one
// leader election per partition: each node, asked to stop, first has the controller move its
// leaderships to other in-sync replicas (controlled shutdown), so right after it exits every
// partition already has a live leader; it restarts, rejoins every ISR and gets its preferred
// leaderships back before the next node stops. An idempotent acks=all workload runs
// throughout: it never sees a final send failure, and the history checker finds every
// acknowledged record on at least min.insync replicas exactly once, in order.
// Method: 3 real nodes behind the harness's proxies, a 6-partition RF=3 topic with
// min.insync.replicas=2, `TestCluster::terminate` (SIGTERM, wait for the exit); every wait a
// bounded poll. The session timeout (15 s) is far longer than the stop takes, so without
// the controlled shutdown the stopped node would still be named leader right after it exits.
#[test]
fn rolling_restart_moves_leaders_before_each_stop_and_loses_nothing() {
    use ledge_client::{Admin, NewTopic};
    use ledge_e2e::cluster_harness::{CONDITION_TIMEOUT, ClusterOptions, TestCluster, poll_until};
    use ledge_e2e::history::{ReplicaLog, check};
    use ledge_e2e::workload::{Workload, WorkloadOptions};

    let mut cluster = TestCluster::start(ClusterOptions {
        cluster_keys: ROLLING_KEYS.to_owned(),
        ..ClusterOptions::default()
    });
    cluster.wait_for_all_alive();
    let client = cluster.runtime().block_on(cluster.client());
    cluster
        .runtime()
        .block_on(Admin::new(&client).create_topics(
            vec![
                NewTopic::new(ROLLING_TOPIC, ROLLING_PARTITIONS)
                    .replication_factor(3)
                    .config("min.insync.replicas", "2"),
            ],
            false,
        ))
        .expect("the RF=3 topic is created");
    let balanced = |cluster: &TestCluster, what: &str| {
        poll_until(
            what,
            CONDITION_TIMEOUT,
            || {
                partition_states(cluster, ROLLING_TOPIC).filter(|states| {
                    states.iter().all(|state| {
                        state.isr.len() == 3 && state.leader == state.replicas.first().copied()
                    })
                })
            },
            || {
                format!(
                    "{:?}\n{}",
                    partition_states(cluster, ROLLING_TOPIC),
                    cluster.logs()
                )
            },
        )
    };
    balanced(
        &cluster,
        "every ISR full and every partition led by its preferred replica",
    );
    let workload = Workload::start(
        cluster.runtime(),
        &client,
        WorkloadOptions::new(ROLLING_TOPIC, ROLLING_PARTITIONS),
    );
    let progress = |cluster: &TestCluster, workload: &Workload, what: &str| {
        workload.wait_for_progress_explained(what, ROLLING_PROGRESS, || {
            format!(
                "partitions {:?}\n{}",
                partition_states(cluster, ROLLING_TOPIC),
                cluster.logs()
            )
        });
    };
    progress(&cluster, &workload, "before the rolling restart");
    for id in cluster.ids() {
        let before = balanced(&cluster, "a balanced cluster before the next stop");
        let led = before
            .iter()
            .filter(|state| state.leader == Some(id))
            .count();
        assert!(
            led > 0,
            "node {id} leads something before it stops: {before:?}"
        );
        let (moved_before, timed_out_before) =
            controlled_shutdown_lines(&cluster.node(id).process.log());
        cluster.terminate(id);
        // The node's last words: it moved its leaderships away, it did not time out.
        let log = cluster.node(id).process.log();
        let (moved, timed_out) = controlled_shutdown_lines(&log);
        assert_eq!(
            (moved.len(), timed_out),
            (moved_before.len() + 1, timed_out_before),
            "node {id} logs one controlled shutdown that moved its leaderships:\n{log}"
        );
        eprintln!("node {id}: {}", moved.last().expect("a moved line"));
        // Right after the exit every partition is led by a live node (the stopped node's
        // session has 15 s to run, so only the controlled shutdown can explain this).
        let after = poll_until(
            "a topic description from the surviving nodes",
            CONDITION_TIMEOUT,
            || partition_states(&cluster, ROLLING_TOPIC),
            || cluster.logs(),
        );
        for (partition, state) in after.iter().enumerate() {
            assert!(
                state.leader.is_some_and(|leader| leader != id),
                "partition {partition} right after node {id} exited: {state:?} (all: {after:?})"
            );
        }
        progress(&cluster, &workload, &format!("while node {id} is down"));
        cluster.restart(id);
        balanced(
            &cluster,
            &format!("node {id} back in every ISR and leading its preferred partitions"),
        );
        progress(&cluster, &workload, &format!("after node {id} returned"));
    }
    let history = workload.finish(cluster.runtime());
    cluster.runtime().block_on(client.close());
    let failed: Vec<_> = history
        .sent
        .iter()
        .filter(|sent| sent.acknowledged_offset.is_none())
        .collect();
    assert!(
        failed.is_empty(),
        "the producers saw {} final send failure(s), first {:?}",
        failed.len(),
        failed.first()
    );
    let node_logs = cluster.logs();
    cluster.terminate_all();
    let mut replicas = Vec::new();
    for id in cluster.ids() {
        for partition in 0..ROLLING_PARTITIONS {
            let dump = cluster
                .dump(id, ROLLING_TOPIC, partition)
                .unwrap_or_else(|| panic!("node {id} holds partition {partition}"));
            replicas.push(
                ReplicaLog::from_dump_json(id, partition, &dump)
                    .unwrap_or_else(|error| panic!("node {id}: {error}")),
            );
        }
    }
    match check(&history, &replicas, 2) {
        Ok(summary) => eprintln!("rolling restart: checker passed: {summary:?}"),
        Err(violations) => panic!(
            "rolling restart: the checker found {} violation(s):\n{}\n{node_logs}",
            violations.len(),
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
